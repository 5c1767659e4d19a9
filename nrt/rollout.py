"""Sampling K reasoning traces per prompt with the KV cache.

A trace stops at the delimiter or at any of the model's end-of-turn tokens (``end_ids``: Llama-3 and Qwen
end turns with several), or when it reaches the budget. Only the ids are kept: the trace is the sampled
tokens before the stop token, ``emitted`` says whether the stop token was the delimiter (otherwise the
delimiter is appended and the format term teaches it) and ``ended_with`` which end-of-turn token it was,
if one was drawn (the trace term reads it: stopping early is an action of the policy). Samplers draw from
softmax(logits / temperature) over the tokenizer's ids (the rows of a padded head are masked),
nucleus-truncated when top_p < 1, and nothing else: no top-k, no repetition penalty, whatever the model's
``generation_config.json`` says, so that the trace log-probs of the policy gradient are those of the
sampling policy.

Samplers with one signature (``SAMPLERS``, config ``sampler``): ``cache``, nrt's KV-cache loop; ``generate``,
transformers' ``model.generate`` with its dynamic cache (the plain way, the benchmark's baseline and a check
of the loop); ``static``, ``model.generate`` with a static cache, whose fixed shapes let transformers compile
the decode step on a GPU. ``auto`` picks per device (``resolve_sampler``). On a GPU, sampling reads a bf16
copy of the policy refreshed in place after each update (``SamplingCopy``); a sharded model samples from a full,
unsharded copy on every process.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from nrt.sequences import cache_arg
from nrt.sharding import as_tensor


@dataclass(frozen=True)
class Trace:
    """Sampled trace ids (without the stop token); the delimiter closed it, or ``ended_with`` (an end id) did."""

    ids: list[int]
    emitted: bool
    ended_with: int | None = None


def left_pad(prompts: list[list[int]], pad_id: int, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask, so that generation continues every prompt at the same column; the
    width rounded up to a ``multiple`` (a few distinct shapes across steps instead of one per longest prompt)."""
    width = -(-max(len(p) for p in prompts) // multiple) * multiple
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Sample in eval mode (no dropout) and give the model back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def split_trace(new_tokens: list[int], delimiter_id: int, end_ids: Sequence[int]) -> Trace:
    """Cut generated ids at the first delimiter or end token; the stop token itself is not in ``ids``."""
    for i, token in enumerate(new_tokens):
        if token == delimiter_id:
            return Trace(new_tokens[:i], True)
        if token in end_ids:
            return Trace(new_tokens[:i], False, token)
    return Trace(list(new_tokens), False)


def _next_tokens(logits: torch.Tensor, temperature: float, top_p: float, do_sample: bool) -> torch.Tensor:
    """Sample (temperature, then nucleus) or take the argmax of each row of ``logits``."""
    if not do_sample:
        return logits.argmax(-1)
    probs = (logits.float() / temperature).softmax(-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # tokens after the nucleus is full
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(-1)


@torch.no_grad()
def sample_traces(model: torch.nn.Module, prompts: list[list[int]], *, num_traces: int, max_tokens: int,
                  temperature: float, top_p: float, delimiter_id: int, end_ids: Sequence[int], pad_id: int,
                  do_sample: bool = True, vocab_size: int | None = None) -> list[Trace]:
    """``num_traces`` traces for each prompt, grouped: result[i * K + k] is trace k of prompt i; ids from the
    first ``vocab_size`` only (``Policy.vocab_size``; None: every logit).

    A plain KV-cache loop instead of ``model.generate``: each prompt is prefilled once and its cache copied
    for its K traces (``generate`` prefills every copy), and finished traces leave the batch, so no step is
    spent on rows that only pad.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    with eval_mode(model):
        cache = DynamicCache()
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    **cache_arg(cache), use_cache=True, logits_to_keep=1)
        k = num_traces
        cache.batch_repeat_interleave(k)
        logits = out.logits[:, -1, :vocab_size].repeat_interleave(k, dim=0)
        mask = mask.repeat_interleave(k, dim=0)
        position = mask.sum(-1, keepdim=True)  # next position of each row
        active = torch.arange(len(prompts) * k, device=device)  # rows of the full batch still sampling
        generated: list[list[int]] = [[] for _ in range(len(prompts) * k)]
        stops = torch.tensor([delimiter_id, *end_ids], device=device)
        for step in range(max_tokens):
            token = _next_tokens(logits, temperature, top_p, do_sample)
            for row, value in zip(active.tolist(), token.tolist(), strict=True):
                generated[row].append(value)
            keep = ~torch.isin(token, stops)
            if step == max_tokens - 1 or not keep.any():
                break
            if not keep.all():
                index = keep.nonzero().squeeze(-1)
                cache.batch_select_indices(index)
                active, token, mask, position = active[index], token[index], mask[index], position[index]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                        **cache_arg(cache), use_cache=True)
            logits = out.logits[:, -1, :vocab_size]
            position = position + 1
    return [split_trace(row, delimiter_id, end_ids) for row in generated]


@torch.no_grad()
def generate_traces(model: torch.nn.Module, prompts: list[list[int]], *, num_traces: int, max_tokens: int,
                    temperature: float, top_p: float, delimiter_id: int, end_ids: Sequence[int], pad_id: int,
                    do_sample: bool = True, vocab_size: int | None = None,
                    cache_implementation: str | None = None) -> list[Trace]:
    """``sample_traces`` through ``model.generate``: every one of the K copies of a prompt is prefilled, and
    finished rows stay in the batch (padding) until the last row stops. Ids from ``vocab_size`` on are
    suppressed (their logits set to -inf)."""
    from transformers import GenerationConfig

    rows = getattr(model.config.get_text_config(), "vocab_size", None) or 0
    padded = list(range(vocab_size, rows)) if vocab_size is not None and rows > vocab_size else None
    device = next(model.parameters()).device
    # A static cache is compiled per shape: prompt widths in multiples of 64 keep the shapes few across steps.
    bucket = 64 if cache_implementation == "static" else 1
    ids, mask = (t.repeat_interleave(num_traces, dim=0).to(device) for t in left_pad(prompts, pad_id, bucket))
    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p,
                              top_k=0, eos_token_id=[delimiter_id, *end_ids], pad_token_id=pad_id,
                              suppress_tokens=padded, cache_implementation=cache_implementation)
    # generate() fills every field our config leaves unset from model.generation_config (a checkpoint's
    # repetition_penalty, top_k, min_length...): a neutral one in its place while sampling keeps to the policy.
    base = getattr(model, "get_base_model", lambda: model)()  # the transformers model inside a peft wrapper
    saved, base.generation_config = base.generation_config, GenerationConfig()
    try:
        with eval_mode(model):
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    finally:
        base.generation_config = saved
    return [split_trace(row, delimiter_id, end_ids) for row in out[:, ids.shape[1]:].tolist()]


def static_traces(model: torch.nn.Module, prompts: list[list[int]], **kwargs: object) -> list[Trace]:
    """``generate_traces`` with transformers' static KV cache: fixed shapes, so on CUDA ``generate`` compiles the
    decode step (CUDA graphs, no per-token kernel launches); on a CPU it runs uncompiled."""
    return generate_traces(model, prompts, cache_implementation="static", **kwargs)  # type: ignore[arg-type]


Sampler = Callable[..., list[Trace]]
SAMPLERS: dict[str, Sampler] = {"cache": sample_traces, "generate": generate_traces, "static": static_traces}


def resolve_sampler(name: str, device: torch.device, low_precision: bool = True) -> str:
    """``auto``: the static-cache compiled ``generate`` on CUDA when sampling from low-precision weights (the bf16
    copy), ``generate`` with a dynamic cache on CUDA otherwise, nrt's KV-cache loop elsewhere.

    On an AMD EPYC CPU (2 threads) the loop is the fastest measured (results/benchmarks/cpu); on one H100,
    transformers' static-cache compiled ``generate`` reached 15,100 tokens/s against 2,690 for its dynamic
    cache at 64 rows of the 135M shape, where nrt's loop ran at about 1,100 (results/benchmarks/gpu). From fp32
    weights under autocast (a policy sampled without its bf16 copy) the static cache fails: it takes its values' dtype
    from the keys, which rotary embedding leaves in fp32 while the values come out of autocast in bf16.
    """
    if name != "auto":
        return name
    if device.type != "cuda":
        return "cache"
    return "static" if low_precision else "generate"


class SamplingCopy:
    """The policy for sampling: a plain, unsharded module in ``dtype`` on ``device``, refreshed in place from the
    trained weights at each rollout.

    Sampling from fp32 weights under autocast casts every weight again at every decoded token; a bf16 copy is
    cast once per step. A sharded model (``sharding: fsdp``) samples from a full copy on every process: each
    parameter is all-gathered once per rollout, in ``dtype`` and one at a time, instead of every layer again for
    every decoded token, and the copy samples with no collective. The refresh copies into the same storage, so a
    decode step captured as a CUDA graph stays valid. Costs one copy of the weights in ``dtype`` (2 bytes per
    parameter in bf16): for the whole run, or with ``keep=False`` only during each rollout (allocated for it and
    freed after it; a captured graph may then be captured again).
    """

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, device: torch.device | None = None,
                 keep: bool = True):
        device = device or next(model.parameters()).device
        # The copy's parameters are made in dtype on device: no second full-precision copy on the way.
        fresh = {id(p): torch.nn.Parameter(torch.empty(p.shape, dtype=dtype, device=device), requires_grad=False)
                 for p in model.parameters()}
        self.model = copy.deepcopy(model, memo=fresh).to(device=device, dtype=dtype).eval()
        self.dtype, self.keep = dtype, keep
        self._allocate(keep)

    def _allocate(self, allocated: bool) -> None:
        """Give the parameters their storage, or free it (the tensors, their shapes and the module stay)."""
        for p in self.model.parameters():
            p.untyped_storage().resize_(p.numel() * p.element_size() if allocated else 0)

    @torch.no_grad()
    def refresh(self, model: torch.nn.Module) -> torch.nn.Module:
        """Copy ``model``'s current weights in (same parameter order; sharded ones gathered) and return the copy."""
        for target, source in zip(self.model.parameters(), model.parameters(), strict=True):
            target.copy_(as_tensor(source.detach().to(target.dtype)))
        return self.model

    @contextmanager
    def holding(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """The copy, holding ``model``'s current weights, for the duration of a rollout (freed after it unless
        ``keep``). Every process of a sharded model must enter it: the refresh gathers the parameters."""
        if not self.keep:
            self._allocate(True)
        try:
            yield self.refresh(model)
        finally:
            if not self.keep:
                self._allocate(False)
