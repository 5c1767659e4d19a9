"""Training curves of several methods on shared axes, so that a collapse is visible at a glance."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

CURVES = [("reward_raw_mean", "raw reward"), ("trace_len_mean", "trace length (tokens)"),
          ("trace_entropy", "trace entropy (per token)"), ("delimiter_rate", "delimiter rate"),
          ("answer_nll_gain", "answer NLL gain (nats/token)")]


def plot_curves(runs_by_method: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """One panel per metric of ``CURVES``; one line per method, the mean over its runs (seeds) per step.

    ``runs_by_method[name]`` is a list of runs, each the list of per-step metric dicts (``metrics.jsonl``).
    A metric a method does not log (SFT has no trace) is left out of that panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 4))
    for name, runs in runs_by_method.items():
        steps = min(len(r) for r in runs)
        for ax, (key, label) in zip(axes, CURVES, strict=True):
            if any(key not in r[i] for r in runs for i in range(steps)):
                continue
            ax.plot(range(1, steps + 1), [statistics.mean(r[i][key] for r in runs) for i in range(steps)],
                    label=name)
            ax.set_title(label)
            ax.set_xlabel("step")
    axes[0].set_yscale("symlog", linthresh=1e-2)  # rewards of different aggregations differ by orders
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
