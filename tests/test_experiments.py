"""experiments/compare.py end to end on the tiny model: every row, the table, the plot; a rerun reuses runs."""

import json
import subprocess
import sys
from pathlib import Path

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
