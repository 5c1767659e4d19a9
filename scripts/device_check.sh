#!/usr/bin/env bash
# One call on a GPU machine (no network there): the CUDA tests, the GPU training benchmark, then evaluation's.
# Before, on a machine with nrt installed: python benchmarks/gpu.py --save-tokenizer benchmarks/.tokenizer
# (the SmolLM2 tokenizer files, ~3 MB; the folder is git-ignored: carry it with the checkout).
# Then, on the GPU machine, from the repository root: PYTHONPATH=. bash scripts/device_check.sh
set -uo pipefail
PYTHON=${PYTHON:-python3}
TOKENIZER=${TOKENIZER:-benchmarks/.tokenizer}
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
    NRT_TEST_TOKENIZER="$TOKENIZER" "$PYTHON" -m pytest -q -m gpu tests -p no:cacheprovider
fi
"$PYTHON" benchmarks/gpu.py --tokenizer "$TOKENIZER" "$@"
"$PYTHON" benchmarks/eval.py --tokenizer "$TOKENIZER"
