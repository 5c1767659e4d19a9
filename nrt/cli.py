"""The ``nrt`` command: ``train``, ``generate``, ``eval``, ``testbed``, ``presets``, ``data``.

Nothing heavy is imported at the top: a subcommand's arguments are added when it is parsed and its modules
imported when it runs, so ``nrt --help`` does not wait for torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TRAIN_EPILOG = ("Every config key, with its default and what it does: `nrt presets --keys`; the keys explained "
                "together: docs/configuration.md.")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except a flag's (False) and one that is not set (None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Command(argparse.ArgumentParser):
    """A subcommand whose arguments are added when it is parsed (or its help shown), not when the parser is
    built: some of them name what heavy modules hold (samplers, testbed variants, the default model)."""

    def __init__(self, *args: Any, arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=_HelpFormatter, **kwargs)
        self._arguments = arguments

    def add_arguments(self) -> None:
        if self._arguments is not None:
            arguments, self._arguments = self._arguments, None
            arguments(self)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self.add_arguments()
        return super().parse_known_args(args, namespace)


def _train(args: argparse.Namespace) -> None:
    from nrt.config import load_config
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
    """The model and how it runs, shared by ``nrt generate`` and ``nrt eval``."""
    from nrt.modeling import DEFAULT_MODEL
    from nrt.rollout import SAMPLERS

    p.add_argument("--model", default=DEFAULT_MODEL, help="Checkpoint folder, hub name, or the embedded default.")
    p.add_argument("--trust-remote-code", action="store_true", help="Allow custom modelling code from the model "
                   "folder.")
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


def _limit(text: str) -> int | None:
    """``--limit``: a positive number of examples per task, or ``all`` (None)."""
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive number of examples, or all; got {text!r}")
    return value


def default_output(model: str, think: bool = True) -> Path:
    """Where ``nrt eval`` writes its JSON: in a local model's folder, else under ``runs/eval/<name>/``
    (git-ignored, as all of ``runs/``); ``eval-no-think.json`` without traces, so one mode keeps the other's."""
    folder, name = Path(model).expanduser(), "eval.json" if think else "eval-no-think.json"
    return folder / name if folder.is_dir() else Path("runs", "eval", model, name)


def _eval(args: argparse.Namespace) -> None:
    from rich.console import Console

    from nrt.data import DataError
    from nrt.evaluate import check_tasks, evaluate, results_table, write_results

    tasks = [t for t in args.tasks.split(",") if t]
    check_tasks(tasks, args.limit)  # before the model loads: a typo fails in a second
    policy = _inference_policy(args)
    results = evaluate(policy, tasks, limit=args.limit, eval_seed=args.eval_seed, think=not args.no_think,
                       max_trace_tokens=args.max_trace_tokens, max_answer_tokens=args.max_answer_tokens,
                       batch_size=args.batch_size, system_prompt=args.system_prompt, sampler=args.sampler)
    mode = "no-think" if args.no_think else f"think (trace <= {args.max_trace_tokens} tokens)"
    table = results_table(results, f"{args.model} — {mode}")
    if any(r.available is not None and r.available > r.n for r in results):
        table.caption = f"n: 'x of y' is the first x of the task's y examples (--limit {args.limit}; --limit all " \
            "evaluates every one)"
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if all(r.skipped for r in results):
        raise DataError("every task was skipped (why: in the table above); nothing was evaluated")
    output = Path(args.output) if args.output else default_output(args.model, think=not args.no_think)
    write_results(results, output, vars(args) | {"func": None, "output": str(output)})
    print(f"samples and scores: {output}")


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
    from nrt.config import ConfigError
    from nrt.reports import write_report

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
    if args.rl_steps is not None:
        settings = dataclasses.replace(settings, rl_steps=args.rl_steps)
    settings = dataclasses.replace(settings, eval_points=args.eval_points)
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
        if settings.eval_points:
            testbed.plot_accuracy(results, draw_out / "accuracy.png")
            table += (f"\n\nHeld-out accuracy (in-dist) during training:\n\n{testbed.curve_table(results)}\n\n"
                      f"![accuracy]({curves.replace('curves', 'accuracy')})\n\nSigns of collapse, first tenth of "
                      f"the run -> last tenth (`testbed.collapse_signs`):\n\n{testbed.collapse_table(results)}")
        heading = "" if draw_out == out else f"## Start draw {draw}\n\n"
        text += f"{heading}{testbed.warm_start_text(results, draw_settings)}\n\n{table}\n\n![curves]({curves})\n\n"
    if len(draws) > 1 and args.baseline in methods:
        text += (f"## Every draw, each run paired with {args.baseline} on its own draw and seed (draw/seed)\n\n"
                 + testbed.paired_table(testbed.pool_draws(draws), args.baseline) + "\n")
    minutes = (time.perf_counter() - started) / 60
    command = shlex.join(["nrt", *sys.argv[1:]]) if sys.argv[1:2] == ["testbed"] else "nrt testbed"
    write_report(out / "README.md", f"# nrt testbed ({settings.variant})\n\n`{command}`: {len(seeds)} seed(s) x "
                                   f"{len(draws)} start draw(s), {settings.eval_size} held-out problems per split, "
                                   f"{minutes:.1f} min.\n\n{text}")
    print(text)
    print(f"\n{minutes:.1f} min; table, curves and results.json in {out}")


def _demo(args: argparse.Namespace) -> None:
    from nrt.arithmetic import QUICK
    from nrt.demo import DEMO, run

    run(args.model, Path(args.out), QUICK if args.quick else DEMO, threads=args.threads)


