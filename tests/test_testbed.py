"""The testbed's task, tokenizer and positive-control reward; and the reduced testbed: the control learns."""

import json
import random

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
    got = reward([Sample(prompt, right, True, []), Sample(prompt, right[:-1], True, [])])
    assert got.tolist() == [1.0, 0.0]


def test_reduced_testbed_positive_control_learns(tmp_path, monkeypatch):
    """A real learning test of the trainer: the verifiable-reward control must beat its start clearly."""
    monkeypatch.setenv("NRT_CACHE", str(tmp_path / "cache"))
    results = testbed.run(tmp_path / "tb", methods=["control (exact-trace reward)"], seeds=[0])
    start = results["start"]["in-dist"]["accuracy"]
    (run,) = results["methods"]["control (exact-trace reward)"]
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
    def runs(accuracies):
        return [{"seed": s, "eval": {"in-dist": {"accuracy": a}}} for s, a in enumerate(accuracies)]

    results = {"methods": {"nrt-ws": runs([0.5, 0.6, 0.7]), "other": runs([0.6, 0.8, 0.7])}}
    ((name, mean, low, high, n),) = testbed.paired_differences(results)
    # differences 0.1, 0.2, 0.0: mean 0.1, sd 0.1, t(0.975, 2) = 4.3027 -> half width 0.2484
    assert name == "other" and n == 3 and abs(mean - 0.1) < 1e-12
    assert abs(low - (0.1 - 0.24841)) < 1e-4 and abs(high - (0.1 + 0.24841)) < 1e-4
    assert "| other | +0.100 | [-0.148, +0.348] | 3 | no |" in testbed.paired_table(results)


def test_testbed_cli_names_an_unknown_method(capsys):
    from nrt.cli import main

    assert main(["testbed", "--methods", "nrt-ws,nope", "--seeds", "1"]) == 2
    assert "--methods: unknown ['nope']" in capsys.readouterr().err
