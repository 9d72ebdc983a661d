"""glibc malloc settings that stop a model's batch loop from faulting its memory in anew.

A forward pass allocates its activations afresh on every batch (4 MiB for a 4,096 x 256
float32 layer). With glibc's dynamic thresholds the freed top of the heap is returned to
the kernel after a batch and faulted in again by the next one. ``apply()`` fixes the trim
threshold (``TRIM_THRESHOLD_MB``) and the mmap threshold (``MMAP_THRESHOLD_MB``) so that
freed memory is reused; ``ModelRunner.open`` calls it. Measurements (page faults and CPU
seconds, in a plain loop and inside Flink jobs): docs/benchmarks.md, "Where the time goes,
2026-12-05 evening".

Cost: each malloc arena may keep up to ``TRIM_THRESHOLD_MB`` of free memory; glibc makes up
to 8 arenas per core, one per thread that allocates at a time. Left alone: other C
libraries, and processes whose user chose malloc settings (``MALLOC_*_`` variables,
``GLIBC_TUNABLES`` with ``glibc.malloc``, or a preloaded ``*malloc*`` library).
``FLINK_DL_MALLOC_TUNING=0`` keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading

from flink_dl.settings import ENV_NAMES, RuntimeSettings

log = logging.getLogger(__name__)

#: Set to ``0`` (or off/false/no) to keep glibc's malloc defaults.
SWITCH_ENV = ENV_NAMES["malloc_tuning"]
#: Free memory at the top of a heap that glibc keeps instead of returning it (MiB).
TRIM_THRESHOLD_MB = 64
#: Allocations at least this large are mapped on their own and unmapped when freed (MiB);
#: 32 MiB is the largest value glibc's dynamic threshold reaches by itself on 64-bit.
MMAP_THRESHOLD_MB = 32
#: Environment variables through which a user sets malloc's behaviour themselves.
USER_SETTINGS_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                     "MALLOC_ARENA_MAX")

_M_TRIM_THRESHOLD = -1  # from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_lock = threading.Lock()
_applied: bool | None = None


def apply() -> bool:
    """Fix glibc's trim and mmap thresholds in this process, once (thread-safe); False
    when switched off, not glibc, the user chose malloc settings, or glibc refused (then
    nothing changed)."""
    global _applied
    with _lock:
        if _applied is None:
            _applied = _apply()
        return _applied


def _user_chose_malloc() -> str | None:
    """The setting through which the user chose malloc's behaviour, if any."""
    for name in USER_SETTINGS_ENV:
        if name in os.environ:
            return name
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):  # jemalloc, tcmalloc, mimalloc...
        return "LD_PRELOAD"
    return None


def _apply() -> bool:
    if not RuntimeSettings.from_env().malloc_tuning:
        return False
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")  # raises where the C library is not glibc
    except (AttributeError, ValueError, OSError):
        return False
    if not libc or not libc.startswith("glibc"):
        return False
    chosen = _user_chose_malloc()
    if chosen is not None:
        log.debug("malloc settings left as they are: %s is set", chosen)
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc, already loaded in this process
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # The mmap threshold first: glibc may refuse it (some releases cap it at 32 MiB), and
    # then nothing has changed. glibc never refuses a trim threshold.
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MB << 20):
        log.warning("glibc refused an mmap threshold of %d MiB; keeping malloc's defaults",
                    MMAP_THRESHOLD_MB)
        return False
    if not mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_MB << 20):
        log.warning("glibc refused a trim threshold of %d MiB", TRIM_THRESHOLD_MB)
        return False
    log.debug("malloc: trim threshold %d MiB, mmap threshold %d MiB in pid %d",
              TRIM_THRESHOLD_MB, MMAP_THRESHOLD_MB, os.getpid())
    return True
