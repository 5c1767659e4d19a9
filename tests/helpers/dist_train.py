"""Run by `accelerate launch` in test_distributed.py: train the tiny model and record each rank's weights.

Sampling is replaced by a deterministic function of the prompt and the trace index, so that a run split over
processes and a single-process run see the same traces; it records four draws of its process's random stream.
Flags after the overrides: ``weights`` also writes the full weights before the first step and after each step
(rank 0); ``sampled`` writes the weights the sampler was given at each rollout, and whether that model was
sharded (rank 0); ``unequal`` makes the traces of the first half of each step's prompts 1 token long and of the
second half ``max_tokens`` long, so that two processes hold sequences of very different lengths (what a single
process sees is the same batch).

A launched run sets up its process group with a short timeout: a collective that one process waits on in vain
fails the run in a minute instead of hanging the test suite.
"""

import datetime
import hashlib
import itertools
import json
import os
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
flags = set(sys.argv[3:])
record_weights = "weights" in flags


def world() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def fake_traces(model, prompts, *, num_traces, max_tokens, **kwargs):
    with (out_dir / f"draws-rank{rank()}.jsonl").open("a") as f:  # what this process's sampling stream gives
        f.write(json.dumps(torch.rand(4).tolist()) + "\n")
    if "sampled" in flags and rank() == 0:
        call = len(list(out_dir.glob("sampled-rollout*.pt"))) + 1
        torch.save({"sharded": is_sharded(model), "weights": {n: t.detach().clone() for n, t in
                                                            model.state_dict().items()}},
                   out_dir / f"sampled-rollout{call}.pt")
    def length(index: int, k: int, p: list[int]) -> int:
        if "unequal" in flags:  # by the prompt's place in the step's global batch (rank-major slices)
            return max_tokens if rank() * len(prompts) + index >= world() * len(prompts) // 2 else 1
        return 1 + (k + len(p)) % max_tokens

    return [Trace([100 + (sum(p) * (k + 3)) % 900 for _ in range(length(i, k, p))], k % 2 == 0)
            for i, p in enumerate(prompts) for k in range(num_traces)]


real_step = nrt.trainer.nrt_step
step_numbers = itertools.count(1)


def save_weights(model, step: int) -> None:
    weights = full_state_dict(model) if is_sharded(model) else model.state_dict()  # every rank gathers
    if rank() == 0:
        torch.save(weights, out_dir / f"weights-step{step}.pt")


def recording_step(model, *args, **kwargs):
    step = next(step_numbers)
    if record_weights and step == 1:
        save_weights(model, 0)
    out = real_step(model, *args, **kwargs)
    digest = hashlib.sha256()
    for p in model.parameters():
        local = p.detach().to_local() if hasattr(p, "to_local") else p.detach()  # a sharded run: this rank's shard
        digest.update(local.cpu().numpy().tobytes())
    with (out_dir / f"hashes-rank{rank()}.jsonl").open("a") as f:
        f.write(json.dumps({"hash": digest.hexdigest(), "loss": out.metrics["loss"]}) + "\n")
    if record_weights:
        save_weights(model, step)
    return out

if "WORLD_SIZE" in os.environ:  # launched: accelerate keeps a process group that is already set up
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
nrt.rollout.SAMPLERS["cache"] = fake_traces  # the default sampler
nrt.trainer.nrt_step = recording_step
train(load_config("nrt-ws", overrides))
