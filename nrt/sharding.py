"""Sharded training with torch FSDP2 (``fully_shard``): parameters, gradients and optimizer state split over
the processes, on GPUs (NCCL) or CPU processes (gloo).

Each decoder layer (the model's ``_no_split_modules``) and then the root is sharded; the step's math does not
change (FSDP2 reduce-scatters the mean gradient, as DDP all-reduces it). What sharding needs around the step:

- Sampling: a decode step of the sharded model would all-gather every layer again for every token. The rollout
  samples from a full, unsharded copy on every process instead (``nrt.rollout.SamplingCopy``: bf16 on a GPU, the
  sampler one device would use), into which each parameter is all-gathered once per rollout, in the copy's dtype
  and one parameter at a time (the full fp32 weights are never held at once). Memory cost: the copy, 2 bytes per
  parameter in bf16, for the whole run (``sampling_copy: keep``) or only while sampling (``free``).
- Checkpoints: the full state dict gathered on the main process (``full_state_dict``) is written as plain
  safetensors (``from_pretrained`` loads it); the optimizer state is written sharded, one file per process,
  with ``torch.distributed.checkpoint`` (``save_optimizer`` / ``load_optimizer``), so ``--resume`` continues
  exactly without ever holding the whole optimizer state in one process.
- The shared-prompt pass (two forward calls before one backward) stays off: FSDP2 frees a layer's gathered
  parameters after its forward, and the backward of the first call then fails (torch 2.13: "setStorage: ...
  out of bounds for storage of size 0"). Keeping them gathered through forward and backward makes it work,
  but holds the full parameters for the whole pass, which is what sharding is for avoiding.
- Chunked logits stay off: ``score(chunked=True)`` calls the head outside the model's forward, where FSDP2
  has resharded it ("mixed torch.Tensor and DTensor" on an H100).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def fsdp_modules(model: nn.Module) -> list[nn.Module]:
    """The modules ``fully_shard`` wrapped (none for a model that is not sharded)."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_sharded(model: nn.Module) -> bool:
    return bool(fsdp_modules(model))


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Shard every decoder layer, then the root (embeddings, final norm, head), over all processes.

    A single process (no launcher) gets a process group of one: the same code path, nothing to split.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0,
                                world_size=1)

    layer_names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in layer_names]
    if not layers:
        raise ValueError(f"sharding: {type(model).__name__} names no decoder layer class (_no_split_modules)")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    model.to(device)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def as_tensor(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a DTensor (e.g. the gradient norm of sharded parameters), else the tensor itself."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's full weights on the main process (CPU), an empty dict elsewhere. Every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Write the optimizer state, each process its own shard. Every process must call it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    dcp.save({"optimizer": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=str(folder))


def load_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Read back what ``save_optimizer`` wrote into ``optimizer`` (same world size or another)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    state: dict[str, Any] = {"optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=str(folder))
    set_optimizer_state_dict(model, optimizer, state["optimizer"])
