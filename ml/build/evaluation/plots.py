"""The two figures of an evaluation, drawn with matplotlib (build extra): ROC and reliability."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _title(report: dict[str, Any]) -> str:
    return f"{report['model']} v{report['version']} on {report['data']['name']} (n={report['n']})"


def draw_roc(report: dict[str, Any], path: Path) -> Path:
    """The ROC curve with chance as a diagonal, AUROC [95 % CI] in the legend and the operating point
    at the model's threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="chance")
    auc = report["auroc"]
    label = "AUROC n/a" if auc is None else f"AUROC {auc:.3f}"
    if report.get("auroc_ci"):
        label += " [{:.3f}, {:.3f}]".format(*report["auroc_ci"])
    ax.plot(report["roc"]["fpr"], report["roc"]["tpr"], color="tab:red", lw=2, label=label)
    if report["fpr"] is not None and report["recall"] is not None:
        ax.plot([report["fpr"]], [report["recall"]], "ko",
                label=f"threshold {report['threshold']:g}: TPR {report['recall']:.2f}, FPR {report['fpr']:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate",
           ylabel=f"true positive rate ({report['positive_label']})", title=_title(report))
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, plt, path)


def draw_reliability(report: dict[str, Any], path: Path) -> Path:
    """Observed share of positives against mean score per equal-width bin (perfect calibration is the
    diagonal), with the item count per bin below."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), dpi=100, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    bins = [b for b in report["reliability"] if b["n"]]
    top.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="perfect calibration")
    ece = "n/a" if report["ece"] is None else f"{report['ece']:.3f}"
    top.plot([b["mean_score"] for b in bins], [b["positive_rate"] for b in bins], "o-", color="tab:blue",
             label=f"{report['model']} (ECE {ece}, {report['calibration']['bins']} equal-width bins)")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel=f"observed share {report['positive_label']}", title=_title(report))
    top.title.set_fontsize(9)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    width = 1.0 / max(1, report["calibration"]["bins"])
    bottom.bar([b["low"] for b in report["reliability"]], [b["n"] for b in report["reliability"]], width=width,
               align="edge", color="0.6", edgecolor="white")
    bottom.set(xlabel="score", ylabel="items")
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
