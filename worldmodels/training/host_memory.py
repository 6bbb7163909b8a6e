"""Host memory for training on the CPU: let glibc's malloc reuse freed blocks of a few MB instead of
handing them back to the kernel and faulting fresh pages in at the next allocation.

torch's CPU allocator is glibc's malloc. A CPU update allocates and frees tensors of several MB every
step (DER's 7744 x 512 noisy weight, 16 MB, is built three times per update; its gradient and Adam's
temporaries as large), and malloc serves such blocks with fresh ``mmap`` pages (above its threshold,
128 KiB and raised dynamically) or trims them off the heap when freed. Each reuse then costs page faults
and zeroed pages: ~17,000 faults (~70 MB) per DER update. Fixing the mmap threshold at its maximum
(32 MiB) and the trim threshold at 1 GiB keeps those blocks in the heap for the next step. Values are
untouched; the resident size stays near the peak that the steps reach anyway.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit hosts)
TRIM_THRESHOLD = 1 << 30


def reuse_freed_host_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring) for this process. Returns whether
    they were set: False off Linux or with a C library that has no ``mallopt`` (musl ignores it)."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
