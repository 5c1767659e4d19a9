"""The nine official-format loaders, each on a small file written here in that format, and their scorers;
a task whose data is absent is skipped with the reason, never faked."""

import csv
import gzip
import json
from pathlib import Path

import pytest

from nrt.cli import main
from nrt.data import DataError, Example
from nrt.evaluate import evaluate, load_task
from nrt.scoring import (
    choice_letter,
    code_passes,
    contains_answer,
    instructions_followed,
    last_boxed,
    last_number,
    math_equal,
    normalize_math,
    token_f1,
)


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _question(example: Example) -> str:
    return example.messages[-1]["content"]


def test_bbh_task_json(tmp_path):
    path = tmp_path / "bbh" / "navigate.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"canary": "x", "examples": [
        {"input": "If you follow these instructions... Options:\n- Yes\n- No", "target": "No"},
        {"input": "Which is first?\nOptions:\n(A) x\n(B) y", "target": "(B)"}]}))
    task = load_task(f"bbh:{path.parent}", limit=10)  # a folder of task files works too
    assert [e.answer for e in task.examples] == ["No", "(B)"]
    assert task.scorer("no", task.examples[0]) == 1.0 and task.scorer("(B)", task.examples[1]) == 1.0
    assert task.scorer("B", task.examples[1]) == 1.0 and task.scorer("(A)", task.examples[1]) == 0.0


def test_mmlu_official_csv_and_datasets_rows(tmp_path):
    folder = tmp_path / "data" / "test"
    folder.mkdir(parents=True)
    with (folder / "astronomy_test.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["What is the Sun?", "A planet", "A star", "A moon", "A comet", "B"],
                                      ["2+2?", "3", "4", "5", "6", "B"]])
    task = load_task(f"mmlu:{tmp_path / 'data'}", limit=10)
    assert len(task.examples) == 2 and task.examples[0].answer == "B"
    assert "B. A star" in _question(task.examples[0])
    rows = _jsonl(tmp_path / "mmlu.jsonl", [{"question": "Q?", "subject": "s", "choices": ["a", "b", "c", "d"],
                                             "answer": 3}])
    assert load_task(f"mmlu:{rows}", limit=5).examples[0].answer == "D"
    (folder / "bad_test.csv").write_text("only,three,columns\n")
    with pytest.raises(DataError, match=r"bad_test.csv:1: expected 6 columns"):
        load_task(f"mmlu:{tmp_path / 'data'}", limit=10)


def test_choice_letter_scorer():
    ex = Example([{"role": "user", "content": "q"}], "C", "t")
    for right in ["C", "(C)", "C. a star", "Answer: C", "The answer is (C)."]:
        assert choice_letter(right, ex) == 1.0, right
    for wrong in ["B", "", "Cats", "I think (A)"]:
        assert choice_letter(wrong, ex) == 0.0, wrong


def test_gsm8k_jsonl_and_last_number(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [{"question": "Janet has 3 ducks...", "answer": "3*6=18\n#### 1,018"}])
    task = load_task(f"gsm8k:{path}", limit=5)
    ex = task.examples[0]
    assert ex.answer == "1018" and task.scorer is last_number
    assert last_number("So she has 1,018 eggs.", ex) == 1.0 and last_number("1018.0", ex) == 1.0
    assert last_number("1018 then 5", ex) == 0.0 and last_number("no number", ex) == 0.0
    _jsonl(path, [{"question": "q", "answer": "no final answer"}])
    with pytest.raises(DataError, match=r"test.jsonl:1: field 'answer' has no '#### <number>'"):
        load_task(f"gsm8k:{path}", limit=5)


