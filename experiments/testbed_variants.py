"""The testbed's answer variants, where the aggregations' formulas predict different outcomes (~70 min, 2 cores).

    python experiments/testbed_variants.py                # every variant; resumes after the last finished run
    python experiments/testbed_variants.py --variants noise,long

Each variant runs ``nrt testbed --variant V --seeds 5 --eval-size 1000 --workers 2`` with the methods of
``GRID`` (every aggregation with the recipe's fixed token reward on every variant; the derived token reward
where a prediction is about it), into ``--out/V``. The predictions were written in ``--out/README.md`` before
the first run. Written to ``--out/summary.md``: the commit, the command, the wall time, and each variant's
table and paired comparison against nrt-ws.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from nrt.reports import generated_text

CORE = ["control (exact-trace reward)", "sft", "jepo", "verifree", "rlpr", "nrt-gm", "nrt-ws", "nrt-ws-inv"]
DERIVED = [f"{preset} derived token reward"
           for preset in ("jepo", "verifree", "rlpr", "nrt-gm", "nrt-ws", "nrt-ws-inv")]
GRID = {
    "format": CORE + DERIVED,  # the derived token reward's weights are what changes with 19 easy tokens
    "noise": CORE,
    # P underflows: no trace term and no answer term; without the format term, nothing at all
    "long": [*CORE, "verifree derived token reward", "verifree derived token reward no format term"],
    # why did every likelihood reward fall? (the answer term) and how do the trace terms alone compare?
    "middle": [*CORE, "nrt-ws no answer term", "control (no answer term)",
               *(f"{p} no answer term" for p in ("jepo", "verifree", "rlpr", "nrt-gm", "nrt-ws-inv"))],
    "shortcut": CORE,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(GRID), help=f"Comma-separated, from {list(GRID)}.")
    parser.add_argument("--out", default="results/testbed-variants")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    started = time.perf_counter()
    for variant in args.variants.split(","):
        command = ["nrt", "testbed", "--variant", variant, "--methods", ",".join(GRID[variant]), "--seeds",
                   str(args.seeds), "--eval-size", str(args.eval_size), "--workers", str(args.workers),
                   "--out", str(out / variant)]
        subprocess.run([sys.executable, "-m", "nrt", *command[1:]], check=True)
    sections = []  # every variant with results under --out, also those not run this time, in GRID's order
    for variant in [v for v in GRID if (out / v / "README.md").is_file()]:
        body = generated_text(out / variant / "README.md").split("\n", 2)[2]  # below the variant's title
        sections.append(f"## {variant}\n\n{body.replace('](curves.png)', f']({variant}/curves.png)')}")
    minutes = (time.perf_counter() - started) / 60
    (out / "summary.md").write_text(
        f"# Testbed variants: results\n\n`{shlex.join(['python', *sys.argv])}` at commit {commit}: {minutes:.0f} min "
        f"on the machine it ran on (a finished run is read back, so a resumed grid counts only what ran).\n\n"
        + "\n".join(sections))
    print(f"{minutes:.1f} min; {out / 'summary.md'}")


if __name__ == "__main__":
    main()
