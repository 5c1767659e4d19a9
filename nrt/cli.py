"""The ``nrt`` command: ``train``, ``generate``, ``presets``, ``data``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from nrt.config import FIELDS, ConfigError, load_config, preset_names, resolve_config_path
from nrt.data import DataError
from nrt.modeling import DEFAULT_MODEL, ModelError


def _train(args: argparse.Namespace) -> None:
    from nrt.trainer import train

    cfg = load_config(args.config, args.overrides)
    train(cfg, resume=args.resume)


def _inference_policy(args: argparse.Namespace) -> Any:
    """The model of ``nrt generate`` / ``nrt eval`` on the device and in the dtype their flags ask for."""
    from nrt.modeling import inference_device, inference_dtype, load_policy

    device = inference_device(args.device)
    return load_policy(args.model, trust_remote_code=args.trust_remote_code, device=device,
                       dtype=inference_dtype(args.dtype, device))


def _inference_args(p: argparse.ArgumentParser) -> None:
    from nrt.rollout import SAMPLERS

    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N.")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="Weights' dtype. auto: bf16 on a GPU that computes it, fp32 on the CPU.")
    p.add_argument("--sampler", default="auto", choices=["auto", *SAMPLERS],
                   help="auto: as in training (nrt's KV-cache loop on the CPU, compiled static-cache generate for "
                   "bf16 weights on a GPU).")


def _generate(args: argparse.Namespace) -> None:
    from nrt.generate import generate

    policy = _inference_policy(args)
    out = generate(policy, args.question, system_prompt=args.system_prompt, seed=args.seed, think=not args.no_think,
                   max_trace_tokens=args.max_trace_tokens, max_answer_tokens=args.max_answer_tokens,
                   temperature=args.temperature, greedy=not args.sample, sampler=args.sampler)
    closed = "closed with the delimiter" if out.emitted else "no delimiter: appended"
    print(f"--- trace ({out.trace_tokens} tokens, {closed}) ---\n{out.trace}\n--- answer ---\n{out.answer}")


def _eval(args: argparse.Namespace) -> None:
    from rich.console import Console

    from nrt.evaluate import evaluate, results_table, write_results

    policy = _inference_policy(args)
    tasks = [t for t in args.tasks.split(",") if t]
    results = evaluate(policy, tasks, limit=args.limit, eval_seed=args.eval_seed, think=not args.no_think,
                       max_trace_tokens=args.max_trace_tokens, max_answer_tokens=args.max_answer_tokens,
                       batch_size=args.batch_size, system_prompt=args.system_prompt, sampler=args.sampler)
    mode = "no-think" if args.no_think else f"think (trace <= {args.max_trace_tokens} tokens)"
    Console(width=None if sys.stdout.isatty() else 160).print(results_table(results, f"{args.model} — {mode}"))
    write_results(results, Path(args.output), vars(args) | {"func": None})
    print(f"samples and scores: {args.output}")


def _int_list(text: str) -> list[int]:
    """``0,1,2`` -> ``[0, 1, 2]``; argparse reports a bad value with its flag's name."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None
    if len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"a value is repeated: {text!r}")
    return values


