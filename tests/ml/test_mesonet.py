"""The MesoNet port: the authors' weights and output convention on their own sample crops, Keras layer
details, and ONNX export parity (every model alone and the shipped mean)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ml.build.builders.deepfake_v2_card import SAMPLE_CHECK
from ml.build.mesonet import (
    MODELS,
    WEIGHTS,
    FakeScore,
    Meso4,
    MesoInception4,
    SamePool,
    SharedFirstBlock,
    export_onnx,
    fake_score,
    load_keras_weights,
    load_model,
    pool_before_norm,
    read_crop,
    torch_p_fake,
)
from ml.manifest import sha256_file
from ml.runtime import CPU, make_session

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mesonet"
SAMPLES = SHARED / "test_images"
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"the MesoNet authors' sample crops are not here ({SAMPLES}); CI has ../shared")


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    """The four sample crops as (4, 3, 256, 256) float32 0..255, in SAMPLE_CHECK's order."""
    if not SAMPLES.is_dir():
        pytest.skip(f"the MesoNet authors' sample crops are not here ({SAMPLES}); CI has ../shared")
    crops = [read_crop(SAMPLES / name) for name in SAMPLE_CHECK]
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32)


def _p_fake(name: str, batch: np.ndarray) -> np.ndarray:
    return torch_p_fake(FakeScore([load_model(name)]).eval(), batch)


@needs_samples
@pytest.mark.parametrize("name", ["Meso4_DF", "MesoInception_DF"])
def test_df_models_call_the_authors_samples_right(samples: np.ndarray, name: str) -> None:
    """P(fake) = 1 - output: the df crops are fake, the real ones real, with confidence."""
    p_fake = _p_fake(name, samples)
    is_fake = np.array([key.startswith("df/") for key in SAMPLE_CHECK])
    assert (p_fake[is_fake] > 0.95).all(), p_fake
    assert (p_fake[~is_fake] < 0.05).all(), p_fake


@needs_samples
def test_port_reproduces_the_recorded_sample_figures(samples: np.ndarray) -> None:
    """The card quotes SAMPLE_CHECK: every model's and the shipped mean's P(fake) must still match it."""
    for name in MODELS:
        got = _p_fake(name, samples)
        want = np.array([SAMPLE_CHECK[key][name] for key in SAMPLE_CHECK])
        np.testing.assert_allclose(got, want, atol=1e-3, err_msg=name)
    shipped = torch_p_fake(fake_score(["Meso4_DF", "Meso4_F2F"]), samples)
    np.testing.assert_allclose(shipped, [SAMPLE_CHECK[k]["shipped"] for k in SAMPLE_CHECK], atol=1e-3)


@needs_samples
def test_committed_weights_are_the_authors_files() -> None:
    for name in [*(f"{m}.h5" for m in MODELS), "LICENSE", "NOTICE"]:
        assert sha256_file(WEIGHTS / name) == sha256_file(SHARED / name), name


def test_meso4_files_record_no_leaky_relu_but_mesoinception_files_do() -> None:
    """Why Meso4's hidden layer is linear in the port: the saved graphs list every layer."""
    for name, arch in MODELS.items():
        with h5py.File(WEIGHTS / f"{name}.h5", "r") as fh:
            layers = [n.decode() for n in fh.attrs["layer_names"]]
        assert any(n.startswith("leaky_re_lu") for n in layers) == (arch == "MesoInception4"), name


def test_same_pool_matches_keras_on_uneven_sizes() -> None:
    """MaxPooling2D(padding='same') on 5x5 with pool 2 gives 3x3; the last row/column pools what is left
    (the padding never wins, even where every value is negative)."""
    x = -torch.arange(1, 26, dtype=torch.float32).reshape(1, 1, 5, 5)
    out = SamePool(2)(x)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 2, 2].item() == -25.0 and out[0, 0, 0, 2].item() == -5.0
    assert out[0, 0, 0, 0].item() == -1.0


def test_weights_refuse_the_wrong_architecture() -> None:
    with pytest.raises(ValueError, match="needs"):
        load_keras_weights(MesoInception4(), WEIGHTS / "Meso4_DF.h5")
    with pytest.raises(ValueError, match="needs"):
        load_keras_weights(Meso4(), WEIGHTS / "MesoInception_DF.h5")


