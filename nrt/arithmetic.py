"""Column addition: worked traces, problem files, a warm start that teaches the traces, held-out accuracy.

A task where a trace helps a small real model: ``What is 374 + 589?`` answered after a trace that adds column by
column (``4+9=13, write 3 carry 1. 7+8+1=16, write 6 carry 1. 3+5+1=9, write 9.``). The warm start teaches
such traces (supervised) until greedy accuracy on its own validation file reaches a window: often wrong, so
that training on question-answer pairs alone has room to improve it. Shared by ``nrt demo`` and
``experiments/real_model.py``.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nrt.data import Example

if TYPE_CHECKING:
    from nrt.evaluate import TaskResult
    from nrt.modeling import Policy


def column_problem(rng: random.Random, digits: int) -> dict[str, str]:
    """``a + b`` with ``digits`` digits each, its column-by-column trace and its sum."""
    a, b = (rng.randrange(10 ** (digits - 1), 10 ** digits) for _ in range(2))
    steps, carry = [], 0
    for x, y in zip(reversed(str(a)), reversed(str(b)), strict=True):
        total = int(x) + int(y) + carry
        terms = f"{x}+{y}" + (f"+{carry}" if carry else "")
        last = len(steps) == digits - 1
        carry = 0 if last else total // 10
        steps.append(f"{terms}={total}, write {total if last else total % 10}" + (f" carry {carry}" if carry else "")
                     + ".")
    return {"question": f"What is {a} + {b}?", "trace": " ".join(steps), "answer": str(a + b)}


def trace_sum(trace: str) -> str | None:
    """The number a column trace writes (its ``write`` digits, last column first), or None if it writes none."""
    written = re.findall(r"write (\d+)", trace)
    return "".join(reversed(written)) or None


def write_problems(path: Path, n: int, digits: int, seed: int, exclude: Collection[str] = ()) -> Path:
    """``n`` problems from generator ``seed``, one JSON line each, none of whose question is in ``exclude``
    (a validation or training file kept apart from the evaluation files)."""
    rng, rows = random.Random(seed), []
    while len(rows) < n:
        problem = column_problem(rng, digits)
        if problem["question"] not in exclude:
            rows.append(json.dumps(problem) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(rows))
    return path


def questions(*paths: Path) -> set[str]:
    """Every question of these problem files."""
    return {json.loads(line)["question"] for path in paths for line in path.read_text().splitlines()}


EVALUATION = {"3-digit": (3, 2), "4-digit": (4, 3)}  # evaluation file -> (digits, generator seed)


def write_task_files(folder: Path, *, eval_size: int, validation_size: int, train_size: int = 2000,
                     splits: tuple[str, ...] = ("3-digit",)) -> dict[str, Path]:
    """The evaluation files of ``splits``, then the warm start's validation file (3 digits, its own seed) and the
    question-answer training file, each without any question of the files before it: nothing is evaluated on a
    problem that chose the start or was trained on."""
    paths = {name: write_problems(folder / f"{name}.jsonl", eval_size, *EVALUATION[name]) for name in splits}
    paths["validation"] = write_problems(folder / "validation.jsonl", validation_size, 3, seed=5,
                                         exclude=questions(*paths.values()))
    paths["train"] = write_problems(folder / "train.jsonl", train_size, 3, seed=1, exclude=questions(*paths.values()))
    return paths


def examples(path: Path, limit: int | None = None) -> list[Example]:
    """The first ``limit`` problems of ``path`` (all with None) as question-answer examples."""
    rows = [json.loads(line) for line in path.read_text().splitlines()[:limit]]
    return [Example([{"role": "user", "content": r["question"]}], r["answer"], str(path)) for r in rows]


def score_problems(policy: Policy, path: Path, *, limit: int | None, max_trace_tokens: int) -> TaskResult:
    """Greedy think-then-answer on the first ``limit`` problems of ``path``, on the policy's device; under bf16
    autocast where that device computes bf16 natively (as training does). Every sample keeps its score."""
    from nrt.evaluate import Task, evaluate_task
    from nrt.scoring import exact_match
    from nrt.trainer import use_bf16

    with torch.autocast(next(policy.model.parameters()).device.type, torch.bfloat16, enabled=use_bf16("auto")):
        return evaluate_task(policy, Task(path.stem, examples(path, limit), exact_match),
                             max_trace_tokens=max_trace_tokens, max_answer_tokens=8, batch_size=50)


def figures(result: TaskResult) -> dict[str, float]:
    """Accuracy, mean trace length and delimiter rate of a scored file."""
    return {"accuracy": result.accuracy, "trace_len": result.trace_len_mean, "delimiter_rate": result.delimiter_rate}


def accuracy(policy: Policy, path: Path, *, limit: int | None, max_trace_tokens: int) -> dict[str, float]:
    return figures(score_problems(policy, path, limit=limit, max_trace_tokens=max_trace_tokens))


@dataclass(frozen=True)
class WarmStart:
    """How the warm start teaches worked 3-digit traces, and when it stops."""

    lr: float = 2e-4
    batch: int = 16
    max_steps: int = 80
    eval_every: int = 2
    target: tuple[float, float] = (0.30, 0.50)  # validation accuracy of the start: often wrong, room to learn
    max_trace_tokens: int = 96
    # Evaluate only once the training loss is below this (None: from the first step). Before, the model does not
    # yet write the format: every evaluation reads 0 and costs the most (its traces run to the budget).
    evaluate_below_loss: float | None = None


@dataclass(frozen=True)
class Budget:
    """A warm start, then training on question-answer pairs from it: the same for every method trained."""

    warm: WarmStart = WarmStart(evaluate_below_loss=0.3)
    validation_size: int = 100  # the warm start's own validation file (disjoint from the evaluation files)
    steps: int = 20
    prompts_per_step: int = 8
    num_traces: int = 8
    lr: float = 1e-5
    max_trace_tokens: int = 96
    eval_size: int = 400
    train_size: int = 2000

    def train_overrides(self, traces: bool = True) -> dict[str, Any]:
        """The training keys every method shares (a preset supplies the rest); ``traces``: False for sft."""
        return {"steps": self.steps, "prompts_per_step": self.prompts_per_step,
                **({"num_traces": self.num_traces} if traces else {}), "max_trace_tokens": self.max_trace_tokens,
                "max_answer_tokens": 8, "lr": self.lr, "report_to": []}


# The pipeline end to end in seconds (tests; a check that everything runs), not a result.
QUICK = Budget(warm=WarmStart(max_steps=1, eval_every=1, max_trace_tokens=8), validation_size=2, steps=2,
               prompts_per_step=2, num_traces=2, max_trace_tokens=8, eval_size=4, train_size=8)


def warm_start(model: str, settings: WarmStart, folder: Path, validation: Path,
               never_train_on: Collection[str] = ()) -> list[dict[str, Any]]:
    """Teach worked column traces until greedy accuracy on ``validation`` reaches the ``settings.target`` window;
    save that model to ``folder`` and return the validation history (the chosen evaluation marked).

    Evaluated every ``eval_every`` steps (once the training loss is below ``evaluate_below_loss``, where that is
    set) on every problem of ``validation``, and at the last step; training stops at the first
    evaluation that reaches the window, and where that one overshoots it, the previous evaluated checkpoint is
    kept if it is nearer the window's middle (accuracy can move 0.28 -> 0.63 in 4 steps). The validation file
    is the stopping rule's own: a start chosen on the evaluation file would be tuned to it. The training
    problems are drawn fresh, skipping any question in ``validation`` or ``never_train_on``.
    """
    from nrt.modeling import inference_device, load_policy
    from nrt.prompts import encode_example
    from nrt.sequences import Sample, worked_trace_nll
    from nrt.trainer import use_bf16

    torch.manual_seed(0)
    device = inference_device()
    policy = load_policy(model, device=device)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=settings.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))
    held_out = questions(validation) | set(never_train_on)
    rng, history, previous = random.Random(4), [], {}
    for step in range(1, settings.max_steps + 1):
        policy.model.train()
        samples = []
        while len(samples) < settings.batch:
            p = column_problem(rng, 3)
            if p["question"] in held_out:
                continue
            example = Example([{"role": "user", "content": p["question"]}], p["answer"], "warm start")
            enc = encode_example(policy.tokenizer, example, system_prompt=None, max_answer_tokens=16)
            trace = policy.tokenizer(p["trace"], add_special_tokens=False).input_ids
            samples.append(Sample(enc.prompt_ids, trace, True, enc.answer_ids))
        with torch.autocast(device.type, torch.bfloat16, enabled=use_bf16("auto")):
            loss = worked_trace_nll(policy.model, samples, policy.delimiter_id, policy.end_id, policy.pad_id,
                                        policy.vocab_size)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        gate = settings.evaluate_below_loss
        if (step % settings.eval_every == 0 and (gate is None or loss.item() < gate)) or step == settings.max_steps:
            policy.model.eval()
            history.append({"step": step, "loss": loss.item(), **accuracy(
                policy, validation, limit=None, max_trace_tokens=settings.max_trace_tokens)})
            print(f"[{time.strftime('%H:%M')}] warm start step {step}: {history[-1]}", flush=True)
            low, high = settings.target
            if history[-1]["accuracy"] >= low:
                middle = (low + high) / 2
                if previous and abs(history[-2]["accuracy"] - middle) < abs(history[-1]["accuracy"] - middle):
                    policy.model.load_state_dict(previous)
                    history[-2]["chosen"] = True
                else:
                    history[-1]["chosen"] = True
                break
            previous = {k: v.detach().clone() for k, v in policy.model.state_dict().items()}
    policy.model.save_pretrained(folder)
    policy.tokenizer.save_pretrained(folder)
    return history
