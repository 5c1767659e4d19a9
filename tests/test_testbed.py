"""The testbed's task, tokenizer and positive-control reward; and the reduced testbed: the control learns."""

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch

from nrt import testbed
from nrt.sequences import Sample


def test_problems_are_left_to_right_mod_10():
    p = testbed.make_problem(random.Random(0), 3)
    tokens = p["question"].split()
    value, trace = int(tokens[0]), []
    for op, digit in zip(tokens[1::2], tokens[2::2], strict=True):
        value = {"+": value + int(digit), "-": value - int(digit), "*": value * int(digit)}[op] % 10
        trace.append(str(value))
    assert p["trace"] == " ".join(trace) and p["answer"] == f"the answer is {value} ."


def test_tokenizer_is_word_level_with_a_chat_template():
    tok = testbed.build_tokenizer()
    ids = tok.apply_chat_template([{"role": "user", "content": "7 + 5 * 3"}], add_generation_prompt=True,
                                  tokenize=False)
    assert ids == "7 + 5 * 3 ="
    encoded = tok("the answer is 8 .", add_special_tokens=False).input_ids
    assert len(encoded) == 5 and tok.unk_token_id not in encoded
    assert tok.decode(encoded) == "the answer is 8 ."


def test_exact_trace_reward(tmp_path):
    path = testbed.write_problems(tmp_path / "p.jsonl", 5, (2, 3), seed=0)
    tok = testbed.build_tokenizer()
    reward = testbed.exact_trace_reward(path, tok)
    p = json.loads(path.read_text().splitlines()[0])
    prompt = tok(tok.apply_chat_template([{"role": "user", "content": p["question"]}], add_generation_prompt=True,
                                         tokenize=False), add_special_tokens=False).input_ids
    right = tok(p["trace"], add_special_tokens=False).input_ids
    got = reward([Sample(prompt, right, True, []), Sample(prompt, right[:-1], True, [])], tok)
    assert got.tolist() == [1.0, 0.0]
    final_value = testbed.exact_trace_reward(path, tok, final_value_only=True)
    wrong_step = [right[0] + 1 if right[0] < tok.convert_tokens_to_ids("9") else right[0] - 1, *right[1:]]
    off_by_one = [*right[:-1], right[-1] + 1 if right[-1] < tok.convert_tokens_to_ids("9") else right[-1] - 1]
    got = final_value([Sample(prompt, right, True, []), Sample(prompt, wrong_step, True, []),
                       Sample(prompt, off_by_one, True, []), Sample(prompt, [], True, [])], tok)
    assert got.tolist() == [1.0, 1.0, 0.0, 0.0]  # the last value alone counts; an empty trace has none