def _testbed(args: argparse.Namespace) -> None:
    from nrt import testbed

    methods = args.methods.split(",") if args.methods else testbed.QUICK if args.quick else list(testbed.METHODS)
    for flag, names in (("--methods", methods), ("--baseline", [args.baseline])):
        unknown = [m for m in names if m not in testbed.METHODS]
        if unknown:
            raise ConfigError(f"{flag}: unknown {unknown}; choose from {list(testbed.METHODS)}")
    seeds = list(range(1 if args.quick else args.seeds))
    settings = testbed.Settings(variant=args.variant, warm_until=args.warm_until, answer_steps=args.answer_steps,
                                warm_check_every=args.warm_check_every)
    if args.eval_size is not None:
        settings = dataclasses.replace(settings, eval_size=args.eval_size)
    if args.rl_lr is not None:
        settings = dataclasses.replace(settings, rl_lr=args.rl_lr)
    out = Path(args.out)
    started = time.perf_counter()
    draws, text = {}, ""
    for draw in args.start_seed:
        # one draw keeps --out as it was; several get a folder each and, at the end, a table paired within draws
        draw_out = out if len(args.start_seed) == 1 else out / f"start-{draw}"
        draw_settings = dataclasses.replace(settings, start_seed=draw)
        results = draws[draw] = testbed.run(draw_out, methods=methods, seeds=seeds, settings=draw_settings,
                                            workers=args.workers)
        table = testbed.table(results)
        if args.baseline in results["methods"]:
            table += f"\n\nPaired on seeds, against {args.baseline}:\n\n" \
                + testbed.paired_table(results, args.baseline)
        testbed.plot(results, draw_out / "curves.png")
        curves = "curves.png" if draw_out == out else f"{draw_out.name}/curves.png"
        heading = "" if draw_out == out else f"## Start draw {draw}\n\n"
        text += f"{heading}{testbed.warm_start_text(results, draw_settings)}\n\n{table}\n\n![curves]({curves})\n\n"
    if len(draws) > 1 and args.baseline in methods:
        text += (f"## Every draw, each run paired with {args.baseline} on its own draw and seed (draw/seed)\n\n"
                 + testbed.paired_table(testbed.pool_draws(draws), args.baseline) + "\n")
    minutes = (time.perf_counter() - started) / 60
    command = shlex.join(["nrt", *sys.argv[1:]]) if sys.argv[1:2] == ["testbed"] else "nrt testbed"
    (out / "README.md").write_text(f"# nrt testbed ({settings.variant})\n\n`{command}`: {len(seeds)} seed(s) x "
                                   f"{len(draws)} start draw(s), {settings.eval_size} held-out problems per split, "
                                   f"{minutes:.1f} min.\n\n{text}")
    print(text)
    print(f"\n{minutes:.1f} min; table, curves and results.json in {out}")


def _demo(args: argparse.Namespace) -> None:
    from nrt.demo import QUICK, Budget, run

    run(args.model, Path(args.out), QUICK if args.quick else Budget(), threads=args.threads)


def _presets(args: argparse.Namespace) -> None:
    for name in preset_names():
        lines = [ln for ln in resolve_config_path(name).read_text().splitlines() if ln and not ln.startswith("#")]
        print(f"{name:12s} {', '.join(lines)}")
    if args.keys:
        print("\nkeys (any can be overridden as key=value):")
        for f in FIELDS.values():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            print(f"  {f.name} = {default!r}\n      {f.metadata['help']}")


def _data(args: argparse.Namespace) -> None:
    from nrt.data import bigbench_dir, fetch_bigbench

    tasks = fetch_bigbench()
    print(f"extracted {len(tasks)} BIG-bench tasks to {bigbench_dir()}")


