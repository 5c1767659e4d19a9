"""One NRT step, top to bottom: prompts -> rollout -> score -> rewards -> advantages -> loss -> update.

What it implements (NRT.md): K traces per prompt are sampled from the policy; one forward pass with
gradients over ``prompt + trace + delimiter + answer`` (each prompt run once for its K traces) gives the
answer log-probs c (detached for the reward), the trace log-probs (policy-gradient term) and the answer
term; the empty-trace log-probs b are computed once per prompt without gradients. The reward
R = f(c) (``nrt.rewards``) is optionally debiased by R(empty), normalised within each group of K, and the
loss of ``nrt.objective`` is minimised with AdamW. The rollout batch splits into ``mini_batches_per_step``
disjoint mini-batches, one update each (the reference recipe's "4 updates per rollout batch"), and the
whole is gone over ``updates_per_step`` times (epochs); every update after the first is off-policy, and its
importance ratio reads the rollout policy's log-probs: the first pass's with gradients where no update came
before it, else a no-grad pass before the first update. With ``trace: false`` no trace is sampled and the
step is plain SFT on the answer (K = 1).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import Tensor

from nrt.config import TrainConfig
from nrt.modeling import Policy
from nrt.objective import LossWeights, empty_trace_debias, group_advantages, nrt_loss
from nrt.prompts import Encoded
from nrt.reward_fn import RewardFn, call_reward_fn
from nrt.rewards import aggregate
from nrt.rollout import SAMPLERS, SamplingCopy, Trace, eval_mode, resolve_sampler
from nrt.sequences import Sample, Scored, SequenceBatch, assemble, score
from nrt.sharding import as_tensor


@dataclass
class StepOutput:
    """Metrics of the step (scalars) and per-sample records for the samples log."""

    metrics: dict[str, float]
    samples: list[dict] = field(default_factory=list)
    updated: bool = True


@dataclass
class Rewards:
    """What the first pass over a micro-batch decides for all its updates."""

    raw: Tensor  # [N] f(c) before debiasing
    reward: Tensor  # [N] the reward that is group-normalised
    advantages: Tensor  # [N]
    answer_weights: Tensor  # [N, A] 1 (fixed) or c*df/dc (derived) on answer tokens
    nll_with: Tensor  # [N] answer NLL per token with the trace
    nll_without: Tensor  # [N] ... with an empty trace


@dataclass
class _MicroBatch:
    prompts: list[Encoded]
    samples: list[Sample]
    batch: SequenceBatch
    rows: list[int]  # the samples' indices in trace order
    rewards: Rewards | None = None
    old_logp: Tensor | None = None
    entropy: Tensor | None = None


def rewards_and_advantages(c: Tensor, b: Tensor, mask: Tensor, cfg: TrainConfig, k: int,
                           external: Tensor | None = None) -> Rewards:
    """Trace rewards R = f(c), optional empty-trace debiasing, group-normalised advantages, answer weights.

    ``external`` replaces f(c) as the trace reward (a verifier's score, e.g. the testbed's positive control).
    It does not combine with the empty-trace baseline (``train`` refuses the pair at start).
    """
    raw, token_reward = aggregate(cfg.aggregation, c, mask, b)
    if external is not None:
        raw = external.to(raw)
    reward = empty_trace_debias(raw, aggregate(cfg.aggregation, b, mask, b)[0]) if cfg.empty_trace_baseline else raw
    advantages, _ = group_advantages(reward, k, cfg.group_std_min)
    length = mask.sum(-1).clamp(min=1)
    return Rewards(raw=raw, reward=reward, advantages=advantages,
                   answer_weights=mask.float() if cfg.token_reward == "fixed" else token_reward,
                   nll_with=-(c * mask).sum(-1) / length, nll_without=-(b * mask).sum(-1) / length)


@torch.no_grad()
def empty_trace_logp(model: torch.nn.Module, policy: Policy, prompts: list[Encoded], k: int,
                     per_sample: bool) -> Tensor:
    """b: answer log-probs after an empty trace, [len(prompts) * k, A], without gradients, in eval mode.

    One pass per prompt, repeated for its K traces; ``per_sample`` scores every copy instead (the reference
    recipe's structure, kept for benchmarking and checking).
    """
    repeat = k if per_sample else 1
    samples = [Sample(e.prompt_ids, [], False, e.answer_ids) for e in prompts for _ in range(repeat)]
    batch = assemble(samples, policy.delimiter_id, policy.end_id, policy.pad_id).to(next(model.parameters()).device)
    with eval_mode(model):  # no dropout: the reward must not depend on a dropout mask
        b = score(model, batch, entropy=False, vocab_size=policy.vocab_size).answer_logp
    return b if per_sample else b.repeat_interleave(k, dim=0)


def prompt_group_size(cfg: TrainConfig, accelerator: Accelerator) -> int:
    """K when the pass with gradients may run each prompt once for its K traces (``score(group_size=K)``), else 1.

    Gradient checkpointing drops the KV cache in a pass with gradients; FSDP2 (``sharding: fsdp``) fails in the
    backward of two forward calls (``nrt.sharding``); accelerate's FSDP and DeepSpeed, which gather parameters
    per forward call, are not tested with them. Those, SFT and the reference structure run every row whole.
    """
    from accelerate.utils import DistributedType

    shareable = cfg.sharding == "none" and \
        accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    fused = cfg.trace and cfg.pass_structure == "fused" and not cfg.gradient_checkpointing
    return cfg.num_traces if fused and shareable else 1


def loss_normalizer(cfg: TrainConfig, num_sequences: int) -> float:
    """The constant the summed loss is divided by: sequences x trace budget (not per-sequence lengths)."""
    return float(num_sequences * cfg.max_trace_tokens)


def micro_batch_groups(lengths: list[int], k: int, groups_per_micro_batch: int, mini_batches: int = 1,
                       tokens_per_micro_batch: int = 0) -> list[list[list[int]]]:
    """Prompt groups (indices) per micro-batch of each mini-batch, the groups of a mini-batch sorted by their
    longest sequence.

    ``lengths`` holds one sequence length per sample, K consecutive samples per group. The groups split into
    ``mini_batches`` disjoint consecutive blocks (one optimizer update each). A micro-batch is padded to its
    longest sequence, so putting groups of similar length together leaves less padding for the pass to run
    over; groups are never split (their rewards are normalised together). A micro-batch holds
    ``groups_per_micro_batch`` groups, or, with ``tokens_per_micro_batch``, as many as keep its padded size
    (rows x longest sequence) within that budget, at least one.
    """
    longest = [max(lengths[g * k:(g + 1) * k]) for g in range(len(lengths) // k)]
    per_mini = len(longest) // mini_batches
    out = []
    for first in range(0, len(longest), per_mini):
        order = sorted(range(first, first + per_mini), key=lambda g: longest[g])
        if not tokens_per_micro_batch:
            out.append([order[i:i + groups_per_micro_batch] for i in range(0, len(order), groups_per_micro_batch)])
            continue
        parts: list[list[int]] = [[]]
        for g in order:  # ascending length: the newest group is the micro-batch's longest
            if parts[-1] and (len(parts[-1]) + 1) * k * longest[g] > tokens_per_micro_batch:
                parts.append([])
            parts[-1].append(g)
        out.append(parts)
    return out


def split_micro_batches(parts: list[list[int]], count: int) -> list[list[int]]:
    """``parts`` (one mini-batch's micro-batches of groups, as ``micro_batch_groups`` packs them) split into
    ``count`` micro-batches: the one with the most groups is halved until there are that many.

    Each half keeps its groups' length order and fits the token budget its whole did. ``count`` may not exceed
    the number of groups (no micro-batch is left empty).
    """
    groups = sum(len(part) for part in parts)
    if not len(parts) <= count <= groups:
        raise ValueError(f"{groups} groups in {len(parts)} micro-batches cannot make {count} micro-batches")
    out = [list(part) for part in parts]
    while len(out) < count:
        i = max(range(len(out)), key=lambda j: len(out[j]))
        half = len(out[i]) // 2
        out[i:i + 1] = [out[i][:half], out[i][half:]]
    return out


def agreed_micro_batch_counts(counts: list[int], accelerator: Accelerator) -> list[int]:
    """The number of micro-batches of each mini-batch on every process: the largest any process packed.

    Processes pack their micro-batches from their own sequences, so with ``tokens_per_micro_batch`` one whose
    traces are short may pack fewer than another. Each forward and backward pass of a sharded model gathers
    and reduces over all processes, and DDP's gradient all-reduce waits for the same last pass, so every
    process must run as many passes: a process that packed fewer splits its micro-batches
    (``split_micro_batches``). Every process holds as many groups as any other, so the split never runs out.
    """
    if accelerator.num_processes == 1:
        return counts
    local = torch.tensor(counts, dtype=torch.long, device=accelerator.device)
    return accelerator.gather(local).view(accelerator.num_processes, -1).amax(0).tolist()


def _weights(cfg: TrainConfig) -> LossWeights:
    return LossWeights(trace=cfg.trace_weight, answer=cfg.answer_weight, format=cfg.format_weight,
                       clip_low=cfg.clip_low, clip_high=cfg.clip_high)


def _distinct2(traces: list[Trace]) -> float:
    """Distinct bigram ratio over all traces: near 0 means repetitive, degenerate traces."""
    bigrams = [tuple(t.ids[i:i + 2]) for t in traces for i in range(len(t.ids) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def nrt_step(model: torch.nn.Module, policy: Policy, accelerator: Accelerator, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, encoded: list[Encoded], cfg: TrainConfig,
             reward_fn: RewardFn | None = None, sampling_copy: SamplingCopy | None = None) -> StepOutput:
    """Run one rollout batch and its update(s) on this process's prompts ``encoded``.

    ``reward_fn``, if given, scores the sampled sequences instead of the likelihood aggregation (``nrt.reward_fn``).
    ``sampling_copy``, if given, is refreshed from the policy and sampled from (a bf16 copy on a GPU; a sharded
    model's full copy, without which each decoded token would gather every layer again).
    """
    t0 = time.perf_counter()
    k = cfg.num_traces
    device = accelerator.device
    unwrapped = accelerator.unwrap_model(model)

    # --- rollout: K traces per prompt (none for SFT) ---------------------------------------------------
    if cfg.trace:
        low_precision = sampling_copy is not None and sampling_copy.dtype.itemsize < 4
        sample = SAMPLERS[resolve_sampler(cfg.sampler, device, low_precision)]
        # a sharded model's copy gathers its parameters once for the rollout; the copy samples unsharded
        source = sampling_copy.holding(unwrapped) if sampling_copy is not None else nullcontext(unwrapped)
        with accelerator.autocast(), source as sampled:
            traces = sample(sampled, [e.prompt_ids for e in encoded], num_traces=k, max_tokens=cfg.max_trace_tokens,
                            temperature=cfg.temperature, top_p=cfg.top_p, delimiter_id=policy.delimiter_id,
                            end_ids=policy.end_ids, pad_id=policy.pad_id, vocab_size=policy.vocab_size)
    else:
        traces = [Trace([], False) for _ in encoded]
    t_sample = time.perf_counter()

    samples = [Sample(e.prompt_ids, t.ids, t.emitted, e.answer_ids, t.ended_with)
               for e, t in zip((e for e in encoded for _ in range(k)), traces, strict=True)]

    def micro_batch(groups: list[int]) -> _MicroBatch:
        rows = [g * k + j for g in groups for j in range(k)]  # sample indices, K consecutive per group
        part = [samples[i] for i in rows]
        return _MicroBatch([encoded[g] for g in groups], part,
                           assemble(part, policy.delimiter_id, policy.end_id, policy.pad_id).to(device), rows)

    lengths = [len(s.prompt_ids) + len(s.trace_ids) + len(s.answer_ids) for s in samples]
    packed = micro_batch_groups(lengths, k, cfg.prompts_per_micro_batch, cfg.mini_batches_per_step,
                                cfg.tokens_per_micro_batch)
    counts = agreed_micro_batch_counts([len(mini) for mini in packed], accelerator)
    minis = [[micro_batch(groups) for groups in split_micro_batches(mini, count)]
             for mini, count in zip(packed, counts, strict=True)]
    micro = [mb for mini in minis for mb in mini]
    weights = _weights(cfg)
    group_size = prompt_group_size(cfg, accelerator)
    chunked = cfg.chunked_logits == "on" or (cfg.chunked_logits == "auto" and device.type == "cuda"
                                             and cfg.sharding == "none")
    score_kw = {"group_size": group_size, "temperature": cfg.temperature, "chunked": chunked,
                "vocab_size": policy.vocab_size}
    reference = cfg.pass_structure == "reference"
    t_score = time.perf_counter()

    def prepare(mb: _MicroBatch, scored: Scored | None) -> None:
        """Rewards, advantages and old log-probs of ``mb``, from the rollout policy: from the pass with
        gradients when it is still that policy (``scored``), else from a no-grad pass now."""
        if scored is None:
            with torch.no_grad(), eval_mode(model):
                scored = score(model, mb.batch, **score_kw)
        c = scored.answer_logp.detach()
        b = empty_trace_logp(model, policy, mb.prompts, k, per_sample=reference) if cfg.trace else c
        external = call_reward_fn(reward_fn, mb.samples, policy.tokenizer, cfg.reward_fn) \
            if reward_fn is not None else None
        mb.rewards = rewards_and_advantages(c, b, mb.batch.answer_mask, cfg, k, external)
        mb.old_logp = scored.logp.detach()
        mb.entropy = scored.trace_entropy

    # The reference structure scores every micro-batch without gradients first; so does every mini-batch
    # after the first, whose updates come after the policy has moved (their old log-probs and rewards are
    # the rollout policy's). The rest take both from their first pass with gradients.
    with accelerator.autocast():
        for mb in [mb for m, mini in enumerate(minis) if m > 0 or reference for mb in mini]:
            prepare(mb, None)
    scoring_seconds = time.perf_counter() - t_score
    updates = cfg.updates_per_step * len(minis)
    parts_sum: dict[str, float] = {}
    loss_total, grad_norm, skipped = 0.0, 0.0, 0

    for _epoch in range(cfg.updates_per_step):
        for mini in minis:
            normalizer = loss_normalizer(cfg, sum(len(mb.samples) for mb in mini))
            update_loss = 0.0
            for j, mb in enumerate(mini):
                sync = accelerator.no_sync(model) if j < len(mini) - 1 else nullcontext()
                with sync, accelerator.autocast():
                    # --- score: the pass with gradients; in the fused structure it also gives c for the reward ---
                    scored = score(model, mb.batch, **score_kw)
                    if mb.rewards is None:
                        t_score = time.perf_counter()
                        prepare(mb, scored)
                        scoring_seconds += time.perf_counter() - t_score
                    assert mb.rewards is not None and mb.old_logp is not None
                    # --- objective ---
                    loss, parts = nrt_loss(
                        trace_logp=scored.logp, old_trace_logp=mb.old_logp, trace_mask=mb.batch.trace_mask,
                        advantages=mb.rewards.advantages, delim_logp=scored.delim_logp,
                        delim_forced=mb.batch.delim_forced, answer_logp=scored.answer_logp,
                        answer_weights=mb.rewards.answer_weights, end_logp=scored.end_logp, weights=weights,
                        normalizer=normalizer)
                accelerator.backward(loss)
                update_loss += float(loss.detach())
                for name, value in parts.items():
                    parts_sum[name] = parts_sum.get(name, 0.0) + value
            # --- update ---
            norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            grad_norm = -1.0 if norm is None else float(as_tensor(norm))  # None: DeepSpeed clips inside its engine
            loss_total += update_loss / updates
            if math.isfinite(grad_norm) and math.isfinite(update_loss):
                optimizer.step()
            else:
                skipped += 1
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    t_end = time.perf_counter()
    rewards = [mb.rewards for mb in micro]
    entropy = [mb.entropy for mb in micro]
    unsort = torch.tensor([i for mb in micro for i in mb.rows]).argsort()  # back to trace order for records
    clipped, trace_tokens = parts_sum.pop("clipped_tokens"), parts_sum.pop("trace_tokens")
    parts_sum = {name: value / updates for name, value in parts_sum.items()}  # means over the step's updates
    parts_sum["clip_fraction"] = clipped / max(trace_tokens, 1.0)

    # --- metrics: per-sample values gathered over processes -------------------------------------------
    trace_len = torch.tensor([len(t.ids) for t in traces], dtype=torch.float32, device=device)
    emitted = torch.tensor([float(t.emitted) for t in traces], device=device)
    def gather(field: str) -> Tensor:
        return accelerator.gather(torch.cat([getattr(r, field) for r in rewards]).float())

    pooled = {name: gather(name) for name in ("raw", "reward", "advantages", "nll_with", "nll_without")}
    pooled["entropy"] = accelerator.gather(torch.cat(entropy).float())
    trace_len, emitted = accelerator.gather(trace_len), accelerator.gather(emitted)
    raw = pooled["raw"]
    metrics = {
        "loss": accelerator.reduce(torch.tensor(loss_total, device=device), "mean").item(),
        "grad_norm": grad_norm,
        "lr": scheduler.get_last_lr()[0],
        "reward_raw_mean": raw.mean().item(),
        "reward_raw_std": raw.std().item() if raw.numel() > 1 else 0.0,
        "reward_mean": pooled["reward"].mean().item(),
        "advantage_abs_mean": pooled["advantages"].abs().mean().item(),
        "zero_std_group_fraction": (pooled["advantages"].view(-1, k) == 0).all(-1).float().mean().item(),
        "trace_len_mean": trace_len.mean().item(),
        "trace_len_min": trace_len.min().item(),
        "trace_len_max": trace_len.max().item(),
        "delimiter_rate": emitted.mean().item(),
        "trace_entropy": pooled["entropy"].mean().item(),
        "trace_distinct2": _distinct2(traces),
        "answer_nll_with_trace": pooled["nll_with"].mean().item(),
        "answer_nll_without_trace": pooled["nll_without"].mean().item(),
        "skipped_updates": float(skipped),
        "sampling_seconds": t_sample - t0,
        "scoring_seconds": scoring_seconds,
        "update_seconds": t_end - t_sample - scoring_seconds,
        "step_seconds": t_end - t0,
        **parts_sum,
    }
    metrics["answer_nll_gain"] = metrics["answer_nll_without_trace"] - metrics["answer_nll_with_trace"]
    local_reward = torch.cat([r.raw for r in rewards])[unsort].tolist()
    local_adv = torch.cat([r.advantages for r in rewards])[unsort].tolist()
    records = [
        {"prompt_index": i // k, "trace_ids_len": len(t.ids), "emitted": t.emitted,
         "trace": policy.tokenizer.decode(t.ids), "reward": local_reward[i], "advantage": local_adv[i]}
        for i, t in enumerate(traces[:cfg.samples_per_step])
    ]
    return StepOutput(metrics, records, updated=skipped == 0)
