"""A real language model whose traces can help: every method from one warm start.

    python experiments/real_model.py                      # everything; resumes after the last finished stage
    python experiments/real_model.py --quick --model DIR  # 2 steps, 8 problems: checks the pipeline (minutes)
    python experiments/real_model.py --workers 2          # two one-thread trainings at a time
    python experiments/real_model.py --finished           # the table from the runs finished so far; trains nothing
    python experiments/real_model.py --first-seed 3 --out results/real-model/replication  # fresh seeds, same start
    python experiments/real_model.py --first-seed 3 --out results/real-model/replication \
        --pool-with results/real-model/results.json  # also pairs both grids' seeds together
    python experiments/real_model.py --methods 'nrt-ws,nrt-ws no answer term' --splits 3-digit \
        --runs experiments/runs-answer-term --out results/real-model-answer-term  # the answer term on and off
    python experiments/real_model.py --steps 100 --eval-every 20 --runs experiments/runs-long \
        --out results/real-model-long  # long runs: accuracy every 20 steps and the signs of collapse
    python experiments/real_model.py --methods 'nrt-ws,nrt-ws format weight 1' --steps 100 --eval-every 20 \
        --prompts-per-step 4 --seeds 2 --splits 3-digit --workers 2 --runs experiments/runs-real-model-format \
        --out results/real-model-format  # does a stronger format term hold the delimiter on long runs?

1. Warm start (supervised, minutes): the model (default SmolLM2-135M-Instruct) is taught to write 3-digit
   additions column by column (``7+9=16, write 6 carry 1. 4+8+1=13, write 3 carry 1. 3+5+1=9, write 9.``),
   then the delimiter, then the sum (``nrt.arithmetic.warm_start``). Every ``warm.eval_every`` steps it is
   evaluated (greedy, think then answer) on its own validation file of ``validation_size`` problems, disjoint
   from the evaluation files; training stops at the first evaluation that reaches the window ``warm.target``,
   and where that one overshoots it, the previous evaluated checkpoint is kept if it is nearer the window's
   middle (accuracy moved 0.28 -> 0.63 in 4 steps). That checkpoint is every method's start.
2. Each method trains on question-answer pairs only (the trace is never shown) with the same data, budget,
   learning rate and seeds; the positive control (nrt-ws's recipe) is rewarded 1 when the digits its sampled
   trace writes give the reference sum, else 0: a verifier.
3. Every trained model is evaluated greedily, think then answer, on held-out 3-digit problems and on 4-digit
   ones (harder: one more column).

Written to ``--out``: README.md (the table, each method against nrt-ws and the control paired on seeds with a
95% interval, the command, the commit, the wall time; with ``--eval-every``, accuracy during training and the
signs of collapse, and accuracy.png), curves.png (reward, trace length, entropy, delimiter rate, answer
NLL gain per step), results.json. Runs go to ``--runs``; a finished stage is read back, not redone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from nrt import arithmetic
from nrt.arithmetic import QUICK, Budget, examples, questions, trace_sum
from nrt.plots import plot_curves
from nrt.reports import write_report
from nrt.testbed import (
    collapse_table,
    curve_table,
    map_one_thread,
    mean_spread,
    paired_table,
    plot_accuracy,
    pool_draws,
)

CONTROL = "control (verified trace)"
SPLITS = ("3-digit", "4-digit")
# name -> (preset, overrides, rewarded by the verifier); answer_weight 0: the trace term alone (no answer term);
# format_weight 1 (the preset's 0.3): a stronger pull toward writing the delimiter
METHODS: dict[str, tuple[str, dict[str, Any], bool]] = {
    **{name: (name, {}, False) for name in ("sft", "verifree", "rlpr", "jepo", "nrt-gm", "nrt-ws")},
    CONTROL: ("nrt-ws", {}, True),
    "nrt-ws no answer term": ("nrt-ws", {"answer_weight": 0.0}, False),
    f"{CONTROL} no answer term": ("nrt-ws", {"answer_weight": 0.0}, True),
    "nrt-ws format weight 1": ("nrt-ws", {"format_weight": 1.0}, False),
}
SEEDS = {"sft": 2, "verifree": 2, "rlpr": 3, "jepo": 2, "nrt-gm": 2, "nrt-ws": 3, CONTROL: 3,
         "nrt-ws no answer term": 3, f"{CONTROL} no answer term": 3, "nrt-ws format weight 1": 2}
GRID = ["sft", "verifree", "rlpr", "jepo", "nrt-gm", "nrt-ws", CONTROL]  # the default --methods


def evaluate(folder: Path, budget: Budget, data: Path, splits: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Greedy think-then-answer accuracy of the model in ``folder`` on each evaluation file."""
    from nrt.modeling import inference_device, load_policy

    policy = load_policy(str(folder), device=inference_device())
    policy.model.eval()
    return {split: arithmetic.accuracy(policy, data / f"{split}.jsonl", limit=budget.eval_size,
                                       max_trace_tokens=budget.max_trace_tokens) for split in splits}


