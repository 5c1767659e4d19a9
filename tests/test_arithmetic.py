"""Column additions (nrt.arithmetic): traces that write the sum, and problem files kept apart."""

import json
import random
from dataclasses import replace

from nrt.arithmetic import (
    WarmStart,
    column_problem,
    questions,
    trace_sum,
    warm_start,
    write_problems,
    write_task_files,
)


def test_column_traces_write_the_sum_and_the_verifier_reads_it():
    rng = random.Random(0)
    for digits in (3, 4):
        for _ in range(500):
            problem = column_problem(rng, digits)
            assert trace_sum(problem["trace"]) == problem["answer"]
    assert column_problem(random.Random(1), 3)["trace"].count("write") == 3
    assert trace_sum("7+9=16, write 6 carry 1. 4+8+1=13, write 3 carry 1. 3+5+1=9, write 9.") == "936"
    assert trace_sum("no columns") is None


def test_write_problems_skips_excluded_questions(tmp_path):
    first = write_problems(tmp_path / "a.jsonl", 50, 3, seed=7)
    again = write_problems(tmp_path / "b.jsonl", 50, 3, seed=7, exclude=questions(first))  # same seed: same draws
    assert len(again.read_text().splitlines()) == 50 and not questions(first) & questions(again)


def test_validation_and_training_files_share_no_problem_with_the_evaluation_files(tmp_path):
    """At the sizes the demo and experiments/real_model.py use: the warm start's stopping rule never sees an
    evaluated problem, and neither does training."""
    paths = write_task_files(tmp_path, eval_size=400, validation_size=100, splits=("3-digit", "4-digit"))
    evaluation = questions(paths["3-digit"], paths["4-digit"])
    assert len(questions(paths["validation"])) == 100 and len(evaluation) == 800
    assert not questions(paths["validation"]) & evaluation
    assert not questions(paths["train"]) & (evaluation | questions(paths["validation"]))
    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert len(rows) == 2000 and all(trace_sum(r["trace"]) == r["answer"] for r in rows)


def test_the_warm_start_evaluates_only_below_its_loss_gate(tiny_model_dir, tmp_path):
    """Evaluations before the model writes the format read 0 and cost the most; the gate skips them (the last
    step is always evaluated: the start is chosen from somewhere)."""
    validation = write_problems(tmp_path / "validation.jsonl", 2, 3, seed=5)
    settings = WarmStart(max_steps=2, eval_every=1, max_trace_tokens=4)
    every = warm_start(str(tiny_model_dir), settings, tmp_path / "a", validation)
    gated = warm_start(str(tiny_model_dir), replace(settings, evaluate_below_loss=0.0), tmp_path / "b", validation)
    assert [h["step"] for h in every] == [1, 2] and [h["step"] for h in gated] == [2]
    assert (tmp_path / "b" / "config.json").is_file()