def test_math_problem_files_and_equivalence(tmp_path):
    folder = tmp_path / "MATH" / "test" / "algebra"
    folder.mkdir(parents=True)
    (folder / "1.json").write_text(json.dumps({"problem": "Compute $\\frac{1}{2}+\\frac{1}{2}$.", "level": "Level 1",
                                               "type": "Algebra", "solution": "It is $\\boxed{\\dfrac{2}{2}}$."}))
    (folder / "2.json").write_text(json.dumps({"problem": "Solve.", "level": "Level 2", "type": "Algebra",
                                               "solution": "So $x = \\boxed{\\left( 3, \\frac{1}{2} \\right)}$"}))
    task = load_task(f"math:{tmp_path / 'MATH'}", limit=5)
    assert [e.answer for e in task.examples] == ["\\dfrac{2}{2}", "\\left( 3, \\frac{1}{2} \\right)"]
    assert math_equal("The answer is \\boxed{\\frac{2}{2}}.", task.examples[0]) == 1.0
    assert math_equal("\\boxed{(3,\\frac12)}", task.examples[1]) == 1.0
    assert math_equal("\\boxed{(3, 2)}", task.examples[1]) == 0.0
    assert last_boxed("a \\boxed{x^{2}} b \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}" and last_boxed("none") is None
    assert normalize_math("$10\\%$") == "10" and normalize_math("5.00") == "5" and normalize_math("x = 3") == "3"
    rows = _jsonl(tmp_path / "math500.jsonl", [{"problem": "p", "solution": "s", "answer": "7"}])
    assert load_task(f"math:{rows}", limit=5).examples[0].answer == "7"


def test_humaneval_from_the_package_and_official_gz(tmp_path):
    task = load_task("humaneval", limit=164)
    assert len(task.examples) == 164 and task.examples[0].meta["problem"]["task_id"] == "HumanEval/0"
    problem = task.examples[2].meta["problem"]  # truncate_number
    gz = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(json.dumps(problem | {"canonical_solution": "    return number % 1.0\n"}) + "\n")
    (ex,) = load_task(f"humaneval:{gz}", limit=5).examples
    assert ex.meta["problem"]["entry_point"] == "truncate_number"
    body = "    return number % 1.0\n"
    assert code_passes(body, ex) == 1.0  # a completion of the prompt
    assert code_passes(f"Here:\n```python\ndef truncate_number(number):\n{body}```", ex) == 1.0  # a whole function
    assert code_passes("    return 0.0\n", ex) == 0.0
    assert code_passes("    while True:\n        pass\n", ex) == 0.0  # stopped by the time limit
    assert code_passes("    open('out.txt', 'w').write('x')\n    return number % 1.0\n", ex) == 0.0


def test_drop_official_json_and_datasets_rows(tmp_path):
    path = tmp_path / "drop_dataset_dev.json"
    path.write_text(json.dumps({"nfl_1": {"passage": "The Bears scored 7 and then 3.", "qa_pairs": [
        {"question": "How many points?", "answer": {"number": "10", "date": {}, "spans": []},
         "validated_answers": [{"number": "", "date": {}, "spans": ["ten"]}]},
        {"question": "Who scored?", "answer": {"number": "", "date": {}, "spans": ["the Bears"]}},
        {"question": "When?", "answer": {"number": "", "date": {"day": "5", "month": "May", "year": "1990"},
                                         "spans": []}}]}}))
    task = load_task(f"drop:{path}", limit=10)
    assert [e.answer for e in task.examples] == ["10", "the Bears", "5 May 1990"]
    assert task.examples[0].meta["golds"] == ["10", "ten"] and "The Bears scored" in _question(task.examples[0])
    assert token_f1("ten", task.examples[0]) == 1.0 and token_f1("Bears", task.examples[1]) == 1.0
    assert token_f1("Chicago Bears", task.examples[1]) == pytest.approx(2 / 3)  # P 1/2, R 1
    assert token_f1("nobody", task.examples[1]) == 0.0
    rows = _jsonl(tmp_path / "drop.jsonl", [{"section_id": "s", "query_id": "q", "passage": "P.", "question": "Q?",
                                             "answers_spans": {"spans": ["Tom", "Ann"], "types": ["span", "span"]}}])
    assert load_task(f"drop:{rows}", limit=5).examples[0].answer == "Tom, Ann"
    path.write_text(json.dumps({"nfl_2": {"qa_pairs": [{"question": "Q?", "answer": {"number": "1"}}]}}))
    with pytest.raises(DataError, match=r"drop_dataset_dev.json: nfl_2: field 'passage' is missing"):
        load_task(f"drop:{path}", limit=10)


def test_popqa_tsv_and_contains_answer(tmp_path):
    path = tmp_path / "popQA.tsv"
    path.write_text("id\tsubj\tprop\tobj\tquestion\tpossible_answers\n"
                    '1\tGeorge Rankin\toccupation\tpolitician\tWhat is George Rankin\'s occupation?\t'
                    '["politician", "political leader"]\n')
    (ex,) = load_task(f"popqa:{path}", limit=5).examples
    assert ex.meta["golds"] == ["politician", "political leader"]
    assert contains_answer("He was a Politician in Australia.", ex) == 1.0
    assert contains_answer("a soldier", ex) == 0.0 and contains_answer("politicians", ex) == 0.0
    python_list = "2\ts\tp\to\tWho?\t['Ann', \"O'Neil\"]\n"  # PopQA's own lists are Python literals
    path.write_text(path.read_text() + python_list)
    assert load_task(f"popqa:{path}", limit=2).examples[1].meta["golds"] == ["Ann", "O'Neil"]
    path.write_text(path.read_text() + "3\ts\tp\to\tWhat?\t[politician\n")
    with pytest.raises(DataError, match=r"popQA.tsv:4: field 'possible_answers' is not a list"):
        load_task(f"popqa:{path}", limit=5)


def test_truthfulqa_mc_task_json_shuffled_and_datasets_rows(tmp_path):
    path = tmp_path / "mc_task.json"
    path.write_text(json.dumps([{"question": "What happens if you swallow gum?",
                                 "mc1_targets": {"It passes through you.": 1, "It stays for 7 years.": 0,
                                                 "You die.": 0, "It grows.": 0},
                                 "mc2_targets": {"It passes through you.": 1, "You die.": 0}}]))
    (ex,) = load_task(f"truthfulqa:{path}", limit=5).examples
    letter = ex.answer
    assert f"{letter}. It passes through you." in _question(ex)
    assert choice_letter(letter, ex) == 1.0
    assert load_task(f"truthfulqa:{path}", limit=5).examples[0].answer == letter  # the shuffle is reproducible
    rows = _jsonl(tmp_path / "tqa.jsonl", [{"question": "Q?", "mc1_targets": {"choices": ["right", "wrong"],
                                                                               "labels": [1, 0]}}])
    (row,) = load_task(f"truthfulqa:{rows}", limit=5).examples
    assert f"{row.answer}. right" in _question(row)
    _jsonl(rows, [{"question": "Q?", "mc1_targets": {"choices": ["a", "b"], "labels": [1, 1]}}])
    with pytest.raises(DataError, match=r"tqa.jsonl:1: field 'mc1_targets' must mark exactly one"):
        load_task(f"truthfulqa:{rows}", limit=5)


def test_ifeval_input_data_and_instruction_checks(tmp_path):
    path = _jsonl(tmp_path / "input_data.jsonl", [
        {"key": 1000, "prompt": "Write two lines in lowercase letters only, with no commas.",
         "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]},
        {"key": 1001, "prompt": "Mention the word 'river' at least 2 times.",
         "instruction_id_list": ["keywords:frequency"],
         "kwargs": [{"keyword": "river", "frequency": 2, "relation": "at least", "num_words": None}]}])
    a, b = load_task(f"ifeval:{path}", limit=5).examples
    assert a.meta["instruction_id_list"] == ["change_case:english_lowercase", "punctuation:no_comma"]
    # langdetect, unseeded, called this French about 1 time in 20: 100 scorings would almost surely differ
    assert {instructions_followed("a quiet line\nanother one", a) for _ in range(100)} == {1.0}
    assert instructions_followed("A quiet line, loud", a) == 0.0
    assert instructions_followed("lowercase, but a comma", a) == 0.5
    assert instructions_followed("the river meets the river", b) == 1.0
    assert instructions_followed("one river", b) == 0.0


def test_missing_data_is_skipped_with_the_reason(tmp_path):
    (result,) = evaluate(None, [f"gsm8k:{tmp_path / 'absent' / 'test.jsonl'}"])  # type: ignore[arg-type]
    assert result.skipped and "not shipped in any package" in result.skipped and "grade-school-math" in result.skipped
    with pytest.raises(DataError, match="no source given"):
        load_task("mmlu", limit=5)


def test_eval_cli_runs_humaneval_and_reports_a_skipped_task(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--tasks", f"humaneval,popqa:{tmp_path / 'popQA.tsv'}",
                 "--limit", "2", "--max-trace-tokens", "4", "--max-answer-tokens", "8", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "humaneval" in printed and "skipped" in printed
    humaneval, popqa = json.loads(out.read_text())["tasks"]
    assert humaneval["n"] == 2 and humaneval["accuracy"] == 0.0 and len(humaneval["samples"]) == 2
    assert popqa["n"] == 0 and popqa["accuracy"] is None and "popQA.tsv: not found" in popqa["skipped"]
