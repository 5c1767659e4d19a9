"""Reward aggregations f: per-token answer likelihoods -> one trace reward (NRT.md, "Reward aggregations").

With c_i = pi(y*_i | x, z, y*_<i) (the answer given the trace) and b_i = pi(y*_i | x, empty, y*_<i)
(the answer without it), each aggregation returns the trace reward R = f(c) and the token reward
c_i * df/dc_i that weighs the answer term when ``token_reward: derived``. Everything is computed from
log-probabilities in log space (logsumexp), so answers of thousands of tokens give finite values; only
``prob`` underflows to 0 for long answers, which is exactly its known weakness.

Adding an aggregation is one entry in ``AGGREGATIONS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

NEG_INF = -math.inf

Aggregation = Callable[[Tensor, Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]


def _length(mask: Tensor) -> Tensor:
    return mask.sum(dim=-1).clamp(min=1).to(torch.float32)


def _masked_logsumexp(x: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, x, torch.full_like(x, NEG_INF)).logsumexp(dim=-1)


def _log_neg_log(base_logp: Tensor) -> Tensor:
    """log(-log b), -inf where b == 1: the weight of a token is how hard it is without reasoning."""
    return torch.log(-base_logp.clamp(max=0.0))


def _log_prob(logp: Tensor, mask: Tensor, base_logp: Tensor | None) -> tuple[Tensor, Tensor]:
    reward = (logp * mask).sum(-1)
    return reward, mask.to(logp.dtype)


def _prob(logp: Tensor, mask: Tensor, base_logp: Tensor | None) -> tuple[Tensor, Tensor]:
    reward = (logp * mask).sum(-1).exp()
    return reward, mask * reward[:, None]


def _arithmetic_mean(logp: Tensor, mask: Tensor, base_logp: Tensor | None) -> tuple[Tensor, Tensor]:
    length = _length(mask)
    reward = (_masked_logsumexp(logp, mask) - length.log()).exp()
    return reward, mask * logp.exp() / length[:, None]


def _geometric_mean(logp: Tensor, mask: Tensor, base_logp: Tensor | None) -> tuple[Tensor, Tensor]:
    length = _length(mask)
    reward = ((logp * mask).sum(-1) / length).exp()
    return reward, mask * (reward / length)[:, None]


def _weighted_sum_inverse_prob(logp: Tensor, mask: Tensor, base_logp: Tensor | None) -> tuple[Tensor, Tensor]:
    assert base_logp is not None
    length = _length(mask)
    log_terms = logp - base_logp
    reward = (_masked_logsumexp(log_terms, mask) - length.log()).exp()
    return reward, mask * log_terms.exp() / length[:, None]


def _weighted_sum_log_prob(logp: Tensor, mask: Tensor, base_logp: Tensor | None) -> tuple[Tensor, Tensor]:
    assert base_logp is not None
    length = _length(mask)
    log_terms = logp + _log_neg_log(base_logp)
    reward = (_masked_logsumexp(log_terms, mask) - length.log()).exp()
    return reward, mask * log_terms.exp() / length[:, None]


AGGREGATIONS: dict[str, Aggregation] = {
    "log_prob": _log_prob,
    "prob": _prob,
    "arithmetic_mean": _arithmetic_mean,
    "geometric_mean": _geometric_mean,
    "weighted_sum_inverse_prob": _weighted_sum_inverse_prob,
    "weighted_sum_log_prob": _weighted_sum_log_prob,
}
NEEDS_BASE = frozenset({"weighted_sum_inverse_prob", "weighted_sum_log_prob"})


def aggregate(mode: str, logp: Tensor, mask: Tensor, base_logp: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Trace reward [B] and token reward [B, T] of answer log-probs ``logp`` [B, T].

    ``mask`` [B, T] marks valid answer tokens; ``base_logp`` [B, T] are the same tokens' log-probs with an
    empty trace (required by the two weighted modes). Masked positions get token reward 0.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {mode!r}; choose from {sorted(AGGREGATIONS)}")
    if mode in NEEDS_BASE and base_logp is None:
        raise ValueError(f"aggregation {mode!r} needs base_logp (answer log-probs without the trace)")
    mask = mask.bool()
    logp = logp.float().masked_fill(~mask, 0.0)
    if base_logp is not None:
        base_logp = base_logp.float().masked_fill(~mask, 0.0)
    return AGGREGATIONS[mode](logp, mask, base_logp)
