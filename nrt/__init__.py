"""Native Reasoning Training: teach a causal LM to think before it answers, from question-answer pairs.

The names below are imported on first use: ``import nrt`` (and ``nrt --help``) does not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_HOMES = {"ConfigError": "nrt.config", "TrainConfig": "nrt.config", "load_config": "nrt.config",
          "preset_names": "nrt.config", "DataError": "nrt.data", "Example": "nrt.data", "load_examples": "nrt.data",
          "load_policy": "nrt.modeling", "AGGREGATIONS": "nrt.rewards", "aggregate": "nrt.rewards",
          "TrainResult": "nrt.trainer", "train": "nrt.trainer"}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'nrt' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
