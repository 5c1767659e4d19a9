"""Presets, overrides and config errors that name the key."""

from pathlib import Path

import pytest

from nrt.cli import main
from nrt.config import ConfigError, load_config, preset_names

PRESETS = {"nrt-ws": "weighted_sum_log_prob", "nrt-gm": "geometric_mean", "nrt-ws-inv": "weighted_sum_inverse_prob",
           "jepo": "log_prob", "verifree": "prob", "rlpr": "arithmetic_mean", "sft": "weighted_sum_log_prob"}


def test_every_preset_loads():
    assert set(PRESETS) <= set(preset_names())
    for name, aggregation in PRESETS.items():
        assert load_config(name).aggregation == aggregation
    assert load_config("configs/rlpr.yaml").empty_trace_baseline
    sft = load_config("sft")
    assert not sft.trace and sft.num_traces == 1


def test_overrides_from_the_command_line_and_dict():
    cfg = load_config("nrt-ws", ["lr=1e-5", "lora=true", "betas=[0.9, 0.99]", "steps=3", "model=123"])
    assert cfg.lr == 1e-5 and cfg.lora and cfg.betas == [0.9, 0.99] and cfg.steps == 3 and cfg.model == "123"
    assert load_config("jepo", {"num_traces": 8}).num_traces == 8


@pytest.mark.parametrize(("overrides", "message"), [
    (["learning_rate=1e-5"], r"learning_rate: unknown key \(from command line\); TRL's learning_rate is nrt's lr"),
    (["num_generations=8"], "TRL's num_generations is nrt's num_traces"),
    (["max_trace_token=8"], r"max_trace_token: unknown key \(from command line\); did you mean max_trace_tokens\?"),
    (["steps=two"], "steps: expected int"),
    (["lora=1"], "lora: expected bool"),
    (["dtype=fp16"], "dtype: must be one of"),
    (["num_traces=1"], "num_traces: group normalisation needs at least 2"),
    (["aggregation=median"], "aggregation: unknown value"),
    (["prompts_per_step=3", "prompts_per_micro_batch=2"], r"prompts_per_micro_batch: .* \(1 x 2\) must divide"),
    (["prompts_per_step=4", "mini_batches_per_step=3"], r"prompts_per_micro_batch: .* \(3 x 1\) must divide"),
    (["top_p=0.9"], "top_p: got 0.9"),
    (["sharding=fsdp", "lora=true"], "sharding: fsdp with lora"),
    (["sharding=fsdp", "eval_every=1", "eval_tasks=[x]"], "eval_every: evaluation during training"),
    (["sharding=fsdp", "chunked_logits=on"], "chunked_logits: on needs the head outside"),
    (["temperature=0"], "temperature: must be > 0"),
    (["clip_low=1.5"], "clip_low/clip_high"),
    (["steps"], "expected key=value"),
    (["lr=.nan"], "lr: must be a finite number"),
    (["betas=[0.9, 1.5]"], "betas: need two values in"),
])
def test_bad_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("nrt-ws", overrides)


def test_errors_of_python_overrides_do_not_blame_the_command_line():
    with pytest.raises(ConfigError, match=r"steps: expected int, got 'abc' \(from overrides\)"):
        load_config("nrt-ws", {"steps": "abc"})


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("aggregation: prob\nsteps: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))
    path.write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match=rf"stepz: unknown key \(from {path}\); did you mean steps\?"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="no preset"):
        load_config("nope")


def test_cli_reports_config_errors_without_a_traceback(capsys):
    assert main(["train", "--config", "nrt-ws", "lr=-1"]) == 2
    assert "nrt: error: lr: must be > 0" in capsys.readouterr().err


def test_cli_lists_presets_and_keys(capsys):
    assert main(["presets", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "rlpr" in out and "empty_trace_baseline: true" in out and "max_trace_tokens" in out


@pytest.mark.parametrize("text", ["on", "off"])
def test_a_bare_on_or_off_is_the_choice_not_a_bool(text):
    assert load_config("nrt-ws", [f"chunked_logits={text}"]).chunked_logits == text


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[1] / "configs" / "recipes").glob("*.yaml")))
def test_each_gpu_recipe_loads_and_names_its_own_launch_command(recipe):
    """A recipe is a valid config, and the command in its header launches that same file."""
    cfg = load_config(str(recipe), ["model=/path/to/model", "data=qa.jsonl"])
    assert cfg.aggregation == "weighted_sum_log_prob" and cfg.max_trace_tokens == 256
    header = "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert f"--config configs/recipes/{recipe.name}" in header
