"""The paper's comparison at small scale, on the default model, in one command (~50 min on 2 CPU cores).

    python experiments/compare.py                 # everything; resumes where it stopped
    python experiments/compare.py --quick         # 2 steps, 4 problems per task: checks the pipeline (minutes)

Every method trains with its shipped preset on the same question-answer pairs (two-term sums of numbers up
to two digits, from reasoning-gym), the same number of steps, prompts per step, learning rate and seed. Only
the preset differs. Each trained model, and the untrained one, is then evaluated greedily, with a trace
(think) and without one (answer right after the delimiter), on held-out problems of the training task and
on two tasks it never trained on. Written to ``--out``: ``README.md`` (the table, the command, the commit,
the wall time), ``curves.png`` (reward, trace length, entropy and delimiter rate per step for every method
on shared axes), ``results.json``; runs (checkpoints, metrics, logs) go to ``--runs``.

A finished method is not run again: delete its run folder to redo it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from nrt.plots import plot_curves
from nrt.reports import write_report

TRAIN_TASK = "reasoning_gym:chain_sum:min_terms=2:max_terms=2:max_digits=2"
EVAL_TASKS = {  # short column name → task
    "sums (trained)": TRAIN_TASK,
    "products": "reasoning_gym:products:max_digits=1",
    "letter counting": "reasoning_gym:letter_counting:min_words=3:max_words=5",
}
METHODS = ["sft", "verifree", "rlpr", "jepo", "nrt-gm", "nrt-ws"]  # each is the preset of that name


@dataclass(frozen=True)
class Budget:
    """The same for every method; nothing here is tuned per method."""

    steps: int = 30
    prompts_per_step: int = 4
    num_traces: int = 4
    max_trace_tokens: int = 48
    lr: float = 5e-5
    seed: int = 0
    eval_limit: int = 40

    def overrides(self, method: str) -> list[str]:
        """The shared overrides; SFT samples no trace, so it keeps its preset's single sequence per prompt."""
        traces = [] if method == "sft" else [f"num_traces={self.num_traces}"]
        return [f"data={TRAIN_TASK}", f"steps={self.steps}", f"prompts_per_step={self.prompts_per_step}", *traces,
                f"max_trace_tokens={self.max_trace_tokens}", f"lr={self.lr}", f"seed={self.seed}",
                "max_answer_tokens=16", "report_to=[]"]


