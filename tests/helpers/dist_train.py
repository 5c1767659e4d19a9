"""Run by `accelerate launch` in test_distributed.py: train the tiny model and record each rank's weights.

Sampling is replaced by a deterministic function of the prompt and the trace index, so that a run split over
processes and a single-process run see the same traces; it records four draws of its process's random stream.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

import nrt.rollout
import nrt.trainer
from nrt import load_config, train
from nrt.rollout import Trace
from nrt.sharding import full_state_dict, is_sharded

out_dir = Path(sys.argv[1])
overrides = json.loads(sys.argv[2])
record_weights = sys.argv[3:] == ["weights"]  # also write the full weights after each step (rank 0)


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def fake_traces(model, prompts, *, num_traces, max_tokens, **kwargs):
    with (out_dir / f"draws-rank{rank()}.jsonl").open("a") as f:  # what this process's sampling stream gives
        f.write(json.dumps(torch.rand(4).tolist()) + "\n")
    return [Trace([100 + (sum(p) * (k + 3)) % 900 for _ in range(1 + (k + len(p)) % max_tokens)], k % 2 == 0)
            for p in prompts for k in range(num_traces)]


real_step = nrt.trainer.nrt_step


def recording_step(model, *args, **kwargs):
    out = real_step(model, *args, **kwargs)
    digest = hashlib.sha256()
    for p in model.parameters():
        local = p.detach().to_local() if hasattr(p, "to_local") else p.detach()  # a sharded run: this rank's shard
        digest.update(local.cpu().numpy().tobytes())
    with (out_dir / f"hashes-rank{rank()}.jsonl").open("a") as f:
        f.write(json.dumps({"hash": digest.hexdigest(), "loss": out.metrics["loss"]}) + "\n")
    if record_weights:
        weights = full_state_dict(model) if is_sharded(model) else model.state_dict()  # every rank gathers
        if rank() == 0:
            step = len((out_dir / "hashes-rank0.jsonl").read_text().splitlines())
            torch.save(weights, out_dir / f"weights-step{step}.pt")
    return out


nrt.rollout.SAMPLERS["cache"] = fake_traces  # the default sampler
nrt.trainer.nrt_step = recording_step
train(load_config("nrt-ws", overrides))
