"""Training curves of several methods on shared axes, so that a collapse is visible at a glance."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

CURVES = [("reward_raw_mean", "raw reward"), ("trace_len_mean", "trace length (tokens)"),
          ("trace_entropy", "trace entropy (per token)"), ("delimiter_rate", "delimiter rate"),
          ("answer_nll_gain", "answer NLL gain (nats/token)")]


def plot_curves(runs_by_method: dict[str, list[list[dict[str, Any]]]], path: Path,
                curves: list[tuple[str, str]] = CURVES) -> None:
    """One panel per metric of ``curves``; one line per method, the mean over its runs (seeds) per step.

    ``runs_by_method[name]`` is a list of runs, each the list of per-step metric dicts (``metrics.jsonl``);
    a dict's ``step`` places it on the x axis (else its position). A metric a method does not log (SFT has no
    trace) is left out of that panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    axes = axes[0]
    for name, runs in runs_by_method.items():
        steps = min(len(r) for r in runs)
        x = [runs[0][i].get("step", i + 1) for i in range(steps)]
        for ax, (key, label) in zip(axes, curves, strict=True):
            if any(key not in r[i] for r in runs for i in range(steps)):
                continue
            ax.plot(x, [statistics.mean(r[i][key] for r in runs) for i in range(steps)], label=name)
            ax.set_title(label)
            ax.set_xlabel("step")
    if curves[0][0] == "reward_raw_mean":
        axes[0].set_yscale("symlog", linthresh=1e-2)  # rewards of different aggregations differ by orders
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