QUICK = Budget(steps=2, eval_limit=4)


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def run_logged(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with its output in ``log``; return its wall time in minutes (raise if it fails)."""
    started = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}\n  see {log}")
    return (time.perf_counter() - started) / 60


def train(method: str, model: str, budget: Budget, runs: Path) -> tuple[Path, dict[str, Any]]:
    """Train ``method`` unless its run finished before; return its final model folder and its minutes and commit."""
    run_dir = runs / method
    done = run_dir / "done.json"
    if not done.is_file():
        print(f"[{time.strftime('%H:%M')}] train {method} ({budget.steps} steps)", flush=True)
        minutes = run_logged([sys.executable, "-m", "nrt", "train", "--config", method, *budget.overrides(method),
                              f"model={model}", f"output_dir={run_dir}", "progress=false",
                              "overwrite_output_dir=true"],  # an unfinished run starts over
                             runs / f"{method}.train.log")
        done.write_text(json.dumps({"minutes": minutes, "commit": head_commit()}))
    trained = run_dir / "checkpoints" / f"step-{budget.steps:06d}" / "model"
    return trained, json.loads(done.read_text())


def evaluate(name: str, model: str, budget: Budget, runs: Path, *, think: bool) -> dict[str, Any]:
    """``nrt eval`` on every task of ``EVAL_TASKS`` (cached in the run folder)."""
    mode = "think" if think else "no-think"
    out = runs / "eval" / f"{name}.{mode}.json"
    if not out.is_file():
        print(f"[{time.strftime('%H:%M')}] eval {name} {mode}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        minutes = run_logged([sys.executable, "-m", "nrt", "eval", "--model", model, "--tasks",
                              ",".join(EVAL_TASKS.values()), "--limit", str(budget.eval_limit), "--max-trace-tokens",
                              str(budget.max_trace_tokens), "--max-answer-tokens", "16", "--batch-size",
                              str(budget.eval_limit), "--output", str(out), *([] if think else ["--no-think"])],
                             runs / f"{name}.{mode}.eval.log")
        out.write_text(json.dumps(json.loads(out.read_text()) | {"minutes": minutes, "commit": head_commit()}))
    return json.loads(out.read_text())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def most_common_answer(tasks: list[dict[str, Any]]) -> list[float]:
    """Accuracy of always giving each task's most frequent reference answer: the floor a method must beat."""
    shares = []
    for task in tasks:
        references = Counter(s["reference"] for s in task["samples"])
        shares.append(references.most_common(1)[0][1] / task["n"])
    return shares


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (method, mode); accuracy per task, mean trace length and delimiter rate over
    tasks, training minutes; first the accuracy of a constant answer."""
    head = ["method", "mode", *EVAL_TASKS, "trace len", "delimiter rate", "train min"]
    floor = [f"{share:.3f}" for share in most_common_answer(rows[0]["eval"]["tasks"])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
             "| " + " | ".join(["*most common answer*", "–", *floor, "–", "–", "–"]) + " |"]
    for row in rows:
        tasks = row["eval"]["tasks"]
        cells = [row["method"], row["mode"], *(f"{t['accuracy']:.3f}" for t in tasks),
                 f"{sum(t['trace_len_mean'] for t in tasks) / len(tasks):.1f}",
                 f"{sum(t['delimiter_rate'] for t in tasks) / len(tasks):.2f}",
                 "–" if row["minutes"] is None else f"{row['minutes']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/compare", help="Table, plot and JSON.")
    parser.add_argument("--runs", default="experiments/runs", help="Checkpoints, metrics and logs (not committed).")
    parser.add_argument("--quick", action="store_true", help="Two steps and four problems per task.")
    parser.add_argument("--methods", default=",".join(METHODS), help="Comma-separated presets to train.")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="The starting model of every method.")
    parser.add_argument("--lr", type=float, default=None, help="Another learning rate for every method (an ablation).")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else Budget()
    if args.lr is not None:
        budget = replace(budget, lr=args.lr)
    out, runs = Path(args.out), Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    rows: list[dict[str, Any]] = []
    for think in (True, False):
        rows.append({"method": "untrained", "mode": "think" if think else "no-think", "minutes": None,
                     "eval": evaluate("untrained", args.model, budget, runs, think=think)})
    curves = {}
    for method in args.methods.split(","):
        trained, stage = train(method, args.model, budget, runs)
        curves[method] = [read_metrics(runs / method / "metrics.jsonl")]
        for think in (True, False):
            rows.append({"method": method, "mode": "think" if think else "no-think", "minutes": stage["minutes"],
                         "commit": stage.get("commit"),
                         "eval": evaluate(method, str(trained), budget, runs, think=think)})

    wall = (time.perf_counter() - started) / 60
    stages = [r["minutes"] for r in rows if r["mode"] == "think" and r["minutes"] is not None]
    stages += [r["eval"].get("minutes") for r in rows]
    total = f"{sum(stages):.0f} min" if None not in stages else "unknown"
    commits = sorted({c for r in rows for c in (r.get("commit"), r["eval"].get("commit")) if c}) or ["unknown"]
    commit = ", ".join(commits)
    command = " ".join(["python", "experiments/compare.py", *(argv if argv is not None else sys.argv[1:])])
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, out / "curves.png")
    (out / "results.json").write_text(json.dumps({"budget": asdict(budget), "train_task": TRAIN_TASK,
                                                  "eval_tasks": EVAL_TASKS, "commit": commit, "total_minutes": total,
                                                  "rows": [{k: v for k, v in r.items() if k != "eval"} | {
                                                      "tasks": [{k: v for k, v in t.items() if k != "samples"}
                                                                for t in r["eval"]["tasks"]]} for r in rows]},
                                                 indent=1))
    text = table(rows)
    write_report(out / "README.md",
        f"# Comparison: every method from `{args.model}`\n\n`{command}`, stages run at commit {commit}. Training and "
        f"evaluation took {total} in all (the sum of the stages; this invocation {wall:.0f} min, reusing finished "
        f"stages).\n\nTrained on `{TRAIN_TASK}`; budget (every method): "
        f"{asdict(budget)}. "
        f"Accuracy on {budget.eval_limit} held-out problems per task, greedy; think = trace up to "
        f"{budget.max_trace_tokens} tokens then the answer; no-think = the answer right after the delimiter.\n"
        f"Tasks: " + ", ".join(f"{k} = `{v}`" for k, v in EVAL_TASKS.items()) +
        f"\n\n{text}\n\n![curves](curves.png)\n")
    print(text)
    print(f"\n{total} of stages ({wall:.1f} min now); table, curves and results.json in {out}")


if __name__ == "__main__":
    main()
