"""Start-up of the digits demo (issue 16, goal 2): ``execute`` -> every rank training.

Runs ``examples/digits.py``'s training job (2 ranks, 1 epoch, embedded mini-cluster) with
its own entry wrapped: each rank stamps when its entry process was created, when the
entry function started (torch imported, process group up) and when its first batch
arrived. Figures are the slowest rank's, from the moment the client called ``execute``;
each run is a fresh interpreter (a new JVM and mini-cluster), as when a user runs the demo.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.drivers.cpu_breakdown import CpuSampler

STAMP_DIR = "stamp_dir"


class _FirstBatchStamp:
    """Iterates a loader; stamps the time its first batch arrives."""

    def __init__(self, loader: Any, stamp: Path) -> None:
        self._loader, self._stamp = loader, stamp

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self):
        for index, batch in enumerate(self._loader):
            if index == 0 and not self._stamp.exists():
                self._stamp.write_text(str(time.time()))
            yield batch


def entry(ctx) -> dict:
    """The digits entry, with start-up stamps."""
    import psutil

    from examples.digits import train_entry

    out = Path(ctx.properties[STAMP_DIR])
    started = time.time()
    created = psutil.Process().create_time()
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(
        {"process_created": created, "entry_started": started}))
    make_loader = ctx.dataloader

    def dataloader(*args: Any, **kwargs: Any) -> _FirstBatchStamp:
        return _FirstBatchStamp(make_loader(*args, **kwargs), out / f"first{ctx.rank}")

    ctx.dataloader = dataloader
    return train_entry(ctx)


def run_once(workers: int = 2) -> dict[str, float]:
    """One training job; seconds from ``execute`` to each milestone (slowest rank)."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from examples.digits import load_split
    from flink_dl import use_jvm_archive
    from flink_dl.pytorch import TorchConfig
    from flink_dl.pytorch import train as torch_train

    use_jvm_archive()  # as examples/digits.py does, before the gateway JVM starts
    with tempfile.TemporaryDirectory() as tmp:
        stamps = Path(tmp, "stamps")
        stamps.mkdir()
        train_frame, _ = load_split()
        env = StreamExecutionEnvironment.get_execution_environment()
        t_env = StreamTableEnvironment.create(env)
        table = t_env.from_pandas(train_frame)
        config = TorchConfig(world_size=workers, entry=entry, epochs=1,
                             model_dir=str(Path(tmp, "models")),
                             properties={STAMP_DIR: str(stamps)}, name="digits")
        events = torch_train(env, table, config)
        sampler = CpuSampler(interval_s=0.1)
        firsts = [stamps / f"first{r}" for r in range(workers)]

        def stop_at_first_batches() -> None:  # the CPU window: execute -> first batches
            deadline = time.monotonic() + 300
            while not all(f.exists() for f in firsts) and time.monotonic() < deadline:
                time.sleep(0.02)
            sampler.__exit__(None, None, None)

        submitted = time.time()
        sampler.__enter__()
        watcher = threading.Thread(target=stop_at_first_batches, daemon=True)
        watcher.start()
        with events.execute_and_collect("digits-startup") as results:
            rows = [row.as_dict() for row in results]
        finished = time.time()
        watcher.join(timeout=60)
        assert any(r["kind"] == "model" for r in rows), "the job published no model"
        ranks = [json.loads(stamps.joinpath(f"rank{r}.json").read_text())
                 for r in range(workers)]
        first = [float(stamps.joinpath(f"first{r}").read_text()) for r in range(workers)]
    import psutil

    started = psutil.Process().create_time()
    return {"interpreter start -> execute (imports, JVM, job built)": submitted - started,
            "interpreter start -> first batch on every rank": max(first) - started,
            "execute -> entry processes created (< 0: before execute)": max(r["process_created"]
                                                      for r in ranks) - submitted,
            "execute -> entries started (torch imported, process group up)":
                max(r["entry_started"] for r in ranks) - submitted,
            "execute -> first batch on every rank": max(first) - submitted,
            "execute -> job finished (1 epoch)": finished - submitted,
            **_cpu_figures(sampler)}


