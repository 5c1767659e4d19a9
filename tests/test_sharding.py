"""Sharded training (FSDP2 over two CPU processes, gloo): the gathered weights after each step equal a single
process's on the same global batch, and each rollout samples from a plain copy that holds the current weights; a
killed sharded run resumes to the uninterrupted result; checkpoints hold full weights that plain
``from_pretrained`` loads and the optimizer state in one shard per process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import tiny_overrides
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

HELPER = Path(__file__).parent / "helpers" / "dist_train.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_sharded_two_processes_match_one_process(tiny_model_dir, qa_file, tmp_path):
    def overrides(name: str, **extra) -> str:
        return json.dumps(tiny_overrides(tiny_model_dir, qa_file, tmp_path / name / "run", prompts_per_step=4,
                                         **extra))

    for name in ("fsdp", "single"):
        (tmp_path / name).mkdir()
    _run([*TORCHRUN, str(HELPER), str(tmp_path / "fsdp"), overrides("fsdp", sharding="fsdp", sampling_copy="free"),
          "weights", "sampled"])
    _run([sys.executable, str(HELPER), str(tmp_path / "single"), overrides("single"), "weights"])
    steps = [{name: torch.load(tmp_path / name / f"weights-step{step}.pt") for name in ("fsdp", "single")}
             for step in (1, 2)]
    assert not torch.equal(steps[0]["single"]["model.norm.weight"], steps[1]["single"]["model.norm.weight"])
    # each rollout samples from a plain copy holding the weights of the step before it (the loaded ones first)
    for rollout in (1, 2):
        expected = torch.load(tmp_path / "fsdp" / f"weights-step{rollout - 1}.pt")
        sampled = torch.load(tmp_path / "fsdp" / f"sampled-rollout{rollout}.pt")
        assert not sampled["sharded"] and sampled["weights"].keys() == expected.keys()
        assert all(torch.equal(sampled["weights"][name], expected[name]) for name in expected), rollout
    for weights in steps:
        sharded, single = weights["fsdp"], weights["single"]
        assert sharded.keys() == single.keys()
        for name in single:  # same tolerance as DDP: the reduction sums in another order
            torch.testing.assert_close(sharded[name], single[name], rtol=1e-4, atol=1e-4)
    checkpoint = tmp_path / "fsdp" / "run" / "checkpoints" / "step-000002"
    loaded = AutoModelForCausalLM.from_pretrained(checkpoint / "model").state_dict()
    for name, value in loaded.items():
        torch.testing.assert_close(value, single[name], rtol=1e-4, atol=1e-4)
    assert sorted(p.name for p in (checkpoint / "optimizer").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]


def _train_command(overrides: dict) -> list[str]:
    return [*TORCHRUN, "-m", "nrt", "train", "--config", "nrt-ws", *(f"{k}={v}" for k, v in overrides.items())]


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_killed_sharded_run_resumes_to_the_uninterrupted_result(tiny_model_dir, qa_file, tmp_path):
    def overrides(name: str) -> dict:
        return tiny_overrides(tiny_model_dir, qa_file, tmp_path / name, steps=3, save_every=1, prompts_per_step=4,
                              sharding="fsdp")

    _run(_train_command(overrides("ref")))
    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_command(overrides("killed")), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(_metrics(run)) < 2:  # step 2 logged: its checkpoint is being written, or step 3 runs
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "timed out waiting to kill"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both training processes
    finally:
        proc.wait()
    assert not (run / "checkpoints" / "step-000003").exists()
    _run([*_train_command(overrides("killed")), "--resume"])
    ref, got = _metrics(tmp_path / "ref"), _metrics(run)
    assert [m["step"] for m in got][-1] == 3
    for a, b in zip(ref, got[-3:], strict=True):
        for key in ("loss", "grad_norm", "reward_raw_mean", "trace_len_mean"):
            assert a[key] == b[key], (a["step"], key)  # bitwise on CPU
    final = "checkpoints/step-000003/model/model.safetensors"
    wa, wb = load_file(tmp_path / "ref" / final), load_file(run / final)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
