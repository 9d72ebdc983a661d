"""Where a job's CPU goes: CPU seconds per kind of process, sampled from the process tree.

``CpuSampler()`` watches this process and its descendants while a job runs (every
``interval_s``, keeping each process's last cumulative user+system time, so processes
that end early count too) and sums them by kind: the JVM (Flink's sources, network and
operators in Java), PyFlink's Python workers (Python UDFs and DataStream functions in
process mode), flink-dl's rank processes, and the client (this process: in loopback mode
also the Python operators). ``jit_s`` is the part of the JVM's time spent in its JIT
compiler threads (C1/C2), which compile each job's generated code and, in a young JVM,
Flink's own: a per-job cost that shares the cores with the job. ``faults`` counts minor
page faults per kind (each one a trip into the kernel, ~2 us here, and a page zeroed).
``timeline`` keeps every sample, so that ``window(start, end)`` gives the CPU spent between
two instants of the run, per kind, for the JIT, the whole machine and the busiest Flink
source task thread. The sampler's own thread (about 2 ms a sample) is not counted as the
client's.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from types import TracebackType
from typing import Any, NamedTuple

import psutil

_TICKS = os.sysconf("SC_CLK_TCK")
class Sample(NamedTuple):
    """One sample: cumulative CPU seconds since the sampler started."""

    time: float  #: ``time.time()``
    kinds: dict[str, float]  #: per kind of process
    jit: float  #: the JVM's JIT compiler threads
    machine: float  #: every process on the machine (busy seconds since boot)
    tasks: dict[tuple[int, int], float]  #: per Flink source task thread, (pid, tid)


KINDS = ("JVM (Flink, Java operators)", "Flink Python workers", "rank processes",
         "client (Python operators in loopback)")


def kind_of(proc: psutil.Process, root: int) -> str:
    if proc.pid == root:
        return KINDS[3]
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if "java" in proc.name() or " -classpath " in cmdline or "org.apache.flink" in cmdline:
        return KINDS[0]
    if "flink_dl.cluster.node_main" in cmdline:
        return KINDS[2]
    if "pyflink" in cmdline or "beam" in cmdline:
        return KINDS[1]
    return "other"


class CpuSampler:
    """Context manager: ``seconds`` (kind -> CPU s) and ``wall_s`` once it exits."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.root = psutil.Process()
        self._last: dict[int, tuple[str, float]] = {}
        self._start: dict[int, float] = {}
        self._faults_last: dict[int, int] = {}
        self._faults_start: dict[int, int] = {}
        #: minor page faults per kind of process
        self.faults: dict[str, int] = {}
        self._stop = threading.Event()
        self._first = False
        self.seconds: dict[str, float] = {}
        self.wall_s = 0.0
        #: CPU seconds the machine spent busy outside this process tree while it ran, and
        #: those the hypervisor took (steal): a noisy run shows here
        self.elsewhere_s = 0.0
        self.steal_s = 0.0
        #: of the JVM's seconds, those of its JIT compiler threads
        self.jit_s = 0.0
        self._jit_last: dict[tuple[int, int], float] = {}
        self._jit_start: dict[tuple[int, int], float] = {}
        self._task_last: dict[tuple[int, int], float] = {}
        self._task_start: dict[tuple[int, int], float] = {}
        self._thread_class: dict[tuple[int, int], str | None] = {}  # from its name, once
        #: every sample, for ``window``
        self.timeline: list[Sample] = []
        self._own_cpu_s = 0.0  # the sampler thread's, taken off the client's

    def _sample_jvm_threads(self, pid: int) -> None:
        """The JVM ``pid``'s JIT compiler threads' and source task threads' cumulative CPU
        seconds, per thread (a thread's class read once from its name, once it has one)."""
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return
        for tid in tids:
            key = (pid, int(tid))
            try:
                if key not in self._thread_class:
                    with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                        name = comm.read().strip()
                    thread_class = _jvm_thread_class(name)
                    if name != "java":  # a new thread is "java" until the JVM names it
                        self._thread_class[key] = thread_class
                else:
                    thread_class = self._thread_class[key]
                if thread_class is None:
                    continue
                with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            used = (int(fields[11]) + int(fields[12])) / _TICKS
            last, first = (self._jit_last, self._jit_start) if thread_class == "jit" else \
                (self._task_last, self._task_start)
            if key not in last:
                first[key] = used if self._first else 0.0
            last[key] = used

    def _sample(self) -> None:
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                used = times.user + times.system
            except psutil.Error:
                continue
            faults = _minor_faults(proc.pid)
            if proc.pid not in self._last:  # what ran before the sampler started is not ours
                self._start[proc.pid] = used if self._first else 0.0
                self._faults_start[proc.pid] = (faults or 0) if self._first else 0
            if faults is not None:  # None: gone between the two reads, keep the last count
                self._faults_last[proc.pid] = faults
            kind = self._last.get(proc.pid, (None, 0.0))[0]
            if kind in (None, "other"):  # a child seen between fork and exec looks like us
                kind = kind_of(proc, self.root.pid)
            self._last[proc.pid] = (kind, used)
            if kind == KINDS[0]:
                self._sample_jvm_threads(proc.pid)
        self.timeline.append(Sample(
            time.time(), self._per_kind(),
            sum(used - self._jit_start.get(key, 0.0) for key, used in self._jit_last.items()),
            _machine_busy_s(),
            {key: used - self._task_start.get(key, 0.0) for key, used in self._task_last.items()}))

    def _per_kind(self) -> dict[str, float]:
        """CPU seconds per kind of process so far, less the sampler thread's own."""
        seconds: dict[str, float] = {}
        for pid, (kind, used) in self._last.items():
            seconds[kind] = seconds.get(kind, 0.0) + used - self._start.get(pid, 0.0)
        if KINDS[3] in seconds:
            seconds[KINDS[3]] -= self._own_cpu_s
        return seconds

    def window(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds between two ``time.time()`` instants of the sampled run (each
        interpolated between the samples around it): per kind of process, ``"JIT"`` (the
        JVM's compiler threads), ``"machine"`` (every process on the machine) and
        ``"busiest task thread"`` (the Flink source task thread that ran most, with the
        operators chained to it)."""
        if not self.timeline:
            raise ValueError("no samples: the window must lie in a sampled run")
        if end < start:
            raise ValueError(f"the window ends ({end:.3f}) before it starts ({start:.3f})")
        times = [sample.time for sample in self.timeline]

        def at(instant: float) -> Sample:
            after = min(max(bisect.bisect_left(times, instant), 1), len(times) - 1)
            before, later = self.timeline[max(after - 1, 0)], self.timeline[after]
            span = later.time - before.time
            share = 0.0 if span <= 0 else min(max((instant - before.time) / span, 0.0), 1.0)
            return Sample(instant, _interpolate(before.kinds, later.kinds, share),
                          before.jit + share * (later.jit - before.jit),
                          before.machine + share * (later.machine - before.machine),
                          _interpolate(before.tasks, later.tasks, share))

        first, last = at(start), at(end)
        threads = [used - first.tasks.get(key, 0.0) for key, used in last.tasks.items()]
        return {**{kind: used - first.kinds.get(kind, 0.0) for kind, used in last.kinds.items()},
                "JIT": last.jit - first.jit, "machine": last.machine - first.machine,
                "busiest task thread": max(threads, default=0.0)}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            started = time.thread_time()
            self._sample()
            self._own_cpu_s += time.thread_time() - started

    def __enter__(self) -> CpuSampler:
        self._started = time.monotonic()
        self._machine = psutil.cpu_times()
        self._first = True
        self._sample()
        self._first = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall_s = time.monotonic() - self._started
        self.seconds = self._per_kind()
        for pid, (kind, _) in self._last.items():
            self.faults[kind] = self.faults.get(kind, 0) + self._faults_last.get(pid, 0) \
                - self._faults_start.get(pid, 0)
        self.jit_s = sum(used - self._jit_start.get(key, 0.0)
                         for key, used in self._jit_last.items())
        now, then = psutil.cpu_times(), self._machine
        busy = _machine_busy_s(now) - _machine_busy_s(then)
        self.elsewhere_s = max(0.0, busy - sum(self.seconds.values()))
        self.steal_s = getattr(now, "steal", 0.0) - getattr(then, "steal", 0.0)


def _interpolate(before: dict[Any, float], after: dict[Any, float],
                 share: float) -> dict[Any, float]:
    """Each value ``share`` of the way from ``before`` to ``after`` (0 where missing)."""
    return {k: before.get(k, 0.0) + share * (after.get(k, 0.0) - before.get(k, 0.0))
            for k in {*before, *after}}


def _jvm_thread_class(name: str) -> str | None:
    """"jit" for a JIT compiler thread, "task" for a thread that runs a Flink source task
    (its name, cut to 15 characters: a legacy source's thread or a task named after its first
    operator, "Source: ..."), None for the rest."""
    if "CompilerThre" in name:
        return "jit"
    if name.startswith(("Legacy Source", "Source:")):
        return "task"
    return None


def _machine_busy_s(times: Any = None) -> float:
    """The machine's busy CPU seconds since boot (every process, every core)."""
    times = psutil.cpu_times() if times is None else times
    return sum(getattr(times, f) for f in ("user", "nice", "system", "irq", "softirq"))


def _minor_faults(pid: int) -> int | None:
    """The process's minor page faults so far (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return None


def settle(quiet_percent: float = 15.0, timeout_s: float = 30.0) -> float:
    """Wait until the machine is quiet (the last run's processes have exited: a TensorFlow
    process takes seconds to tear down) so that the next run is measured alone; returns
    the seconds waited (gives up after ``timeout_s``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if psutil.cpu_percent(interval=1.0) < quiet_percent:
            break
    return time.monotonic() - started
