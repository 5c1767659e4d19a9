"""nrt eval: answer extraction after the delimiter (also when the trace never emits it), scorers, the CLI
table and JSON, and evaluation during training."""

import json

import pytest
import torch
from conftest import tiny_overrides

from nrt import load_config, load_policy, train
from nrt.cli import main
from nrt.data import Example, load_examples
from nrt.evaluate import Task, evaluate_task, load_task
from nrt.modeling import ModelError, inference_device, inference_dtype
from nrt.rollout import SAMPLERS, Trace
from nrt.scoring import exact_match, normalize, reasoning_gym_score


def test_normalize_and_exact_match():
    assert normalize("The  Answer: 42!") == "answer 42"
    ex = Example([{"role": "user", "content": "q"}], "Paris", "t")
    assert exact_match(" paris.", ex) == 1.0 and exact_match("Lyon", ex) == 0.0


def test_reasoning_gym_scorer_uses_held_out_problems():
    task = load_task("reasoning_gym:basic_arithmetic", limit=5, eval_seed=999)
    train_questions = {e.messages[0]["content"] for e in load_examples("reasoning_gym:basic_arithmetic", size=200,
                                                                           seed=1).examples}
    assert not {e.messages[0]["content"] for e in task.examples} & train_questions
    ex = task.examples[0]
    assert reasoning_gym_score(ex.answer, ex) == 1.0 and reasoning_gym_score("nonsense", ex) < 1.0


def _fake_sampler(traces_then_answers):
    calls = iter(traces_then_answers)

    def sample(model, prompts, **kwargs):
        return next(calls)[:len(prompts)]
    return sample


def test_answer_is_what_follows_the_delimiter(tiny_model_dir, monkeypatch):
    policy = load_policy(str(tiny_model_dir))
    tok = policy.tokenizer
    ids = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    traces = [Trace(ids("2 plus 2 makes 4"), True), Trace(ids("let me think about it for a long"), False)]
    answers = [Trace(ids("4"), False), Trace(ids("5"), False)]
    monkeypatch.setitem(SAMPLERS, "cache", _fake_sampler([traces, answers]))
    examples = [Example([{"role": "user", "content": f"q{i}"}], "4", "t") for i in range(2)]
    result = evaluate_task(policy, Task("t", examples, exact_match), max_trace_tokens=8)
    first, second = result.samples
    assert first["trace"] == "2 plus 2 makes 4" and first["answer"] == "4" and first["emitted"]
    assert first["score"] == 1.0
    # a trace that hit its budget without the delimiter: the delimiter is appended and the answer still read
    assert not second["emitted"] and second["answer"] == "5" and second["score"] == 0.0
    assert result.accuracy == 0.5 and result.delimiter_rate == 0.5


def test_eval_on_the_tiny_model_think_and_no_think(tiny_model_dir, qa_file):
    policy = load_policy(str(tiny_model_dir))
    task = load_task(str(qa_file), limit=3)
    think = evaluate_task(policy, task, max_trace_tokens=6, max_answer_tokens=3)
    assert think.n == 3 and all(s["trace_tokens"] <= 6 for s in think.samples) and think.trace_len_mean > 0
    direct = evaluate_task(policy, task, think=False, max_answer_tokens=3)
    assert direct.trace_len_mean == 0 and all(s["trace"] == "" for s in direct.samples)


def test_evaluation_picks_its_sampler_as_training_does(tiny_model_dir, qa_file, monkeypatch):
    """On a CPU ``auto`` is nrt's KV-cache loop; a sampler named is used and gives the same greedy answers."""
    policy, task = load_policy(str(tiny_model_dir)), load_task(str(qa_file), limit=3)
    calls = []
    loop = SAMPLERS["cache"]
    monkeypatch.setitem(SAMPLERS, "cache", lambda *a, **k: calls.append(1) or loop(*a, **k))
    auto = evaluate_task(policy, task, max_trace_tokens=6, max_answer_tokens=3)
    assert len(calls) == 2  # the traces, then the answers
    named = evaluate_task(policy, task, max_trace_tokens=6, max_answer_tokens=3, sampler="generate")
    assert len(calls) == 2 and named.samples == auto.samples


def test_inference_device_and_dtype():
    assert inference_dtype("auto", torch.device("cpu")) == torch.float32  # CPU figures stay fp32
    assert inference_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert inference_device("cpu") == torch.device("cpu")
    assert inference_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ModelError, match="not a device name"):
        inference_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message of a machine without CUDA")
def test_eval_on_a_device_the_machine_lacks_says_so(tiny_model_dir, qa_file, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--tasks", str(qa_file), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_eval_cli_prints_a_table_and_writes_json(tiny_model_dir, qa_file, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--tasks", f"{qa_file},reasoning_gym:basic_arithmetic",
                 "--limit", "2", "--max-trace-tokens", "4", "--max-answer-tokens", "3", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "reasoning_gym:basic_arithmetic" in printed
    data = json.loads(out.read_text())
    assert [t["task"] for t in data["tasks"]] == [str(qa_file), "reasoning_gym:basic_arithmetic"]
    assert len(data["tasks"][1]["samples"]) == 2


def test_evaluation_during_training_is_logged(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", eval_every=2,
                                               eval_tasks=[str(qa_file)], eval_limit=2))
    metrics = train(cfg).metrics
    assert f"eval/{qa_file}/accuracy" not in metrics[0]
    assert 0.0 <= metrics[1][f"eval/{qa_file}/accuracy"] <= 1.0
    assert f"eval/{qa_file}/delimiter_rate" in metrics[1]


def test_eval_needs_tasks():
    from nrt import ConfigError

    with pytest.raises(ConfigError, match="eval_tasks"):
        load_config("nrt-ws", {"eval_every": 2})
