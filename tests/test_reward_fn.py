"""A reward function named by the config key ``reward_fn``: loading, checks of what it returns, the example."""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from transformers import AutoTokenizer

from nrt import ConfigError, load_config, train
from nrt.cli import main
from nrt.reward_fn import call_reward_fn, load_reward_fn
from nrt.sequences import Sample

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rewards.py"
# a reward that names its sample: the samples log shows that each trace got its own
TRACE_LENGTH = """
import torch

def trace_length(samples, tokenizer):
    return torch.tensor([float(len(tokenizer.decode(s.trace_ids))) for s in samples])

not_a_function = 3
"""


def _samples_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


def _overrides(tiny_model_dir: Path, qa_file: Path, run: Path, **extra: object) -> list[str]:
    settings = tiny_overrides(tiny_model_dir, qa_file, run, steps=1, samples_per_step=8, **extra)
    return [f"{key}={json.dumps(value) if isinstance(value, list) else value}" for key, value in settings.items()]


def test_a_module_in_the_current_folder_trains_from_the_command_line(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    (tmp_path / "my_rewards_cli.py").write_text(TRACE_LENGTH)
    importlib.invalidate_caches()
    monkeypatch.chdir(tmp_path)  # not on sys.path: the `nrt` command finds it as `python -m` would
    monkeypatch.delitem(sys.modules, "my_rewards_cli", raising=False)
    run = tmp_path / "run"
    assert main(["train", *_overrides(tiny_model_dir, qa_file, run), "reward_fn=my_rewards_cli:trace_length"]) == 0
    records = _samples_log(run)
    assert records and all(r["reward"] == len(r["trace"]) for r in records)
    assert len({r["reward"] for r in records}) > 1  # not a constant that a default could also give


def test_a_file_from_a_yaml_config_trains(tiny_model_dir, qa_file, tmp_path):
    (tmp_path / "lengths.py").write_text(TRACE_LENGTH)
    config = tmp_path / "c.yaml"
    config.write_text(f"aggregation: prob\nreward_fn: {tmp_path / 'lengths.py'}:trace_length\n")
    cfg = load_config(str(config), tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", steps=1,
                                                  samples_per_step=8))
    assert cfg.reward_fn.endswith("lengths.py:trace_length")
    train(cfg)
    records = _samples_log(tmp_path / "run")
    assert records and all(r["reward"] == len(r["trace"]) for r in records)


def test_the_example_reward_trains(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", steps=1,
                                               reward_fn=f"{EXAMPLE}:exact_match"))
    result = train(cfg)
    assert 0.0 <= result.metrics[0]["reward_raw_mean"] <= 1.0
    assert all(r["reward"] in (0.0, 1.0) for r in _samples_log(tmp_path / "run"))


