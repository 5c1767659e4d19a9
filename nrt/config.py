"""Training configuration: one dataclass, YAML presets, ``key=value`` overrides.

Presets are data (``nrt/presets/*.yaml``, also reachable as ``configs/``), not code. Every key is read by
the trainer; an unknown key, a value of the wrong type or an impossible combination is an error at start
that names the key, never a surprise mid-run.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from nrt.rewards import AGGREGATIONS
from nrt.runlog import REPORTERS


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def _f(default: Any, help: str) -> Any:
    """A dataclass field with help text (shown by ``nrt presets --keys``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything one ``nrt train`` run reads. Defaults follow the reference recipe where it applies."""

    # --- model -----------------------------------------------------------------------------------
    model: str = _f("smollm2-135m-instruct", "Embedded default name, a local HF folder, or a hub name.")
    trust_remote_code: bool = _f(False, "Allow custom modelling code from the model folder (opt-in).")
    dtype: Literal["auto", "bf16", "fp32"] = _f(
        "auto",
        "bf16 autocast (fp32 master weights), plain fp32, or auto: bf16 where the hardware has fast bf16 "
        "(a CUDA GPU that supports it, a CPU with AVX-512 BF16/AMX), else fp32. On a CPU without bf16 "
        "instructions autocast backward was measured 30x slower than fp32.",
    )
    gradient_checkpointing: bool = _f(False, "Trade compute for memory in the training pass.")
    retain_freed_memory: bool = _f(
        True,
        "CPU runs on Linux: keep freed memory in the process (glibc mallopt) so that each step does not "
        "page-fault its activations in anew: 16% faster updates, 6% higher peak memory on the default model "
        "(see nrt.host_memory).",
    )
    sharding: Literal["none", "fsdp"] = _f(
        "none",
        "fsdp: parameters, gradients and optimizer state sharded over the processes with torch FSDP2 (fully_shard "
        "per decoder layer; start with torchrun or `accelerate launch` without an FSDP config). none: each process "
        "holds the whole model (DDP over several processes).",
    )
    lora: bool = _f(False, "Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA scaling numerator.")
    lora_dropout: float = _f(0.0, "LoRA dropout.")
    lora_target_modules: list[str] = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Module names that get LoRA adapters.",
    )
    delimiter: str = _f("<|response_start|>", "Special token that closes the trace and opens the answer.")
    system_prompt: str | None = _f(None, "Optional system message put before every question.")

    # --- data ------------------------------------------------------------------------------------
    data: str = _f(
        "reasoning_gym:basic_arithmetic",
        "reasoning_gym:<name>, bigbench:<task>, a .jsonl/.json/.csv/.parquet file, a saved datasets "
        "folder, or a datasets hub name.",
    )
    data_split: str = _f("train", "Split for datasets sources.")
    data_size: int = _f(1000, "Number of generated examples for reasoning_gym sources.")
    data_seed: int = _f(1, "Generator seed for reasoning_gym sources (evaluation uses other seeds).")
    question_field: str = _f("question", "Record field holding the question (a string).")
    answer_field: str = _f("answer", "Record field holding the reference answer (a string).")
    messages_field: str = _f(
        "messages",
        "Record field holding a chat (list of {role, content}); the last assistant turn is the answer. "
        "Used when a record has it, else question_field/answer_field.",
    )
    skip_bad_records: bool = _f(False, "Skip malformed records (and report how many) instead of failing.")
    max_prompt_tokens: int = _f(512, "Prompts longer than this are skipped (counted in the log).")
    max_answer_tokens: int = _f(256, "Reference answers are truncated to this many tokens.")

    # --- rollout ---------------------------------------------------------------------------------
    trace: bool = _f(True, "Sample reasoning traces. False gives plain SFT on the answers (no trace).")
    num_traces: int = _f(4, "K: traces sampled per prompt (the group for advantage normalisation).")
    max_trace_tokens: int = _f(64, "Trace budget in tokens; a trace that hits it gets the delimiter appended.")
    temperature: float = _f(
        1.0, "Sampling temperature of traces; the trace term scores them under the same temperature (as verl).")
    top_p: float = _f(
        1.0,
        "Nucleus sampling mass of traces. Only 1 is accepted: traces drawn from a truncated distribution would "
        "be scored (trace log-probs, importance ratio) under the untruncated one, a biased policy gradient.",
    )
    sampler: Literal["auto", "cache", "generate", "static"] = _f(
        "auto",
        "cache: nrt's KV-cache loop (each prompt prefilled once for its K traces, finished traces leave the "
        "batch). generate: transformers' model.generate (every copy prefilled; the plain baseline). static: "
        "model.generate with a static cache, compiled on CUDA. auto: static on CUDA, cache elsewhere.",
    )
    sampling_copy: Literal["keep", "free"] = _f(
        "keep",
        "The copy of the weights the rollout samples from: bf16 on a GPU, and with sharding=fsdp a full copy on "
        "every process (its parameters gathered once per rollout). keep: allocated for the whole run (2 bytes per "
        "parameter in bf16; the compiled sampler's captured graphs stay valid). free: allocated for each rollout "
        "and freed after it (the 2 bytes per parameter only while sampling; the compiled decode step may be "
        "captured again at each rollout). Without a copy (a CPU, unsharded) it has no effect.",
    )

    # --- objective -------------------------------------------------------------------------------
    aggregation: str = _f(
        "weighted_sum_log_prob", f"Reward aggregation f over answer tokens: one of {sorted(AGGREGATIONS)}."
    )
    token_reward: Literal["fixed", "derived"] = _f(
        "fixed", "Answer-term weight per token: 1 (reference recipe) or c*df/dc from the aggregation."
    )
    empty_trace_baseline: bool = _f(
        False, "Use max(0, R - R(empty trace)) as the reward before group normalisation (RLPR debiasing)."
    )
    reward_fn: str = _f(
        "",
        "A reward function you bring (a verifier) in place of the likelihood reward: package.module:function or "
        "path/to/file.py:function, called as fn(samples, tokenizer) -> float tensor [len(samples)] (see "
        "nrt.reward_fn, examples/rewards.py). Empty: the aggregation's likelihood reward.",
    )
    group_std_min: float = _f(
        0.0, "Drop groups whose reward std is below this from the trace term (RLPR's std filter)."
    )
    trace_weight: float = _f(1.0, "Weight of the policy-gradient trace term.")
    answer_weight: float = _f(1.0, "Weight of the answer likelihood term.")
    format_weight: float = _f(0.3, "Weight of the delimiter NLL for traces that did not emit it.")
    clip_low: float = _f(0.8, "Lower clip of the importance ratio in the trace term.")
    clip_high: float = _f(1.28, "Upper clip of the importance ratio in the trace term.")
    pass_structure: Literal["fused", "reference"] = _f(
        "fused",
        "fused: one forward/backward pass gives the reward and the loss, the empty-trace pass runs once per "
        "prompt. reference: the reference recipe's no-grad scoring pass + empty-trace pass per sample + "
        "training pass (same result, more work; for benchmarks and checks).",
    )

    # --- optimisation ----------------------------------------------------------------------------
    steps: int = _f(6, "Training steps (rollout batches).")
    prompts_per_step: int = _f(4, "Prompts per rollout batch (global, over all processes).")
    prompts_per_micro_batch: int = _f(
        1,
        "Prompts per forward/backward pass; groups are never split. One prompt's K rows already make a pass of "
        "~1k tokens: on a 2-core CPU 2 prompts per pass ran at the same speed with 2 GB more peak memory. Raise "
        "it where a bigger pass is faster (a GPU).",
    )
    mini_batches_per_step: int = _f(
        1,
        "M: the rollout batch splits into M disjoint mini-batches of prompt groups, one optimizer update each, each "
        "used once: the reference recipe's '4 updates per rollout batch' is M=4. Updates after the first are "
        "off-policy (importance ratio against the rollout policy).",
    )
    chunked_logits: Literal["auto", "on", "off"] = _f(
        "auto",
        "on: the training pass never builds the [rows x length x vocab] logits; the head runs one sequence at a "
        "time and again in backward (one more head matmul). auto: on with CUDA, off on a CPU (where it costs time "
        "for memory the default workload does not need) and with sharding=fsdp (outside the model's forward its "
        "head holds only a shard). Models whose logits are soft-capped or scaled run unchunked.",
    )
    pad_vocab_to_multiple_of: int = _f(
        0,
        "If > 0: pad the embedding and head rows to a multiple of this (64 on a GPU: the 135M model's update ran "
        "20% faster on an H100 with its 49,153 rows padded to 49,216). The padded ids are never sampled and never "
        "scored; checkpoints keep the padded rows.",
    )
    tokens_per_micro_batch: int = _f(
        0,
        "If > 0: micro-batches hold as many prompt groups as fit this many padded tokens (rows x longest sequence, "
        "at least one group), instead of prompts_per_micro_batch each; one budget fits every model size. Processes "
        "run as many micro-batches as the one that packs the most (the others split theirs).",
    )
    updates_per_step: int = _f(
        1,
        "Epochs over the rollout batch: every mini-batch is used this many times (U x M updates per step). Not the "
        "recipe's '4 updates per rollout batch' (that is mini_batches_per_step=4). >1 makes updates off-policy.",
    )
    lr: float = _f(5e-6, "AdamW peak learning rate.")
    betas: list[float] = _f([0.9, 0.95], "AdamW betas.")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    warmup_ratio: float = _f(0.1, "Fraction of updates with linear warm-up.")
    lr_schedule: Literal["constant", "linear", "cosine"] = _f("constant", "Learning-rate shape after warm-up.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    max_nonfinite_steps: int = _f(
        3, "Stop the run after this many steps in a row whose loss or gradient was not finite (update skipped)."
    )

    # --- evaluation during training ------------------------------------------------------------------
    eval_every: int = _f(0, "Evaluate every N steps on eval_tasks (0: never); logged as eval/<task>/... metrics.")
    eval_tasks: list[str] = _f([], "Tasks for evaluation during training (see `nrt eval`), e.g. reasoning_gym:X.")
    eval_limit: int = _f(32, "Examples per evaluation task.")
    eval_seed: int = _f(999, "Seed block of held-out reasoning_gym problems (disjoint from data_seed's).")

    # --- run -------------------------------------------------------------------------------------
    seed: int = _f(0, "Seed for sampling, data order and initialisation.")
    output_dir: str = _f("runs/nrt", "Run folder: metrics, logs, samples, checkpoints.")
    overwrite_output_dir: bool = _f(False, "Start over in an output_dir that holds an earlier run, deleting its "
                                    "checkpoints and logs; without it such a folder is refused (unless resuming).")
    save_every: int = _f(0, "Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = _f(2, "How many step checkpoints to keep (the newest).")
    samples_per_step: int = _f(4, "Traces written to samples.jsonl per step.")
    report_to: list[str] = _f(
        ["tensorboard"],
        f"Where the metrics also go, besides metrics.jsonl: any of {list(REPORTERS)}, [] for none. tensorboard: "
        "output_dir/tensorboard. wandb (pip install wandb): a Weights & Biases run in output_dir/wandb (or "
        "WANDB_DIR), uploaded unless WANDB_MODE=offline; wandb is imported only when listed.",
    )
    wandb_project: str = _f("nrt", "Weights & Biases project of the run (report_to: [wandb]).")
    run_name: str = _f("", "Run name in Weights & Biases; empty: the name of the output_dir folder.")
    progress: bool = _f(True, "Show a progress bar.")

    def validate(self) -> TrainConfig:
        """Check cross-field constraints; raise ConfigError naming the key."""
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"aggregation: unknown value {self.aggregation!r}; choose from {sorted(AGGREGATIONS)}")
        positive = ["num_traces", "max_trace_tokens", "steps", "prompts_per_step", "prompts_per_micro_batch",
                    "updates_per_step", "mini_batches_per_step", "max_nonfinite_steps", "max_prompt_tokens",
                    "max_answer_tokens", "data_size", "lora_r", "eval_limit"]
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        for key, hint in typing.get_type_hints(TrainConfig).items():
            value = getattr(self, key)
            if hint is float and not math.isfinite(value):
                raise ConfigError(f"{key}: must be a finite number, got {value}")
        for key in ("trace_weight", "answer_weight", "format_weight", "weight_decay", "group_std_min",
                    "tokens_per_micro_batch", "pad_vocab_to_multiple_of"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if self.max_grad_norm <= 0:
            raise ConfigError(f"max_grad_norm: must be > 0, got {self.max_grad_norm}")
        if self.trace and self.num_traces < 2:
            raise ConfigError("num_traces: group normalisation needs at least 2 traces per prompt (got 1)")
        if not self.trace and self.num_traces != 1:
            raise ConfigError("num_traces: must be 1 when trace=false (no trace is sampled)")
        if self.prompts_per_step % (self.mini_batches_per_step * self.prompts_per_micro_batch):
            raise ConfigError(
                f"prompts_per_micro_batch: mini_batches_per_step x prompts_per_micro_batch "
                f"({self.mini_batches_per_step} x {self.prompts_per_micro_batch}) must divide prompts_per_step "
                f"({self.prompts_per_step})"
            )
        if not self.temperature > 0.0:
            raise ConfigError(f"temperature: must be > 0, got {self.temperature}")
        if self.top_p != 1.0:
            raise ConfigError(
                f"top_p: got {self.top_p}; training samples from the full distribution only. A nucleus-truncated "
                "trace scored under the untruncated policy gives a biased policy gradient and importance ratio; "
                "lower the temperature instead (the trace term scores traces under it).")
        if not 0.0 < self.clip_low <= 1.0 <= self.clip_high:
            raise ConfigError(
                f"clip_low/clip_high: need 0 < clip_low <= 1 <= clip_high, got {self.clip_low}, {self.clip_high}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.sharding == "fsdp" and self.lora:
            raise ConfigError("sharding: fsdp with lora is not tested; LoRA's adapters fit one device, use DDP")
        if self.sharding == "fsdp" and self.chunked_logits == "on":
            raise ConfigError("chunked_logits: on needs the head outside the model's forward, where sharding=fsdp "
                              "leaves it a shard; use auto (off when sharded) or off")
        if self.sharding == "fsdp" and self.eval_every:
            raise ConfigError("eval_every: evaluation during training runs on the main process alone, which does not "
                              "hold a sharded model; run `nrt eval` on the checkpoints")
        if self.eval_every and not self.eval_tasks:
            raise ConfigError("eval_tasks: eval_every is set but no evaluation task is given")
        if self.eval_every and "reasoning_gym:" in self.data and self.eval_seed == self.data_seed:
            raise ConfigError("eval_seed: must differ from data_seed, or evaluation reuses training problems")
        if self.reward_fn:
            check_external_reward(self)
        unknown = [r for r in self.report_to if r not in REPORTERS]
        if unknown or len(set(self.report_to)) < len(self.report_to):
            raise ConfigError(f"report_to: got {self.report_to}; give each of {list(REPORTERS)} at most once, or [] "
                              "for none")
        if "wandb" in self.report_to and importlib.util.find_spec("wandb") is None:
            raise ConfigError("report_to: wandb is not installed; pip install wandb (or pip install 'nrt[wandb]')")
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas: need two values in [0, 1), got {self.betas}")
        return self


def check_external_reward(cfg: TrainConfig) -> None:
    """Refuse what an external reward (the ``reward_fn`` key or ``train``'s argument) does not combine with."""
    if cfg.empty_trace_baseline:
        raise ConfigError("empty_trace_baseline: subtracts the empty trace's likelihood reward, which has no meaning "
                          "for an external reward function's score; turn it off with reward_fn")
    if not cfg.trace:
        raise ConfigError("reward_fn: scores sampled traces, and trace=false samples none (plain SFT on the answers)")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Keys that were replaced, and what to write instead.
REPLACED = {"tensorboard": "report_to: [tensorboard] writes the TensorBoard log (the default), [] none"}
# TRL GRPOConfig names with one nrt key of the same meaning (docs/trl.md has the whole table)
TRL_NAMES = {"learning_rate": "lr", "num_generations": "num_traces", "max_completion_length": "max_trace_tokens",
             "max_prompt_length": "max_prompt_tokens", "max_steps": "steps", "num_iterations": "updates_per_step",
             "steps_per_generation": "mini_batches_per_step", "lr_scheduler_type": "lr_schedule",
             "save_steps": "save_every", "save_total_limit": "keep_checkpoints", "bf16": "dtype",
             "reward_funcs": "reward_fn"}
PRESET_DIR = resources.files("nrt") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets (``nrt-ws``, ``sft``, ...)."""
    return sorted(p.name.removesuffix(".yaml") for p in PRESET_DIR.iterdir() if p.name.endswith(".yaml"))


def _coerce(key: str, value: Any, source: str) -> Any:
    """Convert ``value`` to the declared type of ``key`` or raise ConfigError naming key and source."""
    hint = typing.get_type_hints(TrainConfig)[key]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None and (origin in (typing.Union, types.UnionType)) and type(None) in args:
        return None
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r} (from {source})")
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads a bare on / off as a bool
            value = "on" if value else "off"
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r} (from {source})")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is list:
        if isinstance(value, str) and args == (str,):  # `report_to=wandb` is the list [wandb]
            value = [value]
        if not isinstance(value, list):
            raise bad
        (item,) = args
        if not all(isinstance(v, item) or (item is float and isinstance(v, int)) for v in value):
            raise bad
        return [item(v) for v in value]
    raise bad


def _parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (so ``lr=1e-5``, ``lora=true``, ``betas=[0.9,0.99]``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and FIELDS.get(key) and \
            typing.get_type_hints(TrainConfig)[key] is str:
        value = raw  # a model or data name that looks like a number stays a string
    return key.strip(), value


def resolve_config_path(config: str) -> Path:
    """A YAML path, or the name of a shipped preset (``nrt-ws`` or ``configs/nrt-ws.yaml``)."""
    path = Path(config)
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml")
    candidate = PRESET_DIR / f"{name}.yaml"
    if candidate.is_file():
        return Path(str(candidate))
    raise ConfigError(f"config: no file {config!r} and no preset {name!r} (presets: {preset_names()})")


def load_config(config: str | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Build a validated TrainConfig from a YAML file or preset name plus overrides."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config is not None:
        path = resolve_config_path(config)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of key: value, got {type(loaded).__name__}")
        for key, value in loaded.items():
            values[key], sources[key] = value, str(path)
    # key=value strings are the command line's (``nrt train``); a dict is the Python API's
    items = overrides.items() if isinstance(overrides, dict) else map(_parse_override, overrides or [])
    for key, value in items:
        values[key], sources[key] = value, "overrides" if isinstance(overrides, dict) else "command line"
    for key in values:
        if key in REPLACED:
            raise ConfigError(f"{key}: replaced (from {sources[key]}); use {REPLACED[key]}")
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = (f"; TRL's {key} is nrt's {TRL_NAMES[key]} (docs/trl.md)" if key in TRL_NAMES
                    else f"; did you mean {close[0]}?" if close else "; `nrt presets --keys` lists every key")
            raise ConfigError(f"{key}: unknown key (from {sources[key]}){hint}")
    coerced = {k: _coerce(k, v, sources[k]) for k, v in values.items()}
    return TrainConfig(**coerced).validate()


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain dict of a config, for the run folder's ``config.yaml``."""
    return dataclasses.asdict(cfg)
