"""Bundle ends without a wait: Beam's state sampler runs without its sampling thread.

PyFlink's Python worker is Beam's SDK harness. Per bundle it starts a ``StateSampler``
thread, which sleeps in steps growing 1.2-fold up to 200 ms, and at the bundle's end joins
it. After a 1 s bundle the step is ~190 ms, so every bundle end waits ~100 ms on average
(up to 200 ms) before the worker answers, and Flink's operator (and the source chained to
it) waits with it. Measured on W3 (1M rows, parallelism 1, 4-5 bundles): 0.21-0.34 s of
bundle-end waits per job with the thread, 0.01-0.03 s with a 10 ms step.

The thread only adds wall time to each state's ``msecs`` counters, which Flink never
reads (it reports user metrics only) and this Beam release logs no lulls from. So
flink-dl's operators call ``apply()`` when they open: the sampler then starts and stops
without a thread, and everything else (the current tracker, scoped states, user metrics)
works as before. ``FLINK_DL_SAMPLER_THREAD=1`` keeps Beam's thread.
"""

from __future__ import annotations

import logging
import os
import threading

from flink_dl.settings import ENV_NAMES, RuntimeSettings
from flink_dl.startup import quiet_hangup

log = logging.getLogger(__name__)

#: Set to ``1`` to keep Beam's sampling thread (and its wait at every bundle end).
KEEP_THREAD_ENV = ENV_NAMES["sampler_thread"]
_MARK = "_flink_dl_threadless"


def apply() -> bool:
    """Run Beam's state sampler without its thread in this process (idempotent); False
    when turned off by ``FLINK_DL_SAMPLER_THREAD=1`` or when this Beam release's sampler
    does not have the expected shape (then nothing is changed). Also installs
    ``quiet_hangup`` (a job's end logs no Beam tracebacks)."""
    quiet_hangup.install()
    if RuntimeSettings.from_env().sampler_thread:
        return False
    try:
        from apache_beam.runners.worker import statesampler
    except ImportError:
        return False
    sampler_class = statesampler.StateSampler
    if getattr(sampler_class, _MARK, False):
        return True
    expected = ("start", "stop", "stop_if_still_running", "reset", "started", "finished")
    if not hasattr(statesampler, "set_current_tracker") or \
            not all(hasattr(sampler_class, name) for name in expected):
        log.warning("Beam's StateSampler has an unexpected shape; keeping its thread")
        return False
    set_current_tracker = statesampler.set_current_tracker

    def start(self: statesampler.StateSampler) -> None:
        self.tracked_thread = threading.current_thread()
        set_current_tracker(self)
        self.started = True

    def stop(self: statesampler.StateSampler) -> None:
        set_current_tracker(None)
        self.finished = True

    sampler_class.start = start
    sampler_class.stop = stop
    setattr(sampler_class, _MARK, True)
    log.debug("Beam's state sampler now runs without its thread in pid %d", os.getpid())
    return True
