"""Token-level sequences ``prompt + trace + delimiter + answer + end`` with explicit masks.

Traces stay token ids from sampling; nothing is decoded and re-tokenised. Prompts are left-padded to a
common length P so that every token the loss reads sits at position >= P: the model computes logits
only for those positions (``logits_to_keep``), not for the prompt. "Target index" j below means the
token at sequence position P + j, predicted by the logits at position P + j - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass(frozen=True)
class Sample:
    """One sequence to assemble. ``emitted``: the model wrote the delimiter itself (else it is appended)."""

    prompt_ids: list[int]
    trace_ids: list[int]
    emitted: bool
    answer_ids: list[int]


@dataclass
class SequenceBatch:
    """Padded ids and the masks/indices (all in target space) that the objective reads."""

    input_ids: Tensor  # [N, L]
    attention_mask: Tensor  # [N, L]
    position_ids: Tensor  # [N, L]
    target_ids: Tensor  # [N, S], S = L - P
    trace_mask: Tensor  # [N, S] sampled trace tokens, plus the delimiter when the model emitted it
    delim_index: Tensor  # [N]
    delim_forced: Tensor  # [N] bool: the delimiter was appended, not sampled
    answer_index: Tensor  # [N, A]
    answer_mask: Tensor  # [N, A]
    end_index: Tensor  # [N]
    trace_len: Tensor  # [N]

    @property
    def num_targets(self) -> int:
        return self.target_ids.shape[1]

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def assemble(samples: list[Sample], delimiter_id: int, end_id: int, pad_id: int) -> SequenceBatch:
    """Build the padded batch and its masks from token ids."""
    prompt_len = max(len(s.prompt_ids) for s in samples)
    bodies = [[*s.trace_ids, delimiter_id, *s.answer_ids, end_id] for s in samples]
    body_len = max(len(b) for b in bodies)
    answer_len = max(len(s.answer_ids) for s in samples)
    n = len(samples)
    input_ids = torch.full((n, prompt_len + body_len), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    trace_mask = torch.zeros((n, body_len), dtype=torch.bool)
    answer_index = torch.zeros((n, answer_len), dtype=torch.long)
    answer_mask = torch.zeros((n, answer_len), dtype=torch.bool)
    for row, (sample, body) in enumerate(zip(samples, bodies, strict=True)):
        left = prompt_len - len(sample.prompt_ids)
        input_ids[row, left:prompt_len] = torch.tensor(sample.prompt_ids, dtype=torch.long)
        input_ids[row, prompt_len:prompt_len + len(body)] = torch.tensor(body, dtype=torch.long)
        attention_mask[row, left:prompt_len + len(body)] = 1
        t = len(sample.trace_ids)
        trace_mask[row, :t + int(sample.emitted)] = True
        a = len(sample.answer_ids)
        answer_index[row, :a] = torch.arange(t + 1, t + 1 + a)
        answer_mask[row, :a] = True
    trace_len = torch.tensor([len(s.trace_ids) for s in samples], dtype=torch.long)
    return SequenceBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
        target_ids=input_ids[:, prompt_len:],
        trace_mask=trace_mask,
        delim_index=trace_len.clone(),
        delim_forced=torch.tensor([not s.emitted for s in samples], dtype=torch.bool),
        answer_index=answer_index,
        answer_mask=answer_mask,
        end_index=trace_len + 1 + torch.tensor([len(s.answer_ids) for s in samples], dtype=torch.long),
        trace_len=trace_len,
    )


@dataclass
class Scored:
    """Per-target log-probs of a batch, and what the objective and the metrics read from them."""

    logp: Tensor  # [N, S]
    answer_logp: Tensor  # [N, A] (0 on padding)
    delim_logp: Tensor  # [N]
    end_logp: Tensor  # [N]
    trace_entropy: Tensor  # [N] mean per-token entropy of the trace tokens (detached; 0 for empty traces)


def score(model: torch.nn.Module, batch: SequenceBatch, *, entropy: bool = True) -> Scored:
    """One forward pass; log-probs of every target token (with grad if enabled by the caller).

    Logits are computed only for the S target positions. Log-probs and entropies are then taken one
    sequence at a time (``log p = logit - logsumexp``): the temporaries of a log-softmax, a softmax and a
    contiguous copy exist for one [S, vocab] row, not for the whole [N, S, vocab] batch, which lowers the
    peak memory of the step by about a logits tensor or more at no cost in time.
    """
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                logits_to_keep=batch.num_targets + 1, use_cache=False)
    logits = out.logits[:, :-1]
    rows, ent = [], torch.zeros(logits.shape[0], device=logits.device)
    for i, row in enumerate(logits.unbind(0)):  # unbind: one gradient buffer in backward, not one per row
        row = row.float()
        lse = row.logsumexp(-1)
        rows.append(row.gather(-1, batch.target_ids[i, :, None]).squeeze(-1) - lse)
        if entropy and batch.trace_mask[i].any():
            with torch.no_grad():
                sel = row[batch.trace_mask[i]]
                ent[i] = (lse[batch.trace_mask[i]] - (sel.softmax(-1) * sel).sum(-1)).mean()
    logp = torch.stack(rows)
    answer_logp = logp.gather(1, batch.answer_index) * batch.answer_mask
    return Scored(
        logp=logp,
        answer_logp=answer_logp,
        delim_logp=logp.gather(1, batch.delim_index[:, None]).squeeze(1),
        end_logp=logp.gather(1, batch.end_index[:, None]).squeeze(1),
        trace_entropy=ent,
    )
