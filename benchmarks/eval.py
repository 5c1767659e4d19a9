"""``nrt eval``'s think-then-answer on a GPU against the same evaluation on the CPU, measured in one run.

Before, ``nrt eval`` (and ``nrt generate``, and the experiments' evaluations) loaded the model on the CPU in fp32
whatever the machine had; now ``--device auto`` puts it on the GPU, ``--dtype auto`` in bf16 there, and
``--sampler auto`` picks transformers' compiled static-cache ``generate`` for bf16 weights on a GPU (as training
samples). This script loads a model the way the CLI does (``load_policy`` with ``inference_device`` /
``inference_dtype``) and times ``evaluate_task`` on column-addition questions for each configuration below.
No downloads: Llama models at the SmolLM2 shapes with random weights (``benchmarks/gpu.py``'s ``SHAPES``), the
SmolLM2 tokenizer from a folder. Every trace runs to its budget (end-of-turn stops disabled; a random model
rarely writes the delimiter: the mean trace length is printed), answers too, so every configuration decodes
the same tokens per row; on the GPU the first batch is run once untimed (compilation, allocation). The CPU
baseline decodes one batch of ``--cpu-rows`` (a 1.7B model in fp32 takes about a second per token at 64 rows on
16 cores); throughputs are compared, in tokens per second.

    python benchmarks/eval.py --tokenizer DIR                        # on a GPU machine: every configuration
    python benchmarks/eval.py --tokenizer DIR --shapes tiny --cpu-rows 4 --trace 8 --answer 4   # a CPU dry run
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import random
import tempfile
import time
from pathlib import Path

import torch
from gpu import llama_config  # benchmarks/gpu.py, beside this file

from nrt.data import Example
from nrt.evaluate import Task, evaluate_task
from nrt.modeling import load_policy

# (name, device, dtype, sampler): the first is what nrt eval did on every machine before
CONFIGS = [("cpu fp32, nrt loop (before)", "cpu", torch.float32, "cache"),
           ("gpu bf16, nrt loop", "cuda", torch.bfloat16, "cache"),
           ("gpu bf16, generate (dynamic)", "cuda", torch.bfloat16, "generate"),
           ("gpu bf16, static compiled (auto)", "cuda", torch.bfloat16, "static")]


def save_model(shape: str, tokenizer_dir: str, folder: Path) -> None:
    """A randomly initialised Llama at ``shape`` with the tokenizer, as a checkpoint folder ``nrt eval`` loads."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = llama_config(shape, tokenizer)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def questions(n: int) -> list[Example]:
    rng = random.Random(0)
    pairs = [(rng.randrange(100, 1000), rng.randrange(100, 1000)) for _ in range(n)]
    return [Example([{"role": "user", "content": f"What is {a} + {b}?"}], str(a + b), "benchmark") for a, b in pairs]


def measure(folder: Path, device: str, dtype: torch.dtype, sampler: str, args: argparse.Namespace) -> dict:
    policy = load_policy(str(folder), device=device, dtype=dtype)
    policy = dataclasses.replace(policy, end_ids=[-1])  # no end-of-turn stop: every row decodes its budget
    batch = args.cpu_rows if device == "cpu" else args.rows
    common = dict(max_trace_tokens=args.trace, max_answer_tokens=args.answer, batch_size=batch, sampler=sampler)
    rows = batch * (1 if device == "cpu" else args.batches)
    if device == "cuda":  # compilation and allocation, untimed
        evaluate_task(policy, Task("warm-up", questions(batch), lambda *_: 0.0), **common)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = evaluate_task(policy, Task("timed", questions(rows), lambda *_: 0.0), **common)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = rows * (result.trace_len_mean + args.answer)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"rows": rows, "seconds": seconds, "trace": result.trace_len_mean, "tok/s": tokens / seconds,
            "peak GB": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="Folder with the SmolLM2 tokenizer files "
                        "(python benchmarks/gpu.py --save-tokenizer DIR writes one).")
    parser.add_argument("--shapes", default="135m,1.7b")
    parser.add_argument("--rows", type=int, default=64, help="Questions per batch (nrt eval's --batch-size).")
    parser.add_argument("--batches", type=int, default=2, help="Timed batches on the GPU (the CPU times one).")
    parser.add_argument("--cpu-rows", type=int, default=16, help="Questions in the CPU baseline's one batch.")
    parser.add_argument("--trace", type=int, default=128)
    parser.add_argument("--answer", type=int, default=16)
    args = parser.parse_args()
    import transformers

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)"
    print(f"device: {gpu}; CPU threads {torch.get_num_threads()}; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, python {platform.python_version()}")
    print(f"workload: greedy, traces {args.trace} tokens + answers {args.answer} (to budget); the GPU times "
          f"{args.batches} batches of {args.rows} questions, the CPU 1 of {args.cpu_rows}")
    header = ["rows", "seconds", "trace", "tok/s", "peak GB"]
    print(f"{'shape':6s} {'configuration':34s} " + " ".join(f"{h:>9s}" for h in header) + "  vs CPU", flush=True)
    for shape in args.shapes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            save_model(shape, args.tokenizer, Path(tmp))
            baseline = None
            for name, device, dtype, sampler in CONFIGS:
                if device == "cuda" and not torch.cuda.is_available():
                    continue
                row = measure(Path(tmp), device, dtype, sampler, args)
                baseline = baseline or row["tok/s"]
                print(f"{shape:6s} {name:34s} " + " ".join(f"{row[h]:9.2f}" for h in header)
                      + f"  {row['tok/s'] / baseline:5.1f}x", flush=True)


if __name__ == "__main__":
    main()