def test_every_tensor_of_the_file_is_used() -> None:
    model = load_model("MesoInception_DF")
    with h5py.File(WEIGHTS / "MesoInception_DF.h5", "r") as fh:
        stored = sum(int(np.prod(d.shape)) for d in _datasets(fh))
    assert sum(int(p.numel()) for p in model.state_dict().values() if p.dtype == torch.float32) == stored


def _datasets(group: h5py.Group) -> list[h5py.Dataset]:
    found: list[h5py.Dataset] = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _check_batch(samples_or_none: np.ndarray | None) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (3, 3, 256, 256)).astype(np.float32)
    return noise if samples_or_none is None else np.concatenate([samples_or_none, noise])


@pytest.mark.parametrize("members", [[n] for n in MODELS] + [["Meso4_DF", "Meso4_F2F"]])
def test_onnx_matches_the_port(members: list[str], tmp_path: Path) -> None:
    """ONNX Runtime FP32 vs torch within 1e-4, on the sample crops (when present) and noise, at batch 1 and N."""
    batch = _check_batch(np.stack([read_crop(SAMPLES / k) for k in SAMPLE_CHECK]).transpose(0, 3, 1, 2)
                         .astype(np.float32) if SAMPLES.is_dir() else None)
    model = fake_score(members)
    session = make_session(export_onnx(model, tmp_path / "m.onnx"), [CPU], 0)
    expected = torch_p_fake(model, batch)
    got = session.run(None, {"image": batch})[0]
    assert got.shape == (len(batch),)
    assert float(np.abs(got - expected).max()) <= 1e-4
    single = session.run(None, {"image": batch[:1]})[0]
    assert float(np.abs(single - expected[:1]).max()) <= 1e-4


def test_pool_before_norm_is_the_same_function_and_only_where_it_is() -> None:
    """Every block of the shipped members has positive BatchNorm scales, so all eight move, and the
    scores stay within float rounding; a block with one negative scale must keep its order (a
    decreasing map turns the max into a min), and then matches the original exactly."""
    batch = _check_batch(None)
    for name in ["Meso4_DF", "Meso4_F2F"]:
        original = load_model(name)
        reordered = load_model(name)
        assert pool_before_norm(reordered) == 4
        np.testing.assert_allclose(_torch_out(reordered, batch), _torch_out(original, batch), rtol=0, atol=1e-6)
    flipped = load_model("Meso4_DF")
    with torch.no_grad():
        flipped.blocks[0].bn.weight[3] *= -1
    kept = load_model("Meso4_DF")
    with torch.no_grad():
        kept.blocks[0].bn.weight[3] *= -1
    assert pool_before_norm(flipped) == 3 and not flipped.blocks[0].norm_after_pool
    np.testing.assert_allclose(_torch_out(flipped, batch), _torch_out(kept, batch), rtol=0, atol=1e-6)
    forced = load_model("Meso4_DF")
    with torch.no_grad():
        forced.blocks[0].bn.weight[3] *= -1
    forced.blocks[0].norm_after_pool = True  # what the guard prevents: no longer the same function
    assert float(np.abs(_torch_out(forced, batch) - _torch_out(kept, batch)).max()) > 1e-3


def _torch_out(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(batch / 255.0)).numpy()
    return out


def test_shared_first_block_gives_each_member_its_own_channels(tmp_path: Path) -> None:
    """The shipped pair's first blocks run as one convolution: the same scores as the members alone (torch
    and ONNX), and only where the blocks differ in nothing but weights."""
    batch = _check_batch(None)
    shared = fake_score(["Meso4_DF", "Meso4_F2F"])
    assert isinstance(shared.first, SharedFirstBlock) and shared.first.widths == [8, 8]
    alone = FakeScore(list(shared.members)).eval()  # the same members, each running its own first block
    assert alone.first is None
    expected = torch_p_fake(alone, batch)
    np.testing.assert_allclose(torch_p_fake(shared, batch), expected, rtol=0, atol=1e-6)
    got = make_session(export_onnx(shared, tmp_path / "m.onnx"), [CPU], 0).run(None, {"image": batch})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # A member whose first block ran in the other order, or an Inception member, is not joined.
    mixed = [load_model("Meso4_DF"), load_model("Meso4_F2F")]
    pool_before_norm(mixed[0])
    assert FakeScore(mixed, share_first=True).first is None
    assert FakeScore([load_model("Meso4_DF"), load_model("MesoInception_DF")], share_first=True).first is None
    assert FakeScore([load_model("Meso4_DF")], share_first=True).first is None
