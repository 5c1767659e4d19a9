"""Loaders: every format, field names, errors that name file/line/field, skipping bad records."""

import json
import tarfile

import pytest

from nrt.data import DataError, FieldNames, extract_bigbench, load_examples, reasoning_gym_options
from nrt.evaluate import load_task


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_question_answer(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": 4}])
    data = load_examples(str(path))
    assert [e.answer for e in data.examples] == ["2", "4"]
    assert data.examples[0].messages == [{"role": "user", "content": "1+1?"}]
    assert data.examples[1].origin == f"{path}:2"


def test_custom_field_names(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"prompt": "Say hi", "completion": "hi"}])
    data = load_examples(str(path), fields=FieldNames(question="prompt", answer="completion"))
    assert data.examples[0].answer == "hi"


def test_chat_messages_keep_earlier_turns(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}]
    data = load_examples(str(_jsonl(tmp_path / "c.jsonl", [{"messages": chat}])))
    assert data.examples[0].messages == chat[:-1] and data.examples[0].answer == "4"


def test_json_csv_parquet(tmp_path):
    rows = [{"question": "a?", "answer": "A"}, {"question": "b?", "answer": "B"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.csv").write_text("question,answer\na?,A\n\"b, quoted?\",B\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("d.json", "d.csv", "d.parquet"):
        data = load_examples(str(tmp_path / name))
        assert [e.answer for e in data.examples] == ["A", "B"], name
    assert load_examples(str(tmp_path / "d.csv")).examples[1].messages[0]["content"] == "b, quoted?"


def test_datasets_saved_folder(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"question": "q?", "answer": "a"}]).save_to_disk(str(tmp_path / "ds"))
    data = load_examples(str(tmp_path / "ds"))
    assert data.examples[0].answer == "a" and "row 0" in data.examples[0].origin
    datasets.DatasetDict({"test": datasets.Dataset.from_list([{"question": "q?", "answer": "b"}])}).save_to_disk(
        str(tmp_path / "dd"))
    assert load_examples(str(tmp_path / "dd"), split="test").examples[0].answer == "b"
    with pytest.raises(DataError, match="no split 'train'"):
        load_examples(str(tmp_path / "dd"))


def test_reasoning_gym_seeds_give_disjoint_splits():
    train = load_examples("reasoning_gym:basic_arithmetic", size=50, seed=1)
    test = load_examples("reasoning_gym:basic_arithmetic", size=50, seed=2)
    assert len(train.examples) == 50
    assert not {e.messages[0]["content"] for e in train.examples} & {e.messages[0]["content"] for e in test.examples}
    assert "entry" in train.examples[0].meta  # kept for scoring


def test_reasoning_gym_generator_options():
    examples = load_examples("reasoning_gym:chain_sum:min_terms=2:max_terms=2:max_digits=1", size=20).examples
    for e in examples:  # "... problem: 3 + 5 =": two single-digit terms
        terms = e.messages[0]["content"].split(":")[-1].rstrip("= ").split()
        assert len(terms) == 3 and all(len(t) == 1 for t in terms[::2])
    assert reasoning_gym_options("products:max_digits=1:allow_negation=true") == (
        "products", {"max_digits": 1, "allow_negation": True})
    with pytest.raises(DataError, match=r"reasoning_gym:chain_sum:bogus=1: .*bogus"):
        load_examples("reasoning_gym:chain_sum:bogus=1", size=2)
    with pytest.raises(DataError, match="'max_digits' is not key=value"):
        load_examples("reasoning_gym:chain_sum:max_digits", size=2)


def test_bigbench_from_an_sdist(tmp_path, monkeypatch):
    task = {"examples": [{"input": "Is the sky blue?", "target_scores": {"Yes": 1, "No": 0}},
                         {"input": "Explain.", "target": ["Because.", "Other"]}]}
    src = tmp_path / "bigbench-1.0.0/bigbench/benchmark_tasks/strategyqa/task.json"
    src.parent.mkdir(parents=True)
    src.write_text(json.dumps(task))
    sdist = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tmp_path / "bigbench-1.0.0", arcname="bigbench-1.0.0")
    monkeypatch.setenv("NRT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="fetch-bigbench"):
        load_examples("bigbench:strategyqa")
    assert extract_bigbench(sdist) == ["strategyqa"]
    data = load_examples("bigbench:strategyqa")
    assert [e.answer for e in data.examples] == ["A", "Because."]  # multiple choice: lettered, answered by letter
    assert data.examples[0].messages[0]["content"] == ("Is the sky blue?\nA. Yes\nB. No\n"
                                                       "Answer with the letter of the correct choice.")
    task = load_task("bigbench:strategyqa", limit=5)
    assert task.scorer("(A)", task.examples[0]) == 1.0 and task.scorer("Yes", task.examples[0]) == 0.0
    assert task.scorer("because", task.examples[1]) == 1.0


BAD = [
    ({"question": "q?"}, r"bad.jsonl:1: field 'answer' is missing"),
    ({"question": "q?", "answer": ""}, "field 'answer' is empty"),
    ({"question": "q?", "answer": ["a"]}, "field 'answer' must be a string, got list"),
    ({"question": 3, "answer": "a"}, "field 'question' must be a string, got int"),
    ({"text": "q?"}, "field 'question' is missing"),
    (["q?", "a"], "expected an object"),
    ({"messages": [{"role": "user", "content": "q"}]}, "must end with the assistant"),
    ({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}, r"messages\[0\]\.role"),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]},
     r"messages\[0\]\.content' must be a string"),
    ({"messages": "hi"}, "must be a non-empty list"),
]


@pytest.mark.parametrize(("record", "message"), BAD)
def test_malformed_records_name_file_line_and_field(tmp_path, record, message):
    path = _jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(DataError, match=message) as err:
        load_examples(str(path))
    assert str(path) in str(err.value)


def test_broken_lines(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b'{"question": "q?", "answer": "a"}\n{"question": "q?", "ans\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2: not valid JSON"):
        load_examples(str(path))
    path.write_bytes(b'{"question": "q?", "answer": "a"}\n{"question": "\xff", "answer": "a"}\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2: not valid UTF-8"):
        load_examples(str(path))


def test_csv_row_numbers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,answer\na?,A\nb?,\n")
    with pytest.raises(DataError, match=r"d.csv:3: field 'answer' is empty"):
        load_examples(str(path))


def test_skip_bad_records_counts_them(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", [{"question": "q?", "answer": "a"}, {"question": "q?"},
                                              "not json", {"question": "r?", "answer": "b"}])
    with pytest.raises(DataError, match=r"mixed.jsonl:2: field 'answer' is missing.*and 1 more bad records"):
        load_examples(str(path))
    data = load_examples(str(path), skip_bad=True)
    assert [e.answer for e in data.examples] == ["a", "b"] and data.skipped == 2
    assert "mixed.jsonl:3: not valid JSON" in data.errors[1]


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_examples(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported data source"):
        load_examples(str(tmp_path / "x.txt"))


def test_all_bad_is_an_error_even_when_skipping(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", [{"question": "q?"}])
    with pytest.raises(DataError, match="no usable examples"):
        load_examples(str(path), skip_bad=True)
