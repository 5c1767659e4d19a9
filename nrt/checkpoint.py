"""Checkpoints that survive a kill: written to ``<name>.tmp`` and renamed into place when complete.

A checkpoint folder ``checkpoints/step-000012/`` holds ``model/`` (safetensors weights, tokenizer with the
delimiter and chat template; plain ``from_pretrained`` loads it; merged weights for LoRA runs), ``adapter/``
for LoRA runs, and ``trainer_state.pt`` (optimizer, scheduler, RNG states, step, data position), read back
with ``torch.load(weights_only=True)``. LoRA adapters are merged into a copy of the weights on the CPU,
never into a second copy on the GPU. A sharded run (``nrt.sharding``) keeps its optimizer state in
``optimizer/`` instead, one file per process.
"""

from __future__ import annotations

import copy
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nrt.runlog import METRICS_FILE, SAMPLES_FILE

STATE_FILE = "trainer_state.pt"


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def rng_state() -> dict[str, Any]:
    """RNG states as plain containers, so ``weights_only`` loading accepts them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, keys.tolist(), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_tmp(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` is written before ``finish_checkpoint`` renames it into place."""
    return checkpoint_root(run_dir) / f"step-{step:06d}.tmp"


def cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are fresh CPU tensors, copied one at a time.

    ``copy.deepcopy`` would first copy every tensor on the model's own device: merging LoRA adapters into a
    copy of the weights there needs a second copy of the model in GPU memory, at the end of a run that may
    have used all of it. Deep copy looks every object up in its ``memo`` before copying it, so handing it the
    CPU copies of the tensors makes it build the rest of the model around them (tied weights stay tied).
    """
    memo: dict[int, Any] = {}
    for tensor in (*model.parameters(), *model.buffers()):
        moved = tensor.detach().to("cpu", copy=True)  # a copy even from the CPU: merging writes into it
        memo[id(tensor)] = torch.nn.Parameter(moved, tensor.requires_grad) \
            if isinstance(tensor, torch.nn.Parameter) else moved
    return copy.deepcopy(model, memo)


def write_checkpoint(folder: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     trainer_state: dict[str, Any], *, lora: bool,
                     state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write model, tokenizer and trainer state into ``folder`` (anew). ``state_dict``: the full weights when
    ``model`` holds only a shard of them (``nrt.sharding.full_state_dict``)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if lora:
        model.save_pretrained(folder / "adapter")
        cpu_copy(model).merge_and_unload().save_pretrained(folder / "model")  # merged on the CPU
    else:
        model.save_pretrained(folder / "model", state_dict=state_dict)
    tokenizer.save_pretrained(folder / "model")
    torch.save({**trainer_state, "rng": rng_state()}, folder / STATE_FILE)


def finish_checkpoint(folder: Path, keep: int) -> Path:
    """Rename a completely written ``.tmp`` folder into place and prune the oldest beyond ``keep``."""
    final = folder.with_name(folder.name.removesuffix(".tmp"))
    if final.exists():
        shutil.rmtree(final)
    folder.rename(final)
    prune_checkpoints(final.parent.parent, keep)
    return final


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete the complete checkpoints of ``run_dir`` older than the newest ``keep`` (none when ``keep`` <= 0)."""
    for old in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (``.tmp`` leftovers of a killed write are ignored)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and not p.name.endswith(".tmp")
            and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.removeprefix("step-")))


def earlier_run(run_dir: Path) -> list[Path]:
    """What an earlier run left in ``run_dir`` (checkpoints, logs): a new run there would mix with it (its
    logs cut to the new run's steps, its checkpoints next to the new ones, where ``--resume`` would find them)."""
    paths = (checkpoint_root(run_dir), run_dir / METRICS_FILE, run_dir / SAMPLES_FILE, run_dir / "tensorboard")
    return [path for path in paths if path.exists()]


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / STATE_FILE, weights_only=True)
