"""Faults: a real training process killed (SIGKILL) mid-step and mid-checkpoint resumes to the same result as
an uninterrupted run; non-finite losses skip updates and then stop the run; over-long budgets fail at start."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

import nrt.step
from nrt import ConfigError, load_config, train
from nrt.checkpoint import complete_checkpoints
from nrt.trainer import TrainingError


def _command(overrides: dict) -> list[str]:
    return [sys.executable, "-m", "nrt", "train", "--config", "nrt-ws", *(f"{k}={v}" for k, v in overrides.items())]


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _kill_when(overrides: dict, ready, timeout: float = 120) -> None:
    """Start a training process and SIGKILL it as soon as ``ready()`` is true."""
    proc = subprocess.Popen(_command(overrides), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "timed out waiting to kill"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()


@pytest.mark.parametrize("moment", ["mid-step", "mid-checkpoint"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(moment, tiny_model_dir, qa_file, tmp_path):
    def overrides(name: str) -> dict:
        return tiny_overrides(tiny_model_dir, qa_file, tmp_path / name, steps=5, save_every=2, keep_checkpoints=3)

    reference = subprocess.run(_command(overrides("ref")), capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]

    run = tmp_path / "killed"
    if moment == "mid-step":
        _kill_when(overrides("killed"), lambda: len(_metrics(run)) >= 3)  # step 3 logged, inside step 4
    else:
        _kill_when(overrides("killed"), lambda: (run / "checkpoints" / "step-000004.tmp").exists())
    assert len(complete_checkpoints(run)) >= 1
    resumed = subprocess.run([*_command(overrides("killed")), "--resume"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    ref, got = _metrics(tmp_path / "ref"), _metrics(run)
    assert [m["step"] for m in got] == [1, 2, 3, 4, 5]
    for a, b in zip(ref, got, strict=True):
        for key in ("loss", "grad_norm", "reward_raw_mean", "trace_len_mean", "answer_nll_with_trace"):
            assert a[key] == b[key], (a["step"], key)  # bitwise on CPU
    final = "checkpoints/step-000005/model/model.safetensors"
    wa, wb = load_file(tmp_path / "ref" / final), load_file(run / final)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)


def test_nonfinite_losses_skip_updates_then_stop(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    real_loss, calls = nrt.step.nrt_loss, []

    def poisoned(**kwargs):
        loss, parts = real_loss(**kwargs)
        calls.append(1)
        return (loss * math.nan if len(calls) > 2 else loss), parts  # 2 micro-batches per step: step 2 on

    monkeypatch.setattr(nrt.step, "nrt_loss", poisoned)
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", steps=6, save_every=1,
                                               max_nonfinite_steps=2))
    with pytest.raises(TrainingError, match=r"step 3: loss or gradient not finite for 2 steps in a row.*step-000001"):
        train(cfg)
    metrics = _metrics(tmp_path / "run")
    assert [m["skipped_updates"] for m in metrics] == [0, 1, 1]
    checkpoints = complete_checkpoints(tmp_path / "run")
    assert [p.name for p in checkpoints] == ["step-000001"]  # nothing saved from the poisoned steps
    weights = load_file(checkpoints[-1] / "model" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_budget_longer_than_the_context_fails_at_start(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", max_prompt_tokens=2000,
                                               max_trace_tokens=100))
    with pytest.raises(ConfigError, match="exceeds the model's context of 2048"):
        train(cfg)


def test_prompts_over_budget_are_skipped_and_counted(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    rows = [{"question": "short?", "answer": "a"}, {"question": "long " * 300, "answer": "b"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, data, tmp_path / "run", steps=1,
                                               max_prompt_tokens=64))
    train(cfg)
    assert "'prompts_too_long': 1" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_checkpoint_of_a_killed_write_is_ignored(tiny_model_dir, qa_file, tmp_path):
    run = tmp_path / "run"
    train(load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, run, steps=2)))
    (run / "checkpoints" / "step-000009.tmp" / "model").mkdir(parents=True)  # a write cut short
    (run / "checkpoints" / "step-000010").mkdir()  # a folder without trainer state
    assert [p.name for p in complete_checkpoints(run)] == ["step-000002"]
