"""Question-answer data from files, `datasets`, and offline generators shipped in packages.

Every source yields ``Example``s: the chat context before the answer (at least one user turn) and the
reference answer text. A malformed record raises ``DataError`` naming the file, the line or row and the
field; with ``skip_bad=True`` bad records are dropped and counted instead, never silently.

Sources (``TrainConfig.data``):
- ``path.jsonl`` / ``.json`` / ``.csv`` / ``.tsv`` / ``.parquet``: records with a question and an answer field, or
  a chat ``messages`` list whose last turn is the assistant's answer;
- a folder written by ``datasets.Dataset.save_to_disk`` or a `datasets` hub name (online only);
- ``reasoning_gym:<generator>`` or ``reasoning_gym:<generator>:key=value:...`` (generator options, e.g.
  ``reasoning_gym:chain_sum:max_terms=2:max_digits=1``): procedurally generated problems; different seeds
  give disjoint splits;
- ``bigbench:<task>``: a BIG-bench task JSON from the ``bigbench`` sdist (see ``nrt data fetch-bigbench``).
"""

from __future__ import annotations

import csv
import json
import os
import string
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
LETTERS = string.ascii_uppercase


class DataError(ValueError):
    """A malformed record or an unreadable source; the message says where and which field."""


@dataclass(frozen=True)
class Example:
    """One training pair: chat context (ends with a user turn) and the reference answer."""

    messages: list[dict[str, str]]
    answer: str
    origin: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class FieldNames:
    """Which record fields hold the question, the answer and an optional chat."""

    question: str = "question"
    answer: str = "answer"
    messages: str = "messages"


@dataclass
class LoadedData:
    """The examples of a source and how many bad records were skipped."""

    examples: list[Example]
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def cache_dir() -> Path:
    """Where converted models and extracted data live (``$NRT_CACHE``, default ``~/.cache/nrt``)."""
    return Path(os.environ.get("NRT_CACHE", Path.home() / ".cache" / "nrt"))


def _text(value: Any, origin: str, name: str, *, allow_number: bool = False) -> str:
    if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if value is None:
        raise DataError(f"{origin}: field '{name}' is missing")
    if not isinstance(value, str):
        raise DataError(f"{origin}: field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{origin}: field '{name}' is empty")
    return value


def record_to_example(record: Any, origin: str, fields: FieldNames) -> Example:
    """Validate one record (a mapping) and turn it into an Example, or raise DataError.

    A reader passes an unreadable record (bad UTF-8, bad JSON line) as the DataError itself.
    """
    if isinstance(record, DataError):
        raise record
    if not isinstance(record, dict):
        raise DataError(f"{origin}: expected an object with fields, got {type(record).__name__}")
    chat = record.get(fields.messages)
    if chat is not None:
        return _chat_to_example(chat, origin, fields.messages, record)
    if fields.question not in record:
        raise DataError(
            f"{origin}: field '{fields.question}' is missing (fields present: {sorted(record)}); "
            f"set question_field/answer_field or give a '{fields.messages}' chat"
        )
    question = _text(record.get(fields.question), origin, fields.question)
    answer = _text(record.get(fields.answer), origin, fields.answer, allow_number=True)
    return Example([{"role": "user", "content": question}], answer, origin)


def _chat_to_example(chat: Any, origin: str, name: str, record: dict) -> Example:
    if not isinstance(chat, list) or not chat:
        raise DataError(f"{origin}: field '{name}' must be a non-empty list of {{role, content}} turns")
    turns = []
    for i, turn in enumerate(chat):
        where = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise DataError(f"{origin}: field '{where}' must be an object with role and content")
        role = turn.get("role")
        if role not in ROLES:
            raise DataError(f"{origin}: field '{where}.role' must be one of {list(ROLES)}, got {role!r}")
        turns.append({"role": role, "content": _text(turn.get("content"), origin, f"{where}.content")})
    if turns[-1]["role"] != "assistant":
        raise DataError(f"{origin}: field '{name}' must end with the assistant's answer turn")
    if len(turns) < 2 or turns[-2]["role"] != "user":
        raise DataError(f"{origin}: field '{name}' needs a user turn right before the answer")
    return Example(turns[:-1], turns[-1]["content"], origin)


