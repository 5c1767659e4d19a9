"""``nrt testbed``: the paper's claim measured in minutes, in a setting where reasoning is provably needed.

Task: a chain of operations on single digits, evaluated left to right modulo 10, e.g. ``7 + 5 * 3 - 8``.
The worked trace lists the running value after each operation (``2 6 8``); the answer mixes easy format
tokens with one hard content token (``the answer is 8 .``). Each step of the trace is a local computation,
but the answer alone is a composition of n functions, which a 2-layer model does not learn in one pass.

Pipeline, all through the same code as ``nrt train``:
1. a tiny word-level tokenizer and a ~0.2M-parameter Llama are built, then taught briefly (supervised, on
   worked traces of short chains) to write traces and answers; that start checkpoint is cached, so every
   method starts from the same weights;
2. a positive control trains with a verifiable reward (1 if the sampled trace is exactly right, else 0): if
   it does not beat the start by more than the seed spread, the instrument detects nothing. It runs with the
   answer term and without it (the trace reward alone, isolated);
3. each preset trains from question-answer pairs only (the trace field is never shown), same budget and
   seeds, with the fixed and the derived token reward, and NRT-WS once more without the answer term;
4. everything is evaluated greedily on held-out chains of the trained lengths and of longer ones.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nrt.data import cache_dir
from nrt.plots import plot_curves

OPS = {"+": lambda a, b: (a + b) % 10, "-": lambda a, b: (a - b) % 10, "*": lambda a, b: (a * b) % 10}
FORMAT_WORDS = ["the", "answer", "is", "."]
NOISE_WORDS = list("abcdefghij")  # unpredictable tokens: not digits, whose logits the trace needs
SPECIALS = ["<pad>", "<unk>", "</s>"]
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}={% endif %}"


@dataclass(frozen=True)
class Variant:
    """How the answer is written and what the warm start shows. Each variant is built so that the aggregations'
    formulas predict different outcomes (the predictions: results/testbed-variants/README.md)."""

    prefix: tuple[str, ...] = ("the", "answer", "is")  # easy format tokens before the value
    middle: bool = False  # also state the value halfway through the chain: a second, easier hard token
    noise: int = 0  # letters after the answer drawn independently of the question: no trace can predict them
    empty_trace_rate: float = 0.0  # warm-start examples without a trace: the start can answer without thinking

    def answer(self, value: int, middle: int, noise: list[int]) -> str:
        words = [*self.prefix, str(value)]
        if self.middle:
            words += ["and", "the", "middle", "is", str(middle)]
        words.append(".")
        if self.noise:
            words += ["code", *(NOISE_WORDS[d] for d in noise)]
        return " ".join(words)

    def hard_positions(self) -> list[int]:
        """Word positions of the values in the answer: what accuracy is scored on."""
        return [len(self.prefix)] + ([len(self.prefix) + 5] if self.middle else [])

    def answer_tokens(self) -> int:
        return len(self.answer(0, 0, [0] * self.noise).split())

    def score(self, prediction: str, example: Any) -> float:
        """1 if every value in the answer is right (the format and the unpredictable letters are not scored)."""
        words, reference = prediction.split(), example.answer.split()
        return float(all(i < len(words) and words[i] == reference[i] for i in self.hard_positions()))

    def words(self) -> list[str]:
        """Answer words beyond the base vocabulary, in a fixed order (the base variant adds none)."""
        extra = [*self.prefix, *(["and", "middle"] if self.middle else []),
                 *(["code", *NOISE_WORDS] if self.noise else [])]
        return list(dict.fromkeys(w for w in extra if w not in FORMAT_WORDS))

    def trace_stage(self) -> Variant:
        """What the warm start's first stage teaches: the base task's answer, with this variant's share of
        examples without a trace."""
        return Variant(empty_trace_rate=self.empty_trace_rate)


LONG_PREFIX = "so after every step of this chain of operations the value that we reach at its very end is"
VARIANTS = {
    "base": Variant(),  # one hard token among four easy ones
    "format": Variant(prefix=tuple(LONG_PREFIX.split())),  # 19 easy tokens, one hard
    "noise": Variant(noise=8),  # one hard token and 8 unpredictable ones
    "long": Variant(noise=56),  # 56 unpredictable tokens: log P(answer) < -103, below float32's smallest exp
    "middle": Variant(middle=True),  # two hard tokens of different difficulty
    "shortcut": Variant(noise=24, empty_trace_rate=0.5),  # the start answers half the time without a trace
}


@dataclass(frozen=True)
class Settings:
    """Everything that defines the testbed; the start checkpoint is cached per distinct value."""

    train_ops: tuple[int, int] = (3, 4)  # chain lengths of the RL stage and the in-distribution test
    long_ops: tuple[int, int] = (5, 6)  # longer chains: generalisation
    warm_ops: tuple[int, int] = (1, 4)  # chain lengths of the brief supervised warm start
    warm_steps: int = 600  # tuned so that the start answers ~40% of the trained lengths right
    # > 0: instead of warm_steps, warm up until the greedy accuracy on 200 unseen chains of the trained lengths
    # reaches this (checked every warm_check_every steps, at most warm_max_steps): a variant whose answer takes
    # longer to learn then starts where the base task's 600 steps leave it (~0.40). Not for shortcut, whose
    # greedy start writes no trace and so never reaches it.
    warm_until: float = 0.0
    warm_max_steps: int = 6000
    warm_check_every: int = 100
    warm_lr: float = 3e-3
    # > 0: a variant's start is taught in two stages: worked traces with the base task's answer (warm_steps or
    # warm_until, as the base start), then this many more steps of worked traces with the variant's own answer.
    # Taught in one stage, the unpredictable tokens' loss slows the trace's learning and leaves a start whose
    # every step is about half right, which RL barely moves (results/testbed-variants/README.md, "Why the
    # control did not learn"). 0: one stage on the variant's answer.
    answer_steps: int = 0
    # which draw of the start (its initialisation and warm-start data): every method of a grid shares one, so
    # a grid's seeds vary the training, not the start; runs from other draws show how much the start decides
    start_seed: int = 0
    hidden: int = 64
    layers: int = 2
    rl_steps: int = 200
    rl_prompts: int = 16
    rl_k: int = 8
    rl_lr: float = 2e-4  # 5e-5 moved nothing in 40-100 steps; 5e-4 was no better than 2e-4
    eval_size: int = 200
    # > 0: also evaluate the held-out splits this many times during each run (every rl_steps / eval_points
    # steps), so that a long run shows when accuracy rises or collapses, not only where it ends
    eval_points: int = 0
    variant: str = "base"

    def describe(self) -> str:
        """These settings and their variant's definition: what a finished run depends on."""
        return f"{self!r} {VARIANTS[self.variant]!r}"

    def start_key(self) -> str:
        """What the cached start depends on: these settings less those of the training and evaluation that come
        after it, so that grids with other budgets share one start."""
        default = Settings()
        after = {name: getattr(default, name) for name in ("long_ops", "rl_steps", "rl_prompts", "rl_k", "rl_lr",
                                                            "eval_size", "eval_points")}
        return hashlib.sha256(replace(self, **after).describe().encode()).hexdigest()[:12]


