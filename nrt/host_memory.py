"""Keep freed host memory in the process, so that a CPU training step does not page-fault its tensors in anew.

glibc serves large allocations (above an adaptive threshold of at most 32 MiB) with fresh ``mmap`` pages
and returns them to the OS on free, and it trims the top of its heap likewise. A training step allocates
and frees gigabytes of activations, logits and gradients, so every step faults them back in page by page:
on the default model 2.7 to 6 GB of page faults per step. Serving every allocation from the heap and never
trimming it makes later steps reuse the pages of the first (70k faults instead of 680k to 1.5M per step):
the update phase of ``benchmarks/step.py`` went from 40.3 to 33.7 s on an AMD EPYC VM (2 threads). The cost is memory:
the process keeps its heap between steps, and the heap fragments, so the peak RSS grew from 6.87 to
7.32 GB there with 2 prompts per pass (5.00 to 5.23 GB with 1, the default). Turn it off with
``retain_freed_memory: false``. jemalloc or tcmalloc (``LD_PRELOAD``) or ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=...`` in the environment do the same from outside.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc <malloc.h>


def retain_freed_memory() -> bool:
    """Ask glibc to serve allocations from its heap and never trim it; False where that is not glibc/Linux."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if not done:
        log.warning("mallopt refused the allocator settings; freed memory is returned to the OS as usual")
    return done
