"""A reward function you bring (a verifier): it scores the sampled traces in place of nrt's likelihood reward.

Give it as the config key ``reward_fn`` (in YAML, or ``nrt train reward_fn=...``), either
``package.module:function`` (importable from the current folder or ``sys.path``) or
``path/to/file.py:function``; or pass the function itself to ``nrt.train(cfg, reward_fn=...)``. One or the
other: both at once is refused. The signature::

    def my_reward(samples: list[nrt.sequences.Sample], tokenizer: PreTrainedTokenizerBase) -> torch.Tensor

``samples`` are the sequences of one micro-batch: ``num_traces`` (K) consecutive samples per prompt, the
group whose rewards are normalised together. Each holds token ids, nothing decoded:

- ``prompt_ids``: the prompt as the model reads it (chat template, system prompt, question);
- ``trace_ids``: the sampled trace, without the delimiter;
- ``answer_ids``: the reference answer of the example (cut to ``max_answer_tokens``);
- ``emitted``: True if the model closed the trace with the delimiter itself, False if the delimiter was
  appended (the trace ran out of ``max_trace_tokens`` or ended its turn);
- ``ended_with``: the end-of-turn token id that ended the trace, if one did, else None.

``tokenizer`` is the policy's: ``tokenizer.decode(s.trace_ids, skip_special_tokens=True)`` is the trace's
text, ``tokenizer.decode(s.answer_ids, skip_special_tokens=True)`` the reference answer's.

It returns one reward per sample: a float tensor of shape ``[len(samples)]`` with finite values, e.g.
``torch.tensor([1.0, 0.0, ...])``. Higher is better; only the differences within a prompt's group count
(advantages are normalised within it). The reward replaces f(c) as the trace term's reward; the answer
term still trains the reference answer's likelihood. It is called on every process with that process's
samples, once per micro-batch of a step. A wrong type, shape or dtype, or a
value that is not finite, stops the run with an error naming ``reward_fn``. ``empty_trace_baseline`` (a
likelihood baseline) and ``trace: false`` (no trace to score) are refused with it. A worked example:
``examples/rewards.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from nrt.config import ConfigError
from nrt.sequences import Sample

RewardFn = Callable[[list[Sample], Any], Tensor]


def load_reward_fn(spec: str) -> RewardFn:
    """The function ``spec`` (``package.module:function`` or ``path/to/file.py:function``) names."""
    where, colon, name = spec.rpartition(":")  # rpartition: a Windows path keeps its drive's colon
    if not colon or not where or not name:
        raise ConfigError(f"reward_fn: expected package.module:function or path/to/file.py:function, got {spec!r}")
    module = _import_file(where, spec) if where.endswith(".py") else _import_module(where, spec)
    fn = getattr(module, name, None)
    if fn is None:
        raise ConfigError(f"reward_fn: {where} has no attribute {name!r} (reward_fn={spec!r})")
    if not callable(fn):
        raise ConfigError(f"reward_fn: {spec!r} names an object of type {type(fn).__name__}, not a function")
    return check_signature(fn, spec)


def check_signature(fn: RewardFn, spec: str = "") -> RewardFn:
    """``fn``, if it can be called as ``fn(samples, tokenizer)``: a function of another signature is refused
    before the run starts, not with a TypeError from inside the first step."""
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise ConfigError(f"reward_fn {spec or _name(fn)}: its signature is {inspect.signature(fn)}; a reward "
                          "function is called as fn(samples, tokenizer) (see nrt.reward_fn)") from None
    except ValueError:  # no signature to inspect (some builtins): the call itself will tell
        pass
    return fn


def _name(fn: RewardFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _import_module(name: str, spec: str) -> ModuleType:
    # `python -m nrt` finds modules in the current folder; the `nrt` command should too
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"reward_fn: cannot import module {name!r} (reward_fn={spec!r}): {exc}. Give a module "
                          "importable from the current folder or sys.path, or a file as path/to/file.py:function"
                          ) from None
    finally:
        sys.path.remove(os.getcwd())


def _import_file(path: str, spec: str) -> ModuleType:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"reward_fn: no file {path!r} (reward_fn={spec!r}, relative to {os.getcwd()})")
    module_name = f"nrt_reward_fn_{file.stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, file)
    assert loader_spec is not None and loader_spec.loader is not None  # a .py file always has one
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickle look a definition's module up there
    loader_spec.loader.exec_module(module)
    return module


def call_reward_fn(fn: RewardFn, samples: list[Sample], tokenizer: Any, spec: str = "") -> Tensor:
    """``fn``'s rewards for ``samples``, checked: a finite float tensor of shape [len(samples)].

    ``spec``, the config key's value, names the function in errors (else its qualified name does).
    """
    rewards = fn(samples, tokenizer)
    name = spec or _name(fn)
    expected = f"a float tensor of shape [{len(samples)}] (one reward per sample)"
    if not isinstance(rewards, Tensor):
        raise ConfigError(f"reward_fn {name}: returned a {type(rewards).__name__}; expected {expected}, "
                          "e.g. torch.tensor(rewards, dtype=torch.float32)")
    if tuple(rewards.shape) != (len(samples),):
        raise ConfigError(f"reward_fn {name}: returned shape {list(rewards.shape)}; expected {expected}")
    if not rewards.is_floating_point():
        raise ConfigError(f"reward_fn {name}: returned dtype {rewards.dtype}; expected {expected}")
    finite = torch.isfinite(rewards)
    if not finite.all():
        bad = (~finite).nonzero().flatten().tolist()
        raise ConfigError(f"reward_fn {name}: returned non-finite rewards {rewards[bad].tolist()} for samples "
                          f"{bad}; every reward must be a finite number")
    return rewards.detach()
