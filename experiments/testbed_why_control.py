"""Why the testbed variants' positive control did not learn, and a start where it does (~8 min, 2 cores).

    python experiments/testbed_why_control.py            # writes results/testbed-variants/why-control/README.md

1. Swap: the control without the answer term (the exact-trace reward alone: the answer plays no part in it) from
   the base start and from noise's one-stage start, each on both tasks' data: the start, or the data?
2. What each start can do: for chains of 3 and 4 operations, how often its most likely trace token is right
   given a right prefix, step by step, and the probability of the whole worked trace; the same after the
   control's 200 steps.
3. Noise's two-stage start (``--answer-steps 100``): the control with and without the answer term at the
   testbed's learning rate (2e-4) and at 6e-4.
4. Sigma: how much the unpredictable tokens' log-probability moves across 8 sampled traces of one question,
   against how much the value token's does: what decides whether the aggregations can differ on noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import time
from pathlib import Path

import torch

from nrt import testbed
from nrt.modeling import load_policy
from nrt.reports import write_report

STARTS = {
    "base": testbed.Settings(eval_size=1000),
    "noise, one stage": testbed.Settings(variant="noise", eval_size=1000),
    "noise, two stages": testbed.Settings(variant="noise", eval_size=1000, answer_steps=100),
}
SWAP = [("base", "base"), ("base", "noise"), ("noise, one stage", "noise"), ("noise, one stage", "base")]
TWO_STAGE_RUNS = [(method, lr) for lr in (2e-4, 6e-4)
                  for method in ("control (exact-trace reward)", "control (no answer term)")]


def folder(out: Path, start: str, data: str, lr: float = 2e-4) -> Path:
    return out / f"{start.replace(', ', '-').replace(' ', '-')}-start-on-{data}-data-lr{lr:g}"


def step_table(model_dir: Path, variant: testbed.Variant) -> dict[int, tuple[list[float], float]]:
    """Per chain length: the fraction of held-out chains whose most likely trace token at each step is right given
    a right prefix, and the mean probability of the whole worked trace (delimiter included)."""
    policy = load_policy(str(model_dir))
    out = {}
    for n_ops in (3, 4):
        rng, right, whole = random.Random(7), [[] for _ in range(n_ops)], []
        for _ in range(300):
            prompt, trace, _ = testbed.encode_problem(policy.tokenizer, testbed.make_problem(rng, n_ops, variant))
            targets = [*trace, policy.delimiter_id]
            with torch.no_grad():
                logp = policy.model(torch.tensor([prompt + targets])).logits[0].float().log_softmax(-1)
            rows = logp[len(prompt) - 1: len(prompt) - 1 + len(targets)]
            for i in range(n_ops):
                right[i].append(float(rows[i].argmax().item() == trace[i]))
            whole.append(math.exp(sum(rows[i, t].item() for i, t in enumerate(targets))))
        out[n_ops] = ([statistics.mean(r) for r in right], statistics.mean(whole))
    return out


def sigma(model_dir: Path, variant: testbed.Variant, questions: int = 60, k: int = 8) -> tuple[float, float, float]:
    """Across ``k`` traces sampled for one question: the std of each unpredictable token's log c (mean over tokens),
    the std of their sum, and the value token's mean log c after an exactly right trace minus after the others."""
    torch.manual_seed(0)
    policy = load_policy(str(model_dir))
    rng, per_token, summed, gaps = random.Random(11), [], [], []
    value_at = variant.hard_positions()[0]
    for _ in range(questions):
        prompt, trace, answer = testbed.encode_problem(policy.tokenizer, testbed.make_problem(rng, rng.randint(3, 4),
                                                                                               variant))
        rows = []
        for _ in range(k):
            ids = list(prompt)
            while len(ids) < len(prompt) + 6 and ids[-1] != policy.delimiter_id:
                with torch.no_grad():
                    probs = policy.model(torch.tensor([ids])).logits[0, -1].float().softmax(-1)
                ids.append(torch.multinomial(probs, 1).item())
            if ids[-1] != policy.delimiter_id:
                ids.append(policy.delimiter_id)
            with torch.no_grad():
                logp = policy.model(torch.tensor([ids + answer])).logits[0].float().log_softmax(-1)
            log_c = [logp[len(ids) - 1 + i, t].item() for i, t in enumerate(answer)]
            rows.append((ids[len(prompt):-1] == trace, log_c))
        noise = range(len(answer) - variant.noise, len(answer))
        per_token.append(statistics.mean(statistics.pstdev(r[1][j] for r in rows) for j in noise))
        summed.append(statistics.pstdev(sum(r[1][j] for j in noise) for r in rows))
        right = [r[1][value_at] for r in rows if r[0]]
        wrong = [r[1][value_at] for r in rows if not r[0]]
        if right and wrong:
            gaps.append(statistics.mean(right) - statistics.mean(wrong))
    return statistics.mean(per_token), statistics.mean(summed), statistics.mean(gaps)


