"""NRT steps on one GPU at real model shapes with random weights: sampling tokens/s, update TFLOP/s, MFU and HFU,
peak memory, per phase, and the checkpoint written after the steps (seconds and peak memory while writing), for
(a) nrt as a user runs it (sampler auto, bf16 sampling copy, fused pass, micro-batches from a token budget),
(b) the reference structure with ``model.generate`` (dynamic cache, every prompt copy prefilled, three passes),
(c) TRL's GRPOTrainer with an NRT-WS reward function, as a TRL user would write it (``benchmarks/step.py``; needs
``trl==1.16.0``, the ``bench`` extra; not for the LoRA shape) and (f) nrt with ``sharding: fsdp`` (FSDP2 over the
processes launched, one by default; sampling as in (a), from a full bf16 copy the parameters are gathered into once
per rollout), for its speed and peak memory next to (a). No downloads:
Llama models are built from their configs at the SmolLM2-135M, -360M, -1.7B shapes (and Llama-3-8B's, trained
with LoRA), with the SmolLM2 tokenizer from a folder. Figures measured on one H100: README, "On a GPU" (the
shapes took about 1 minute each there, compilation included).

    python benchmarks/gpu.py --tokenizer DIR                 # all shapes, variants a and b
    python benchmarks/gpu.py --tokenizer DIR --shapes tiny --prompts 2 --k 2 --trace 8 --variants a,b,c,f
                                                             # a CPU dry run
    python benchmarks/gpu.py --tokenizer DIR --shapes 1.7b --variants a,f   # FSDP on one GPU next to plain
    python benchmarks/gpu.py --tokenizer DIR --shapes 1.7b --variants a --steps 4 --profile 30   # top kernels

``DIR``: any folder with the SmolLM2 tokenizer files (``python benchmarks/gpu.py --save-tokenizer DIR`` writes one
from the embedded model). Every trace runs to its budget (stop tokens disabled), so every variant processes
the same tokens. Steps 2.. are reported (the first compiles and allocates optimizer state), median.
MFU is against 989 TFLOP/s (dense bf16, H100 SXM); update FLOPs are 6 x parameters x tokens run for full
fine-tuning and 4 x parameters x tokens with LoRA (no weight gradients for the frozen matrices). HFU also counts
the forward that gradient checkpointing runs again in backward (8 x, or 6 x with LoRA; TRL's GRPOConfig turns
gradient checkpointing on by default, so (c) recomputes); without checkpointing HFU equals MFU.
The checkpoint is what a run writes (``nrt.trainer.save_checkpoint``: weights, merged for LoRA, optimizer and
scheduler state) into a temporary folder; for (c), ``trainer.save_model``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab (None: the tokenizer's), tied, lora
    "tiny": (64, 128, 2, 4, 2, None, True, False),
    "135m": (576, 1536, 30, 9, 3, None, True, False),
    "360m": (960, 2560, 32, 15, 5, None, True, False),
    "1.7b": (2048, 8192, 24, 32, 32, None, True, False),
    "8b-lora": (4096, 14336, 32, 32, 8, 128256, False, True),
}
H100_BF16_TFLOPS = 989.0


def update_rates(params: int, tokens: int, seconds: float, *, lora: bool, recompute: bool) -> dict[str, float]:
    """Update TFLOP/s and MFU from the model's FLOPs (6 x parameters x tokens: forward 2, backward 4; 4 with LoRA,
    whose frozen matrices get no weight gradient), and HFU from what the hardware ran: with gradient checkpointing
    (``recompute``) backward runs the forward again, 2 x parameters x tokens more (8, or 6 with LoRA)."""
    model = (4 if lora else 6) * params * tokens
    hardware = model + (2 * params * tokens if recompute else 0)
    return {"update TFLOP/s": model / seconds / 1e12, "MFU %": 100 * model / seconds / 1e12 / H100_BF16_TFLOPS,
            "HFU %": 100 * hardware / seconds / 1e12 / H100_BF16_TFLOPS}


def llama_config(shape: str, tokenizer):
    """A Llama config at ``shape`` (``SHAPES``) for ``tokenizer`` (plus one id: the delimiter nrt adds)."""
    from transformers import LlamaConfig

    hidden, inter, layers, heads, kv, vocab, tied, _ = SHAPES[shape]
    return LlamaConfig(vocab_size=vocab or len(tokenizer) + 1, hidden_size=hidden, intermediate_size=inter,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                       max_position_embeddings=4096, tie_word_embeddings=tied, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_policy(shape: str, tokenizer_dir: str, device: torch.device):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from nrt.modeling import prepare_policy

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with device:
        model = LlamaForCausalLM(llama_config(shape, tokenizer))
    return prepare_policy(model, tokenizer, "<|response_start|>", shape)


def _to_budget(sample):
    def sample_to_budget(*args, **kwargs):
        kwargs["delimiter_id"], kwargs["end_ids"] = -1, [-1]
        return sample(*args, **kwargs)
    return sample_to_budget


@contextmanager
def _profiled(top: int, title: str) -> Iterator[None]:
    """Profile the body and print its ``top`` operators by device time (CPU time without CUDA); 0: no profile.

    The profiler's overhead slows the step it records, so the caller leaves that step out of its median.
    """
    if not top:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        yield
    if cuda:
        torch.cuda.synchronize()
    print(f"profile of the last step, {title}:")
    print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                    row_limit=top, max_name_column_width=60), flush=True)


@contextmanager
def _checkpoint_timed(out: dict[str, float], device: torch.device) -> Iterator[str]:
    """A temporary folder to write a checkpoint into; the seconds and the peak memory of the write go into
    ``out``, the peak of what ran before it into ``out["peak GB"]``."""
    cuda = device.type == "cuda"
    out["peak GB"] = float("nan")
    if cuda:
        torch.cuda.synchronize()
        out["peak GB"] = torch.cuda.max_memory_allocated() / 1e9
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="nrt-bench-ckpt-") as folder:
        started = time.perf_counter()
        yield folder
        if cuda:
            torch.cuda.synchronize()
        out["ckpt s"] = time.perf_counter() - started
    out["ckpt peak GB"] = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _workload(policy, args: argparse.Namespace) -> tuple[list, list, list[int]]:
    """The examples, their encodings and the answer ids (exactly ``args.answer`` tokens) every variant runs."""
    from nrt.data import Example
    from nrt.prompts import encode_example

    examples = [Example([{"role": "user", "content": f"Tom has {i} apples and buys {2 * i + 3} more. How many "
                          "apples does he have now? Think step by step."}], str(3 * i + 3), "bench")
                for i in range(args.prompts)]
    encoded = [encode_example(policy.tokenizer, e, system_prompt=None, max_answer_tokens=args.answer) for e in examples]
    answer = policy.tokenizer(" ".join(["word"] * args.answer), add_special_tokens=False).input_ids[:args.answer]
    return examples, [type(e)(e.prompt_ids, answer) for e in encoded], answer


def run_trl(shape: str, args: argparse.Namespace) -> dict[str, float]:
    """(c): TRL's GRPOTrainer on the same shape, prompts, K, trace and answer tokens."""
    from importlib.util import find_spec

    from step import grpo_trainer  # benchmarks/step.py

    if SHAPES[shape][7]:
        raise ValueError("variant c runs full fine-tuning shapes only")
    if find_spec("trl") is None:
        raise ValueError("variant c needs trl==1.16.0 (the bench extra)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    policy = build_policy(shape, args.tokenizer, device)
    policy.model.train()
    examples, encoded, answer = _workload(policy, args)
    with tempfile.TemporaryDirectory(prefix="nrt-bench-trl-") as output_dir:
        trainer, timings = grpo_trainer(policy, [e.messages for e in examples], policy.tokenizer.decode(answer),
                                        k=args.k, trace=args.trace, steps=args.steps, seed=0, output_dir=output_dir,
                                        gpu=device.type == "cuda")
        trainer.train()
        later = timings["steps"][1:] or timings["steps"]
        median = {key: statistics.median(s[key] for s in later) for key in later[0]}
        rows = args.prompts * args.k
        pass_tokens = sum(len(e.prompt_ids) for e in encoded) * args.k + rows * args.trace
        update = median["step"] - median["sampling"] - median["scoring"]
        out = {"step s": median["step"], "sampling s": median["sampling"], "update s": update,
               "sampling tok/s": rows * args.trace / median["sampling"],
               **update_rates(sum(p.numel() for p in policy.model.parameters()), pass_tokens, update, lora=False,
                              recompute=trainer.args.gradient_checkpointing)}  # TRL's default: on
        with _checkpoint_timed(out, device) as folder:
            trainer.save_model(folder)
    del trainer, policy
    _release(device)
    return out


def run(shape: str, variant: str, args: argparse.Namespace) -> dict[str, float]:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    import nrt.rollout
    from nrt import load_config
    from nrt.modeling import apply_lora, enable_gradient_checkpointing, pad_vocabulary
    from nrt.sharding import shard_model
    from nrt.step import nrt_step, prompt_group_size
    from nrt.trainer import build_sampling_copy, save_checkpoint

    if variant == "c":
        return run_trl(shape, args)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision="bf16" if device.type == "cuda" else "no", cpu=device.type == "cpu")
    policy = build_policy(shape, args.tokenizer, device)
    if args.pad_vocab:
        pad_vocabulary(policy.model, args.pad_vocab)
    lora = SHAPES[shape][7]
    model = apply_lora(policy.model, 16, 32, 0.0, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj"], [policy.delimiter_id]) if lora else policy.model
    model.train()
    if args.gradient_checkpointing:  # as nrt.trainer.build_policy does (the training pass then runs unfused)
        enable_gradient_checkpointing(policy.model)
    _, encoded, _ = _workload(policy, args)
    common = {"num_traces": args.k, "max_trace_tokens": args.trace, "prompts_per_step": args.prompts,
              "max_answer_tokens": args.answer, "dtype": "bf16" if device.type == "cuda" else "fp32", "lora": lora,
              "gradient_checkpointing": args.gradient_checkpointing}
    if variant == "a":
        over = {"sampler": "auto", "tokens_per_micro_batch": args.tokens_per_micro_batch}
    elif variant == "f":
        if lora:
            raise ValueError("sharding=fsdp with lora is refused by nrt")
        over = {"sampler": "auto", "tokens_per_micro_batch": args.tokens_per_micro_batch, "sharding": "fsdp"}
    else:
        over = {"sampler": "generate", "pass_structure": "reference", "prompts_per_micro_batch": args.prompts}
    cfg = load_config("nrt-ws", {**common, **over, "sampling_copy": args.sampling_copy})
    # (a) and (f) sample from the copy the trainer builds (bf16 on a GPU; for f a full copy, built before sharding)
    copy = build_sampling_copy(model, cfg, device) if variant in "af" else None
    if variant == "f":
        model = shard_model(model, device)
    saved = dict(nrt.rollout.SAMPLERS)
    nrt.rollout.SAMPLERS.update({name: _to_budget(s) for name, s in saved.items()})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6, fused=variant != "f")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    rows, steps = args.prompts * args.k, []
    try:
        for index in range(args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            with _profiled(args.profile if index == args.steps - 1 else 0, f"{shape} {variant}"):
                metrics = nrt_step(model, policy, accelerator, optimizer, scheduler, encoded, cfg, None, copy).metrics
            steps.append({**metrics, "wall": time.perf_counter() - started})
    finally:
        nrt.rollout.SAMPLERS.update(saved)
    timed = steps[:-1] if args.profile and len(steps) > 2 else steps  # the profiled step is slower
    later = timed[1:] or timed
    median = {key: statistics.median(s[key] for s in later) for key in later[0]}
    prompt_runs = args.k // prompt_group_size(cfg, accelerator)  # each prompt once per group when the pass fuses
    pass_tokens = sum(len(e.prompt_ids) for e in encoded) * prompt_runs + rows * (args.trace + args.answer + 2)
    out = {"step s": median["wall"], "sampling s": median["sampling_seconds"], "update s": median["update_seconds"],
           "sampling tok/s": rows * args.trace / median["sampling_seconds"],
           **update_rates(sum(p.numel() for p in model.parameters()), pass_tokens, median["update_seconds"],
                          lora=lora, recompute=args.gradient_checkpointing)}
    with _checkpoint_timed(out, device) as folder:
        save_checkpoint(accelerator, Path(folder), model, optimizer, scheduler, policy, {"step": args.steps},
                        sharded=variant == "f", lora=lora)
    del model, policy, optimizer, copy
    _release(device)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default=None, help="Folder with the SmolLM2 tokenizer files.")
    parser.add_argument("--save-tokenizer", default=None, help="Write the embedded model's tokenizer here and exit.")
    parser.add_argument("--shapes", default="135m,360m,1.7b,8b-lora")
    parser.add_argument("--variants", default="a,b", help="a, b, c, f (see above)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--trace", type=int, default=256)
    parser.add_argument("--answer", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens-per-micro-batch", type=int, default=20_000)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="Recompute activations in backward.")
    parser.add_argument("--sampling-copy", choices=["keep", "free"], default="keep",
                        help="nrt's sampling_copy (a, f): the bf16 copy kept for the run, or held only while sampling.")
    parser.add_argument("--pad-vocab", type=int, default=0, metavar="N",
                        help="nrt's pad_vocab_to_multiple_of (a, b, f): the head's rows padded to a multiple of N.")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="Profile each run's last step and print its N most expensive operators.")
    args = parser.parse_args()
    if args.save_tokenizer:
        from transformers import AutoTokenizer

        from nrt.modeling import default_model_dir

        AutoTokenizer.from_pretrained(default_model_dir()).save_pretrained(args.save_tokenizer)
        return
    if args.tokenizer is None:
        parser.error("--tokenizer is required (see --save-tokenizer)")
    import transformers

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)"
    print(f"device: {gpu}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {platform.python_version()}")
    print(f"workload: {args.prompts} prompts x K={args.k}, traces {args.trace} tokens (to budget), answers "
          f"{args.answer}; median of steps 2..{args.steps}; tokens_per_micro_batch {args.tokens_per_micro_batch} "
          f"(a, f); sampling copy {args.sampling_copy} (a, f); gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}; vocabulary padded to a multiple of {args.pad_vocab or 1} "
          "(a, b, f)")
    header = ["step s", "sampling s", "update s", "sampling tok/s", "update TFLOP/s", "MFU %", "HFU %", "peak GB",
              "ckpt s", "ckpt peak GB"]
    print(f"{'shape':8s} {'variant':30s} " + " ".join(f"{h:>14s}" for h in header), flush=True)
    names = {"a": "nrt (auto sampler, bf16 copy)", "b": "reference + generate", "c": "TRL GRPOTrainer",
             "f": "nrt, sharding=fsdp"}
    for shape in args.shapes.split(","):
        for variant in args.variants.split(","):
            failed = None
            try:
                row = run(shape, variant, args)
                print(f"{shape:8s} {names[variant]:30s} " + " ".join(f"{row[h]:14.2f}" for h in header), flush=True)
            except torch.OutOfMemoryError:
                failed = "out of memory"
            except ValueError as exc:
                failed = f"n/a: {exc}"
            if failed:  # outside the except block, whose traceback still holds the model's tensors
                print(f"{shape:8s} {names[variant]:30s} {failed}", flush=True)
                _release(torch.device("cuda" if torch.cuda.is_available() else "cpu"))

if __name__ == "__main__":
    main()
