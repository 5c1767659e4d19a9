"""Two CPU processes (torchrun, gloo): identical weights on both after each step, the same losses and weights
as one process on the same global batch, and a sampling stream of its own for each process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

HELPER = Path(__file__).parent / "helpers" / "dist_train.py"


def _run(cmd: list[str], timeout: float = 300) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_processes_match_one(tiny_model_dir, qa_file, tmp_path):
    def overrides(name: str) -> str:
        return json.dumps(tiny_overrides(tiny_model_dir, qa_file, tmp_path / name / "run", steps=2,
                                         prompts_per_step=4, prompts_per_micro_batch=1))

    (tmp_path / "multi").mkdir()
    (tmp_path / "single").mkdir()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(HELPER),
          str(tmp_path / "multi"), overrides("multi")])
    _run([sys.executable, str(HELPER), str(tmp_path / "single"), overrides("single")])

    rank0 = _records(tmp_path / "multi" / "hashes-rank0.jsonl")
    rank1 = _records(tmp_path / "multi" / "hashes-rank1.jsonl")
    single = _records(tmp_path / "single" / "hashes-rank0.jsonl")
    assert len(rank0) == len(rank1) == len(single) == 2
    assert [r["hash"] for r in rank0] == [r["hash"] for r in rank1]  # both processes hold identical weights
    for multi_step, single_step in zip(rank0, single, strict=True):
        assert abs(multi_step["loss"] - single_step["loss"]) < 1e-5 * max(1.0, abs(single_step["loss"]))

    from safetensors.torch import load_file

    final = "checkpoints/step-000002/model/model.safetensors"
    a, b = load_file(tmp_path / "multi" / "run" / final), load_file(tmp_path / "single" / "run" / final)
    # gradients agree to float rounding (the all-reduce sums in another order); Adam divides by sqrt(v), so on
    # elements whose gradient is ~0 that rounding can move a weight by a small fraction of one lr (1e-3) step
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4)
    # each process samples its own stream (traces of different processes are not copies), reproducibly: the
    # stream of process r in step s is seeded by (seed, s, r) alone, so a resumed run draws what an
    # uninterrupted one would, and rank 0 draws what a single process draws
    from nrt.trainer import sampling_seed

    for rank in (0, 1):
        expected = [torch.Generator().manual_seed(sampling_seed(0, step, rank)) for step in (0, 1)]
        assert _records(tmp_path / "multi" / f"draws-rank{rank}.jsonl") == [torch.rand(4, generator=g).tolist()
                                                                            for g in expected]
    assert _records(tmp_path / "single" / "draws-rank0.jsonl") == _records(tmp_path / "multi" / "draws-rank0.jsonl")
    seeds = {sampling_seed(0, step, rank) for step in range(100) for rank in range(8)}
    assert len(seeds) == 800
    # only the main process writes logs: one line per step
    assert len((tmp_path / "multi" / "run" / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("sharding", ["none", "fsdp"])
def test_processes_with_unequal_lengths_pack_as_many_micro_batches(sharding, tiny_model_dir, qa_file, tmp_path):
    """With a token budget per micro-batch, a process whose traces are short packs fewer micro-batches than one
    whose traces are long; every forward and backward of a sharded model is a collective, so the processes
    must still run as many passes each (they did not: the run hung), and the update is still the one a single
    process makes on the whole batch."""
    # prompts of 38 tokens, K = 2: rank 0's two groups of 1-token traces fit one micro-batch of 200 padded
    # tokens (2 x 2 x 42), rank 1's groups of 32-token traces need one each (2 x 2 x 74 = 296)
    def overrides(name: str) -> str:
        return json.dumps(tiny_overrides(tiny_model_dir, qa_file, tmp_path / name / "run", steps=1, prompts_per_step=4,
                                         num_traces=2, max_trace_tokens=32, tokens_per_micro_batch=200,
                                         sharding=sharding))

    (tmp_path / "multi").mkdir()
    (tmp_path / "single").mkdir()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(HELPER),
          str(tmp_path / "multi"), overrides("multi"), "unequal"], timeout=150)
    _run([sys.executable, str(HELPER), str(tmp_path / "single"), overrides("single"), "unequal"])
    from safetensors.torch import load_file

    final = "checkpoints/step-000001/model/model.safetensors"
    multi, single = load_file(tmp_path / "multi" / "run" / final), load_file(tmp_path / "single" / "run" / final)
    for name, value in single.items():  # (the sharded checkpoint also writes the tied head)
        torch.testing.assert_close(multi[name], value, rtol=1e-4, atol=1e-4)
