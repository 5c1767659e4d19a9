"""experiments/compare.py end to end on the tiny model: every row, the table, the plot; a rerun reuses runs."""

import json
import re
import subprocess
import sys
from pathlib import Path

from nrt.arithmetic import questions

ROOT = Path(__file__).resolve().parents[1]


def test_compare_quick_on_the_tiny_model(tiny_model_dir, tmp_path):
    cmd = [sys.executable, "experiments/compare.py", "--quick", "--model", str(tiny_model_dir), "--methods",
           "sft,nrt-ws", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "train nrt-ws" in first.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["method"], r["mode"]) for r in results["rows"]] == [
        (m, mode) for m in ("untrained", "sft", "nrt-ws") for mode in ("think", "no-think")]
    assert all(len(r["tasks"]) == 3 and all(t["n"] == 4 for t in r["tasks"]) for r in results["rows"])
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| nrt-ws | think |" in readme and "![curves](curves.png)" in readme
    assert (tmp_path / "out" / "curves.png").stat().st_size > 10_000
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # finished runs are not redone
    assert again.returncode == 0 and "] train " not in again.stdout and "] eval " not in again.stdout


def test_real_model_experiment_quick_on_the_tiny_model(tiny_model_dir, tmp_path):
    """experiments/real_model.py end to end: warm start, every method (the control with its verifier), the
    evaluation on both splits, the table with paired rows; a rerun reads every finished stage back."""
    cmd = [sys.executable, "experiments/real_model.py", "--quick", "--model", str(tiny_model_dir), "--out",
           str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--workers", "2"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["methods"]) == ["sft", "verifree", "rlpr", "jepo", "nrt-gm", "nrt-ws",
                                        "control (verified trace)"]
    assert all(set(r["eval"]) == {"3-digit", "4-digit"} for runs in results["methods"].values() for r in runs)
    assert len(results["warm_start"]) == 1 and (tmp_path / "runs" / "warm-start" / "config.json").is_file()
    data = tmp_path / "runs" / "data"  # the warm start stopped on its own validation file, not an evaluation file
    assert not questions(data / "validation.jsonl") & questions(data / "3-digit.jsonl", data / "4-digit.jsonl")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| control (verified trace) | 1 |" in readme and "4-digit, paired on seeds against nrt-ws" in readme
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "] train " not in again.stdout and "warm start step" not in again.stdout
    (tmp_path / "runs" / "jepo-seed0" / "record.json").unlink()  # as if the grid had stopped before this run
    report = subprocess.run([*cmd, "--finished"], cwd=ROOT, capture_output=True, text=True)
    assert report.returncode == 0 and "] train " not in report.stdout, report.stderr
    assert not (tmp_path / "runs" / "jepo-seed0" / "record.json").exists()
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "not yet run: jepo seed 0." in readme and "| jepo |" not in readme and "| nrt-gm | 1 |" in readme
    replication = subprocess.run([*cmd, "--out", str(tmp_path / "replication"), "--first-seed", "3", "--methods",
                                  "sft,nrt-ws"], cwd=ROOT, capture_output=True, text=True)  # fresh seeds, same start
    assert replication.returncode == 0, replication.stderr
    assert "] train nrt-ws seed 3" in replication.stdout and "warm start step" not in replication.stdout
    replicated = json.loads((tmp_path / "replication" / "results.json").read_text())
    assert [r["seed"] for r in replicated["methods"]["nrt-ws"]] == [3]
    assert (tmp_path / "runs" / "nrt-ws-seed0" / "record.json").is_file()
    pooled = subprocess.run([*cmd, "--out", str(tmp_path / "pooled"), "--first-seed", "3", "--methods",
                             "sft,nrt-ws", "--pool-with", str(tmp_path / "out" / "results.json")], cwd=ROOT,
                            capture_output=True, text=True)  # reads seed 3 back; pairs seeds 0 and 3
    assert pooled.returncode == 0 and "] train " not in pooled.stdout, pooled.stderr
    assert "Pooled with the grid in" in pooled.stdout and re.search(r"\| sft \| [^|]+ \| [^|]+ \| 2 \|", pooled.stdout)
    clash = subprocess.run([*cmd, "--first-seed", "3", "--pool-with", str(tmp_path / "replication" / "results.json")],
                           cwd=ROOT, capture_output=True, text=True)  # seed 3 again: would pair a seed with itself
    assert clash.returncode != 0 and "must be fresh" in clash.stderr



def test_real_model_answer_term_and_long_runs_on_the_tiny_model(tiny_model_dir, tmp_path):
    """The answer-term variants, accuracy every N steps with the collapse table, one evaluation file; an
    unfinished run goes on from its last checkpoint; runs of another length are refused, not read back."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "experiments/real_model.py", "--quick", "--model", str(tiny_model_dir), "--out",
           str(tmp_path / "out"), "--runs", str(runs), "--splits", "3-digit", "--steps", "4", "--eval-every", "2",
           "--prompts-per-step", "1", "--seeds", "1",
           "--methods", "nrt-ws,nrt-ws no answer term,control (verified trace) no answer term"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    run = results["methods"]["nrt-ws no answer term"][0]
    assert [p["step"] for p in run["curve"]] == [2, 4] and set(run["eval"]) == {"3-digit"}
    assert run["eval"] == {"3-digit": run["curve"][-1]["3-digit"]} and len(run["metrics"]) == 4
    assert run["budget"]["prompts_per_step"] == 1
    config = (runs / "nrt-ws_no_answer_term-seed0" / "config.yaml").read_text()
    assert re.search(r"^answer_weight: 0\.0$", config, re.M), config
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "3-digit, paired on seeds against control (verified trace)" not in readme  # no control with the term
    assert "Held-out accuracy (3-digit) during training" in readme and "collapsed seeds" in readme
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 10_000
    kept = sorted(p.name for p in (runs / "nrt-ws-seed0" / "checkpoints").iterdir())
    assert kept == ["step-000004"], kept  # the step-2 checkpoint went once the curve was evaluated
    (runs / "nrt-ws-seed0" / "record.json").unlink()  # as if killed after its last checkpoint
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "] train nrt-ws seed 0 (resumed)" in again.stdout and again.stdout.count("] train ") == 1
    shorter = subprocess.run([*cmd[:-4], "--steps", "2", "--methods", "nrt-ws"], cwd=ROOT, capture_output=True,
                             text=True)
    assert shorter.returncode != 0 and "another budget (ran, asked: {'steps': (4, 2)})" in shorter.stderr
    wrong = subprocess.run([*cmd, "--eval-every", "3"], cwd=ROOT, capture_output=True, text=True)
    assert wrong.returncode == 2 and "must divide the 4 steps" in wrong.stderr
