"""Seconds per NRT step: (a) nrt's fused step, (b) the reference recipe's three-pass structure written plainly
(``model.generate`` for the traces, then a no-grad scoring pass, an empty-trace pass for every sample and the
training pass), (c) the same algorithm in TRL's GRPOTrainer, as a TRL user would write it (a reward function
that scores the reference answer with separate forward passes of the policy). (a0) is (a) with glibc's
default allocator, which returns freed memory to the OS (``nrt.host_memory``): a/a0 is the allocator's share.
(ac) is (a) with ``chunked_logits: on`` (the GPU default): the training pass without the full logits.

    python benchmarks/step.py                    # a, a0, b, c interleaved over 2 rounds, default model
    python benchmarks/step.py --scaling          # (a) as K, trace length and answer length double
    python benchmarks/step.py --variants a,ac --micro 4   # chunked logits, 4 prompts per pass

Same model, prompts, K, trace and answer lengths and seed for every variant. Every trace runs to its full
budget (stop tokens are disabled for a/b, ``min_new_tokens`` for TRL) so that all variants process the same
number of tokens. Each variant-round runs in a fresh process (so peak memory is its own) for two steps and
reports the second (the first allocates optimizer state); the parent interleaves them.
Needs ``pip install trl==1.16.0`` for (c) (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from nrt.config import TrainConfig

VARIANTS = {"a": "nrt fused step", "a0": "a, default allocator", "ac": "a, chunked logits",
            "b": "reference three passes", "c": "TRL GRPOTrainer"}


# --------------------------------------------------------------------------------------------------- child
def _workload(policy, args):
    """Fixed prompts (GSM-style word problems) and answers of exactly ``args.answer`` tokens."""
    from nrt.data import load_examples
    from nrt.prompts import encode_example

    examples = load_examples("reasoning_gym:gsm_symbolic", size=args.prompts, seed=3).examples
    filler = " ".join(e.messages[0]["content"] for e in examples)
    answer_ids = policy.tokenizer(filler, add_special_tokens=False).input_ids[:args.answer]
    encoded = [encode_example(policy.tokenizer, e, system_prompt=None, max_answer_tokens=args.answer)
               for e in examples]
    return examples, [type(e)(e.prompt_ids, answer_ids) for e in encoded]


def run_nrt(args, structure: str, retain: bool, chunked: bool = False) -> dict:
    from accelerate import Accelerator

    import nrt.rollout
    from nrt import load_config, load_policy
    from nrt.host_memory import retain_freed_memory
    from nrt.step import nrt_step

    if retain:  # as nrt's trainer does on CPU (``retain_freed_memory: true``)
        retain_freed_memory()
    policy = load_policy("smollm2-135m-instruct")
    _, encoded = _workload(policy, args)
    cfg = load_config("nrt-ws", {"num_traces": args.k, "max_trace_tokens": args.trace, "prompts_per_step": args.prompts,
                                 "prompts_per_micro_batch": args.micro, "pass_structure": structure,
                                 "max_answer_tokens": args.answer, "dtype": "fp32",
                                 "chunked_logits": "on" if chunked else "off",
                                 "sampler": "cache" if structure == "fused" else "generate"})
    for name, sample in nrt.rollout.SAMPLERS.items():  # full-length traces: nothing ends them early
        nrt.rollout.SAMPLERS[name] = _no_stop(sample)
    model = policy.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.95), weight_decay=0.01, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    accelerator = Accelerator(cpu=True)
    for step in range(args.steps):  # the last step is reported: the first allocates optimizer state
        torch.manual_seed(args.seed + step)
        m = nrt_step(model, policy, accelerator, optimizer, scheduler, encoded, cfg).metrics
    prompt_tokens = sum(len(e.prompt_ids) for e in encoded) * args.k
    trace_tokens = int(m["trace_len_mean"] * len(encoded) * args.k)
    answer_tokens = (args.answer + 2) * len(encoded) * args.k
    # the fused pass runs each prompt once for its K traces, the reference pass once per trace
    pass_prompt_tokens = prompt_tokens if structure == "reference" else prompt_tokens // args.k
    return {"step": m["step_seconds"], "sampling": m["sampling_seconds"], "scoring": m["scoring_seconds"],
            "update": m["update_seconds"], "sequence_tokens": prompt_tokens + trace_tokens + answer_tokens,
            "pass_tokens": pass_prompt_tokens + trace_tokens + answer_tokens,
            "target_tokens": trace_tokens + answer_tokens, "trace_tokens": trace_tokens}


def _no_stop(sample):
    def sample_to_budget(*a, **kw):
        kw["delimiter_id"], kw["end_ids"] = -1, [-1]
        return sample(*a, **kw)
    return sample_to_budget


def grpo_trainer(policy, messages: list[list[dict]], answer: str, *, k: int, trace: int, steps: int, seed: int,
                 output_dir: str, gpu: bool):
    """TRL's GRPOTrainer set up for NRT-WS as a TRL user would write it (a reward function that scores the
    reference ``answer`` with two extra forward passes of the policy per sample), with every trace run to its
    budget. Returns the trainer and the timings its steps fill in (``steps``: the seconds of each step, of its
    sampling and of its scoring). Also used by ``benchmarks/gpu.py``."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from nrt import aggregate
    from nrt.sequences import Sample, assemble, score

    data = Dataset.from_list([{"prompt": m, "answer": answer} for m in messages])
    timings = {"scoring": 0.0, "sampling": 0.0, "steps": []}
    model = policy.model
    tok = policy.tokenizer

    def nrt_ws_reward(prompts, completions, completion_ids, answer, **kwargs):
        """WS reward of the reference answer after each completion: two extra forward passes per sample."""
        start = time.perf_counter()
        device = next(model.parameters()).device
        with torch.no_grad():
            prompt_ids = [tok.apply_chat_template(p, add_generation_prompt=True) for p in prompts]
            prompt_ids = [p["input_ids"] if not isinstance(p, list) else p for p in prompt_ids]
            answers = [tok(a, add_special_tokens=False).input_ids for a in answer]
            with_trace = assemble([Sample(p, list(c), False, a) for p, c, a in zip(prompt_ids, completion_ids, answers,
                                                                                   strict=True)],
                                  policy.delimiter_id, policy.end_id, policy.pad_id).to(device)
            empty = assemble([Sample(p, [], False, a) for p, a in zip(prompt_ids, answers, strict=True)],
                             policy.delimiter_id, policy.end_id, policy.pad_id).to(device)
            c = score(model, with_trace, entropy=False)
            b = score(model, empty, entropy=False)
            reward, _ = aggregate("weighted_sum_log_prob", c.answer_logp, with_trace.answer_mask, b.answer_logp)
        timings["scoring"] += time.perf_counter() - start
        return reward.tolist()

    real_generate = model.generate

    def timed_generate(*a, **kw):
        start = time.perf_counter()
        out = real_generate(*a, **kw)
        timings["sampling"] += time.perf_counter() - start
        return out

    model.generate = timed_generate

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            timings["sampling"] = timings["scoring"] = 0.0
            self.start = time.perf_counter()

        def on_step_end(self, *a, **kw):
            if gpu:
                torch.cuda.synchronize()
            timings["steps"].append({"step": time.perf_counter() - self.start, "sampling": timings["sampling"],
                                     "scoring": timings["scoring"]})

    config = GRPOConfig(output_dir=output_dir, per_device_train_batch_size=len(messages) * k,
                        num_generations=k, max_completion_length=trace, learning_rate=1e-6,
                        beta=0.0, temperature=1.0, top_k=0, use_cpu=not gpu, bf16=gpu, report_to=[],
                        max_steps=steps, optim="adamw_torch_fused", adam_beta2=0.95, weight_decay=0.01,
                        save_strategy="no", logging_steps=1, seed=seed, disable_tqdm=True,
                        generation_kwargs={"min_new_tokens": trace}, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=nrt_ws_reward, args=config, train_dataset=data,
                          processing_class=tok, callbacks=[StepTimer()])
    return trainer, timings


