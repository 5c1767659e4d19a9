"""``nrt demo``: the method learning, in about 16 minutes on a 2-core CPU (AMD EPYC, one recorded run).

1. Warm start: the model is taught worked column additions (``nrt.arithmetic``) until its greedy accuracy on
   its own validation file reaches 0.30-0.50: it writes the traces, and often gets them wrong.
2. nrt-ws trains it on question-answer pairs only: the trace is never shown; each sampled trace is rewarded
   by how much it raises the model's likelihood of the reference sum.
3. Both models answer the same held-out problems (greedy, think then answer), disjoint from the validation and
   training files; the difference is paired per problem, with a 95% interval.

Written to ``out``: ``demo.png`` (held-out accuracy before and after; per training step, the fraction of
sampled traces that add up correctly, the reward and the trace length), ``summary.json``, and the runs
(``data/``, ``warm-start/``, ``nrt-ws/``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nrt import arithmetic
from nrt.arithmetic import Budget

if TYPE_CHECKING:
    from nrt.evaluate import TaskResult


# What ``nrt demo`` spends: sized to show held-out accuracy rising in about 16 minutes on 2 CPU cores (two
# evaluations of 400 problems took 6 of 28 minutes on one thread; 300 leave room).
DEMO = Budget(eval_size=300)


def paired_difference(before: list[bool], after: list[bool]) -> dict[str, float]:
    """Accuracy after minus before on the same problems, with a 95% interval (normal approximation of the
    per-problem differences, as in McNemar's test: only problems that changed carry information)."""
    if len(before) != len(after) or not before:
        raise ValueError(f"paired_difference: {len(before)} and {len(after)} scores; need the same problems, >= 1")
    n = len(before)
    gained = sum(a and not b for b, a in zip(before, after, strict=True))
    lost = sum(b and not a for b, a in zip(before, after, strict=True))
    mean = (gained - lost) / n
    half = 1.96 * math.sqrt(max(0.0, (gained + lost) / n - mean ** 2) / n)
    return {"difference": mean, "low": mean - half, "high": mean + half, "gained": gained, "lost": lost, "n": n}


def trace_correctness(samples: list[dict[str, Any]], answers: list[str], prompts: list[list[int]]) -> list[float]:
    """Per step, the fraction of sampled traces that write the reference sum. ``prompts[s]``: the training-file
    indices of step ``s + 1``'s prompts; a sample's ``prompt_index`` is its prompt's position among them."""
    by_step: dict[int, list[bool]] = {}
    for s in samples:
        answer = answers[prompts[s["step"] - 1][s["prompt_index"]]]
        by_step.setdefault(s["step"], []).append(arithmetic.trace_sum(s["trace"]) == answer)
    return [sum(v) / len(v) for _, v in sorted(by_step.items())]


def plot(summary: dict[str, Any], path: Path) -> None:
    """Held-out accuracy before/after (95% interval of the difference in the title) and the training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    before, after, diff = summary["before"]["accuracy"], summary["after"]["accuracy"], summary["difference"]
    axes[0].bar(["warm start", f"+ {summary['budget']['steps']} steps nrt-ws"], [before, after],
                color=["tab:gray", "tab:blue"])
    for x, y in enumerate((before, after)):
        axes[0].text(x, y, f"{y:.3f}", ha="center", va="bottom")
    axes[0].set_ylim(0, 1)
    axes[0].set_title(f"held-out accuracy ({diff['n']} problems)\ndifference {diff['difference']:+.3f} "
                      f"[{diff['low']:+.3f}, {diff['high']:+.3f}]")
    curves = summary["curves"]
    steps = range(1, len(curves["reward"]) + 1)
    panels = [("traces_correct", "sampled traces that add up correctly"),
              ("reward", "nrt-ws reward (falls as the answer gets\neasier without a trace too)"),
              ("trace_len", "trace length (tokens)")]
    for ax, (key, title) in zip(axes[1:], panels, strict=True):
        ax.plot(steps, curves[key], marker=".")
        if key == "traces_correct":
            ax.set_ylim(0, 1)  # on the accuracy panel's scale
        ax.set_title(title)
        ax.set_xlabel("training step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(summary: dict[str, Any]) -> str:
    """The closing lines: accuracy before -> after with the interval, and the time taken."""
    diff, minutes, threads = summary["difference"], summary["minutes"], summary["threads"]
    return "\n".join([
        f"nrt demo: held-out accuracy on {diff['n']} new 3-digit additions (greedy, think then answer)",
        f"  {summary['before']['accuracy']:.3f} -> {summary['after']['accuracy']:.3f}: the warm start -> after "
        f"{summary['budget']['steps']} steps of nrt-ws on question-answer pairs only",
        f"  difference {diff['difference']:+.3f}, 95% interval [{diff['low']:+.3f}, {diff['high']:+.3f}] (paired per "
        f"problem: {diff['gained']} became right, {diff['lost']} became wrong)",
        f"  {minutes['total']:.1f} min on {threads} thread{'s' if threads > 1 else ''} (warm start "
        f"{minutes['warm_start']:.1f}, training {minutes['training']:.1f}, evaluations {minutes['evaluations']:.1f})",
        f"  plot {summary['out']}/demo.png, figures {summary['out']}/summary.json"])


def run(model: str, out: Path, budget: Budget = DEMO, threads: int | None = None) -> dict[str, Any]:
    """Warm start, evaluate, train nrt-ws, evaluate again; write the plot and summary.json; print the report.
    ``threads``: torch's intra-op threads (None: torch's default, one per core)."""
    from nrt.config import load_config
    from nrt.modeling import inference_device, load_policy
    from nrt.runlog import read_jsonl
    from nrt.trainer import prompt_indices, train

    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    minutes = {"warm_start": 0.0, "training": 0.0, "evaluations": 0.0}

    def clock(stage: str, since: float) -> float:
        now = time.perf_counter()
        minutes[stage] += (now - since) / 60
        return now

    def evaluate(folder: Path) -> TaskResult:
        policy = load_policy(str(folder), device=inference_device())
        policy.model.eval()
        return arithmetic.score_problems(policy, files["3-digit"], limit=None, max_trace_tokens=budget.max_trace_tokens)

    files = arithmetic.write_task_files(out / "data", eval_size=budget.eval_size,
                                        validation_size=budget.validation_size, train_size=budget.train_size)
    print(f"[1/4] warm start: worked column additions until validation accuracy reaches {budget.warm.target}",
          flush=True)
    history = arithmetic.warm_start(model, budget.warm, out / "warm-start", files["validation"],
                                    never_train_on=arithmetic.questions(files["3-digit"]))
    now = clock("warm_start", started)
    before = evaluate(out / "warm-start")
    print(f"[2/4] held-out accuracy of the warm start: {before.accuracy:.3f} ({before.n} problems)", flush=True)
    now = clock("evaluations", now)
    print(f"[3/4] nrt-ws: {budget.steps} steps of {budget.prompts_per_step} questions x {budget.num_traces} traces, "
          "question-answer pairs only", flush=True)
    cfg = load_config("nrt-ws", {
        "model": str(out / "warm-start"), "data": str(files["train"]), "output_dir": str(out / "nrt-ws"),
        "overwrite_output_dir": True,  # a demo run again starts over
        **budget.train_overrides(), "samples_per_step": budget.prompts_per_step * budget.num_traces})
    result = train(cfg)
    now = clock("training", now)
    after = evaluate(result.checkpoint / "model")
    print(f"[4/4] held-out accuracy after training: {after.accuracy:.3f}", flush=True)
    clock("evaluations", now)
    minutes["total"] = (time.perf_counter() - started) / 60
    minutes["cpu"] = time.process_time() / 60  # this process's CPU time, every thread: the work, whatever else ran

    answers = [e.answer for e in arithmetic.examples(files["train"])]
    prompts = [prompt_indices(step, budget.prompts_per_step, len(answers), cfg.seed) for step in range(budget.steps)]
    metrics = result.metrics
    correct = {name: [s["score"] >= 1 for s in r.samples] for name, r in (("before", before), ("after", after))}
    summary = {
        "model": model, "out": str(out), "budget": asdict(budget), "threads": torch.get_num_threads(),
        "warm_start": history, "before": arithmetic.figures(before), "after": arithmetic.figures(after),
        "difference": paired_difference(correct["before"], correct["after"]),
        "correct": correct,  # per held-out problem, in file order: the pairing behind the interval
        "curves": {"traces_correct": trace_correctness(read_jsonl(out / "nrt-ws" / "samples.jsonl"), answers, prompts),
                   "reward": [m["reward_raw_mean"] for m in metrics],
                   "trace_len": [m["trace_len_mean"] for m in metrics],
                   "answer_nll_gain": [m["answer_nll_gain"] for m in metrics]},
        "minutes": minutes}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(summary, out / "demo.png")
    print(report(summary))
    return summary