def fmt_steps(table: dict[int, tuple[list[float], float]]) -> str:
    return " | ".join(f"{' / '.join(f'{x:.2f}' for x in steps)} | {whole:.3f}" for steps, whole in table.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/testbed-variants/why-control")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out, started = Path(args.out), time.perf_counter()
    for start, data in SWAP:  # a start trains on another task's chains: the files are written as that task's
        testbed.write_task_files(folder(out, start, data) / "data", STARTS[start], testbed.VARIANTS[data])
    for lr in {lr for _, lr in TWO_STAGE_RUNS}:
        testbed.write_task_files(folder(out, "noise, two stages", "noise", lr) / "data", STARTS["noise, two stages"],
                                 testbed.VARIANTS["noise"])
    jobs = [(folder(out, start, data), "control (no answer term)", 0, STARTS[start]) for start, data in SWAP]
    jobs += [(folder(out, "noise, two stages", "noise", lr), method, 0,
              dataclasses.replace(STARTS["noise, two stages"], rl_lr=lr)) for method, lr in TWO_STAGE_RUNS]
    for settings in {*STARTS.values(), *(job[3] for job in jobs)}:  # the learning rate is part of the cache key
        testbed.start_checkpoint(settings)  # built once, before any worker needs it
    done = testbed.map_one_thread(testbed.run_one, jobs, args.workers)
    starts_eval = {name: testbed.evaluate_files(testbed.start_checkpoint(s), testbed._eval_files(
        folder(out, name, "noise" if s.variant == "noise" else "base") / "data"), s)["in-dist"]["accuracy"]
        for name, s in STARTS.items()}

    lines = ["# Why the variants' control did not learn", "",
             f"`python experiments/testbed_why_control.py`: {(time.perf_counter() - started) / 60:.1f} min (runs "
             "finished by an earlier invocation are read back). One seed, 1,000 held-out chains of 3-4 operations, "
             "greedy, scored on the value.", "",
             "## 1. The start or the answer? The exact-trace reward alone, 200 steps at 2e-4", "",
             "| start | data | start accuracy | after | exactly right sampled traces, steps 1-20 → 181-200 |",
             "|---|---|---|---|---|"]
    for (start, data), run in zip(SWAP, done[:len(SWAP)], strict=True):
        exact = [m["reward_raw_mean"] for m in run["metrics"]]
        lines.append(f"| {start} | {data} | {starts_eval[start]:.3f} | {run['eval']['in-dist']['accuracy']:.3f} | "
                     f"{statistics.mean(exact[:20]):.3f} → {statistics.mean(exact[-20:]):.3f} |")
    lines += ["", "## 2. What the starts can do: greedy trace token right given a right prefix, step by step, and "
              "P(whole worked trace)", "",
              "| model | 3 ops: steps | 3 ops: P(trace) | 4 ops: steps | 4 ops: P(trace) |", "|---|---|---|---|---|"]
    for name, settings in STARTS.items():
        table = step_table(testbed.start_checkpoint(settings), testbed.VARIANTS[settings.variant])
        lines.append(f"| {name} start | {fmt_steps(table)} |")
    for (start, data), _ in zip(SWAP, done[:len(SWAP)], strict=True):
        if start.split(",")[0] == data:
            run_dir = folder(out, start, data) / "runs" / "control_(no_answer_term)-seed0"
            model = sorted(run_dir.glob("checkpoints/*/model"))[-1]
            lines.append(f"| {start} start + 200 control steps | "
                         f"{fmt_steps(step_table(model, testbed.VARIANTS[data]))} |")
    lines += ["", f"## 3. Noise's two-stage start (accuracy {starts_eval['noise, two stages']:.3f}): the control", "",
              "| method | lr | after |", "|---|---|---|"]
    for (method, lr), run in zip(TWO_STAGE_RUNS, done[len(SWAP):], strict=True):
        lines.append(f"| {method} | {lr:g} | {run['eval']['in-dist']['accuracy']:.3f} |")
    lines += ["", "## 4. Sigma: the unpredictable tokens' log c across 8 sampled traces of one question (60 questions)",
              "", "| start | std per token (nats) | std of their sum | value token: log c after a right trace − "
              "after the others |", "|---|---|---|---|"]
    for name in ("noise, one stage", "noise, two stages"):
        per_token, summed, gap = sigma(testbed.start_checkpoint(STARTS[name]), testbed.VARIANTS["noise"])
        lines.append(f"| {name} | {per_token:.3f} | {summed:.3f} | {gap:.2f} |")
    write_report(out / "README.md", "\n".join(lines))
    (out / "results.json").write_text(json.dumps({"starts": starts_eval, "runs": done}))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
