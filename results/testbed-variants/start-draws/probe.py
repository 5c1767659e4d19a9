"""The record behind this grid's predictions: each draw's start, warmed until 0.38, probed before any training.

    python results/testbed-variants/start-draws/probe.py   # builds (or reads the cached) starts; about 3 min
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "experiments"))

from testbed_why_control import step_table

from nrt import testbed

for draw in (0, 1, 2):
    settings = testbed.Settings(warm_until=0.38, start_seed=draw, eval_size=1000)
    start = testbed.start_checkpoint(settings)
    warm = (start / "warm_start.json").read_text()
    steps = step_table(start, testbed.VARIANTS["base"])
    print(f"draw {draw}: {warm}; " + "; ".join(f"{n} ops: steps {' / '.join(f'{x:.2f}' for x in right)}, "
                                               f"P(trace) {whole:.3f}" for n, (right, whole) in steps.items()))