def make_problem(rng: random.Random, n_ops: int, variant: Variant = VARIANTS["base"]) -> dict[str, str]:
    value = rng.randrange(10)
    question, values = [str(value)], []
    for _ in range(n_ops):
        op, digit = rng.choice(sorted(OPS)), rng.randrange(10)
        value = OPS[op](value, digit)
        question += [op, str(digit)]
        values.append(value)
    noise = [rng.randrange(10) for _ in range(variant.noise)]
    return {"question": " ".join(question), "trace": " ".join(map(str, values)),
            "answer": variant.answer(value, values[(n_ops - 1) // 2], noise)}


def write_problems(path: Path, n: int, ops: tuple[int, int], seed: int,
                   variant: Variant = VARIANTS["base"]) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(make_problem(rng, rng.randint(*ops), variant)) + "\n" for _ in range(n)))
    return path


def write_task_files(data_dir: Path, settings: Settings, variant: Variant) -> None:
    """The training problems and the two held-out splits (``_eval_files``), written as ``variant``: seeds 1-3, so
    every run of a grid, and a start taught on another variant's answer, sees the same chains."""
    write_problems(data_dir / "train.jsonl", 2000, settings.train_ops, seed=1, variant=variant)
    write_problems(data_dir / "test_in.jsonl", settings.eval_size, settings.train_ops, seed=2, variant=variant)
    write_problems(data_dir / "test_long.jsonl", settings.eval_size, settings.long_ops, seed=3, variant=variant)


def build_tokenizer(variant: Variant = VARIANTS["base"]) -> Any:
    """A word-level tokenizer over digits, operators and the answer's words, with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [*SPECIALS, *map(str, range(10)), *OPS, "=", *FORMAT_WORDS, *variant.words()]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def problem_example(problem: dict[str, str]) -> Any:
    """One problem as ``nrt train`` reads it from a file: the question as the user's turn, and the answer."""
    from nrt.data import Example

    return Example([{"role": "user", "content": problem["question"]}], problem["answer"], "testbed")


def encode_problem(tokenizer: Any, problem: dict[str, str]) -> tuple[list[int], list[int], list[int]]:
    """Prompt, worked-trace and answer ids of one problem, built as ``nrt train`` builds them."""
    from nrt.prompts import encode_example

    enc = encode_example(tokenizer, problem_example(problem), system_prompt=None, max_answer_tokens=128)
    return enc.prompt_ids, tokenizer(problem["trace"], add_special_tokens=False).input_ids, enc.answer_ids


def start_checkpoint(settings: Settings) -> Path:
    """The cached warm-start model: briefly taught worked traces of short chains, then (``answer_steps``) a
    variant's own answer. Its folder's ``warm_start.json`` says how many steps each stage took and, for a start
    warmed up to an accuracy, each check's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from nrt.modeling import prepare_policy
    from nrt.sequences import Sample, worked_trace_nll

    seed = settings.start_seed
    folder = cache_dir() / "testbed" / f"start-{settings.start_key()}-{seed}"
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    variant = VARIANTS[settings.variant]
    tokenizer = build_tokenizer(variant)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=settings.hidden, intermediate_size=4 * settings.hidden,
                         num_hidden_layers=settings.layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=128, tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    policy = prepare_policy(LlamaForCausalLM(config), tokenizer, "<|response_start|>", "testbed")
    model, rng = policy.model, random.Random(seed + 12345)

    def teach(taught: Variant, optimizer: torch.optim.Optimizer) -> None:
        """One supervised step on 64 fresh chains written as ``taught``."""
        problems = [make_problem(rng, rng.randint(*settings.warm_ops), taught) for _ in range(64)]
        samples = [Sample(prompt, [] if taught.empty_trace_rate and rng.random() < taught.empty_trace_rate
                          else trace_ids, True, answer)
                   for prompt, trace_ids, answer in (encode_problem(tokenizer, p) for p in problems)]
        worked_trace_nll(model, samples, policy.delimiter_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
                         policy.vocab_size).backward()
        optimizer.step()
        optimizer.zero_grad()

    first = variant.trace_stage() if settings.answer_steps else variant
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.warm_lr, weight_decay=0.01)
    checked_on = _warm_check_examples(settings, first) if settings.warm_until else []
    checks: list[tuple[int, float]] = []
    for step in range(1, (settings.warm_max_steps if settings.warm_until else settings.warm_steps) + 1):
        teach(first, optimizer)
        if settings.warm_until and step % settings.warm_check_every == 0:
            checks.append((step, _greedy(policy, "warm", checked_on, first).accuracy))
            if checks[-1][1] >= settings.warm_until:
                break
    answer_steps = settings.answer_steps if first != variant else 0
    if answer_steps:
        # a fresh optimizer: the new answer's tokens have gradients unlike those the first stage's moments saw
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.warm_lr, weight_decay=0.01)
        for _ in range(answer_steps):
            teach(variant, optimizer)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "warm_start.json").write_text(json.dumps({"steps": step, "checks": checks, "answer_steps": answer_steps}))
    tmp.rename(folder)
    return folder


def _warm_check_examples(settings: Settings, variant: Variant) -> list[Any]:
    """The 200 chains of the trained lengths, written as ``variant``, that a warm start up to an accuracy is
    checked on, drawn with a seed of their own (the training and test files use seeds 1-3)."""
    rng = random.Random(4)
    return [problem_example(make_problem(rng, rng.randint(*settings.train_ops), variant)) for _ in range(200)]


def exact_trace_reward(problems_file: Path, tokenizer: Any, final_value_only: bool = False) -> Any:
    """Positive control: 1 if the sampled trace is exactly the worked trace, else 0. ``final_value_only``: 1 if
    its last token is the chain's final value, however it got there: the verifiable reward nearest to what the
    answer's likelihood sees when the answer copies the trace's last value."""
    reference = {}
    for line in problems_file.read_text().splitlines():
        prompt, trace, _ = encode_problem(tokenizer, json.loads(line))
        reference[tuple(prompt)] = trace

    def right(trace: list[int], worked: list[int]) -> bool:
        return trace[-1:] == worked[-1:] if final_value_only else trace == worked

    def reward(samples: list, _tokenizer: Any) -> torch.Tensor:
        return torch.tensor([float(right(s.trace_ids, reference[tuple(s.prompt_ids)])) for s in samples])

    return reward


METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "control (exact-trace reward)": ("nrt-ws", {}),
    "control (no answer term)": ("nrt-ws", {"answer_weight": 0.0}),  # the trace reward alone
    "control (final-value reward) no answer term": ("nrt-ws", {"answer_weight": 0.0}),
    "sft": ("sft", {}),
    "jepo": ("jepo", {}),
    "verifree": ("verifree", {}),
    "rlpr": ("rlpr", {}),
    "nrt-gm": ("nrt-gm", {}),
    "nrt-ws": ("nrt-ws", {}),
    "nrt-ws-inv": ("nrt-ws-inv", {}),
    **{f"{preset} derived token reward": (preset, {"token_reward": "derived"})
       for preset in ("jepo", "verifree", "rlpr", "nrt-gm", "nrt-ws", "nrt-ws-inv")},
    **{f"{preset} no answer term": (preset, {"answer_weight": 0.0})  # the trace term alone
       for preset in ("jepo", "verifree", "rlpr", "nrt-gm", "nrt-ws", "nrt-ws-inv")},
    # where P underflows (variant long) only the format term is left: does it alone shorten the traces?
    "verifree derived token reward no format term": ("verifree", {"token_reward": "derived", "format_weight": 0.0}),
    # the trace term alone, without the groups whose rewards barely differ (no trace got the value right)
    "nrt-ws no answer term small-spread filter": ("nrt-ws", {"answer_weight": 0.0, "group_std_min": 0.01}),
}
CURVE_KEYS = ("step", "reward_raw_mean", "trace_len_mean", "trace_entropy", "delimiter_rate", "answer_nll_gain")
QUICK = ["control (exact-trace reward)", "control (no answer term)", "sft", "rlpr", "nrt-gm", "nrt-ws",
         "nrt-ws no answer term"]


def evaluate_files(model_dir: Path, files: dict[str, Path], settings: Settings) -> dict[str, dict[str, float]]:
    """Greedy think-then-answer on each file; accuracy counts the answer's values (``Variant.score``)."""
    from nrt.data import load_examples
    from nrt.modeling import load_policy

    policy = load_policy(str(model_dir))
    variant = VARIANTS[settings.variant]
    out = {}
    for name, path in files.items():
        r = _greedy(policy, name, load_examples(str(path)).examples[:settings.eval_size], variant)
        out[name] = {"accuracy": r.accuracy, "trace_len": r.trace_len_mean, "delimiter_rate": r.delimiter_rate}
    return out


def _greedy(policy: Any, name: str, examples: list[Any], variant: Variant) -> Any:
    """Greedy think-then-answer on ``examples``, scored on the answer's values (``Variant.score``)."""
    from nrt.evaluate import Task, evaluate_task

    return evaluate_task(policy, Task(name, examples, variant.score), max_trace_tokens=12,
                         max_answer_tokens=variant.answer_tokens() + 2, batch_size=100)


def run_one(out_dir: Path, name: str, seed: int, settings: Settings) -> dict[str, Any]:
    """Train ``name`` with ``seed`` from the cached start and evaluate it; a finished run is read back, so an
    interrupted grid resumes after its last finished run."""
    from nrt import load_config, train
    from nrt.modeling import load_policy

    variant, data_dir = VARIANTS[settings.variant], out_dir / "data"
    run_dir = out_dir / "runs" / f"{name.replace(' ', '_')}-seed{seed}"
    record = run_dir / "testbed.json"
    finished = json.loads(record.read_text()) if record.is_file() else {}
    if finished.get("settings") == settings.describe():
        return finished["run"]
    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run starts over
    start, train_file = start_checkpoint(settings), data_dir / "train.jsonl"
    preset, extra = METHODS[name]
    cfg = load_config(preset, {
        "model": str(start), "data": str(train_file), "output_dir": str(run_dir), "seed": seed,
        "steps": settings.rl_steps, "prompts_per_step": settings.rl_prompts,
        "prompts_per_micro_batch": settings.rl_prompts, "num_traces": 1 if preset == "sft" else settings.rl_k,
        "max_trace_tokens": settings.train_ops[1] + 2, "max_answer_tokens": variant.answer_tokens(),
        "max_prompt_tokens": 32, "lr": settings.rl_lr, "dtype": "fp32", "report_to": [], "progress": False,
        "samples_per_step": 2, **extra, **_checkpoint_schedule(settings)})
    reward_fn = exact_trace_reward(train_file, load_policy(str(start)).tokenizer, "final-value" in name) \
        if name.startswith("control") else None
    started = time.perf_counter()
    result = train(cfg, reward_fn=reward_fn)
    minutes = (time.perf_counter() - started) / 60
    out = {"seed": seed, "minutes": minutes, "metrics": [{key: m[key] for key in CURVE_KEYS} for m in result.metrics],
           "eval": evaluate_files(result.checkpoint / "model", _eval_files(data_dir), settings)}
    if settings.eval_points:
        out["curve"] = [{"step": int(folder.name.split("-")[1]),
                         **evaluate_files(folder / "model", _eval_files(data_dir), settings)}
                        for folder in sorted(result.checkpoint.parent.glob("step-*")) if folder != result.checkpoint]
        out["curve"].append({"step": settings.rl_steps, **out["eval"]})
    record.write_text(json.dumps({"settings": settings.describe(), "run": out}))
    return out


def _checkpoint_schedule(settings: Settings) -> dict[str, int]:
    """Config keys that keep a checkpoint at each of ``eval_points`` evenly spaced steps, for the curve."""
    if not settings.eval_points:
        return {}
    if settings.rl_steps % settings.eval_points:
        raise ValueError(f"eval_points: {settings.eval_points} does not divide rl_steps {settings.rl_steps}")
    return {"save_every": settings.rl_steps // settings.eval_points, "keep_checkpoints": settings.eval_points}


def _eval_files(data_dir: Path) -> dict[str, Path]:
    return {"in-dist": data_dir / "test_in.jsonl", "longer": data_dir / "test_long.jsonl"}


def _one_thread() -> None:
    torch.set_num_threads(1)


def map_one_thread(fn: Any, jobs: list[tuple[Any, ...]], workers: int) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in order; with ``workers > 1`` that many at once in spawned processes of
    one thread each (see ``run`` for why one thread)."""
    if workers <= 1:
        return [fn(*job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
        return list(pool.map(fn, *zip(*jobs, strict=True)))


def run(out_dir: Path, *, methods: list[str], seeds: list[int], settings: Settings = Settings(),
        workers: int = 1) -> dict[str, Any]:
    """Train every method for every seed from the cached start; evaluate; return all figures.

    ``workers > 1`` runs that many trainings at once, each on one thread: on an AMD EPYC CPU with 2 cores one run on
    one thread took 26 s where the same run on two threads took 47 s (the ~0.2M-parameter model cannot keep
    two threads busy), so two one-thread workers finish a grid about 3x sooner than one process.
    """
    variant, data_dir = VARIANTS[settings.variant], out_dir / "data"
    write_task_files(data_dir, settings, variant)
    start = start_checkpoint(settings)  # built once, before any worker needs it
    jobs = [(name, seed) for seed in seeds for name in methods]  # seed by seed: a grid cut short is still paired
    done = map_one_thread(run_one, [(out_dir, name, seed, settings) for name, seed in jobs], workers)
    record = start / "warm_start.json"  # absent from starts cached before it was written
    results: dict[str, Any] = {"settings": settings.describe(),
                               "start": evaluate_files(start, _eval_files(data_dir), settings),
                               "warm_start": json.loads(record.read_text()) if record.is_file() else None,
                               "methods": {name: [] for name in methods}}
    for (name, _), one in zip(jobs, done, strict=True):
        results["methods"][name].append(one)
    (out_dir / "results.json").write_text(json.dumps(results))
    return results


def pool_draws(draws: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Several start draws' results as one for ``paired_table``: each run's seed becomes ``draw/seed``, so a
    method pairs with the baseline only on the same draw and seed. Within a draw both trained from one start;
    across draws the start differs, and pairing across them would add the start's spread to the difference."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for draw, results in draws.items():
        for name, runs in results["methods"].items():
            methods.setdefault(name, []).extend({**r, "seed": f"{draw}/{r['seed']}"} for r in runs)
    return {"methods": methods}


def warm_start_text(results: dict[str, Any], settings: Settings) -> str:
    """One sentence on how the start was made (empty for a start cached before this was recorded)."""
    warm = results.get("warm_start")
    if warm is None:
        return ""
    text = f"Warm start: {warm['steps']} supervised steps"
    if warm["checks"]:
        accuracies = ", ".join(f"{acc:.2f}" for _, acc in warm["checks"])
        text += (f" (greedy accuracy every {settings.warm_check_every} steps, stopping at "
                 f"{settings.warm_until}: {accuracies})")
    if warm.get("answer_steps"):
        text += (f" with the base task's answer, then {warm['answer_steps']} steps with this variant's answer")
    return text + "."


def mean_spread(values: list[float]) -> str:
    """``mean ± std`` over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: dict[str, Any]) -> str:
    """Markdown: method x held-out accuracy (mean ± std over seeds), trace length, entropy, minutes."""
    start = results["start"]
    lines = ["| method | acc in-dist | acc longer | trace len | trace entropy (last step) | delimiter rate | minutes |",
             "|---|---|---|---|---|---|---|",
             f"| start checkpoint | {start['in-dist']['accuracy']:.3f} | {start['longer']['accuracy']:.3f} | "
             f"{start['in-dist']['trace_len']:.1f} | – | {start['in-dist']['delimiter_rate']:.2f} | – |"]
    for name, runs in results["methods"].items():
        acc_in = [r["eval"]["in-dist"]["accuracy"] for r in runs]
        acc_long = [r["eval"]["longer"]["accuracy"] for r in runs]
        length = statistics.mean(r["eval"]["in-dist"]["trace_len"] for r in runs)
        entropy = statistics.mean(r["metrics"][-1]["trace_entropy"] for r in runs)
        delim = statistics.mean(r["eval"]["in-dist"]["delimiter_rate"] for r in runs)
        minutes = statistics.mean(r["minutes"] for r in runs)
        lines.append(f"| {name} | {mean_spread(acc_in)} | {mean_spread(acc_long)} | {length:.1f} | {entropy:.2f} | "
                     f"{delim:.2f} | {minutes:.1f} |")
    return "\n".join(lines)


def paired_differences(results: dict[str, Any], baseline: str = "nrt-ws",
                       split: str = "in-dist") -> list[tuple[str, float, float, float, int]]:
    """Each method's held-out accuracy minus ``baseline``'s on the same seeds: (method, mean difference, 95%
    interval low, high, seeds), a t interval over the per-seed differences (seed-to-seed spread cancels in the
    pairing as far as it is shared)."""
    from scipy.stats import t

    base = {r["seed"]: r["eval"][split]["accuracy"] for r in results["methods"][baseline]}
    rows = []
    for name, runs in results["methods"].items():
        diffs = [r["eval"][split]["accuracy"] - base[r["seed"]] for r in runs if r["seed"] in base]
        if name == baseline or not diffs:
            continue
        mean = statistics.mean(diffs)
        half = t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 \
            else float("nan")
        rows.append((name, mean, mean - half, mean + half, len(diffs)))
    return rows


def paired_table(results: dict[str, Any], baseline: str = "nrt-ws", split: str = "in-dist") -> str:
    """Markdown: every method against ``baseline``, paired on seeds, with the 95% interval of the difference."""
    lines = [f"| method − {baseline} ({split} accuracy) | mean | 95% interval | seeds | beyond the interval? |",
             "|---|---|---|---|---|"]
    def signed(x: float) -> str:
        return f"{round(x, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000" for a difference that rounds to zero

    for name, mean, low, high, n in paired_differences(results, baseline, split):
        verdict = "higher" if low > 0 else "lower" if high < 0 else "no"
        interval = f"[{signed(low)}, {signed(high)}]" if n > 1 else "none (one seed)"
        lines.append(f"| {name} | {signed(mean)} | {interval} | {n} | {verdict} |")
    return "\n".join(lines)


def collapse_signs(run: dict[str, Any], start_accuracy: float, split: str = "in-dist") -> dict[str, Any]:
    """How a run's traces changed from its first tenth of steps to its last, and whether that is a collapse.

    A collapse is what NRT.md calls one: the traces shrink (the last tenth's mean length is under half the
    first tenth's), stop ending with the delimiter (rate under 0.5), or degenerate so that held-out accuracy
    ends more than 0.05 below the start's. Entropy is reported but is no criterion: a policy that has learned
    the worked trace is sharp and right.
    """
    metrics = run["metrics"]
    tenth = max(1, len(metrics) // 10)

    def mean(key: str, part: list[dict[str, Any]]) -> float:
        return statistics.mean(m[key] for m in part)

    first, last = metrics[:tenth], metrics[-tenth:]
    signs = {"trace_len": (mean("trace_len_mean", first), mean("trace_len_mean", last)),
             "trace_entropy": (mean("trace_entropy", first), mean("trace_entropy", last)),
             "delimiter_rate": (mean("delimiter_rate", first), mean("delimiter_rate", last)),
             "answer_nll_gain": (mean("answer_nll_gain", first), mean("answer_nll_gain", last)),
             "accuracy": run["eval"][split]["accuracy"]}
    signs["collapsed"] = (signs["trace_len"][1] < 0.5 * signs["trace_len"][0] or signs["delimiter_rate"][1] < 0.5
                          or signs["accuracy"] < start_accuracy - 0.05)
    return signs


def collapse_table(results: dict[str, Any], split: str = "in-dist") -> str:
    """Markdown: per method, the seed means of each collapse sign (first tenth of the run -> last tenth) and
    how many of its seeds collapsed (``collapse_signs``, accuracy on ``split``)."""
    start = results["start"][split]["accuracy"]
    lines = ["| method | trace length | trace entropy | delimiter rate | answer NLL gain | collapsed seeds |",
             "|---|---|---|---|---|---|"]
    for name, runs in results["methods"].items():
        if all(m["trace_len_mean"] == 0 for r in runs for m in r["metrics"]):
            continue  # sft samples no trace
        signs = [collapse_signs(r, start, split) for r in runs]
        cells = [f"{statistics.mean(s[key][0] for s in signs):.2f} → {statistics.mean(s[key][1] for s in signs):.2f}"
                 for key in ("trace_len", "trace_entropy", "delimiter_rate", "answer_nll_gain")]
        lines.append(f"| {name} | {' | '.join(cells)} | {sum(s['collapsed'] for s in signs)} of {len(signs)} |")
    return "\n".join(lines)


def curve_table(results: dict[str, Any], split: str = "in-dist") -> str:
    """Markdown: held-out accuracy (seed mean) at each evaluation point of the runs, the start at step 0."""
    steps = [point["step"] for point in next(iter(results["methods"].values()))[0]["curve"]]
    lines = ["| method | " + " | ".join(str(step) for step in [0, *steps]) + " |", "|---|" + "---|" * (len(steps) + 1)]
    for name, runs in results["methods"].items():
        means = [statistics.mean(r["curve"][i][split]["accuracy"] for r in runs) for i in range(len(steps))]
        lines.append(f"| {name} | {results['start'][split]['accuracy']:.3f} | "
                     + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines)


ACCURACY_PANELS = [("in-dist", "held-out accuracy, trained lengths"), ("longer", "held-out accuracy, longer chains")]


def plot_accuracy(results: dict[str, Any], path: Path, panels: list[tuple[str, str]] = ACCURACY_PANELS) -> None:
    """Held-out accuracy at each evaluation point, every method on shared axes (seed mean), from the start;
    ``panels``: (split, title) each."""
    def point(step: int, figures: dict[str, Any]) -> dict[str, Any]:
        return {"step": step, **{split: figures[split]["accuracy"] for split, _ in panels}}

    plot_curves({name: [[point(0, results["start"]), *(point(p["step"], p) for p in r["curve"])] for r in runs]
                 for name, runs in results["methods"].items()}, path, panels)


def plot(results: dict[str, Any], path: Path) -> None:
    """Reward, trace length, entropy and delimiter rate per step, every method on shared axes (seed mean)."""
    plot_curves({name: [r["metrics"] for r in runs] for name, runs in results["methods"].items()}, path)
