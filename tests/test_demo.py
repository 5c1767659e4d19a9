"""``nrt demo``: the paired interval, the training curve of correct traces, and the pipeline on the tiny model."""

import json
import math
import statistics

import pytest

from nrt.cli import main
from nrt.demo import paired_difference, trace_correctness


def test_paired_difference_counts_only_problems_that_changed():
    before = [True] * 15 + [False] * 40 + [True] * 60 + [False] * 85
    after = [False] * 15 + [True] * 40 + [True] * 60 + [False] * 85
    d = paired_difference(before, after)
    diffs = [int(a) - int(b) for b, a in zip(before, after, strict=True)]
    half = 1.96 * statistics.pstdev(diffs) / math.sqrt(200)
    assert (d["gained"], d["lost"], d["n"]) == (40, 15, 200)
    assert d["difference"] == pytest.approx(0.125)
    assert (d["low"], d["high"]) == pytest.approx((0.125 - half, 0.125 + half))
    assert d["low"] > 0
    same = paired_difference([True, False], [True, False])
    assert same["low"] == same["high"] == 0.0
    with pytest.raises(ValueError, match="same problems"):
        paired_difference([True], [True, False])


def test_trace_correctness_reads_each_samples_prompt_from_its_step():
    answers = ["936", "100"]
    prompts = [[1, 0], [0, 1]]  # step 1 asked problem 1 then 0; step 2 problem 0 then 1
    right = "7+9=16, write 6 carry 1. 4+8+1=13, write 3 carry 1. 3+5+1=9, write 9."
    samples = [{"step": 1, "prompt_index": 1, "trace": right}, {"step": 1, "prompt_index": 0, "trace": right},
               {"step": 2, "prompt_index": 0, "trace": right}, {"step": 2, "prompt_index": 0, "trace": "no sum"}]
    assert trace_correctness(samples, answers, prompts) == [0.5, 0.5]


def test_nrt_demo_quick_on_the_tiny_model_writes_the_plot_and_the_summary(tiny_model_dir, tmp_path, capsys):
    assert main(["demo", "--quick", "--model", str(tiny_model_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "nrt demo: held-out accuracy on 4 new 3-digit additions" in out and "95% interval [" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["difference"]["n"] == 4 and len(summary["curves"]["traces_correct"]) == 2
    assert set(summary["minutes"]) == {"warm_start", "training", "evaluations", "total", "cpu"}
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert (tmp_path / "warm-start" / "config.json").is_file() and (tmp_path / "nrt-ws" / "metrics.jsonl").is_file()
