"""What a run writes for people: metrics.jsonl, samples.jsonl, TensorBoard or Weights & Biases, a progress bar.

Only the main process logs; other processes get ``NullRunLog`` with the same methods, so the trainer
has no ``if main_process`` branches around logging.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:  # nrt.config reads REPORTERS from here
    from nrt.config import TrainConfig

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


class TensorBoard:
    """Scalars to ``run_dir/tensorboard``; a resumed run drops the events after its checkpoint's step."""

    def __init__(self, cfg: TrainConfig, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(cfg.output_dir) / "tensorboard"), purge_step=start_step + 1)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Wandb:
    """Scalars and the config to a Weights & Biases run, in ``run_dir/wandb`` unless WANDB_DIR says elsewhere.

    wandb is imported only here. Every ``nrt train`` (a resumed one too) is a new wandb run; its steps are the
    trainer's. Whether anything leaves the computer is wandb's setting (WANDB_MODE=offline: nothing does).
    """

    def __init__(self, cfg: TrainConfig, start_step: int):
        import wandb

        self.run = wandb.init(project=cfg.wandb_project, name=run_name(cfg), config=dataclasses.asdict(cfg),
                              dir=os.environ.get("WANDB_DIR", cfg.output_dir))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


# report_to's choices: one entry per tracker, each with ``log(step, metrics)`` and ``close()``
REPORTERS = {"tensorboard": TensorBoard, "wandb": Wandb}


def run_name(cfg: TrainConfig) -> str:
    """``run_name``, or the name of the run folder."""
    return cfg.run_name or Path(cfg.output_dir).resolve().name


class RunLog:
    """Appends one JSON line per step and mirrors the scalars to the trackers of ``report_to``."""

    def __init__(self, cfg: TrainConfig, *, start_step: int):
        run_dir = Path(cfg.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = run_dir / METRICS_FILE
        self.samples_path = run_dir / SAMPLES_FILE
        for path in (self.metrics_path, self.samples_path):
            _truncate_after(path, start_step)
        self.reporters = [REPORTERS[name](cfg, start_step) for name in cfg.report_to]
        self.bar = tqdm(total=cfg.steps, initial=start_step, desc="nrt train", unit="step", disable=not cfg.progress,
                        dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, float], samples: list[dict[str, Any]]) -> None:
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        with self.samples_path.open("a") as handle:
            for record in samples:
                handle.write(json.dumps({"step": step, **record}, ensure_ascii=False) + "\n")
        for reporter in self.reporters:
            reporter.log(step, metrics)
        self.bar.set_postfix({short: f"{metrics[k]:.3g}" for k, short in PROGRESS_KEYS.items() if k in metrics})
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        for reporter in self.reporters:
            reporter.close()


class NullRunLog:
    """The same interface, doing nothing (non-main processes)."""

    def log(self, step: int, metrics: dict[str, float], samples: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass
