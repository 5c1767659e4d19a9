"""The ``nrt`` command as a newcomer meets it: fast help with defaults, flags refused with a clear message, eval
output that says what it cut and where it wrote, and errors that name the key, the path or the flag."""

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides

from nrt import load_config, load_policy, train
from nrt.cli import build_parser, main
from nrt.config import ConfigError
from nrt.modeling import ModelError

ROOT = Path(__file__).parent.parent


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, with its arguments added."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in action.choices.values():
        sub.add_arguments()
    return dict(action.choices)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_does_not_import_torch(argv):
    code = (f"import sys\nfrom nrt.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.endswith("ok\n"), done.stderr[-2000:]


def test_the_package_imports_torch_only_when_asked():
    code = "import sys, nrt\nassert 'torch' not in sys.modules\nnrt.train\nassert 'torch' in sys.modules\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr[-2000:]


def test_every_subcommand_shows_its_defaults(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    for name, sub in _subcommands(build_parser()).items():
        text = sub.format_help()
        for action in sub._actions:
            if action.default is not None and action.default is not False and action.default != argparse.SUPPRESS:
                assert f"(default: {action.default})" in text, (name, action.dest)


def test_train_help_points_to_the_keys(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "nrt presets --keys" in out and "docs/configuration.md" in out


def test_commands_named_in_docs_exist():
    """Every ``nrt <command> --flag`` that the package's docstrings and the README name is a real flag."""
    subs = _subcommands(build_parser())
    texts = [p.read_text() for p in [*(ROOT / "nrt").glob("*.py"), ROOT / "README.md"]]
    named = {(m[1], flag) for text in texts for m in re.finditer(r"\bnrt (\w+)((?: --[\w-]+)+)", text)
             for flag in m[2].split()}
    assert named
    for command, flag in named:
        assert command in subs and flag in subs[command]._option_string_actions, f"nrt {command} {flag}"


@pytest.mark.parametrize("limit", ["-1", "0", "some"])
def test_eval_limit_is_a_positive_number_or_all(limit, tiny_model_dir, qa_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(tiny_model_dir), "--tasks", str(qa_file), "--limit", limit,
              "--max-trace-tokens", "2", "--max-answer-tokens", "2", "--output", str(tmp_path / "e.json")])
    assert "argument --limit: a positive number of examples, or all" in capsys.readouterr().err


def test_eval_says_what_its_limit_cut(tiny_model_dir, qa_file, tmp_path, capsys):
    args = ["eval", "--model", str(tiny_model_dir), "--tasks", str(qa_file), "--max-trace-tokens", "2",
            "--max-answer-tokens", "2", "--output", str(tmp_path / "e.json")]
    assert main([*args, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 of 9" in out and "--limit 2" in out and "--limit all" in out
    assert json.loads((tmp_path / "e.json").read_text())["tasks"][0]["available"] == 9
    assert main([*args, "--limit", "all"]) == 0
    assert "of 9" not in capsys.readouterr().out
    assert len(json.loads((tmp_path / "e.json").read_text())["tasks"][0]["samples"]) == 9


@pytest.mark.parametrize("task", ["no_such_task", "reasoning-gym:basic_arithmetic", "bigbench:", "reasoning_gym:"])
def test_unknown_task_fails_before_the_model_loads_and_the_network(task, tmp_path, capsys, monkeypatch):
    import datasets

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--tasks", f"humaneval,{task}"]) == 2
    err = capsys.readouterr().err
    assert f"task {task!r}" in err and "reasoning_gym:<generator>" in err and "<benchmark>:<path>" in err


def test_generated_tasks_need_a_number(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--tasks", "reasoning_gym:chain_sum",
                 "--limit", "all"]) == 2
    assert "reasoning_gym:chain_sum" in capsys.readouterr().err


def test_eval_fails_when_every_task_is_skipped(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--tasks", "gsm8k,bbh", "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert "skipped" in captured.out and "every task was skipped" in captured.err
    assert not out.exists()


def test_eval_writes_next_to_the_model_not_into_the_current_folder(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--model", str(model), "--tasks", str(qa_file), "--limit", "1", "--max-trace-tokens", "2",
                 "--max-answer-tokens", "2"]) == 0
    assert (model / "eval.json").is_file() and not (tmp_path / "eval.json").exists()
    think = (model / "eval.json").read_bytes()
    assert main(["eval", "--model", str(model), "--tasks", str(qa_file), "--limit", "1", "--no-think",
                 "--max-answer-tokens", "2"]) == 0
    assert (model / "eval-no-think.json").is_file() and (model / "eval.json").read_bytes() == think  # both kept
    from nrt.cli import default_output

    named = default_output("smollm2-135m-instruct")
    assert named == Path("runs/eval/smollm2-135m-instruct/eval.json")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(named)], cwd=ROOT)
    assert ignored.returncode == 0, f"{named} is not git-ignored"


@pytest.mark.parametrize("name", ["/nonexistent", "./no/model", "~/no-such-nrt-model", "runs/a/checkpoints/model"])
def test_a_missing_model_folder_is_named(name):
    with pytest.raises(ModelError, match=f"model: {re.escape(name)}: no such folder"):
        load_policy(name)


def test_train_with_a_missing_model_folder_says_so(qa_file, tmp_path, capsys):
    assert main(["train", f"model={tmp_path / 'missing'}", f"data={qa_file}", f"output_dir={tmp_path / 'run'}"]) == 2
    assert f"model: {tmp_path / 'missing'}: no such folder" in capsys.readouterr().err


def test_resume_needs_the_run_folder(tiny_model_dir, qa_file, tmp_path, caplog):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "typo", steps=1))
    with pytest.raises(ConfigError, match=r"output_dir: .*typo: no such folder"):
        train(cfg, resume=True)
    (tmp_path / "typo").mkdir()  # a run killed before its first checkpoint: it starts over, and says so
    with caplog.at_level(logging.WARNING, logger="nrt.trainer"):
        assert len(train(cfg, resume=True).metrics) == 1
    assert "no complete checkpoint" in caplog.text and "step 0" in caplog.text


def test_a_new_run_into_an_earlier_runs_folder_is_refused(tiny_model_dir, qa_file, tmp_path, capsys):
    """A second run without --resume would cut the first's logs and leave its checkpoints for --resume to find:
    refused with what is there; overwrite_output_dir starts over; --resume continues."""
    run = tmp_path / "run"
    args = ["train", *(f"{k}={v}" for k, v in tiny_overrides(tiny_model_dir, qa_file, run, steps=2).items()
                       if k != "report_to"), "report_to=[]"]
    assert main(args) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main([*args, "steps=1"]) == 2
    err = capsys.readouterr().err
    assert f"output_dir: {run} holds an earlier run (checkpoints, metrics.jsonl, samples.jsonl)" in err
    assert "--resume" in err and "overwrite_output_dir=true" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing touched
    assert main([*args, "steps=1", "overwrite_output_dir=true"]) == 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000001"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert main([*args, "steps=3", "--resume"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_data_smaller_than_one_batch_warns(tiny_model_dir, tmp_path, caplog):
    data = tmp_path / "one.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, data, tmp_path / "run", steps=1))
    with caplog.at_level(logging.WARNING, logger="nrt.trainer"):
        train(cfg)
    assert "1 usable example, fewer than prompts_per_step=2" in caplog.text


def test_evaluation_tasks_of_a_run_are_checked_before_it_trains(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", eval_every=1,
                                               eval_tasks=["no_such_task"]))
    with pytest.raises(ConfigError, match="task 'no_such_task': no such file or folder, and not a task name"):
        train(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()
