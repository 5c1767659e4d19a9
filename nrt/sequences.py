"""Token-level sequences ``prompt + trace + delimiter + answer + end`` with explicit masks.

Traces stay token ids from sampling; nothing is decoded and re-tokenised. Prompts are left-padded to a
common length P so that every token the loss reads sits at position >= P: the model computes logits
only for those positions (``logits_to_keep``), not for the prompt. "Target index" j below means the
token at sequence position P + j, predicted by the logits at position P + j - 1.

The K rows of a group share their prompt. ``score(..., group_size=K)`` runs each prompt once (with
gradients) and lets its K continuations attend to that one copy through the KV cache: the same values
and gradients as running every row whole (backward sums the copies' gradients), with K - 1 fewer
passes over each prompt, which is most of the tokens when prompts are long.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields

import torch
import transformers
from packaging.version import Version
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# The forward's KV-cache argument: `cache` from transformers 5.24, where `past_key_values` warns at every call
# (and is gone in 5.40); `past_key_values` before.
_CACHE_ARG = "cache" if Version(transformers.__version__) >= Version("5.24") else "past_key_values"


def cache_arg(cache: object) -> dict[str, object]:
    """``{name: cache}`` for the installed transformers' forward (see ``_CACHE_ARG``)."""
    return {_CACHE_ARG: cache}


@dataclass(frozen=True)
class Sample:
    """One sequence to assemble. ``emitted``: the model wrote the delimiter itself (else it is appended);
    ``ended_with``: the end-of-turn token the model drew to end its trace, if it did."""

    prompt_ids: list[int]
    trace_ids: list[int]
    emitted: bool
    answer_ids: list[int]
    ended_with: int | None = None


@dataclass
class SequenceBatch:
    """Padded ids and the masks/indices (all in target space) that the objective reads."""

    input_ids: Tensor  # [N, L]
    attention_mask: Tensor  # [N, L]
    position_ids: Tensor  # [N, L]
    target_ids: Tensor  # [N, S], S = L - P; at the delimiter's index the token that ended the trace
    trace_mask: Tensor  # [N, S] the trace tokens and the delimiter's index: the trace term's tokens
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
    """Build the padded batch and its masks from token ids.

    The trace term covers the trace and the delimiter's index always (NRT.md: z and rs). Its target there is
    the token the policy drew to end the trace: the delimiter, or the end-of-turn token when the trace ended
    with one (the sequence itself goes on with the delimiter), so that ending early is an action the policy
    gradient sees; the appended delimiter of a trace that ran out of budget.
    """
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
        trace_mask[row, :t + 1] = True
        a = len(sample.answer_ids)
        answer_index[row, :a] = torch.arange(t + 1, t + 1 + a)
        answer_mask[row, :a] = True
    trace_len = torch.tensor([len(s.trace_ids) for s in samples], dtype=torch.long)
    stop_ids = torch.tensor([delimiter_id if s.ended_with is None else s.ended_with for s in samples])
    return SequenceBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
        target_ids=input_ids[:, prompt_len:].scatter(1, trace_len[:, None], stop_ids[:, None]),
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

    logp: Tensor  # [N, S] log-prob of each target; on the trace term's tokens under the sampling temperature
    answer_logp: Tensor  # [N, A] (0 on padding)
    delim_logp: Tensor  # [N] log-prob of the delimiter at its index (temperature 1), for the format term
    end_logp: Tensor  # [N]
    trace_entropy: Tensor  # [N] mean per-token entropy of the trace tokens (detached; 0 for empty traces)


def target_logits(model: torch.nn.Module, batch: SequenceBatch, group_size: int = 1) -> Tensor:
    """Logits at the S positions that predict the targets, [N, S, vocab].

    ``group_size`` K > 1: rows i*K ... i*K+K-1 have the same prompt. The prompt minus its last token is run
    once per group with the KV cache on, the cache is repeated for the group's K rows, and each row then
    runs from the prompt's last token on (the first target's logits sit at that token). Needs a model that
    keeps its cache in a forward with gradients: not under gradient checkpointing, which drops the cache.
    """
    prompt_len = batch.input_ids.shape[1] - batch.num_targets
    if group_size == 1 or prompt_len < 2:
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids, logits_to_keep=batch.num_targets + 1, use_cache=False)
        return out.logits[:, :-1]
    from transformers import DynamicCache

    n = batch.input_ids.shape[0]
    if n % group_size:
        raise ValueError(f"{n} rows do not split into groups of {group_size}")
    head = prompt_len - 1  # the prompt tokens whose logits nothing reads
    prompts = batch.input_ids[::group_size, :head]
    if not torch.equal(batch.input_ids[:, :head], prompts.repeat_interleave(group_size, dim=0)):
        raise ValueError(f"rows of a group of {group_size} do not share their prompt")
    cache = DynamicCache()
    model(input_ids=prompts, attention_mask=batch.attention_mask[::group_size, :head],
          position_ids=batch.position_ids[::group_size, :head], **cache_arg(cache), use_cache=True,
          logits_to_keep=1)
    cache.batch_repeat_interleave(group_size)
    out = model(input_ids=batch.input_ids[:, head:-1], attention_mask=batch.attention_mask[:, :-1],
                position_ids=batch.position_ids[:, head:-1], **cache_arg(cache), use_cache=True,
                logits_to_keep=batch.num_targets)
    return out.logits


