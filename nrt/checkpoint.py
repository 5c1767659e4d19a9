"""Checkpoints that survive a kill: written to ``<name>.tmp`` and renamed into place when complete.

A checkpoint folder ``checkpoints/step-000012/`` holds ``model/`` (safetensors weights, tokenizer with the
delimiter and chat template; plain ``from_pretrained`` loads it; merged weights for LoRA runs), ``adapter/``
for LoRA runs, and ``trainer_state.pt`` (optimizer, scheduler, RNG states, step, data position), read back
with ``torch.load(weights_only=True)``.
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


def save_checkpoint(run_dir: Path, step: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    trainer_state: dict[str, Any], *, lora: bool, keep: int) -> Path:
    """Write a complete checkpoint for ``step`` atomically and prune old ones; returns its folder."""
    final = checkpoint_root(run_dir) / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if lora:
        model.save_pretrained(tmp / "adapter")
        copy.deepcopy(model).merge_and_unload().save_pretrained(tmp / "model")
    else:
        model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    torch.save({**trainer_state, "rng": rng_state()}, tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (``.tmp`` leftovers of a killed write are ignored)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and not p.name.endswith(".tmp")
            and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.removeprefix("step-")))


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / STATE_FILE, weights_only=True)
