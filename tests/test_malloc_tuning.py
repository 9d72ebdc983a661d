"""glibc malloc settings for batch loops (``flink_dl.startup.malloc_tuning``): a model served batch
after batch by ``ModelRunner`` stops faulting its activations in on every batch."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flink_dl.startup import malloc_tuning

# One fresh process per setting (malloc's state is per process): a ModelRunner over an
# MLP whose layers produce 4 MiB activations per batch, fed 32,768-row batches the way the
# predict operator is, on a thread of its own as in Flink's Python workers (a thread has its
# own malloc arena). Transparent huge pages are off for the process, so that a fault is a
# 4 KiB page; the minor page faults of the thread's second pass over the rows are printed.
_LOOP = textwrap.dedent("""
    import ctypes, json, resource, sys, threading
    import numpy as np, torch
    from flink_dl.startup import malloc_tuning
    from flink_dl.inference.runner import ModelRunner
    from flink_dl.pytorch import TorchModelHandler

    ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(16, 256), torch.nn.ReLU(),
                                   torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                   torch.nn.Linear(256, 1))

    torch.manual_seed(0)
    torch.save(mlp().state_dict(), sys.argv[1])
    features = [f"f{i}" for i in range(16)]
    x = np.random.default_rng(0).random((327_680, 16), dtype=np.float32)
    batches = [{f: np.ascontiguousarray(x[s:s + 32768, i]) for i, f in enumerate(features)}
               for s in range(0, len(x), 32768)]
    result = {}

    def serve():
        runner = ModelRunner(TorchModelHandler(sys.argv[1], features, factory=mlp,
                                               batch_size=4096, num_threads=1))
        runner.open()
        for batch in batches:  # first pass: the heap grows to its working size
            runner.predict(batch)
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        rows = sum(len(next(iter(runner.predict(batch).values()))) for batch in batches)
        result.update(faults=resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults,
                      rows=rows)

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    print(json.dumps({**result, "applied": malloc_tuning._applied}))
""")


#: Every variable that changes what ``apply()`` does: the switch and a user's own settings.
_MALLOC_SETTINGS = (malloc_tuning.SWITCH_ENV, *malloc_tuning.USER_SETTINGS_ENV,
                    "GLIBC_TUNABLES", "LD_PRELOAD")


def _second_pass(tmp_path: Path, switch: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _MALLOC_SETTINGS}
    if switch is not None:
        env[malloc_tuning.SWITCH_ENV] = switch
    result = subprocess.run([sys.executable, "-c", _LOOP, str(tmp_path / "mlp.pt")],
                            capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_a_served_model_stops_faulting_its_batches_in(tmp_path: Path) -> None:
    tuned = _second_pass(tmp_path, None)
    default = _second_pass(tmp_path, "0")
    assert tuned["applied"] is True and default["applied"] is False
    assert tuned["rows"] == default["rows"] == 327_680
    # glibc's defaults give the freed activations back and fault them in again (measured:
    # ~100 k faults in this pass); with the settings the pass reuses the heap
    assert default["faults"] > 10_000, default
    assert tuned["faults"] < default["faults"] / 10, (tuned, default)


def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc_tuning, "_applied", None)
    for name in _MALLOC_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_apply_is_idempotent_and_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_user_settings(monkeypatch)
    monkeypatch.setenv(malloc_tuning.SWITCH_ENV, "off")
    assert malloc_tuning.apply() is False
    assert malloc_tuning.apply() is False  # decided once per process
    _no_user_settings(monkeypatch)
    expected = platform.libc_ver()[0] == "glibc"
    assert malloc_tuning.apply() is expected
    assert malloc_tuning.apply() is expected


@pytest.mark.parametrize("name, value", [
    ("MALLOC_ARENA_MAX", "2"), ("MALLOC_TRIM_THRESHOLD_", "131072"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"),
    ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")])
def test_the_users_own_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch,
                                                       name: str, value: str) -> None:
    _no_user_settings(monkeypatch)
    monkeypatch.setenv(name, value)
    assert malloc_tuning.apply() is False