def test_reduced_testbed_positive_control_learns(tmp_path, monkeypatch):
    """A real learning test of the trainer: the verifiable-reward control must beat its start clearly. Two
    one-thread workers (``--workers 2``) each train one run; a second call reads the finished runs back."""
    monkeypatch.setenv("NRT_CACHE", str(tmp_path / "cache"))
    methods = ["control (exact-trace reward)", "sft"]
    results = testbed.run(tmp_path / "tb", methods=methods, seeds=[0], workers=2)
    start = results["start"]["in-dist"]["accuracy"]
    (run,) = results["methods"]["control (exact-trace reward)"]
    assert results["methods"]["sft"][0]["metrics"][0]["trace_len_mean"] == 0  # each method got its own run
    monkeypatch.setattr("nrt.train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert testbed.run(tmp_path / "tb", methods=methods, seeds=[0]) == results
    after = run["eval"]["in-dist"]["accuracy"]
    assert 0.2 < start < 0.7  # the start writes traces and leaves room to improve
    assert after > start + 0.05, (start, after)  # observed: 0.405 -> 0.55 (3 seeds, spread 0.005)
    rewards = [m["reward_raw_mean"] for m in run["metrics"]]
    assert sum(rewards[-20:]) / 20 > sum(rewards[:20]) / 20  # the fraction of exactly right traces rises
    assert "| control (exact-trace reward) |" in testbed.table(results)


def test_control_runs_with_and_without_the_answer_term_and_runs_go_under_runs():
    from nrt.cli import build_parser

    assert testbed.METHODS["control (no answer term)"] == ("nrt-ws", {"answer_weight": 0.0})
    assert {"control (exact-trace reward)", "control (no answer term)"} <= set(testbed.QUICK)
    args = build_parser().parse_args(["testbed", "--quick"])
    assert args.out == "runs/testbed"  # the committed results/testbed changes only when asked


def test_paired_differences_against_the_baseline_on_the_same_seeds():
    results = {"methods": {"nrt-ws": _runs([0.5, 0.6, 0.7]), "other": _runs([0.6, 0.8, 0.7])}}
    ((name, mean, low, high, n),) = testbed.paired_differences(results)
    # differences 0.1, 0.2, 0.0: mean 0.1, sd 0.1, t(0.975, 2) = 4.3027 -> half width 0.2484
    assert name == "other" and n == 3 and abs(mean - 0.1) < 1e-12
    assert abs(low - (0.1 - 0.24841)) < 1e-4 and abs(high - (0.1 + 0.24841)) < 1e-4
    assert "| other | +0.100 | [-0.148, +0.348] | 3 | no |" in testbed.paired_table(results)
    results["methods"]["other"] = results["methods"]["other"][:1]  # an interrupted grid: no interval from one seed
    assert "| other | +0.100 | none (one seed) | 1 | no |" in testbed.paired_table(results)


def test_method_names_can_be_listed_on_the_command_line():
    """``--methods`` is comma-separated: a name with a comma could never be asked for."""
    assert not [name for name in testbed.METHODS if "," in name]


def test_testbed_cli_names_an_unknown_method(capsys):
    from nrt.cli import main

    assert main(["testbed", "--methods", "nrt-ws,nope", "--seeds", "1"]) == 2
    assert "--methods: unknown ['nope']" in capsys.readouterr().err
    assert main(["testbed", "--methods", "nrt-ws", "--baseline", "nope", "--seeds", "1"]) == 2
    assert "--baseline: unknown ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(testbed.VARIANTS))
def test_each_variant_writes_its_answer_in_its_own_words(name):
    variant = testbed.VARIANTS[name]
    problem = testbed.make_problem(random.Random(0), 4, variant)
    words = problem["answer"].split()
    values = problem["trace"].split()
    assert len(words) == variant.answer_tokens()
    assert words[variant.hard_positions()[0]] == values[-1]  # the final value
    if variant.middle:
        assert words[variant.hard_positions()[1]] == values[1]  # halfway through 4 operations
    tok = testbed.build_tokenizer(variant)
    ids = tok(problem["answer"], add_special_tokens=False).input_ids
    assert len(ids) == len(words) and tok.unk_token_id not in ids


def test_the_base_variant_keeps_the_committed_tasks_problems_and_vocabulary():
    """results/testbed was made before variants existed: the base variant must reproduce its data exactly."""
    assert testbed.make_problem(random.Random(0), 3) == {"question": "6 + 0 + 8 + 6", "trace": "6 4 0",
                                                         "answer": "the answer is 0 ."}
    assert len(testbed.build_tokenizer()) == 21


def test_variant_accuracy_scores_the_values_not_the_unpredictable_letters():
    from nrt.data import Example

    def example(answer):
        return Example([{"role": "user", "content": "q"}], answer, "testbed")

    noise, middle = testbed.VARIANTS["noise"], testbed.VARIANTS["middle"]
    ref = example("the answer is 7 . code b c d e f g h i")
    assert noise.score("the answer is 7 . code j j j j j j j j", ref) == 1.0
    assert noise.score("the answer is 6 . code b c d e f g h i", ref) == 0.0
    assert noise.score("the answer", ref) == 0.0
    ref = example("the answer is 7 and the middle is 3 .")
    assert middle.score("the answer is 7 and the middle is 3 .", ref) == 1.0
    assert middle.score("the answer is 7 and the middle is 4 .", ref) == 0.0


def test_the_long_variants_product_is_exactly_zero_in_float32():
    """The premise of the 'long' variant: 56 letters at c = 0.1 and one at 0.9 put log P(answer) near -130,
    below float32's smallest exp, so VeriFree's reward and its derived token reward vanish."""
    variant = testbed.VARIANTS["long"]
    logp = torch.full((1, variant.answer_tokens()), math.log(0.1))
    logp[0, :variant.hard_positions()[0] + 2] = math.log(0.9)
    from nrt.rewards import aggregate

    reward, token_reward = aggregate("prob", logp, torch.ones_like(logp, dtype=torch.bool))
    assert reward.item() == 0.0 and token_reward.abs().sum().item() == 0.0
    reward, _ = aggregate("geometric_mean", logp, torch.ones_like(logp, dtype=torch.bool))
    assert reward.item() > 0.1


def test_a_changed_variant_definition_is_a_new_start_and_new_runs(monkeypatch):
    """The cached start and the finished-run records are keyed by the variant's definition, not its name."""
    settings = testbed.Settings(variant="noise")
    before = settings.start_key()
    monkeypatch.setitem(testbed.VARIANTS, "noise", testbed.Variant(noise=9))
    assert settings.start_key() != before and "noise=9" in settings.describe()


def test_the_start_is_shared_by_grids_with_other_training_budgets_but_not_other_warm_starts():
    """A grid of 2,000-step runs trains from the same cached start as the 200-step grids; a warm start's own
    settings (its steps, its draw) still make a new one."""
    base = testbed.Settings()
    longer = testbed.Settings(rl_steps=2000, rl_lr=1e-4, eval_size=1000, eval_points=10)
    assert longer.start_key() == base.start_key() and longer.describe() != base.describe()
    assert testbed.Settings(warm_steps=700).start_key() != base.start_key()
    assert testbed.Settings(start_seed=1).start_key() != base.start_key()


def test_a_variant_warms_up_until_its_accuracy_and_records_each_check(monkeypatch, tmp_path):
    """A variant whose answer takes longer to learn can start where the base task's 600 steps leave it:
    the warm start stops at the first check that reaches ``warm_until`` and says so in warm_start.json."""
    monkeypatch.setenv("NRT_CACHE", str(tmp_path / "cache"))
    accuracies = iter([0.10, 0.20, 0.40, 0.90])
    monkeypatch.setattr(testbed, "_greedy", lambda *args: SimpleNamespace(accuracy=next(accuracies)))
    settings = testbed.Settings(variant="noise", hidden=16, warm_until=0.35, warm_max_steps=20, warm_check_every=2)
    start = testbed.start_checkpoint(settings)
    assert json.loads((start / "warm_start.json").read_text()) == {"steps": 6, "checks": [[2, 0.1], [4, 0.2], [6, 0.4]],
                                                                   "answer_steps": 0}
    text = testbed.warm_start_text({"warm_start": {"steps": 6, "checks": [[2, 0.1], [4, 0.2], [6, 0.4]]}}, settings)
    assert text == "Warm start: 6 supervised steps (greedy accuracy every 2 steps, stopping at 0.35: 0.10, 0.20, 0.40)."


def test_the_warm_accuracy_check_scores_greedy_answers_on_unseen_chains(monkeypatch, tmp_path):
    """The check itself on an untrained tiny model: a fraction of its 200 problems, drawn apart from the test's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from nrt.modeling import prepare_policy

    tokenizer = testbed.build_tokenizer(testbed.VARIANTS["noise"])
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    policy = prepare_policy(LlamaForCausalLM(config), tokenizer, "<|response_start|>")
    examples = testbed._warm_check_examples(testbed.Settings(), testbed.VARIANTS["noise"])
    accuracy = testbed._greedy(policy, "warm", examples, testbed.VARIANTS["noise"]).accuracy
    assert len(examples) == 200 and 0.0 <= accuracy <= 1.0
    assert accuracy * 200 == pytest.approx(round(accuracy * 200))  # a count of right answers out of 200


def test_unpredictable_tokens_are_letters_not_the_digits_the_trace_is_written_in():
    """Fitting tokens no trace can predict must not pull on the logits of the trace's own tokens."""
    words = testbed.make_problem(random.Random(0), 4, testbed.VARIANTS["noise"])["answer"].split()
    assert words[5] == "code" and all(w in testbed.NOISE_WORDS for w in words[6:]) and len(words[6:]) == 8


def test_a_two_stage_start_teaches_traces_with_the_base_answer_then_the_variants(monkeypatch, tmp_path):
    """--answer-steps: the first stage's problems are written with the base task's answer (keeping the variant's
    share of traceless examples), the second stage's with the variant's own; the base variant has no second."""
    monkeypatch.setenv("NRT_CACHE", str(tmp_path / "cache"))
    taught = []
    real = testbed.make_problem
    monkeypatch.setattr(testbed, "make_problem", lambda rng, n, v: taught.append(v) or real(rng, n, v))
    settings = testbed.Settings(variant="shortcut", hidden=16, warm_steps=3, answer_steps=2)
    start = testbed.start_checkpoint(settings)
    shortcut = testbed.VARIANTS["shortcut"]
    assert taught == [testbed.Variant(empty_trace_rate=0.5)] * (3 * 64) + [shortcut] * (2 * 64)
    assert json.loads((start / "warm_start.json").read_text())["answer_steps"] == 2
    text = testbed.warm_start_text({"warm_start": json.loads((start / "warm_start.json").read_text())}, settings)
    assert text == ("Warm start: 3 supervised steps with the base task's answer, then 2 steps with this variant's "
                    "answer.")
    taught.clear()
    start = testbed.start_checkpoint(testbed.Settings(hidden=16, warm_steps=3, answer_steps=2))
    assert taught == [testbed.VARIANTS["base"]] * (3 * 64)
    assert json.loads((start / "warm_start.json").read_text())["answer_steps"] == 0


def _runs(accuracies):
    return [{"seed": s, "eval": {"in-dist": {"accuracy": a}}} for s, a in enumerate(accuracies)]


def test_testbed_cli_passes_the_start_recipe_and_the_learning_rate(monkeypatch, tmp_path):
    from nrt.cli import main

    seen = {}

    def fake_run(out, *, methods, seeds, settings, workers):
        seen["settings"] = settings
        raise SystemExit(0)

    monkeypatch.setattr(testbed, "run", fake_run)
    with pytest.raises(SystemExit):
        main(["testbed", "--variant", "noise", "--answer-steps", "100", "--rl-lr", "6e-4", "--start-seed", "2",
              "--warm-until", "0.4", "--warm-check-every", "20", "--out", str(tmp_path)])
    assert seen["settings"] == testbed.Settings(variant="noise", answer_steps=100, rl_lr=6e-4, start_seed=2,
                                                warm_until=0.4, warm_check_every=20)


def test_draws_pool_with_each_run_paired_on_its_own_draw():
    """Draw 1's start is better for every method: pairing across draws (seed 0 with seed 0) would mix it in."""
    draws = {0: {"methods": {"nrt-ws": _runs([0.2, 0.3]), "other": _runs([0.3, 0.4])}},
             1: {"methods": {"nrt-ws": _runs([0.6, 0.7]), "other": _runs([0.7, 0.8])}}}
    ((name, mean, low, high, n),) = testbed.paired_differences(testbed.pool_draws(draws))
    assert (name, n) == ("other", 4) and abs(mean - 0.1) < 1e-12 and abs(high - low) < 1e-12
    assert [r["seed"] for r in testbed.pool_draws(draws)["methods"]["other"]] == ["0/0", "0/1", "1/0", "1/1"]
    assert draws[0]["methods"]["other"][0]["seed"] == 0  # the draws' own results are left as they were


def test_testbed_cli_trains_each_start_draw_in_its_folder_and_pairs_within_draws(monkeypatch, tmp_path):
    from nrt.cli import main

    calls = []

    def fake_run(out, *, methods, seeds, settings, workers):
        calls.append((out, settings.start_seed))
        return {"methods": {"nrt-ws": _runs([0.2 + settings.start_seed / 10]),
                            "sft": _runs([0.3 + settings.start_seed / 10])}}

    monkeypatch.setattr(testbed, "run", fake_run)
    monkeypatch.setattr(testbed, "table", lambda results: "| table |")
    monkeypatch.setattr(testbed, "plot", lambda results, path: None)
    main(["testbed", "--start-seed", "0,3", "--seeds", "1", "--methods", "nrt-ws,sft", "--out", str(tmp_path)])
    assert calls == [(tmp_path / "start-0", 0), (tmp_path / "start-3", 3)]
    readme = (tmp_path / "README.md").read_text()
    assert "## Start draw 3" in readme and "![curves](start-3/curves.png)" in readme
    assert "| sft | +0.100 | [+0.100, +0.100] | 2 | higher |" in readme.split("## Every draw")[1]
    main(["testbed", "--start-seed", "0,3", "--seeds", "1", "--methods", "nrt-ws,sft", "--baseline", "sft",
          "--out", str(tmp_path)])
    pooled = (tmp_path / "README.md").read_text().split("## Every draw, each run paired with sft")[1]
    assert "| nrt-ws | -0.100 | [-0.100, -0.100] | 2 | lower |" in pooled


@pytest.mark.parametrize("value", ["1,x", "1,1"])
def test_testbed_cli_names_a_bad_start_seed_list(value, capsys):
    from nrt.cli import main

    with pytest.raises(SystemExit):
        main(["testbed", "--start-seed", value])
    assert "--start-seed" in capsys.readouterr().err


def test_each_start_seed_is_its_own_start(monkeypatch, tmp_path):
    """--start-seed draws another start (initialisation and warm-start data) rather than reusing the cached one."""
    from safetensors.torch import load_file

    monkeypatch.setenv("NRT_CACHE", str(tmp_path / "cache"))
    first, second = (testbed.start_checkpoint(testbed.Settings(hidden=16, warm_steps=2, start_seed=s)) for s in (0, 1))
    assert first != second
    a, b = (load_file(str(f / "model.safetensors")) for f in (first, second))
    assert not torch.equal(a["model.embed_tokens.weight"], b["model.embed_tokens.weight"])


def _metrics(lengths, delimiter=1.0):
    return [{"trace_len_mean": n, "trace_entropy": 0.5, "delimiter_rate": delimiter, "answer_nll_gain": 1.0}
            for n in lengths]


@pytest.mark.parametrize(("lengths", "delimiter", "accuracy", "collapsed"), [
    ([4.0] * 20, 1.0, 0.40, False),  # steady traces, accuracy at the start's
    ([4.0] * 10 + [1.9] * 10, 1.0, 0.40, True),  # the last tenth's traces under half the first tenth's
    ([4.0] * 10 + [2.1] * 10, 1.0, 0.40, False),  # shorter, but not by half
    ([4.0] * 20, 0.4, 0.40, True),  # traces that stop ending with the delimiter
    ([4.0] * 20, 1.0, 0.34, True),  # degenerate: more than 0.05 below the start
])
def test_collapse_signs_compare_the_first_and_last_tenth(lengths, delimiter, accuracy, collapsed):
    run = {"metrics": _metrics(lengths, delimiter), "eval": {"in-dist": {"accuracy": accuracy}}}
    signs = testbed.collapse_signs(run, start_accuracy=0.40)
    assert signs["collapsed"] is collapsed
    assert signs["trace_len"] == (4.0, lengths[-1])  # 20 steps: tenths of two steps each


def test_a_long_run_is_evaluated_at_evenly_spaced_points(monkeypatch, tmp_path):
    """--eval-points keeps a checkpoint at each point and evaluates it; the README gets the accuracy per point
    and the signs of collapse."""
    from nrt.cli import main

    monkeypatch.setenv("NRT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(testbed.Settings, "__init__", _small_settings(testbed.Settings.__init__))
    main(["testbed", "--methods", "nrt-ws,sft", "--seeds", "1", "--rl-steps", "4", "--eval-points", "2",
          "--eval-size", "10", "--out", str(tmp_path / "tb")])
    results = json.loads((tmp_path / "tb" / "results.json").read_text())
    (run,) = results["methods"]["nrt-ws"]
    assert [p["step"] for p in run["curve"]] == [2, 4] and run["curve"][-1]["in-dist"] == run["eval"]["in-dist"]
    readme = (tmp_path / "tb" / "README.md").read_text()
    assert "| method | 0 | 2 | 4 |" in readme and "| nrt-ws |" in readme.split("Signs of collapse")[1]
    assert "| sft |" not in readme.split("Signs of collapse")[1]  # sft has no trace to collapse
    assert (tmp_path / "tb" / "accuracy.png").is_file()
    with pytest.raises(ValueError, match="eval_points"):
        testbed._checkpoint_schedule(testbed.Settings(rl_steps=10, eval_points=3))


def _small_settings(init):
    """A start taught for 3 steps at hidden 16, and 4 prompts x 2 traces per step: the pipeline, in seconds."""
    def small(self, *args, **kwargs):
        init(self, *args, **{"hidden": 16, "warm_steps": 3, "rl_prompts": 4, "rl_k": 2, **kwargs})
    return small