def run_trl(args) -> dict:
    from nrt import load_policy

    policy = load_policy("smollm2-135m-instruct")
    examples, encoded = _workload(policy, args)
    trainer, timings = grpo_trainer(policy, [e.messages for e in examples],
                                    policy.tokenizer.decode(encoded[0].answer_ids), k=args.k, trace=args.trace,
                                    steps=args.steps, seed=args.seed, output_dir=str(Path(args.tmp) / "trl"),
                                    gpu=False)
    trainer.train()
    last = timings["steps"][-1]  # the last step, as for a and b
    prompt_tokens = sum(len(e.prompt_ids) for e in encoded) * args.k
    trace_tokens = args.trace * len(encoded) * args.k
    return {"step": last["step"], "sampling": last["sampling"], "scoring": last["scoring"],
            "update": last["step"] - last["sampling"] - last["scoring"],
            "sequence_tokens": prompt_tokens + trace_tokens, "pass_tokens": prompt_tokens + trace_tokens,
            "target_tokens": trace_tokens,
            "trace_tokens": trace_tokens}


def child(args) -> None:
    torch.manual_seed(args.seed)
    if args.variant == "c":
        result = run_trl(args)
    else:
        result = run_nrt(args, "reference" if args.variant == "b" else "fused", retain=args.variant in ("a", "ac"),
                         chunked=args.variant == "ac")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


# -------------------------------------------------------------------------------------------------- parent
def matmul_gflops(rows: int) -> float:
    """fp32 matmul throughput on shapes of the default model's MLP and head."""
    shapes = [(rows, 576, 1536), (rows, 1536, 576), (rows, 576, 49153)]
    total_flops, total_s = 0.0, 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        total_s += time.perf_counter() - start
        total_flops += 3 * 2 * m * k * n
    return total_flops / total_s / 1e9


def update_flops(result: dict) -> float:
    """Approximate FLOPs of the training pass: 6 x params x tokens it runs (body) + 6 x head x target tokens."""
    body = 106.2e6  # SmolLM2-135M without the tied 49,153 x 576 embedding/head matrix
    head = 49153 * 576
    return 6 * body * result["pass_tokens"] + 6 * head * result["target_tokens"]


def run_child(variant: str, args, **shape) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--tmp", args.tmp, "--seed", str(args.seed), "--steps",
           str(args.steps)]
    for key, value in {"prompts": args.prompts, "k": args.k, "trace": args.trace, "answer": args.answer,
                       "micro": args.micro, **shape}.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"variant {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def machine_line() -> str:
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    return (f"machine: {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"bf16 kernels: {bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}, {platform.python_version()}")


def _after_sampling(result: dict) -> float:
    return result["step"] - result["sampling"]


def parent(args) -> None:
    print(machine_line())
    print(f"shape: {args.prompts} prompts x K={args.k}, traces {args.trace} tokens, answers {args.answer} tokens, "
          f"fp32, default model; {args.rounds} interleaved rounds, median reported")
    if args.scaling:
        base = dict(k=args.k, trace=args.trace, answer=args.answer)
        rows = [("base", base)] + [(f"{key} x2", {**base, key: base[key] * 2}) for key in ("k", "trace", "answer")]
        print(f"{'shape':10s} {'step s':>8s} {'tokens':>8s} {'s per 1k tokens':>16s}")
        for name, shape in rows:
            r = run_child("a", args, **shape)
            per_k = 1000 * r["step"] / r["sequence_tokens"]
            print(f"{name:10s} {r['step']:8.1f} {r['sequence_tokens']:8d} {per_k:16.2f}")
        return
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for round_ in range(args.rounds):
        for variant in args.variants:
            results[variant].append(run_child(variant, args))
            r = results[variant][-1]
            print(f"  round {round_ + 1} {variant}: {r['step']:.1f} s", flush=True)
    med = {v: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for v, rs in results.items()}
    peak = matmul_gflops(rows=2048)
    print(f"\nmatmul peak (fp32, model shapes): {peak:.1f} GFLOP/s")
    header = f"{'variant':29s} {'step s':>7s} {'sample':>7s} {'score':>7s} {'update':>7s} {'tok/s':>7s} " \
             f"{'peak MB':>8s} {'update % of matmul peak':>24s}"
    print(header)
    for v, r in med.items():
        frac = update_flops(r) / max(r["update"], 1e-9) / 1e9 / peak
        print(f"{v + ' ' + VARIANTS[v]:29s} {r['step']:7.1f} {r['sampling']:7.1f} {r['scoring']:7.1f} "
              f"{r['update']:7.1f} {r['sequence_tokens'] / r['step']:7.1f} {r['peak_rss_mb']:8.0f} "
              f"{100 * frac:23.0f}%")
    if "a" in med:
        for other in ("a0", "b", "c"):
            if other in med:
                print(f"ratio {other}/a (how many times faster nrt's step is than {VARIANTS[other]}): "
                      f"{med[other]['step'] / med['a']['step']:.2f}x; without sampling (scoring + update): "
                      f"{_after_sampling(med[other]) / _after_sampling(med['a']):.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="a,a0,b,c", type=lambda s: s.split(","))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--trace", type=int, default=128)
    p.add_argument("--answer", type=int, default=64)
    p.add_argument("--micro", type=int, default=TrainConfig.prompts_per_micro_batch,
                   help="prompts per forward/backward pass (a, b); nrt's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2, help="steps per variant run; the last one is reported")
    p.add_argument("--scaling", action="store_true")
    p.add_argument("--child", dest="variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="/tmp/nrt-bench", help=argparse.SUPPRESS)
    args = p.parse_args()
    child(args) if args.variant else parent(args)


if __name__ == "__main__":
    main()
