"""The bench's CPU sampler: CPU seconds inside a window of a run, from its samples."""

import pytest

from bench.drivers.cpu_breakdown import CpuSampler, Sample


def _sampler() -> CpuSampler:
    sampler = CpuSampler()
    sampler.timeline = [
        Sample(10.0, {"jvm": 0.0}, 0.0, 0.0, {}),
        Sample(11.0, {"jvm": 1.0}, 0.5, 2.0, {(1, 1): 1.0}),
        Sample(12.0, {"jvm": 3.0, "client": 1.0}, 1.0, 4.0, {(1, 1): 1.5, (1, 2): 0.2}),
    ]
    return sampler


def test_window_interpolates_between_samples() -> None:
    spent = _sampler().window(10.5, 11.5)
    assert spent["jvm"] == pytest.approx(1.5)  # 0.5 at 10.5, 2.0 at 11.5
    assert spent["client"] == pytest.approx(0.5)  # a kind first seen in a later sample
    assert spent["JIT"] == pytest.approx(0.5)
    assert spent["machine"] == pytest.approx(2.0)
    # thread (1, 1): 0.5 -> 1.25; thread (1, 2): 0 -> 0.1
    assert spent["busiest task thread"] == pytest.approx(0.75)


def test_window_outside_the_samples_is_clamped_to_them() -> None:
    spent = _sampler().window(9.0, 13.0)
    assert spent["jvm"] == pytest.approx(3.0)
    assert spent["machine"] == pytest.approx(4.0)


def test_window_needs_samples_and_an_order() -> None:
    with pytest.raises(ValueError, match="no samples"):
        CpuSampler().window(1.0, 2.0)
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        _sampler().window(11.5, 10.5)
