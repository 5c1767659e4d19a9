"""The closing summary of a run says what its figures can and cannot show."""

from pathlib import Path

from nrt import load_config
from nrt.trainer import delimiter_drifted, held_out_delimiter_rates, reading_notes, summary


def _metrics(steps: int, gain: float, tied: float = 0.1) -> list[dict[str, float]]:
    return [{"step": i + 1, "reward_raw_mean": -3.0, "trace_len_mean": 60.0, "answer_nll_gain": gain,
             "delimiter_rate": 0.2, "zero_std_group_fraction": tied} for i in range(steps)]


def test_a_first_run_is_read_as_a_smoke_test_and_points_to_the_demo():
    """make train's 6 steps, traces making the answer less likely (gain -0.80 -> -1.52)."""
    text = "\n".join(reading_notes(6, -1.52))
    assert "6 steps" in text and "smoke test" in text and "not a learning curve" in text
    assert "answer NLL gain < 0" in text and "do not help yet" in text
    assert "`nrt demo`" in text and "`make demo`" in text
    assert all(len(line) <= 110 for line in text.splitlines())


def test_which_runs_get_which_note():
    assert reading_notes(200, 0.4) == []  # a long run whose traces help: its figures speak for themselves
    short = reading_notes(20, 1.3)  # short, traces help (nrt demo's own training): no pointer to the demo
    assert len(short) == 1 and "20 steps" in short[0] and "nrt demo" not in short[0]
    (long_negative,) = reading_notes(200, -0.3)
    assert long_negative.lstrip().startswith("answer NLL gain < 0") and "nrt demo" in long_negative
    (sft,) = reading_notes(6, None)  # no traces: no gain to read
    assert "smoke test" in sft
    (tied,) = reading_notes(200, 0.4, 1.0)  # a reward_fn that never fired: every group tied
    assert "zero_std_group_fraction 1.00" in tied and "learned nothing" in tied
    assert reading_notes(200, 0.4, 0.5) == []


def test_summary_of_a_first_run_carries_the_notes_and_lists_only_written_logs(tmp_path: Path):
    cfg = load_config("nrt-ws", {"report_to": []})
    text = summary(cfg, _metrics(6, -1.5), None, tmp_path, 60.0, {"examples": 8})
    assert "answer NLL gain (nats/token)" in text and "smoke test" in text and "`make demo`" in text
    assert "tensorboard" not in text  # not written with report_to: []
    assert "tensorboard" in summary(load_config("nrt-ws", {}), _metrics(60, 0.5), None, tmp_path, 60.0, {})
    assert "smoke test" not in summary(cfg, _metrics(60, 0.5), None, tmp_path, 60.0, {})
    assert "zero_std_group_fraction 1.00" in summary(cfg, _metrics(60, 0.5, tied=1.0), None, tmp_path, 60.0, {})
    assert summary(cfg, _metrics(1, 0.5), None, tmp_path, 6.0, {}).startswith("nrt: 1 step of weighted_sum_log_prob")
    custom = load_config("nrt-ws", {"report_to": [], "reward_fn": "examples/rewards.py:exact_match"})
    assert summary(custom, _metrics(60, 0.5), None, tmp_path, 60.0, {}).startswith(
        "nrt: 60 steps of reward_fn examples/rewards.py:exact_match")


def test_the_delimiter_drifts_only_when_it_falls_under_one_half_by_a_tenth():
    assert delimiter_drifted(0.62, 0.47)  # nrt-ws, seed 0, 100 steps of the 135M model (sampled, tenths)
    assert not delimiter_drifted(0.64, 0.52)  # its seed 1: still above one half
    assert delimiter_drifted(1.0, 0.03)  # the held-out greedy rate of the same run
    assert not delimiter_drifted(0.2, 0.2)  # a model that seldom wrote it: not a drift
    assert not delimiter_drifted(0.52, 0.45)  # a rate near one half wanders by a few hundredths
    assert delimiter_drifted(0.5, 0.4) and not delimiter_drifted(0.5, 0.41)  # 0.1 exactly, in floating point


def test_held_out_delimiter_rates_reads_the_first_and_last_evaluation():
    metrics = [{"delimiter_rate": r} for r in (0.6, 0.7, 0.5, 0.4, 0.3, 0.5)]
    metrics[1]["eval/3-digit/delimiter_rate"] = 1.0
    metrics[3]["eval/3-digit/delimiter_rate"] = 0.4
    metrics[5]["eval/3-digit/delimiter_rate"] = 0.1
    metrics[5]["eval/once/delimiter_rate"] = 0.0  # evaluated once: no first and last to compare
    metrics[5]["eval/data/qa_test.jsonl/delimiter_rate"] = 0.0  # a file task: its name keeps its slashes
    metrics[1]["eval/data/qa_test.jsonl/delimiter_rate"] = 0.9
    rates = held_out_delimiter_rates(metrics)
    assert rates.keys() == {"held-out 3-digit", "held-out data/qa_test.jsonl"}
    assert rates["held-out 3-digit"] == (1.0, 0.1)


def test_the_signs_of_collapse_get_a_note_naming_their_figures():
    (shrinking,) = reading_notes(200, 0.4, trace_len=(23.0, 2.0))
    assert "trace length 23.0 -> 2.0 tokens, under half" in shrinking
    assert len(reading_notes(200, 0.4, trace_len=(38.0, 18.9))) == 1
    assert reading_notes(200, 0.4, trace_len=(38.0, 19.1)) == []
    (drift,) = reading_notes(200, 2.9, delimiter_rates={"sampled": (0.64, 0.52), "held-out 3-digit": (1.0, 0.03)})
    assert "held-out 3-digit 1.00 -> 0.03" in drift and "sampled" not in drift  # only the source that drifted
    assert "append it when you serve the model" in drift
    assert reading_notes(200, 2.9, delimiter_rates={"sampled": (0.64, 0.52)}) == []


def _long_run(first: dict[str, float], last: dict[str, float]) -> list[dict[str, float]]:
    """100 steps of a run whose traces help (gain 2.5), the first 10 and the last 10 steps changed."""
    metrics = _metrics(100, 2.5)
    for i in range(10):
        metrics[i].update(first)
        metrics[90 + i].update(last)
    return metrics


def test_summary_reads_a_long_run_over_its_first_and_last_tenth(tmp_path: Path):
    cfg = load_config("nrt-ws", {"report_to": []})
    metrics = _long_run({"delimiter_rate": 0.62}, {"delimiter_rate": 0.4})
    for i in range(97, 100):  # the last 3 steps alone are back at the start's rate: a 3-step window sees no drift
        metrics[i]["delimiter_rate"] = 0.62
    text = summary(cfg, metrics, None, tmp_path, 60.0, {})
    assert "(mean of first/last 10 steps)" in text and "sampled 0.62 -> 0.47" in text
    assert "delimiter rate                     0.6200 ->     0.4660" in text  # the printed line, the same means
    (shrunk,) = [line for line in summary(cfg, _long_run({"trace_len_mean": 40.0}, {"trace_len_mean": 10.0}), None,
                                          tmp_path, 60.0, {}).splitlines() if "under half" in line]
    assert "trace length 40.0 -> 10.0 tokens" in shrunk
    grown = summary(cfg, _long_run({"trace_len_mean": 10.0}, {"trace_len_mean": 40.0}), None, tmp_path, 60.0, {})
    assert "under half" not in grown


def test_summary_notes_a_drift_seen_only_in_the_held_out_evaluation(tmp_path: Path):
    cfg = load_config("nrt-ws", {"report_to": []})
    metrics = _metrics(100, 2.5)
    metrics[19]["eval/3-digit/delimiter_rate"] = 1.0
    metrics[99]["eval/3-digit/delimiter_rate"] = 0.0
    text = summary(cfg, metrics, None, tmp_path, 60.0, {})
    assert "held-out 3-digit 1.00 -> 0.00" in text and "sampled" not in text
    assert "delimiter rate held-out" not in summary(cfg, _metrics(100, 2.5), None, tmp_path, 60.0, {})
    shrunk_and_drifted = _long_run({"trace_len_mean": 40.0}, {"trace_len_mean": 10.0})
    shrunk_and_drifted[19]["eval/3-digit/delimiter_rate"] = 1.0
    shrunk_and_drifted[99]["eval/3-digit/delimiter_rate"] = 0.0
    assert "under half" in summary(cfg, shrunk_and_drifted, None, tmp_path, 60.0, {})
    sft = summary(load_config("sft", {"report_to": []}), shrunk_and_drifted, None, tmp_path, 60.0, {})
    assert "under half" not in sft and "delimiter rate held-out" not in sft  # no traces: no sign of their collapse