def test_the_example_reward_checks_the_traces_final_words(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    exact_match = load_reward_fn(f"{EXAMPLE}:exact_match")

    def sample(trace: str, answer: str) -> Sample:
        ids = tokenizer(trace, add_special_tokens=False).input_ids
        return Sample([1, 2], ids, True, tokenizer(answer, add_special_tokens=False).input_ids)

    samples = [sample("3 + 9 = 12, so it is 12.", "12"), sample("so it is 112", "12"), sample("It is Paris", "paris"),
               sample("Paris, I think", "Paris"), sample("", "12"), sample("the sum is -3", "3")]
    rewards = call_reward_fn(exact_match, samples, tokenizer)
    assert rewards.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_xyz:score", r"reward_fn: cannot import module 'no_such_module_xyz' \(reward_fn="),
    ("nrt.rewards:no_such_function", r"reward_fn: nrt.rewards has no attribute 'no_such_function'"),
    ("nrt.rewards:AGGREGATIONS", r"reward_fn: 'nrt.rewards:AGGREGATIONS' names an object of type dict, not a function"),
    ("missing/rewards.py:score", r"reward_fn: no file 'missing/rewards.py'"),
    ("nrt.rewards", r"reward_fn: expected package.module:function or path/to/file.py:function, got 'nrt.rewards'"),
])
def test_a_reward_that_cannot_be_loaded_is_a_config_error_at_start(spec, message, tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", reward_fn=spec))
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_a_file_attribute_that_is_not_a_function(tmp_path):
    (tmp_path / "r.py").write_text(TRACE_LENGTH)
    with pytest.raises(ConfigError, match=r"reward_fn: .*r.py:not_a_function' names an object of type int, not a"):
        load_reward_fn(f"{tmp_path / 'r.py'}:not_a_function")


def test_a_reward_of_another_signature_is_refused_before_the_run(tiny_model_dir, qa_file, tmp_path):
    """A one-argument function (the tokenizer forgotten) is named with its signature, from the key or the argument;
    a function that takes more, with defaults, is accepted."""
    (tmp_path / "r.py").write_text("def one(samples):\n    return None\n\n"
                                   "def more(samples, tokenizer, scale=1.0):\n    return None\n")
    with pytest.raises(ConfigError, match=r"reward_fn .*r.py:one: its signature is \(samples\); a reward function "
                                          r"is called as fn\(samples, tokenizer\)"):
        load_reward_fn(f"{tmp_path / 'r.py'}:one")
    assert load_reward_fn(f"{tmp_path / 'r.py'}:more").__name__ == "more"
    cfg = load_config("nrt-ws", {"model": str(tiny_model_dir), "data": str(qa_file),
                                 "output_dir": str(tmp_path / "run"), "report_to": []})
    with pytest.raises(ConfigError, match=r"its signature is \(samples\)"):
        train(cfg, reward_fn=lambda samples: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("returned", "message"), [
    ([1.0, 0.0, 1.0], r"reward_fn my.spec:f: returned a list; expected a float tensor of shape \[3\]"),
    (torch.ones(2), r"reward_fn my.spec:f: returned shape \[2\]; expected a float tensor of shape \[3\]"),
    (torch.ones(3, 1), r"returned shape \[3, 1\]; expected a float tensor of shape \[3\]"),
    (torch.ones(3, dtype=torch.long), r"returned dtype torch.int64; expected a float tensor of shape \[3\]"),
    (torch.tensor([0.0, math.nan, math.inf]), r"returned non-finite rewards \[nan, inf\] for samples \[1, 2\]"),
])
def test_what_a_reward_returns_is_checked(returned, message):
    samples = [Sample([1], [2], True, [3])] * 3
    with pytest.raises(ConfigError, match=message):
        call_reward_fn(lambda samples, tokenizer: returned, samples, None, "my.spec:f")


def test_a_reward_of_the_wrong_shape_stops_the_first_step(tiny_model_dir, qa_file, tmp_path, capsys):
    (tmp_path / "scalar.py").write_text("import torch\n\ndef total(samples, tokenizer):\n    return torch.ones(())\n")
    spec = f"{tmp_path / 'scalar.py'}:total"
    assert main(["train", *_overrides(tiny_model_dir, qa_file, tmp_path / "run"), f"reward_fn={spec}"]) == 2
    err = capsys.readouterr().err
    assert f"nrt: error: reward_fn {spec}: returned shape []; expected a float tensor of shape [4]" in err
    assert not (tmp_path / "run" / "metrics.jsonl").read_text()  # no step was logged


def test_the_key_and_the_argument_together_are_refused(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path, reward_fn=f"{EXAMPLE}:exact_match"))
    with pytest.raises(ConfigError, match="reward_fn: given twice"):
        train(cfg, reward_fn=lambda samples, tokenizer: torch.ones(len(samples)))


@pytest.mark.parametrize(("preset", "message"), [
    ("rlpr", "empty_trace_baseline: subtracts the empty trace's likelihood reward"),  # rlpr turns the baseline on
    ("sft", "reward_fn: scores sampled traces, and trace=false samples none"),
])
def test_what_an_external_reward_does_not_combine_with_is_refused_for_the_key(preset, message):
    with pytest.raises(ConfigError, match=message):
        load_config(preset, {"reward_fn": "examples/rewards.py:exact_match"})


def test_a_reward_module_that_fails_to_import_names_its_own_error(tmp_path, monkeypatch):
    (tmp_path / "needs_missing.py").write_text("import package_that_is_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"cannot import module 'needs_missing'.*package_that_is_not_installed_xyz"):
        load_reward_fn("needs_missing:score")