# Models that transform the head's output (soft-capping, scaling): the chunked path would skip that step.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def output_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module that turns the last hidden states into logits, where ``score(chunked=True)`` may apply it
    itself: a plain head (possibly wrapped by peft), with nothing applied to its output by the model.

    A composite model (text and vision, e.g. Gemma 4) keeps such settings in its text config, not at the top."""
    inner = getattr(model, "module", model)  # DDP
    config = getattr(inner, "config", None)
    if config is None or any(getattr(c, key, None) not in (None, 1, 1.0)
                             for c in (config, config.get_text_config()) for key in _LOGIT_TRANSFORMS):
        return None
    return inner.get_output_embeddings()


@contextmanager
def _returns_its_input(module: torch.nn.Module) -> Iterator[None]:
    """``module`` passes its input through for the duration (its own forward is restored afterwards)."""
    module.forward = lambda x: x  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del module.forward


def _row_scores(row: Tensor, targets: Tensor, trace_mask: Tensor, in_trace: Tensor, delim_index: Tensor,
                delimiter_id: Tensor, temperature: float, entropy: bool,
                vocab_size: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """One sequence's target log-probs [S], its delimiter's log-prob at the delimiter index (temperature 1) [1]
    and the mean entropy of its trace tokens (no gradient), from its logits [S, vocab] (the first
    ``vocab_size`` of them)."""
    row = row[:, :vocab_size].float()
    at_delim = row.index_select(0, delim_index)  # [1, vocab]
    delim = (at_delim.gather(1, delimiter_id.view(1, 1)) - at_delim.logsumexp(-1, keepdim=True)).view(1)
    if temperature != 1.0:
        row = row / torch.where(trace_mask, temperature, 1.0)[:, None]
    lse = row.logsumexp(-1)
    logp = row.gather(-1, targets[:, None]).squeeze(-1) - lse
    ent = row.new_zeros(())
    if entropy and in_trace.any():
        with torch.no_grad():
            sel = row[in_trace]
            ent = (lse[in_trace] - (sel.softmax(-1) * sel).sum(-1)).mean()
    return logp, delim, ent


def score(model: torch.nn.Module, batch: SequenceBatch, *, entropy: bool = True, group_size: int = 1,
          temperature: float = 1.0, chunked: bool = False, vocab_size: int | None = None) -> Scored:
    """Log-probs of every target token (with grad if enabled by the caller); see ``target_logits``.

    The trace term's tokens are scored under softmax(logits / ``temperature``), the distribution they were
    sampled from, so that the policy gradient and its importance ratio are those of the sampling policy (as
    verl does); answer tokens and the format term's delimiter under the model itself (temperature 1).

    Logits are computed only for the S target positions. Log-probs and entropies are then taken one
    sequence at a time (``log p = logit - logsumexp``): the temporaries of a log-softmax, a softmax and a
    contiguous copy exist for one [S, vocab] row, not for the whole [N, S, vocab] batch, which lowers the
    peak memory of the step by about a logits tensor or more at no cost in time. ``chunked``: the model
    returns its last hidden states and the head runs one sequence at a time, recomputed in backward, so the
    [N, S, vocab] logits never exist at all (one more head matmul in backward; for a model whose head
    ``output_head`` accepts). ``vocab_size``: only the first that many logits are a distribution's
    (``Policy.vocab_size``; None: all).
    """
    head = output_head(model) if chunked else None
    with _returns_its_input(head) if head is not None else nullcontext():
        states = target_logits(model, batch, group_size)  # [N, S, vocab], or [N, S, hidden] with the head
    prompt_len = batch.input_ids.shape[1] - batch.num_targets
    delimiter_ids = batch.input_ids.gather(1, prompt_len + batch.delim_index[:, None]).squeeze(1)
    in_trace = torch.arange(batch.num_targets, device=states.device) < batch.trace_len[:, None]  # entropy's tokens
    rows, delim, ent = [], [], []
    for i, row in enumerate(states.unbind(0)):  # unbind: one gradient buffer in backward, not one per row
        args = (batch.target_ids[i], batch.trace_mask[i], in_trace[i], batch.delim_index[i:i + 1], delimiter_ids[i],
                temperature, entropy, vocab_size)
        if head is None:
            scores = _row_scores(row, *args)
        elif torch.is_grad_enabled():
            scores = checkpoint(lambda h, a=args: _row_scores(head(h), *a), row, use_reentrant=False)
        else:
            scores = _row_scores(head(row), *args)
        rows.append(scores[0])
        delim.append(scores[1])
        ent.append(scores[2])
    logp = torch.stack(rows)
    answer_logp = logp.gather(1, batch.answer_index) * batch.answer_mask
    return Scored(
        logp=logp,
        answer_logp=answer_logp,
        delim_logp=torch.cat(delim),
        end_logp=logp.gather(1, batch.end_index[:, None]).squeeze(1),
        trace_entropy=torch.stack(ent).detach(),
    )


def worked_trace_nll(model: torch.nn.Module, samples: list[Sample], delimiter_id: int, end_id: int,
                     pad_id: int, vocab_size: int | None = None) -> Tensor:
    """Mean NLL per token of the trace, the delimiter, the answer and the end of turn (not the prompt).

    Supervised teaching of worked traces: the warm starts of the testbed and of the real-model experiment,
    scored by the same code as training so that the sequences they teach are exactly those NRT samples.
    """
    batch = assemble(samples, delimiter_id, end_id, pad_id).to(next(model.parameters()).device)
    targets = batch.trace_mask.long()
    targets.scatter_reduce_(1, batch.answer_index, batch.answer_mask.long(), reduce="amax")  # padding adds nothing
    targets.scatter_(1, batch.end_index[:, None], 1)
    return -(score(model, batch, entropy=False, vocab_size=vocab_size).logp * targets).sum() / targets.sum()
