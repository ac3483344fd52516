"""``deepscreen eval --record``: an evaluation's figures into the version's manifest and model card.

Real labelled data goes into the manifest's ``validation`` block (format at the top of ml.manifest;
the entry of the same data-set name is replaced, others kept) and sets its status to ``validated``.
Synthetic or pseudo-labelled data (``--synthetic``) goes into ``provenance.synthetic_checks`` and
never into ``validation``: it says the code ran, not that the model works. The card's "Validation"
section is regenerated from both, and any manifest file entry for the card gets its new sha256, so
``deepscreen models verify`` keeps passing.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml.build.evaluation.report import RATES
from ml.manifest import CARD, MANIFEST, VALIDATED, Manifest, sha256_file

SECTION = "## Validation"
DIGITS = 4


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DIGITS)
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def _figures(figures: dict[str, Any]) -> dict[str, Any]:
    keys = ["n", "positives", "auroc", "auroc_ci", "average_precision", "average_precision_ci", "threshold"]
    keys += [k for name in RATES for k in (name, f"{name}_ci")] + ["ece", "declined", "undecodable"]
    return {k: _round(figures[k]) for k in keys if k in figures}


def dataset_entry(report: dict[str, Any], name: str | None = None, description: str | None = None,
                  split: str | None = None, date: str | None = None) -> dict[str, Any]:
    """One ``datasets`` item of the validation block from an evaluation report."""
    entry: dict[str, Any] = {
        "name": name or report["data"]["name"],
        "description": description or report["data"]["description"],
        "split": split or "the whole set as given (no split made by deepscreen eval)",
        "date": date or today(),
        **_figures(report),
        "ece_bins": report["calibration"]["bins"],
        "positive_label": report["positive_label"], "score": report["score"],
        "bootstrap": {"resamples": report["bootstrap"]["resamples"], "seed": report["bootstrap"]["seed"]},
    }
    if report.get("by_group"):
        entry["group_by"] = report["group_by"]
        entry["by_group"] = {group: _figures(figures) for group, figures in report["by_group"].items()}
    return entry


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def _replace(entries: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("name") != entry["name"]] + [entry]


def summary_line(datasets: list[dict[str, Any]]) -> str:
    """The one line a moderator reads beside a label."""
    parts = []
    for d in datasets:
        ci = d.get("auroc_ci")
        auc = "n/a" if d.get("auroc") is None else f"{d['auroc']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        rates = ""
        if d.get("recall") is not None and d.get("fpr") is not None:
            rates = f", recall {d['recall']:.2f} at FPR {d['fpr']:.2f}"
        parts.append(f"AUROC {auc} on {d['name']} (n={d['n']}{rates}, {d['date']})")
    return "; ".join(parts)


def record(manifest_dir: Path, entry: dict[str, Any], synthetic: bool = False) -> dict[str, Any]:
    """Write ``entry`` into the manifest (validation block, or provenance when synthetic) and the card;
    return the manifest's new JSON. The manifest is rewritten atomically and verified afterwards."""
    path = manifest_dir / MANIFEST
    raw = json.loads(path.read_text())
    if synthetic:
        provenance = raw.setdefault("provenance", {})
        provenance["synthetic_checks"] = _replace(list(provenance.get("synthetic_checks", [])), entry)
    else:
        block = dict(raw.get("validation") or {})
        datasets = _replace(list(block.get("datasets", [])), entry)
        block.update(status=VALIDATED, summary=summary_line(datasets), date=entry["date"], datasets=datasets)
        raw["validation"] = block
    card = manifest_dir / CARD
    write_card_section(card, card_section(raw.get("validation") or {},
                                          raw.get("provenance", {}).get("synthetic_checks", [])))
    for file_entry in raw.get("files", {}).values():  # the card is hashed only where a builder listed it
        if (manifest_dir / file_entry["path"]).resolve() == card.resolve():
            file_entry["sha256"] = sha256_file(card)
    temporary = path.with_name(f".{MANIFEST}.tmp")
    temporary.write_text(json.dumps(raw, indent=2) + "\n")
    os.replace(temporary, path)  # a worker reading the manifest sees the old or the new one, never half
    Manifest.load(manifest_dir).verify()
    return raw


# ---- the model card ----------------------------------------------------------------------------

def _fig(value: Any, ci: Any = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def _table(rows: dict[str, dict[str, Any]], first: str) -> list[str]:
    lines = [f"| {first} | n (positive) | AUROC [95 % CI] | AP [95 % CI] | threshold | accuracy | precision "
             "| recall [95 % CI] | FPR [95 % CI] | ECE |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in rows.items():
        lines.append(f"| {name} | {d.get('n')} ({d.get('positives')}) | {_fig(d.get('auroc'), d.get('auroc_ci'))} "
                     f"| {_fig(d.get('average_precision'), d.get('average_precision_ci'))} "
                     f"| {d.get('threshold', 'n/a')} | {_fig(d.get('accuracy'))} | {_fig(d.get('precision'))} "
                     f"| {_fig(d.get('recall'), d.get('recall_ci'))} | {_fig(d.get('fpr'), d.get('fpr_ci'))} "
                     f"| {_fig(d.get('ece'))} |")
    return lines


def card_section(validation: dict[str, Any], synthetic_checks: list[dict[str, Any]] | None = None) -> str:
    """The card's "Validation" section, generated from the manifest's validation block (and the
    synthetic checks in provenance, shown apart and named as such)."""
    lines = [SECTION, "",
             "_Generated from the manifest's `validation` block by `deepscreen eval --record`; figures are "
             "fractions, intervals are percentile bootstrap 95 %._", ""]
    datasets = validation.get("datasets", []) if validation.get("status") == VALIDATED else []
    if datasets:
        lines += [f"**Validated on real labelled data** (last recorded {validation.get('date')}): "
                  f"{validation.get('summary', '')}", ""]
        lines += _table({d["name"]: d for d in datasets}, "data set")
        lines.append("")
        for d in datasets:
            declined = ", ".join(f"{k}={v}" for k, v in {**d.get("declined", {}), **d.get("undecodable", {})}.items())
            lines.append(f"- **{d['name']}** ({d.get('date')}): {d.get('description', '')}. Split: {d.get('split')}. "
                         f"Positive class `{d.get('positive_label')}` read from `{d.get('score')}`; "
                         f"ECE over {d.get('ece_bins')} equal-width bins; items not scored: {declined or 'none'}.")
            if d.get("by_group"):
                lines += ["", f"  By `{d.get('group_by')}`:", ""]
                lines += ["  " + line for line in _table(d["by_group"], d.get("group_by", "group"))]
        lines.append("")
    else:
        lines += ["**Not validated on real data.** No figure below or elsewhere in this card measures how well "
                  "this version works on real labelled data.", ""]
    if synthetic_checks:
        lines += ["Synthetic or pseudo-labelled checks (they show the code runs; they are **not** validation):", ""]
        lines += _table({d["name"]: d for d in synthetic_checks}, "check")
        lines += [""] + [f"- **{d['name']}** ({d.get('date')}): {d.get('description', '')}" for d in synthetic_checks]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_card_section(card: Path, section: str) -> None:
    """Replace the card's "## Validation" section (up to the next "## " heading), or append one."""
    text = card.read_text() if card.is_file() else ""
    pattern = re.compile(r"^## Validation[^\n]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        following = pattern.sub(lambda _: section + "\n", text, count=1)
        text = following.rstrip() + "\n"
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + section
    card.write_text(text)