def warm_start(model: str, budget: Budget, runs: Path, data: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The warm start of ``nrt.arithmetic`` (validation file: data/validation.jsonl), unless it finished before."""
    folder, log = runs / "warm-start", runs / "warm-start.json"
    if not log.is_file():
        history = arithmetic.warm_start(model, budget.warm, folder, data / "validation.jsonl",
                                        never_train_on=questions(*(data / f"{s}.jsonl" for s in SPLITS)))
        log.write_text(json.dumps(history))
    return folder, json.loads(log.read_text())


def verified_trace_reward(train_file: Path, tokenizer: Any) -> Any:
    """The positive control's verifier: 1 if the sampled trace writes the reference sum, else 0."""
    from nrt.prompts import encode_example

    reference = {}
    for example in examples(train_file):
        prompt = encode_example(tokenizer, example, system_prompt=None, max_answer_tokens=16).prompt_ids
        reference[tuple(prompt)] = example.answer

    def reward(samples: list, tokenizer: Any) -> torch.Tensor:
        return torch.tensor([float(trace_sum(tokenizer.decode(s.trace_ids)) == reference[tuple(s.prompt_ids)])
                             for s in samples])

    return reward


def run_folder(runs: Path, name: str, seed: int) -> Path:
    return runs / f"{name.replace(' ', '_')}-seed{seed}"


def run_method(name: str, seed: int, start: Path, budget: Budget, runs: Path, data: Path,
               eval_every: int, splits: tuple[str, ...]) -> dict[str, Any]:
    """Train ``name`` with ``seed`` from the warm start and evaluate it (every ``eval_every`` steps too, when
    set: the record's ``curve``; then only the last checkpoint is kept), unless that finished before. ``minutes``:
    training time of the last launch."""
    from nrt import load_config, train
    from nrt.checkpoint import complete_checkpoints, latest_checkpoint, prune_checkpoints
    from nrt.modeling import load_policy

    run_dir = run_folder(runs, name, seed)
    record = run_dir / "record.json"
    if record.is_file():
        done = json.loads(record.read_text())
        ran = done.get("budget") or {"steps": len(done["metrics"])}  # older records: their length only
        wanted = json.loads(json.dumps(asdict(budget)))
        if differ := {k: (v, wanted[k]) for k, v in ran.items() if v != wanted[k]}:
            raise SystemExit(f"{record}: a run of another budget (ran, asked: {differ}); runs of another budget "
                             "need their own --runs folder")
        return done
    resume = latest_checkpoint(run_dir) is not None  # an unfinished run goes on from its last checkpoint
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # or starts over
    print(f"[{time.strftime('%H:%M')}] train {name} seed {seed}{' (resumed)' if resume else ''}", flush=True)
    preset, overrides, verified = METHODS[name]
    checkpoints = {"save_every": eval_every, "keep_checkpoints": budget.steps // eval_every + 1} if eval_every else {}
    cfg = load_config(preset, {
        "model": str(start), "data": str(data / "train.jsonl"), "output_dir": str(run_dir), "seed": seed,
        **budget.train_overrides(traces=preset != "sft"), **overrides, **checkpoints, "progress": False})
    # only the control needs the tokenizer: no model load for the others
    reward_fn = verified_trace_reward(data / "train.jsonl", load_policy(str(start)).tokenizer) if verified else None
    started = time.perf_counter()
    result = train(cfg, resume=resume, reward_fn=reward_fn)
    minutes = (time.perf_counter() - started) / 60
    curve = [{"step": int(c.name.removeprefix("step-")), **evaluate(c / "model", budget, data, splits)}
             for c in complete_checkpoints(run_dir)] if eval_every else []
    final = {split: curve[-1][split] for split in splits} if curve \
        else evaluate(result.checkpoint / "model", budget, data, splits)
    out = {"seed": seed, "budget": asdict(budget), "minutes": minutes, "metrics": result.metrics, "eval": final,
           **({"curve": curve} if curve else {})}
    record.write_text(json.dumps(out))
    prune_checkpoints(run_dir, keep=1)  # the others were kept only for the curve: 1.6 GB each at 135M
    return out


def table(results: dict[str, Any], splits: tuple[str, ...]) -> str:
    """Markdown: mean ± std over seeds of held-out accuracy, trace length, and the last step's entropy."""
    start = results["start"]
    lines = ["| method | seeds | " + " | ".join(f"acc {s}" for s in splits)
             + " | trace len | trace entropy (last step) | train min |", "|---|---|" + "---|" * (len(splits) + 3),
             "| warm start | – | " + " | ".join(f"{start[s]['accuracy']:.3f}" for s in splits)
             + f" | {start[splits[0]]['trace_len']:.1f} | – | – |"]
    for name, runs in results["methods"].items():
        entropy = [r["metrics"][-1].get("trace_entropy", 0.0) for r in runs]
        lines.append(f"| {name} | {len(runs)} | "
                     + " | ".join(mean_spread([r["eval"][s]["accuracy"] for r in runs]) for s in splits)
                     + f" | {sum(r['eval'][splits[0]]['trace_len'] for r in runs) / len(runs):.1f} | "
                     f"{sum(entropy) / len(entropy):.2f} | {sum(r['minutes'] for r in runs) / len(runs):.1f} |")
    return "\n".join(lines)


def pool(earlier: dict[str, Any], later: dict[str, Any], source: str) -> dict[str, Any]:
    """Both grids' runs of each method together, for pairing on all their seeds; only grids from one warm start
    on disjoint seeds pool (otherwise a seed would pair with itself or two starts would mix)."""
    if earlier["warm_start"] != later["warm_start"]:
        raise SystemExit(f"--pool-with {source}: that grid started from another warm start; it does not pool")
    for name, runs in later["methods"].items():
        shared = {r["seed"] for r in earlier["methods"].get(name, [])} & {r["seed"] for r in runs}
        if shared:
            raise SystemExit(f"--pool-with {source}: {name} has seeds {sorted(shared)} in both grids; "
                             f"a replication's seeds must be fresh (--first-seed)")
    return pool_draws({0: earlier, 1: later})  # disjoint seeds: pairing within each grid is pairing on seeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/real-model", help="Table, plot and JSON.")
    parser.add_argument("--runs", default="experiments/runs-real-model", help="Checkpoints, metrics, logs.")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="The model every method starts from "
                        "(after the warm start).")
    parser.add_argument("--methods", default=",".join(GRID), help=f"Comma-separated, from {list(METHODS)}.")
    parser.add_argument("--steps", type=int, help="Training steps of every method (default: the budget's 20). "
                        "Runs of another budget need their own --runs folder.")
    parser.add_argument("--prompts-per-step", type=int, help="Questions per step, each with the budget's 8 traces "
                        "(default: the budget's 8); a smaller rollout for long runs.")
    parser.add_argument("--seeds", type=int, help="Seeds of every method (default: 2-3, per method).")
    parser.add_argument("--eval-every", type=int, default=0, help="Also evaluate every N steps (held-out "
                        "accuracy during training, and the collapse table); 0: only at the end.")
    parser.add_argument("--splits", default=",".join(SPLITS), help=f"Evaluation files, from {list(SPLITS)}.")
    parser.add_argument("--quick", action="store_true", help="2 steps, 8 problems, one seed: the pipeline only.")
    parser.add_argument("--workers", type=int, default=1, help="Trainings at once, one thread each.")
    parser.add_argument("--finished", action="store_true", help="Report the runs finished so far (an interrupted "
                        "grid); train nothing. The README says which runs are missing.")
    parser.add_argument("--first-seed", type=int, default=0, help="Each method's seeds are first-seed, "
                        "first-seed + 1, ...: a replication on fresh seeds from the same warm start (runs are kept "
                        "per seed, so earlier seeds' runs are neither read nor overwritten).")
    parser.add_argument("--pool-with", type=Path, help="results.json of an earlier grid from the same warm start "
                        "on other seeds: the README also pairs every method against nrt-ws on both grids' seeds.")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else Budget()
    if args.steps is not None:
        budget = replace(budget, steps=args.steps)
    if args.prompts_per_step is not None:
        budget = replace(budget, prompts_per_step=args.prompts_per_step)
    methods, splits = args.methods.split(","), tuple(args.splits.split(","))
    for flag, names, known in (("--methods", methods, METHODS), ("--splits", splits, SPLITS)):
        if unknown := [n for n in names if n not in known]:
            parser.error(f"{flag}: unknown {unknown}; choose from {list(known)}")
    if args.eval_every and budget.steps % args.eval_every:
        parser.error(f"--eval-every {args.eval_every}: must divide the {budget.steps} steps")
    out, runs = Path(args.out), Path(args.runs)
    data = runs / "data"
    arithmetic.write_task_files(data, eval_size=budget.eval_size, validation_size=budget.validation_size,
                                splits=SPLITS)
    started = time.perf_counter()
    if args.finished and not (runs / "warm-start.json").is_file():
        parser.error(f"--finished: no finished warm start in {runs}")
    start, history = warm_start(args.model, budget, runs, data)
    start_eval = runs / "start-eval.json"
    if not start_eval.is_file():
        start_eval.write_text(json.dumps(evaluate(start, budget, data, SPLITS)))
    results: dict[str, Any] = {"budget": asdict(budget), "warm_start": history,
                               "start": json.loads(start_eval.read_text()), "methods": {}}
    seeds = {name: 1 if args.quick else args.seeds or SEEDS[name] for name in methods}
    # Seed-major: every method's first seed finishes before any method's second (an interrupted grid is balanced).
    jobs = [(name, args.first_seed + i) for i in range(max(seeds.values())) for name in methods if i < seeds[name]]
    missing = [job for job in jobs if not (run_folder(runs, *job) / "record.json").is_file()] if args.finished else []
    jobs = [job for job in jobs if job not in missing]
    earlier = None
    if args.pool_with:
        if not args.pool_with.is_file():
            parser.error(f"--pool-with {args.pool_with}: no such file")
        earlier = json.loads(args.pool_with.read_text())
        planned = {name: [{"seed": seed} for n, seed in jobs if n == name] for name in methods}
        pool(earlier, {"warm_start": history, "methods": planned}, str(args.pool_with))  # fails before training
    records = map_one_thread(run_method, [(name, seed, start, budget, runs, data, args.eval_every, splits)
                                          for name, seed in jobs], args.workers)
    for (name, _), record in zip(jobs, records, strict=True):
        results["methods"].setdefault(name, []).append(record)
    results["methods"] = {name: results["methods"][name] for name in methods if name in results["methods"]}
    results["missing"] = [f"{name} seed {seed}" for name, seed in missing]
    minutes = (time.perf_counter() - started) / 60
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out.mkdir(parents=True, exist_ok=True)
    plot_curves({name: [r["metrics"] for r in runs] for name, runs in results["methods"].items()},
                out / "curves.png")
    (out / "results.json").write_text(json.dumps(results))
    text = table(results, splits)
    for baseline in ("nrt-ws", CONTROL):
        if baseline in results["methods"] and len(results["methods"]) > 1:
            for split in splits:
                text += f"\n\n{split}, paired on seeds against {baseline}:\n\n" \
                    + paired_table(results, baseline, split=split)
    if args.eval_every:
        plot_accuracy(results, out / "accuracy.png", [(s, f"held-out accuracy, {s}") for s in splits])
        text += (f"\n\nHeld-out accuracy ({splits[0]}) during training:\n\n{curve_table(results, splits[0])}\n\n"
                 f"![accuracy](accuracy.png)\n\nSigns of collapse, first tenth of the run -> last tenth "
                 f"(`nrt.testbed.collapse_signs`):\n\n{collapse_table(results, splits[0])}")
    if earlier is not None and "nrt-ws" in results["methods"]:
        pooled = pool(earlier, results, str(args.pool_with))
        text += f"\n\nPooled with the grid in {args.pool_with}, 3-digit, paired on seeds against nrt-ws:\n\n" \
            + paired_table(pooled, split="3-digit")
    command = " ".join(["python", "experiments/real_model.py", *(argv if argv is not None else sys.argv[1:])])
    write_report(out / "README.md",
        f"# Every method from one warm start of `{args.model}`\n\n`{command}` at commit {commit}: {minutes:.0f} min "
        f"(this invocation; finished stages are read back). Budget (every method): {asdict(budget)}. Warm start "
        f"(the chosen evaluation is marked): {history}.\n\n"
        + (f"**Interrupted grid: not yet run: {', '.join(results['missing'])}.**\n\n" if missing else "")
        + f"{text}\n\n![curves](curves.png)\n")
    print(text)
    print(f"\n{minutes:.1f} min; table, curves and results.json in {out}")


if __name__ == "__main__":
    main()