CPU_PREFIX = "CPU s, execute -> first batch: "


def _cpu_figures(sampler: CpuSampler) -> dict[str, float]:
    """CPU seconds per kind of process in the window, and how busy the machine was."""
    cores = len(os.sched_getaffinity(0))
    ours = {CPU_PREFIX + kind: seconds for kind, seconds in sampler.seconds.items()}
    total = sum(sampler.seconds.values())
    return {**ours, CPU_PREFIX + "all of the job": total,
            CPU_PREFIX + "elsewhere on the machine": sampler.elsewhere_s,
            f"machine busy, execute -> first batch (of {cores} cores)":
                (total + sampler.elsewhere_s) / (sampler.wall_s * cores)
                if sampler.wall_s else 0.0}


def _fresh_client_env() -> dict[str, str]:
    """This environment without what an earlier loopback job in this process left in it
    (PyFlink's loopback workers update ``os.environ``; a child that inherits
    ``PYFLINK_GATEWAY_DISABLED`` refuses to start its own JVM)."""
    from flink_dl.startup.client_env import without_loopback_leftovers

    return without_loopback_leftovers()


def _cold_run(prewarm: str, mode: str = "loopback", archive: str = "auto",
              launcher: str = "1") -> dict[str, float]:
    """``run_once`` in a fresh interpreter (what a user running the demo gets: a new JVM,
    a new mini-cluster), with ``FLINK_DL_PREWARM=prewarm``, PyFlink's Python workers in
    ``mode`` (``loopback``: threads of the client, the local default; ``process``) and
    ``FLINK_DL_JVM_ARCHIVE=archive`` (``0``: the gateway JVM loads every class from jars)
    and ``FLINK_DL_LIGHT_LAUNCHER=launcher`` (``0``: PyFlink's Beam launcher per slot)."""
    code = ("import json; from bench.workloads.demo_startup import run_once; "
            "print(json.dumps(run_once()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False,
                          env={**_fresh_client_env(), "FLINK_DL_PREWARM": prewarm,
                               "_python_worker_execution_mode": mode,
                               "FLINK_DL_JVM_ARCHIVE": archive,
                               "FLINK_DL_LIGHT_LAUNCHER": launcher})
    if done.returncode != 0:
        raise RuntimeError(f"demo start-up run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(repeats: int = 3) -> list[dict[str, object]]:
    """Median over ``repeats`` cold runs of each setting, interleaved: rank processes
    spawned when their nodes start (this machine's default), prewarmed while Flink deploys
    (``FLINK_DL_PREWARM=1``), spawned with PyFlink's Python workers as processes (to price
    process mode as a local default), and spawned without the JVM class archive, without
    the light loopback launcher, and without either (the start-up before both)."""
    from flink_dl.startup.jvm_archive import build_archive

    build_archive()  # a no-op when it exists: the default setting maps it
    settings = {"spawned at node start s": ("0", "loopback", "auto", "1"),
                "prewarmed s": ("1", "loopback", "auto", "1"),
                "process mode, spawned s": ("0", "process", "auto", "1"),
                "no JVM archive s": ("0", "loopback", "0", "1"),
                "Beam launcher s": ("0", "loopback", "auto", "0"),
                "neither (before) s": ("0", "loopback", "0", "0")}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    for _ in range(repeats):  # interleaved: every setting sees the same machine load
        for name, (prewarm, mode, archive, launcher) in settings.items():
            runs[name].append(_cold_run(prewarm, mode, archive, launcher))
    rows: list[dict[str, object]] = []
    for figure in runs["spawned at node start s"][0]:
        row: dict[str, object] = {"milestone": figure}
        for name, results in runs.items():
            row[name] = statistics.median(r.get(figure, 0.0) for r in results)
        rows.append(row)
    return rows
