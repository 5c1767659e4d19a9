"""The training run: set-up, the loop over ``nrt_step``, checkpoints, resume, and the closing summary.

Glue only: the step's math lives in ``nrt.step`` / ``nrt.objective`` / ``nrt.rewards``. The loop runs on
``accelerate``, so one CPU, one GPU and several processes share the same code: each process takes its
slice of every step's prompts (groups never straddle processes), gradients are averaged, and only the
main process writes logs and checkpoints.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, set_seed
from transformers import get_scheduler

from nrt.checkpoint import (
    checkpoint_tmp,
    earlier_run,
    finish_checkpoint,
    latest_checkpoint,
    load_trainer_state,
    set_rng_state,
    write_checkpoint,
)
from nrt.config import ConfigError, TrainConfig, check_external_reward, config_to_dict
from nrt.data import FieldNames, load_examples
from nrt.host_memory import retain_freed_memory
from nrt.modeling import Policy, apply_lora, enable_gradient_checkpointing, load_policy, pad_vocabulary
from nrt.prompts import Encoded, encode_example
from nrt.reward_fn import RewardFn, check_signature, load_reward_fn
from nrt.rollout import SamplingCopy
from nrt.runlog import NullRunLog, RunLog, read_jsonl, run_name
from nrt.sharding import full_state_dict, load_optimizer, save_optimizer, shard_model
from nrt.step import nrt_step

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. repeated non-finite losses); the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None
    steps: int
    metrics: list[dict[str, Any]]


def prompt_indices(step: int, per_step: int, num_examples: int, seed: int) -> list[int]:
    """Example indices of ``step``: consecutive slices of a fresh permutation per epoch.

    Stateless in the step number, so the data position of a resumed run is just its step.
    """
    orders: dict[int, list[int]] = {}
    out = []
    for position in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(position, num_examples)
        if epoch not in orders:
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
            orders[epoch] = torch.randperm(num_examples, generator=generator).tolist()
        out.append(orders[epoch][i])
    return out


def encode_dataset(policy: Policy, cfg: TrainConfig) -> tuple[list[Encoded], dict[str, int]]:
    """Load and tokenise the training data; prompts over budget are skipped and counted."""
    loaded = load_examples(cfg.data, fields=FieldNames(cfg.question_field, cfg.answer_field, cfg.messages_field),
                           split=cfg.data_split, size=cfg.data_size, seed=cfg.data_seed,
                           skip_bad=cfg.skip_bad_records)
    encoded, too_long = [], 0
    for example in loaded.examples:
        item = encode_example(policy.tokenizer, example, system_prompt=cfg.system_prompt,
                              max_answer_tokens=cfg.max_answer_tokens)
        if len(item.prompt_ids) > cfg.max_prompt_tokens:
            too_long += 1
            continue
        encoded.append(item)
    if not encoded:
        raise TrainingError(f"{cfg.data}: every prompt is longer than max_prompt_tokens={cfg.max_prompt_tokens}")
    return encoded, {"examples": len(encoded), "bad_records_skipped": loaded.skipped, "prompts_too_long": too_long}


def check_context(policy: Policy, cfg: TrainConfig) -> None:
    """Fail at start, not mid-run, when the longest possible sequence exceeds the model's context.

    The budget rule: prompts longer than ``max_prompt_tokens`` are skipped (and counted), answers are cut to
    ``max_answer_tokens``, traces stop at ``max_trace_tokens``; the sum plus the delimiter and end token
    must fit ``max_position_embeddings``.
    """
    context = getattr(policy.model.config, "max_position_embeddings", None)
    longest = cfg.max_prompt_tokens + cfg.max_trace_tokens + cfg.max_answer_tokens + 2
    if context is not None and longest > context:
        raise ConfigError(f"max_prompt_tokens + max_trace_tokens + max_answer_tokens + 2 = {longest} exceeds the "
                          f"model's context of {context} tokens; lower one of them")


def build_policy(cfg: TrainConfig, checkpoint: Path | None) -> tuple[Policy, torch.nn.Module]:
    """The policy to train: from ``cfg.model``, or from a checkpoint when resuming."""
    full_weights = checkpoint is not None and not cfg.lora
    policy = load_policy(str(checkpoint / "model") if full_weights else cfg.model, delimiter=cfg.delimiter,
                         trust_remote_code=cfg.trust_remote_code)
    model = policy.model
    if cfg.pad_vocab_to_multiple_of:  # before LoRA, whose trainable token rows wrap the padded matrices
        pad_vocabulary(model, cfg.pad_vocab_to_multiple_of)
    model.train()  # from_pretrained returns eval mode (dropout off); sampling switches to eval by itself
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if cfg.lora:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules,
                           trainable_tokens=[policy.delimiter_id])
        if checkpoint is not None:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(model, load_file(checkpoint / "adapter" / "adapter_model.safetensors"))
    return policy, model


def sampling_seed(seed: int, step: int, process: int) -> int:
    """The seed of one process's random stream in one step: its own per process (their traces are not copies
    of each other's), reproducible, and a function of the step alone, so a resumed run draws what an
    uninterrupted one would."""
    digest = hashlib.sha256(f"{seed}:{step}:{process}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def use_bf16(dtype: str) -> bool:
    """Resolve ``dtype: auto``: bf16 only where the hardware computes it natively."""
    if dtype != "auto":
        return dtype == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def build_sampling_copy(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> SamplingCopy | None:
    """The copy of ``model`` the rollout samples from (``nrt.rollout.SamplingCopy``), or None to sample from the
    policy itself.

    On a GPU with bf16, a bf16 copy: sampling from fp32 weights under autocast casts every weight at every token.
    With ``sharding: fsdp``, always a copy, in the dtype one device would sample in (bf16 on a GPU, the weights'
    own elsewhere), so that the weights are gathered once per rollout rather than at every token. Otherwise none:
    a CPU samples from the policy itself (bf16 matmuls there are slow or absent).
    """
    bf16 = device.type == "cuda" and use_bf16(cfg.dtype)
    if not cfg.trace or not (bf16 or cfg.sharding == "fsdp"):
        return None
    dtype = torch.bfloat16 if bf16 else next(model.parameters()).dtype
    return SamplingCopy(model, dtype, device, keep=cfg.sampling_copy == "keep")


def save_checkpoint(accelerator: Accelerator, folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, policy: Policy, position: dict[str, int], *,
                    sharded: bool, lora: bool) -> None:
    """Write a checkpoint of the run into ``folder`` (``position``: its step and data position). Every process
    takes part: a sharded model's weights are gathered to the main process, which writes them, and every
    process writes its shard of the optimizer state."""
    weights = full_state_dict(model) if sharded else None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {**position, "optimizer": None if sharded else optimizer.state_dict(),
                 "scheduler": scheduler.state_dict()}
        write_checkpoint(folder, accelerator.unwrap_model(model), policy.tokenizer, state, lora=lora,
                         state_dict=weights)
    accelerator.wait_for_everyone()
    if sharded:
        save_optimizer(model, optimizer, folder / "optimizer")
    accelerator.wait_for_everyone()


def train(cfg: TrainConfig, *, resume: bool = False, reward_fn: RewardFn | None = None) -> TrainResult:
    """Run ``cfg`` to the end (or continue it from its newest complete checkpoint with ``resume``).

    ``reward_fn`` (optional) scores sampled sequences in place of the likelihood reward, a verifier: the
    function itself, where the config key ``reward_fn`` names one (``nrt.reward_fn`` has the signature).
    """
    if reward_fn is not None:
        if cfg.reward_fn:
            raise ConfigError(f"reward_fn: given twice, as the config key ({cfg.reward_fn!r}) and as train's "
                              "reward_fn argument; give one")
        check_external_reward(cfg)  # the config key is checked by TrainConfig.validate
        check_signature(reward_fn)
    elif cfg.reward_fn:
        reward_fn = load_reward_fn(cfg.reward_fn)
    run_dir = Path(cfg.output_dir)
    if resume and not run_dir.is_dir():  # a mistyped output_dir would otherwise start a new run unnoticed
        raise ConfigError(f"output_dir: {run_dir}: no such folder, so no checkpoint to resume from; check "
                          "output_dir, or leave out --resume to start a new run")
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("--resume: no complete checkpoint in %s (killed before its first one?); starting from step 0",
                    run_dir)
    earlier = [] if resume else earlier_run(run_dir)
    if earlier and not cfg.overwrite_output_dir:
        raise ConfigError(f"output_dir: {run_dir} holds an earlier run ({', '.join(p.name for p in earlier)}); a "
                          "new run would mix with it. Continue it with --resume, choose another output_dir, or set "
                          "overwrite_output_dir=true to delete those and start over")
    if cfg.eval_every:
        from nrt.evaluate import check_tasks

        check_tasks(cfg.eval_tasks, cfg.eval_limit)  # here, not at the first evaluation after eval_every steps
    # accelerate keeps its mixed-precision setting in a process-wide singleton; clear it (not the process
    # group) so that several runs with different dtypes can follow each other in one Python process.
    AcceleratorState._reset_state()
    # cpu=True without CUDA lets accelerate see torchrun's CPU processes as one data-parallel (gloo) job.
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16(cfg.dtype) else "no",
                              cpu=not torch.cuda.is_available())
    if accelerator.distributed_type == DistributedType.FSDP:
        raise ConfigError("sharding: accelerate's FSDP launch config is not used by nrt (its sampling and checkpoints "
                          "do not gather the shards); launch without it (e.g. configs/accelerate/multi_gpu.yaml) "
                          "and set sharding=fsdp")
    set_seed(cfg.seed)
    if cfg.retain_freed_memory and accelerator.device.type == "cpu":
        retain_freed_memory()
    policy, model = build_policy(cfg, checkpoint)
    check_context(policy, cfg)
    sampling_copy = build_sampling_copy(model, cfg, accelerator.device)  # from the full weights, before sharding
    sharded = cfg.sharding == "fsdp"
    if sharded:
        model = shard_model(model, accelerator.device)
    encoded, data_stats = encode_dataset(policy, cfg)
    if cfg.prompts_per_step % accelerator.num_processes:
        raise ConfigError(f"prompts_per_step: {cfg.prompts_per_step} is not divisible by the "
                            f"{accelerator.num_processes} processes")
    per_process = cfg.prompts_per_step // accelerator.num_processes
    if per_process % (cfg.mini_batches_per_step * cfg.prompts_per_micro_batch):
        raise ConfigError(f"prompts_per_micro_batch: mini_batches_per_step x prompts_per_micro_batch "
                          f"({cfg.mini_batches_per_step} x {cfg.prompts_per_micro_batch}) must divide the "
                          f"{per_process} prompts each process gets per step")

    # the fused AdamW kernel: 0.08 s instead of 0.44 s per step for 134M parameters on an AMD EPYC CPU (2 threads)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=not sharded)
    total_updates = cfg.steps * cfg.updates_per_step * cfg.mini_batches_per_step
    scheduler = get_scheduler(cfg.lr_schedule if cfg.lr_schedule != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_updates),
                              num_training_steps=total_updates)
    # The scheduler is not prepared: accelerate would step it once per process. A sharded model is not either:
    # FSDP2 already reduces its gradients (accelerate would wrap it in DDP).
    if not sharded:
        model, optimizer = accelerator.prepare(model, optimizer)

    start_step = 0
    if checkpoint is not None:
        state = load_trainer_state(checkpoint)
        if sharded:
            load_optimizer(model, optimizer, checkpoint / "optimizer")
        else:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_step = state["step"]
        log.info("resumed from %s at step %d", checkpoint, start_step)

    main = accelerator.is_main_process
    if main:
        for path in earlier:  # overwrite_output_dir: the earlier run's checkpoints and logs go
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        log.info("data %s: %s", cfg.data, data_stats)
        if len(encoded) < cfg.prompts_per_step:
            log.warning("data %s: %d usable example%s, fewer than prompts_per_step=%d: every step repeats some of "
                        "them", cfg.data, len(encoded), "" if len(encoded) == 1 else "s", cfg.prompts_per_step)
    runlog = RunLog(cfg, start_step=start_step) if main else NullRunLog()

    def save(step: int) -> Path | None:
        folder = checkpoint_tmp(run_dir, step)
        save_checkpoint(accelerator, folder, model, optimizer, scheduler, policy,
                        {"step": step, "prompts_seen": step * cfg.prompts_per_step}, sharded=sharded, lora=cfg.lora)
        return finish_checkpoint(folder, cfg.keep_checkpoints) if main else None

    started = time.perf_counter()
    nonfinite_in_a_row = 0
    last_saved = checkpoint
    rank = accelerator.process_index
    try:
        for step in range(start_step, cfg.steps):
            indices = prompt_indices(step, cfg.prompts_per_step, len(encoded), cfg.seed)
            mine = indices[rank * per_process:(rank + 1) * per_process]
            set_seed(sampling_seed(cfg.seed, step, rank))
            out = nrt_step(model, policy, accelerator, optimizer, scheduler, [encoded[i] for i in mine], cfg,
                           reward_fn, sampling_copy)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                out.metrics.update(evaluate_during_training(policy, cfg) if main else {})
                accelerator.wait_for_everyone()
            runlog.log(step + 1, out.metrics, out.samples)
            nonfinite_in_a_row = 0 if out.updated else nonfinite_in_a_row + 1
            if nonfinite_in_a_row >= cfg.max_nonfinite_steps:
                raise TrainingError(
                    f"step {step + 1}: loss or gradient not finite for {nonfinite_in_a_row} steps in a row "
                    f"(max_nonfinite_steps={cfg.max_nonfinite_steps}); stopping. Last good checkpoint: {last_saved}")
            done = step + 1
            # a step whose update was skipped is not saved: the last checkpoint stays the last good one
            if out.updated and (done == cfg.steps or (cfg.save_every and done % cfg.save_every == 0)):
                last_saved = save(done) or last_saved
    finally:
        runlog.close()
    metrics = read_jsonl(run_dir / "metrics.jsonl") if main else []
    if main:
        print(summary(cfg, metrics, last_saved, run_dir, time.perf_counter() - started, data_stats))
    return TrainResult(run_dir, last_saved, cfg.steps, metrics)


def evaluate_during_training(policy: Policy, cfg: TrainConfig) -> dict[str, float]:
    """Held-out accuracy, trace length and delimiter rate per task, as flat metric names."""
    from nrt.evaluate import evaluate

    results = evaluate(policy, cfg.eval_tasks, limit=cfg.eval_limit, eval_seed=cfg.eval_seed,
                       max_trace_tokens=cfg.max_trace_tokens, max_answer_tokens=cfg.max_answer_tokens,
                       system_prompt=cfg.system_prompt)
    for r in results:
        if r.skipped:
            log.warning("evaluation task skipped: %s", r.skipped)
    return {f"eval/{r.task}/{key}": getattr(r, key) for r in results if not r.skipped
            for key in ("accuracy", "score", "trace_len_mean", "delimiter_rate")}


SHORT_RUN = 50  # steps: below this, first/last means are a smoke test, not a learning curve
COLLAPSE_FRACTION = 0.5  # the collapse criterion of the experiments (nrt.testbed.collapse_signs): under half


def delimiter_drifted(first: float, last: float) -> bool:
    """Whether the delimiter rate fell to under one half, by at least 0.1: a model that never wrote the
    delimiter often is not drifting, and a rate near one half moves by a few hundredths from step to step."""
    return last < COLLAPSE_FRACTION and round(first - last, 9) >= 0.1  # round: 0.5 - 0.4 is 0.0999...


def reading_notes(steps: int, answer_nll_gain: float | None, tied_groups: float | None = None, *,
                  trace_len: tuple[float, float] | None = None,
                  delimiter_rates: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """What a run's closing figures can and cannot show, for the runs likely to be misread: short ones, ones
    whose traces make the answer less likely (a first ``make train``: 6 steps, gain -0.80 -> -1.52), ones
    whose rewards stopped ranking the traces, and the two signs of collapse worth stopping for: traces that
    shrink, and traces that stop writing the delimiter (which long runs of the 135M model did under every
    reward while accuracy rose). ``answer_nll_gain``, ``tied_groups``: the last steps' means of the answer NLL
    gain and of ``zero_std_group_fraction`` (None without traces). ``trace_len``: mean trace length of the
    first and last steps. ``delimiter_rates``: first and last delimiter rate per source (``"sampled"``, and
    those of ``held_out_delimiter_rates``)."""
    notes = []
    if steps < SHORT_RUN:
        notes.append(f"{steps} steps: the figures above are a smoke test (the run works), not a learning curve; "
                     "over so few steps they move with the traces sampled as much as with learning. Held-out "
                     "accuracy shows learning (eval_every=N, or `nrt eval` on the checkpoint).")
    if answer_nll_gain is not None and answer_nll_gain < 0:
        notes.append("answer NLL gain < 0: the traces make the reference answer less likely than answering at "
                     "once. That is where a model never trained to write traces starts (SmolLM2-135M-Instruct on "
                     "the default data: about -1 nat/token): its traces do not help yet. `nrt demo` (`make demo`) "
                     "shows the method learning: held-out accuracy before and after, under 20 minutes "
                     "on 2 CPU cores.")
    if tied_groups is not None and tied_groups >= 0.9:
        notes.append(f"zero_std_group_fraction {tied_groups:.2f}: in most prompt groups every trace got the same "
                     "reward, so their advantages are 0 and the trace term learned nothing from them. A reward_fn "
                     "that never (or always) fires does this; so do traces that are all alike.")
    if trace_len is not None and trace_len[1] < COLLAPSE_FRACTION * trace_len[0]:
        notes.append(f"trace length {trace_len[0]:.1f} -> {trace_len[1]:.1f} tokens, under half: the traces are "
                     "shrinking, the collapse a likelihood reward drives when a shorter trace makes the answer more "
                     "likely. Compare held-out accuracy with `sft` on the same data, and read samples.jsonl "
                     "(docs/metrics.md, What the traces do).")
    drifted = {source: rates for source, rates in (delimiter_rates or {}).items() if delimiter_drifted(*rates)}
    if drifted:
        moves = "; ".join(f"{source} {first:.2f} -> {last:.2f}" for source, (first, last) in drifted.items())
        notes.append(f"delimiter rate {moves}: more traces now end without the delimiter than with it, and the "
                     "model does not answer where nothing appends it. `nrt eval` and `nrt generate` append the "
                     "delimiter after every trace, so accuracy still reads the answer; append it when you serve "
                     "the model, or keep a checkpoint from before the drift (docs/metrics.md, What the traces do).")
    return [textwrap.fill(note, 110, initial_indent="  ", subsequent_indent="    ") for note in notes]


def held_out_delimiter_rates(metrics: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """First and last delimiter rate of the greedy held-out traces per evaluation task during training (the
    first and last evaluation, where there were two or more)."""
    rates: dict[str, tuple[float, float]] = {}
    for key in dict.fromkeys(k for m in metrics for k in m if k.startswith("eval/") and k.endswith("/delimiter_rate")):
        evaluated = [m[key] for m in metrics if key in m]
        if len(evaluated) > 1:
            rates[f"held-out {key.removeprefix('eval/').removesuffix('/delimiter_rate')}"] = (evaluated[0],
                                                                                           evaluated[-1])
    return rates


def summary(cfg: TrainConfig, metrics: list[dict[str, Any]], checkpoint: Path | None, run_dir: Path,
            seconds: float, data_stats: dict[str, int]) -> str:
    """Short end-of-run report: how the headline figures moved from the first to the last steps, and what
    they can show (``reading_notes``)."""
    what = "sft" if not cfg.trace else f"reward_fn {cfg.reward_fn}" if cfg.reward_fn else cfg.aggregation
    lines = [f"nrt: {len(metrics)} step{'' if len(metrics) == 1 else 's'} of {what} in {seconds / 60:.1f} min "
             f"(data: {data_stats})"]
    if metrics:
        # a tenth of a long run (as nrt.testbed.collapse_signs): 3 steps are too few traces to tell a drift
        # from noise; up to 3 steps, at most half, of a short one
        window = max(1, min(3, len(metrics) // 2), len(metrics) // 10)
        first, last = metrics[:window], metrics[-window:]

        def mean(part: list[dict[str, Any]], key: str) -> float:
            return sum(m[key] for m in part) / window

        for key, label in [("reward_raw_mean", "reward"), ("trace_len_mean", "trace length"),
                           ("answer_nll_gain", "answer NLL gain (nats/token)"), ("delimiter_rate", "delimiter rate")]:
            lines.append(f"  {label:30s} {mean(first, key):10.4f} -> {mean(last, key):10.4f}   "
                         f"(mean of first/last {window} steps)")
        if cfg.trace:
            lines += reading_notes(len(metrics), mean(last, "answer_nll_gain"), mean(last, "zero_std_group_fraction"),
                                   trace_len=(mean(first, "trace_len_mean"), mean(last, "trace_len_mean")),
                                   delimiter_rates={"sampled": (mean(first, "delimiter_rate"),
                                                                mean(last, "delimiter_rate")),
                                                    **held_out_delimiter_rates(metrics)})
        else:
            lines += reading_notes(len(metrics), None)
    lines.append(f"  checkpoint: {checkpoint / 'model' if checkpoint else 'none'}")
    trackers = [str(run_dir / "tensorboard") if name == "tensorboard" else
                f"wandb run {run_name(cfg)!r} in project {cfg.wandb_project!r}" for name in cfg.report_to]
    lines.append(f"  logs: {', '.join([str(run_dir / 'metrics.jsonl'), str(run_dir / 'samples.jsonl'), *trackers])}")
    return "\n".join(lines)
