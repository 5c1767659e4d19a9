"""The code sandbox: correct code passes; endless loops, file writes, network and crashes fail."""

from nrt.sandbox import humaneval_program, run_program

PROBLEM = {
    "prompt": 'def add(a, b):\n    """Return a + b."""\n',
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}


def test_correct_completion_passes():
    assert run_program(humaneval_program(PROBLEM, "    return a + b\n")).passed


def test_wrong_completion_fails():
    outcome = run_program(humaneval_program(PROBLEM, "    return a - b\n"))
    assert not outcome.passed and "AssertionError" in outcome.reason


def test_endless_loop_is_stopped():
    outcome = run_program(humaneval_program(PROBLEM, "    while True:\n        pass\n"), timeout=2.0)
    assert not outcome.passed and "timed out" in outcome.reason


def test_writing_files_fails(tmp_path):
    target = tmp_path / "pwned.txt"
    for code in [f"open({str(target)!r}, 'w').write('x')\n", "open('local.txt', 'w').write('x')\n",
                 "import pathlib\npathlib.Path('p.txt').write_text('x')\n", "import os\nos.remove('/tmp')\n"]:
        outcome = run_program(code)
        assert not outcome.passed, code
    assert not target.exists()


def test_network_is_refused():
    outcome = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9))\n")
    assert not outcome.passed and "disabled" in outcome.reason


def test_syntax_error_fails():
    assert not run_program(humaneval_program(PROBLEM, "    return a +\n")).passed
