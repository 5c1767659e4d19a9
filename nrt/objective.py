"""The NRT loss and its parts, as pure functions of tensors (NRT.md, "Advantages" and "Loss").

Per sample k of a group of K traces for one prompt::

    L_k = trace_weight  * sum_{t in z_k + rs} -A_k * sg(clip(rho_t, lo, hi)) * log pi(t)
        + format_weight * 1[rs not emitted] * (-log pi(rs))
        + answer_weight * sum_i -w_i * log pi(y*_i | x, z_k, rs, y*_<i)      (and the end-of-turn token, w=1)

summed over samples and divided by one constant (``normalizer``), not by each sequence's length. Trace
tokens are dropped when A > 0 and rho > hi, or A < 0 and rho < lo (the reference recipe's ratio mask).
At the delimiter's index the trace term reads the token that ended the trace (``nrt.sequences.assemble``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def group_advantages(rewards: Tensor, group_size: int, std_min: float = 0.0,
                     rel_eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Group-normalised advantages ``(R - mean) / std`` (unbiased std) and each sample's group std.

    A group whose rewards are all equal (std at most ``rel_eps`` times its largest |R|, which absorbs
    rounding) carries no signal and gets advantage 0; so does a group whose std is below ``std_min``
    (RLPR's filter of prompts whose traces barely differ).
    """
    groups = rewards.float().view(-1, group_size)
    if group_size == 1:  # no group to compare with (SFT): no signal
        return torch.zeros_like(rewards, dtype=torch.float32), torch.zeros_like(rewards, dtype=torch.float32)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True, unbiased=True)
    flat = (std <= rel_eps * groups.abs().amax(dim=1, keepdim=True)) | (std < std_min)
    adv = torch.where(flat, torch.zeros_like(groups), (groups - mean) / std.clamp(min=torch.finfo(std.dtype).tiny))
    return adv.view(-1), std.expand_as(groups).reshape(-1)


def empty_trace_debias(rewards: Tensor, empty_rewards: Tensor) -> Tensor:
    """``max(0, R - R(empty))``: only traces that beat answering without reasoning earn reward."""
    return (rewards - empty_rewards).clamp(min=0.0)


@dataclass(frozen=True)
class LossWeights:
    """Weights and clip range of the loss terms (see module docstring)."""

    trace: float = 1.0
    answer: float = 1.0
    format: float = 0.3
    clip_low: float = 0.8
    clip_high: float = 1.28


def trace_term(logp: Tensor, old_logp: Tensor, mask: Tensor, advantages: Tensor,
               clip_low: float, clip_high: float) -> tuple[Tensor, Tensor]:
    """Summed clipped policy-gradient term over trace tokens and the number of tokens clipped away.

    ``logp``/``old_logp``/``mask`` are [N, T]; ``advantages`` [N]. The ratio enters as a stopped-gradient
    weight, so the gradient is ``-A * clip(rho) * grad log pi`` on the tokens kept.
    """
    adv = advantages[:, None]
    ratio = (logp.detach() - old_logp).exp()
    dropped = ((adv > 0) & (ratio > clip_high)) | ((adv < 0) & (ratio < clip_low))
    keep = mask.bool() & ~dropped
    per_token = -adv * ratio.clamp(clip_low, clip_high) * logp
    return (per_token * keep).sum(), (mask.bool() & dropped).sum()


def nrt_loss(
    *,
    trace_logp: Tensor,
    old_trace_logp: Tensor,
    trace_mask: Tensor,
    advantages: Tensor,
    delim_logp: Tensor,
    delim_forced: Tensor,
    answer_logp: Tensor,
    answer_weights: Tensor,
    end_logp: Tensor,
    weights: LossWeights,
    normalizer: float,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss of a (micro-)batch and its parts: the terms (already divided by ``normalizer``) and the
    counts ``clipped_tokens`` / ``trace_tokens``, which add up over micro-batches into the step's fraction.

    ``answer_weights`` [N, A] is 1 on answer tokens for the fixed token reward or c*df/dc for the derived
    one, 0 on padding; ``end_logp`` [N] is the end-of-turn token after the answer, trained with weight 1.
    """
    pg, clipped = trace_term(trace_logp, old_trace_logp, trace_mask, advantages, weights.clip_low, weights.clip_high)
    fmt = -(delim_logp * delim_forced.to(delim_logp.dtype)).sum()
    ans = -(answer_logp * answer_weights).sum() - end_logp.sum()
    loss = (weights.trace * pg + weights.format * fmt + weights.answer * ans) / normalizer
    parts = {
        "loss_trace": weights.trace * float(pg.detach()) / normalizer,
        "loss_format": weights.format * float(fmt.detach()) / normalizer,
        "loss_answer": weights.answer * float(ans.detach()) / normalizer,
        "clipped_tokens": float(clipped),
        "trace_tokens": float(trace_mask.sum()),
    }
    return loss, parts