def build_parser() -> argparse.ArgumentParser:
    from nrt.testbed import VARIANTS, Settings

    parser = argparse.ArgumentParser(prog="nrt", description="Native Reasoning Training: teach a causal LM to "
                                     "reason from question-answer pairs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="Train with a preset or YAML config and key=value overrides.")
    p.add_argument("--config", default="nrt-ws", help="YAML file or preset name (see `nrt presets`).")
    p.add_argument("--resume", action="store_true", help="Continue from the newest complete checkpoint.")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="Override any config key.")
    p.set_defaults(func=_train)

    p = sub.add_parser("generate", help="Show the trace and the answer of a model for one question.")
    p.add_argument("question")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Checkpoint folder, hub name, or the embedded default.")
    p.add_argument("--max-trace-tokens", type=int, default=256)
    p.add_argument("--max-answer-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--sample", action="store_true", help="Sample instead of greedy decoding.")
    p.add_argument("--no-think", action="store_true", help="Answer right after the delimiter, no trace.")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--seed", type=int, default=0)
    _inference_args(p)
    p.set_defaults(func=_generate)

    p = sub.add_parser("eval", help="Think-then-answer evaluation on offline tasks; prints a table, writes JSON.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Checkpoint folder, hub name, or the embedded default.")
    p.add_argument("--tasks", required=True,
                   help="Comma-separated: reasoning_gym:<gen>[:key=value...], bigbench:<task>, humaneval, "
                   "<benchmark>:<path> (bbh, mmlu, gsm8k, math, humaneval, drop, popqa, truthfulqa, ifeval), "
                   "or a question/answer file.")
    p.add_argument("--limit", type=int, default=50, help="Examples per task.")
    p.add_argument("--no-think", action="store_true", help="Answer right after the delimiter, no trace.")
    p.add_argument("--max-trace-tokens", type=int, default=128)
    p.add_argument("--max-answer-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-seed", type=int, default=999, help="Seed block of held-out reasoning_gym problems.")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--output", default="eval.json", help="JSON with per-task figures and every sample.")
    _inference_args(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("testbed", help="Every method on a synthetic task where reasoning is needed, in minutes.")
    p.add_argument("--quick", action="store_true", help="One seed, the control (with and without the answer term) "
                   "and five methods.")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", default=None, help="Comma-separated method names (default: all, or --quick's).")
    p.add_argument("--baseline", default="nrt-ws", help="The method every other is paired with (95%% intervals of "
                   "the differences), when it is among --methods.")
    p.add_argument("--eval-size", type=int, default=None,
                   help="Held-out problems per split (in-dist, longer); default: the testbed's (200).")
    p.add_argument("--variant", default="base", choices=list(VARIANTS),
                   help="How the answer is written (testbed.VARIANTS): base (one hard token), format (19 easy "
                   "tokens, one hard), noise (8 unpredictable tokens), long (56), middle (two hard tokens), "
                   "shortcut (24 unpredictable tokens; the start often answers without a trace).")
    p.add_argument("--warm-until", type=float, default=0.0, help="Warm up the start until its greedy accuracy "
                   "on unseen chains reaches this (checked every --warm-check-every steps) instead of the fixed "
                   "600 steps.")
    p.add_argument("--warm-check-every", type=int, default=Settings.warm_check_every, help="With --warm-until: "
                   "steps between checks. The start's accuracy can jump from 0.36 to 0.80 within 100 steps (one "
                   "draw did), so a criterion meant to stop near it wants checks more often.")
    p.add_argument("--answer-steps", type=int, default=0, help="Teach a variant's start in two stages: worked "
                   "traces with the base task's answer, then this many steps with the variant's own answer.")
    p.add_argument("--start-seed", type=_int_list, default=[0], help="Which draw(s) of the start checkpoint (its "
                   "initialisation and warm-start data), comma-separated: every method and seed trains from each, "
                   "and with several, each method is also paired with nrt-ws within each draw.")
    p.add_argument("--rl-lr", type=float, default=None, help="Learning rate of every method's training; default: "
                   "the testbed's (2e-4).")
    p.add_argument("--workers", type=int, default=1, help="Trainings at once, one thread each (2 on a 2-core "
                   "machine: ~3x sooner than one process); a finished run is kept, so an interrupted grid resumes.")
    p.add_argument("--out", default="runs/testbed",
                   help="Output folder (the committed results are in results/testbed: pass it to replace them).")
    p.set_defaults(func=_testbed)

    p = sub.add_parser("demo", help="The method learning in under 20 minutes on 2 CPU cores: warm-start the model on "
                       "worked column additions, train nrt-ws on question-answer pairs only, print held-out accuracy "
                       "before -> after with a 95%% interval, plot it.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Checkpoint folder, hub name, or the embedded default.")
    p.add_argument("--out", default="runs/demo", help="Output folder: demo.png, summary.json, the runs.")
    p.add_argument("--quick", action="store_true", help="A few problems and steps: checks the pipeline, shows nothing.")
    p.add_argument("--threads", type=int, default=None, help="Torch threads (default: one per core). On cores shared "
                   "with other jobs, 1: two threads then wait on each other and can be several times slower.")
    p.set_defaults(func=_demo)

    p = sub.add_parser("presets", help="List the shipped presets (and with --keys every config key).")
    p.add_argument("--keys", action="store_true")
    p.set_defaults(func=_presets)

    p = sub.add_parser("data", help="Offline data helpers.")
    p.add_argument("action", choices=["fetch-bigbench"], help="fetch-bigbench: cache the BIG-bench task files.")
    p.set_defaults(func=_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache INFO lines are not the user's news
    from nrt.trainer import TrainingError

    try:
        args.func(args)
    except (ConfigError, DataError, ModelError, TrainingError) as exc:
        print(f"nrt: error: {exc}", file=sys.stderr)
        return 2
    return 0
