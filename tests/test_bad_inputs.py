"""A corpus of malformed data files and property-based tests of the loaders and the config parser: every bad
input gets a DataError/ConfigError naming the file, line and field, never a traceback from deep inside."""

import contextlib
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nrt.config import FIELDS, ConfigError, TrainConfig, load_config
from nrt.data import DataError, load_examples

CORPUS = Path(__file__).parent / "data" / "bad"

EXPECTED = {
    "wrong_type_question.jsonl": r"wrong_type_question.jsonl:2: field 'question' must be a string, got list",
    "wrong_type_answer.jsonl": r"wrong_type_answer.jsonl:2: field 'answer' must be a string, got bool",
    "missing_answer.jsonl": r"missing_answer.jsonl:3: field 'answer' is missing",
    "empty_answer.jsonl": r"empty_answer.jsonl:1: field 'answer' is empty",
    "invalid_utf8.jsonl": r"invalid_utf8.jsonl:2: not valid UTF-8",
    "truncated.jsonl": r"truncated.jsonl:2: not valid JSON",
    "wrong_role.jsonl": r"wrong_role.jsonl:1: field 'messages\[1\]\.role' must be one of",
    "no_user_turn.jsonl": r"no_user_turn.jsonl:1: field 'messages' needs a user turn right before the answer",
    "missing_content.jsonl": r"missing_content.jsonl:1: field 'messages\[1\]\.content' is missing",
    "not_an_object.jsonl": r"not_an_object.jsonl:1: expected an object with fields, got int",
    "missing_column.csv": r"missing_column.csv:3: field 'answer' is missing",
    "not_a_list.json": r"not_a_list.json: expected a list of records",
    "truncated.json": r"truncated.json:1: not valid JSON",
}


def test_corpus_is_complete():
    assert {p.name for p in CORPUS.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_file_gets_a_clear_error(name):
    with pytest.raises(DataError, match=EXPECTED[name]):
        load_examples(str(CORPUS / name))


def test_skipping_keeps_the_good_records_and_counts_the_bad():
    data = load_examples(str(CORPUS / "invalid_utf8.jsonl"), skip_bad=True)
    assert len(data.examples) == 1 and data.skipped == 1


def test_huge_lines(tmp_path):
    path = tmp_path / "huge.jsonl"
    big = "x" * 5_000_000
    path.write_text(json.dumps({"question": big, "answer": "y"}) + "\n" + '{"question": "' + big + "\n")
    with pytest.raises(DataError, match=r"huge.jsonl:2: not valid JSON") as err:
        load_examples(str(path))
    assert len(str(err.value)) < 500  # the error does not echo the line
    assert len(load_examples(str(path), skip_bad=True).examples[0].messages[0]["content"]) == 5_000_000


def test_truncated_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q?", "answer": "a"}] * 100), path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"d.parquet: not a readable Parquet file"):
        load_examples(str(path))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
RECORD = st.fixed_dictionaries({}, optional={"question": JSON, "answer": JSON, "messages": JSON}) | JSON


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, min_size=1, max_size=5))
def test_any_jsonl_records_load_or_fail_cleanly(records):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        try:
            data = load_examples(str(path), skip_bad=True)
        except DataError as exc:
            assert str(path) in str(exc)
            return
        for example in data.examples:
            assert example.answer.strip() and example.messages[-1]["role"] == "user"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_load_or_fail_cleanly(blob):
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".jsonl", ".json", ".csv"):
            path = Path(tmp) / f"d{suffix}"
            path.write_bytes(blob)
            try:
                load_examples(str(path))
            except DataError as exc:
                assert str(path) in str(exc)


KEYS = st.sampled_from(sorted(FIELDS)) | st.text(min_size=1, max_size=12)
VALUES = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12) | \
    st.lists(st.floats(-2, 2), max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=4))
def test_config_parser_accepts_or_names_the_key(overrides):
    try:
        cfg = load_config("nrt-ws", overrides)
    except ConfigError as exc:
        assert any(str(exc).startswith(f"{key}") or f"{key}:" in str(exc) or "/" in str(exc).split(":")[0]
                   for key in [*overrides, *FIELDS]), str(exc)
        return
    assert isinstance(cfg, TrainConfig)
    for key in overrides:  # an accepted config holds sane values, never a silent NaN
        value = getattr(cfg, key)
        assert not isinstance(value, float) or math.isfinite(value), (key, value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_config_override_strings_parse_or_fail_cleanly(text):
    with contextlib.suppress(ConfigError):  # any other exception type fails the test
        load_config("nrt-ws", [text])
