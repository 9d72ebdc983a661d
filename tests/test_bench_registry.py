"""The bench's registry and command line: every benchmark once, one entry-point shape,
``--list`` and ``--only`` (no benchmark runs here)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator

import pytest

from bench.drivers.cli import main
from bench.registry import Benchmark, Output, Settings, UnknownBenchmarkError, benchmarks, lookup
from flink_dl.errors import FlinkDLError

#: Every ``--only`` name, as README.md, docs/ and bench/run.sh use them, in run order.
NAMES = ["startup", "demo", "multihost", "recovery", "channel", "ingest", "memory", "w1",
         "w1tf", "drift", "online", "online-soak", "w3", "pipeline", "latency", "soak"]


def test_every_benchmark_is_registered_once_in_run_order() -> None:
    every = benchmarks()
    assert [b.name for b in every] == NAMES
    assert all(isinstance(b, Benchmark) and b.title for b in every)
    assert len({b.run for b in every}) == len(every)


@pytest.mark.parametrize("name", NAMES)
def test_each_benchmark_has_the_one_entry_point_shape(name: str) -> None:
    (benchmark,) = lookup([name])
    assert inspect.isgeneratorfunction(benchmark.run)
    parameters = list(inspect.signature(benchmark.run).parameters.values())
    assert [p.name for p in parameters] == ["settings"]
    hints = typing.get_type_hints(benchmark.run)
    assert hints == {"settings": Settings, "return": Iterator[Output]}


def test_list_prints_every_benchmark_with_its_title(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--list"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    for line, benchmark in zip(lines, benchmarks(), strict=True):
        assert benchmark.title in line
        if benchmark.goal:
            assert f"(goal: {benchmark.goal})" in line


def test_lookup_keeps_registry_order() -> None:
    assert [b.name for b in lookup(["soak", "w1", "startup"])] == ["startup", "w1", "soak"]


def test_an_unknown_only_name_fails_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "w1,nope", "--only", "w3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown benchmark(s): nope " in err
    assert "known: startup, demo" in err
    with pytest.raises(UnknownBenchmarkError, match="unknown benchmark") as raised:
        lookup(["w1", "x1", "x2"])
    assert raised.value.unknown == ["x1", "x2"]
    assert isinstance(raised.value, FlinkDLError) and isinstance(raised.value, LookupError)