# --- raw record readers: yield (origin, record) ----------------------------------------------------

def _read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            origin = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield origin, DataError(f"{origin}: not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            if not line.strip():
                continue
            try:
                yield origin, json.loads(line)
            except json.JSONDecodeError as exc:
                yield origin, DataError(f"{origin}: not valid JSON ({exc.msg} at column {exc.colno})")


def parse_json(path: Path) -> Any:
    """The parsed content of a JSON file; bad bytes or syntax raise a DataError naming the file and line."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _read_json(path: Path) -> Iterator[tuple[str, Any]]:
    return json_records(path, parse_json(path))


def json_records(path: Path, data: Any) -> Iterator[tuple[str, Any]]:
    """The records of a parsed JSON file: a list, or an object with an 'examples' (or 'data') list."""
    if isinstance(data, dict) and isinstance(data.get("examples", data.get("data")), list):
        data = data.get("examples", data.get("data"))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of records (or an object with an 'examples' list)")
    for i, record in enumerate(data):
        yield f"{path}: record {i}", record


def _read_csv(path: Path) -> Iterator[tuple[str, Any]]:
    """A CSV with a header row; ``.tsv`` files are read the same way with tabs."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            for row in reader:
                yield f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not valid CSV ({exc})") from None


def _read_parquet(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    for i, record in enumerate(table.to_pylist()):
        yield f"{path}: row {i}", record


def _read_datasets(source: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    if Path(source).is_dir():
        loaded = datasets.load_from_disk(source)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(f"{source}: no split {split!r} (splits: {list(loaded)})")
            loaded = loaded[split]
    else:
        loaded = datasets.load_dataset(source, split=split)
    for i, record in enumerate(loaded):
        yield f"{source}[{split}] row {i}", record


# reasoning-gym seeds item i of a dataset with ``seed + i``, so seeds 1 and 2 share all but one item. Each
# nrt seed therefore owns its own block of generator seeds; blocks never overlap for sizes below this.
RG_SEED_BLOCK = 10_000_000


def reasoning_gym_options(spec: str) -> tuple[str, dict[str, Any]]:
    """``"chain_sum:max_terms=2:max_digits=1"`` → ``("chain_sum", {"max_terms": 2, "max_digits": 1})``.

    Values are read as YAML scalars (ints, floats, booleans, strings). Colons, not commas, separate the
    options, because task lists (``nrt eval --tasks``) are comma-separated.
    """
    import yaml

    name, _, options = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, options.split(":")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DataError(f"reasoning_gym:{spec}: option {item!r} is not key=value")
        kwargs[key.strip()] = yaml.safe_load(value)
    return name, kwargs


def _read_reasoning_gym(spec: str, size: int, seed: int) -> Iterator[tuple[str, Any]]:
    import reasoning_gym

    if size > RG_SEED_BLOCK:
        raise DataError(f"reasoning_gym:{spec}: data_size must be at most {RG_SEED_BLOCK} (got {size})")
    name, options = reasoning_gym_options(spec)
    try:
        dataset = reasoning_gym.create_dataset(name, size=size, seed=(seed * RG_SEED_BLOCK) % 2**32, **options)
    except (TypeError, ValueError, AssertionError) as exc:
        raise DataError(f"reasoning_gym:{spec}: {exc}") from exc
    for i in range(size):
        entry = dataset[i]
        yield f"reasoning_gym:{spec} seed={seed} #{i}", {"question": entry["question"], "answer": entry["answer"],
                                                         "_entry": entry}


def bigbench_dir() -> Path:
    return cache_dir() / "bigbench"


def _read_bigbench(task: str) -> Iterator[tuple[str, Any]]:
    path = bigbench_dir() / task / "task.json"
    if not path.is_file():
        raise DataError(
            f"bigbench:{task}: {path} not found; run `nrt data fetch-bigbench` once (downloads the bigbench "
            "sdist from the package registry and extracts its task files)"
        )
    for origin, record in _read_json(path):
        if isinstance(record, dict):
            yield origin, _bigbench_record(record)
        else:
            yield origin, record


def _bigbench_record(record: dict) -> dict[str, Any]:
    """A multiple-choice example (``target_scores``) lists its choices and is answered by letter, since a
    generated answer cannot be matched to choices the question never shows; otherwise the first target."""
    scores = record.get("target_scores")
    question = record.get("input")
    if isinstance(scores, dict) and len(scores) >= 2 and isinstance(question, str):
        choices = list(scores)
        best = max(range(len(choices)), key=lambda i: scores[choices[i]])
        return {"question": multiple_choice_prompt(question, choices), "answer": LETTERS[best], "_entry": record}
    target = record.get("target")
    if isinstance(target, list):
        target = target[0] if target else None
    return {"question": question, "answer": target, "_entry": record}


def multiple_choice_prompt(question: str, choices: list[str]) -> str:
    """The question, then one lettered line per choice, then how to answer."""
    lines = [question.strip(), *(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))]
    return "\n".join(lines) + "\nAnswer with the letter of the correct choice."


def extract_bigbench(sdist: Path, dest: Path | None = None) -> list[str]:
    """Copy every ``benchmark_tasks/**/task.json`` out of a bigbench sdist tarball; returns the task names."""
    dest = dest or bigbench_dir()
    names = []
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isfile() and parts[-1] == "task.json" and "benchmark_tasks" in parts:
                task = "/".join(parts[parts.index("benchmark_tasks") + 1:-1])
                target = dest / task / "task.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
                names.append(task)
    return sorted(names)


def fetch_bigbench(version: str = "1.0.0") -> list[str]:
    """Download the bigbench sdist from the package registry (no install) and extract its task files."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"bigbench=={version}", "-d", tmp], check=True)
        (sdist,) = Path(tmp).glob("bigbench-*.tar.gz")
        return extract_bigbench(sdist)


FILE_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".tsv": _read_csv,
                ".parquet": _read_parquet}


def read_records(source: str, *, split: str = "train", size: int = 1000, seed: int = 1) -> Iterable[tuple[str, Any]]:
    """(origin, raw record) pairs of any supported source."""
    kind, _, name = source.partition(":")
    if kind == "reasoning_gym" and name:
        return _read_reasoning_gym(name, size, seed)
    if kind == "bigbench" and name:
        return _read_bigbench(name)
    path = Path(source)
    if path.is_dir():
        return _read_datasets(source, split)
    if path.suffix.lower() in FILE_READERS:
        if not path.is_file():
            raise DataError(f"{source}: file not found")
        return FILE_READERS[path.suffix.lower()](path)
    if not path.exists():
        return _read_datasets(source, split)
    raise DataError(f"{source}: unsupported data source (expected one of {sorted(FILE_READERS)}, a datasets "
                    "folder or name, reasoning_gym:<name> or bigbench:<task>)")


def load_examples(source: str, *, fields: FieldNames = FieldNames(), split: str = "train", size: int = 1000,
                  seed: int = 1, skip_bad: bool = False) -> LoadedData:
    """Read and validate every record of ``source``.

    Without ``skip_bad`` the first malformed record stops loading with its DataError (plus a count of
    the other bad records); with it bad records are skipped and counted.
    """
    examples: list[Example] = []
    errors: list[str] = []
    for origin, record in read_records(source, split=split, size=size, seed=seed):
        try:
            example = record_to_example(record, origin, fields)
        except DataError as exc:
            errors.append(str(exc))
            continue
        if isinstance(record, dict) and "_entry" in record:
            example.meta["entry"] = record["_entry"]
        examples.append(example)
    if errors and not skip_bad:
        more = f" (and {len(errors) - 1} more bad records; set skip_bad_records=true to skip them)" \
            if len(errors) > 1 else " (set skip_bad_records=true to skip bad records)"
        raise DataError(errors[0] + more)
    if not examples:
        raise DataError(f"{source}: no usable examples" + (f" ({len(errors)} bad records skipped)" if errors else ""))
    return LoadedData(examples, skipped=len(errors), errors=errors)
