"""End-to-end runs on the tiny model: every preset updates the weights, outputs, resume, LoRA, generate."""

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import nrt.trainer
from nrt import DataError, load_config, train
from nrt.cli import main
from nrt.config import preset_names

REQUIRED_METRICS = {"step", "loss", "grad_norm", "lr", "reward_raw_mean", "reward_raw_std", "trace_len_mean",
                    "trace_len_min", "trace_len_max", "delimiter_rate", "trace_entropy", "answer_nll_with_trace",
                    "answer_nll_without_trace", "step_seconds"}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.mark.parametrize("preset", preset_names())
def test_one_step_of_every_preset_changes_the_parameters(preset, tiny_model_dir, qa_file, tmp_path):
    cfg = load_config(preset, tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", steps=1))
    result = train(cfg)
    before, after = _weights(tiny_model_dir), _weights(result.checkpoint / "model")
    unchanged = [name for name, value in before.items() if torch.equal(value, after[name][:value.shape[0]])]
    assert not unchanged, f"{preset}: parameters not updated: {unchanged}"
    (metrics,) = result.metrics
    assert set(metrics) >= REQUIRED_METRICS
    assert all(isinstance(v, float | int) and v == v for v in metrics.values()), metrics  # no NaN
    if cfg.trace:
        assert metrics["trace_len_mean"] > 0 and metrics["trace_entropy"] > 0
    else:
        assert metrics["trace_len_max"] == 0 and metrics["loss_trace"] == 0


def test_run_folder_outputs_and_final_model_loads(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", report_to=["tensorboard"],
                                               samples_per_step=3))
    result = train(cfg)
    run = tmp_path / "run"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and {"step", "trace", "reward", "advantage", "emitted"} <= set(samples[0])
    assert any((run / "tensorboard").iterdir())
    assert (run / "config.yaml").is_file()
    model_dir = result.checkpoint / "model"
    assert (model_dir / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    delimiter = tokenizer.convert_tokens_to_ids("<|response_start|>")
    assert delimiter == len(tokenizer) - 1 and model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    state = torch.load(result.checkpoint / "trainer_state.pt", weights_only=True)
    assert state["step"] == 2 and state["prompts_seen"] == 4 and "optimizer" in state and "rng" in state


class Crash(RuntimeError):
    pass


def test_resume_continues_at_the_next_step_and_matches_an_uninterrupted_run(tiny_model_dir, qa_file, tmp_path,
                                                                              monkeypatch):
    overrides = dict(steps=4, save_every=2, keep_checkpoints=5)
    reference = train(load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "ref", **overrides)))

    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "crash", **overrides))
    real_step, calls = nrt.trainer.nrt_step, []

    def crashing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # steps 1-3 done and logged, checkpoint at 2: die inside step 4
            raise Crash
        return real_step(*args, **kwargs)

    monkeypatch.setattr(nrt.trainer, "nrt_step", crashing_step)
    with pytest.raises(Crash):
        train(cfg)
    monkeypatch.setattr(nrt.trainer, "nrt_step", real_step)
    # a checkpoint write killed half-way leaves a .tmp folder, which resume ignores
    (tmp_path / "crash" / "checkpoints" / "step-000003.tmp").mkdir()
    resumed = train(cfg, resume=True)

    assert [m["step"] for m in resumed.metrics] == [1, 2, 3, 4]  # step 3 redone once, not duplicated
    for ref, got in zip(reference.metrics, resumed.metrics, strict=True):
        for key in ("loss", "reward_raw_mean", "trace_len_mean", "grad_norm"):
            assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), (ref["step"], key)
    ref_w, got_w = _weights(reference.checkpoint / "model"), _weights(resumed.checkpoint / "model")
    for name in ref_w:
        torch.testing.assert_close(got_w[name], ref_w[name], rtol=1e-5, atol=1e-6)


def test_lora_trains_adapters_only_and_saves_a_plain_model(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-gm", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", lora=True, lora_r=4))
    result = train(cfg)
    adapter = load_file(result.checkpoint / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in name and value.abs().sum() > 0 for name, value in adapter.items())
    merged = AutoModelForCausalLM.from_pretrained(result.checkpoint / "model")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    resumed = train(load_config("nrt-gm", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", lora=True,
                                                         lora_r=4, steps=3)), resume=True)
    assert [m["step"] for m in resumed.metrics] == [1, 2, 3]


def test_several_updates_per_rollout_and_bf16(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", updates_per_step=2,
                                               dtype="bf16", token_reward="derived", gradient_checkpointing=True))
    result = train(cfg)
    assert all(m["skipped_updates"] == 0 for m in result.metrics)


def test_generate_sampler_trains(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", sampler="generate"))
    result = train(cfg)
    assert len(result.metrics) == 2
    assert all(0 < m["trace_len_max"] <= cfg.max_trace_tokens and m["skipped_updates"] == 0 for m in result.metrics)


def test_bad_data_stops_before_training_unless_skipped(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?"}\n{"question": "3+3?", "answer": "6"}\n')
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, data, tmp_path / "run", steps=1))
    with pytest.raises(DataError, match=r"d.jsonl:2: field 'answer' is missing"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, data, tmp_path / "run", steps=1,
                                               skip_bad_records=True))
    assert len(train(cfg).metrics) == 1


def test_generate_shows_trace_and_answer(tiny_model_dir, capsys):
    assert main(["generate", "--model", str(tiny_model_dir), "--max-trace-tokens", "5", "--max-answer-tokens", "3",
                 "What is 2+2?"]) == 0
    out = capsys.readouterr().out
    assert "--- trace (5 tokens, no delimiter: appended) ---" in out and "--- answer ---" in out


@pytest.mark.slow
def test_default_model_trains_two_steps(tmp_path):
    cfg = load_config("nrt-ws", {"steps": 2, "output_dir": str(tmp_path / "run"), "prompts_per_step": 2,
                                 "max_trace_tokens": 32})
    result = train(cfg)
    assert len(result.metrics) == 2 and all(m["skipped_updates"] == 0 for m in result.metrics)
    assert AutoModelForCausalLM.from_pretrained(result.checkpoint / "model") is not None