def _presets(args: argparse.Namespace) -> None:
    from nrt.config import FIELDS, preset_names, resolve_config_path

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


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="nrt-ws", help="YAML file or preset name (see `nrt presets`).")
    p.add_argument("--resume", action="store_true", help="Continue from the newest complete checkpoint in "
                   "output_dir.")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="Override any config key.")


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="The question, as the user turn of a chat.")
    p.add_argument("--max-trace-tokens", type=int, default=256, help="Trace budget; the delimiter is appended "
                   "when it runs out.")
    p.add_argument("--max-answer-tokens", type=int, default=256, help="Answer budget.")
    p.add_argument("--temperature", type=float, default=1.0, help="With --sample.")
    p.add_argument("--sample", action="store_true", help="Sample instead of greedy decoding.")
    p.add_argument("--no-think", action="store_true", help="Answer right after the delimiter, no trace.")
    p.add_argument("--system-prompt", default=None, help="A system message before the question.")
    p.add_argument("--seed", type=int, default=0, help="Seed of --sample.")
    _inference_args(p)


def _eval_args(p: argparse.ArgumentParser) -> None:
    from nrt.evaluate import TASK_FORMS

    p.add_argument("--tasks", required=True, help=f"Comma-separated; each one of: {TASK_FORMS}.")
    p.add_argument("--limit", type=_limit, default=50, help="Examples per task: the first N, or all (a generated "
                   "reasoning_gym task needs a number).")
    p.add_argument("--no-think", action="store_true", help="Answer right after the delimiter, no trace.")
    p.add_argument("--max-trace-tokens", type=int, default=128, help="Trace budget; the delimiter is appended "
                   "when it runs out.")
    p.add_argument("--max-answer-tokens", type=int, default=64, help="Answer budget.")
    p.add_argument("--batch-size", type=int, default=16, help="Questions answered at once.")
    p.add_argument("--eval-seed", type=int, default=999, help="Seed block of held-out reasoning_gym problems.")
    p.add_argument("--system-prompt", default=None, help="A system message before every question.")
    p.add_argument("--output", default=None, help="JSON with per-task figures and every sample; default: eval.json "
                   "(eval-no-think.json with --no-think) in the model's folder, or under runs/eval/<model name>/ "
                   "for a hub name or the embedded default.")
    _inference_args(p)


def _testbed_args(p: argparse.ArgumentParser) -> None:
    from nrt.testbed import VARIANTS, Settings

    p.add_argument("--quick", action="store_true", help="One seed, the control (with and without the answer term) "
                   "and five methods.")
    p.add_argument("--seeds", type=int, default=3, help="Training seeds per method.")
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
    p.add_argument("--rl-steps", type=int, default=None, help="Training steps of every method; default: the "
                   "testbed's (200).")
    p.add_argument("--eval-points", type=int, default=0, help="Also evaluate every run this many times, evenly "
                   "spaced (it must divide the steps): the README then has accuracy per point and each method's "
                   "signs of collapse.")
    p.add_argument("--workers", type=int, default=1, help="Trainings at once, one thread each (2 on a 2-core "
                   "machine: ~3x sooner than one process); a finished run is kept, so an interrupted grid resumes.")
    p.add_argument("--out", default="runs/testbed",
                   help="Output folder (the committed results are in results/testbed: pass it to replace them).")

def _demo_args(p: argparse.ArgumentParser) -> None:
    from nrt.modeling import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help="Checkpoint folder, hub name, or the embedded default.")
    p.add_argument("--out", default="runs/demo", help="Output folder: demo.png, summary.json, the runs.")
    p.add_argument("--quick", action="store_true", help="A few problems and steps: checks the pipeline, shows nothing.")
    p.add_argument("--threads", type=int, default=None, help="Torch threads (default: one per core). On cores shared "
                   "with other jobs, 1: two threads then wait on each other and can be several times slower.")


def _presets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", action="store_true", help="Also list every config key with its default and help.")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch-bigbench"], help="fetch-bigbench: cache the BIG-bench task files.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrt", description="Native Reasoning Training: teach a causal LM to "
                                     "reason from question-answer pairs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Command)
    commands = [
        ("train", _train_args, _train, "Train with a preset or YAML config and key=value overrides."),
        ("generate", _generate_args, _generate, "Show the trace and the answer of a model for one question."),
        ("eval", _eval_args, _eval, "Think-then-answer evaluation on offline tasks; prints a table, writes JSON."),
        ("testbed", _testbed_args, _testbed, "Every method on a synthetic task where reasoning is needed, in "
         "minutes."),
        ("demo", _demo_args, _demo, "The method learning in about 16 minutes on 2 CPU cores: warm-start the model on "
         "worked column additions, train nrt-ws on question-answer pairs only, print held-out accuracy before -> "
         "after with a 95 percent interval, plot it."),
        ("presets", _presets_args, _presets, "List the shipped presets (and with --keys every config key)."),
        ("data", _data_args, _data, "Offline data helpers."),
    ]
    for name, arguments, func, text in commands:
        sub.add_parser(name, arguments=arguments, help=text, description=text).set_defaults(func=func)
    sub.choices["train"].epilog = TRAIN_EPILOG
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache INFO lines are not the user's news
    from nrt.config import ConfigError
    from nrt.data import DataError
    from nrt.modeling import ModelError
    from nrt.trainer import TrainingError

    try:
        args.func(args)
    except (ConfigError, DataError, ModelError, TrainingError) as exc:
        print(f"nrt: error: {exc}", file=sys.stderr)
        return 2
    return 0
