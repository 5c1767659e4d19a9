"""Sampling K reasoning traces per prompt with the KV cache (``model.generate``).

A trace stops at the delimiter or at the end-of-turn token, or when it reaches the budget. Only the
ids are kept: the trace is the sampled tokens before the stop token, and ``emitted`` says whether the
stop token was the delimiter (otherwise the delimiter is appended and the format term teaches it).
Sampling is from the full distribution (no top-k) so that the trace log-probs of the policy gradient
are those of the sampling policy, up to temperature and top-p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig


@dataclass(frozen=True)
class Trace:
    ids: list[int]
    emitted: bool


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask, so that generation continues every prompt at the same column."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def split_trace(new_tokens: list[int], delimiter_id: int, end_id: int) -> Trace:
    """Cut generated ids at the first delimiter or end token; the stop token itself is not in ``ids``."""
    for i, token in enumerate(new_tokens):
        if token == delimiter_id:
            return Trace(new_tokens[:i], True)
        if token == end_id:
            return Trace(new_tokens[:i], False)
    return Trace(list(new_tokens), False)


@torch.no_grad()
def sample_traces(model: torch.nn.Module, prompts: list[list[int]], *, num_traces: int, max_tokens: int,
                  temperature: float, top_p: float, delimiter_id: int, end_id: int, pad_id: int,
                  do_sample: bool = True) -> list[Trace]:
    """``num_traces`` traces for each prompt, grouped: result[i * K + k] is trace k of prompt i."""
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=0 if do_sample else None,
        num_return_sequences=num_traces,
        eos_token_id=[delimiter_id, end_id],
        pad_token_id=pad_id,
    )
    was_training = model.training
    model.eval()
    try:
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
    finally:
        model.train(was_training)
    new = out[:, ids.shape[1]:].tolist()
    return [split_trace(row, delimiter_id, end_id) for row in new]
