"""What a run writes for people: metrics.jsonl, samples.jsonl, TensorBoard, and a progress bar.

Only the main process logs; other processes get ``NullRunLog`` with the same methods, so the trainer
has no ``if main_process`` branches around logging.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
PROGRESS_KEYS = {"reward_raw_mean": "R", "trace_len_mean": "len", "answer_nll_gain": "gain", "loss": "loss"}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_after(path: Path, step: int) -> None:
    """Drop records of steps after ``step``: a resumed run redoes them."""
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class RunLog:
    """Appends one JSON line per step and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, *, total_steps: int, start_step: int, tensorboard: bool, progress: bool):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = run_dir / METRICS_FILE
        self.samples_path = run_dir / SAMPLES_FILE
        for path in (self.metrics_path, self.samples_path):
            _truncate_after(path, start_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="nrt train", unit="step", disable=not progress,
                        dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, float], samples: list[dict[str, Any]]) -> None:
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        with self.samples_path.open("a") as handle:
            for record in samples:
                handle.write(json.dumps({"step": step, **record}, ensure_ascii=False) + "\n")
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(name, value, step)
            self.writer.flush()
        self.bar.set_postfix({short: f"{metrics[k]:.3g}" for k, short in PROGRESS_KEYS.items() if k in metrics})
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


class NullRunLog:
    """The same interface, doing nothing (non-main processes)."""

    def log(self, step: int, metrics: dict[str, float], samples: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass
