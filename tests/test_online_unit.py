"""Online learning without a job: FTRL-Proximal against a plain per-coordinate reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flink_dl.errors import ConfigError
from flink_dl.online.ftrl import FTRL


def reference_ftrl(x: np.ndarray, y: np.ndarray, alpha: float, beta: float, l1: float,
                   l2: float) -> np.ndarray:
    """The paper's Algorithm 1, one sample at a time, in plain Python floats."""
    d = x.shape[1]
    z, n, w = [0.0] * d, [0.0] * d, [0.0] * d
    for row, label in zip(x, y, strict=True):
        for i in range(d):
            w[i] = 0.0 if abs(z[i]) <= l1 else -(z[i] - math.copysign(l1, z[i])) / (
                (beta + math.sqrt(n[i])) / alpha + l2)
        p = 1 / (1 + math.exp(-sum(wi * xi for wi, xi in zip(w, row, strict=True))))
        for i in range(d):
            g = (p - label) * row[i]
            sigma = (math.sqrt(n[i] + g * g) - math.sqrt(n[i])) / alpha
            z[i] += g - sigma * w[i]
            n[i] += g * g
    return np.array([0.0 if abs(z[i]) <= l1 else -(z[i] - math.copysign(l1, z[i])) / (
        (beta + math.sqrt(n[i])) / alpha + l2) for i in range(d)])


def test_ftrl_optimizer_matches_the_papers_algorithm_sample_by_sample() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    x[:, 3] = 0.0                                   # a feature that never fires: stays 0
    y = (x @ np.array([1.5, -2.0, 0.5, 0.0, 0.01]) + rng.normal(size=300) > 0).astype(float)
    settings = {"alpha": 0.5, "beta": 1.0, "l1": 0.5, "l2": 0.1}
    model = torch.nn.Linear(5, 1, bias=False).double()
    torch.nn.init.zeros_(model.weight)
    optimizer = FTRL(model.parameters(), **settings)
    for row, label in zip(x, y, strict=True):
        logit = model(torch.from_numpy(row[None, :]))[0, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logit, torch.tensor(label, dtype=torch.float64))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    expected = reference_ftrl(x, y, **settings)
    np.testing.assert_allclose(model.weight.detach().numpy()[0], expected, rtol=1e-9,
                               atol=1e-12)
    assert model.weight[0, 3].item() == 0.0 and expected[0] > 0.3 > -0.3 > expected[1]


def test_ftrl_checks_its_settings() -> None:
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        FTRL([torch.zeros(1, requires_grad=True)], alpha=0.0)
    with pytest.raises(ConfigError, match="l1 must be >= 0"):
        FTRL([torch.zeros(1, requires_grad=True)], l1=-1.0)


def test_ftrl_continues_from_warm_started_weights() -> None:
    layer = torch.nn.Linear(3, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -1.0, 0.0]]))
        layer.bias.fill_(0.5)
    optimizer = FTRL(layer.parameters(), alpha=0.1, beta=1.0, l1=0.01, l2=0.1)
    layer(torch.zeros(1, 3)).sum().backward()        # zero gradient for the weights
    optimizer.step()
    assert layer.weight[0].tolist() == pytest.approx([2.0, -1.0, 0.0], abs=1e-6)
