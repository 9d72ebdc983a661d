"""FTRL-Proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches", 2013) as
a PyTorch optimizer, so an online logistic regression is an ``nn.Linear`` that the PyTorch
plugin trains on a stream, publishes and serves like any other model.

Per coordinate ``i``, with the gradient ``g`` of the step::

    sigma = (sqrt(n + g^2) - sqrt(n)) / alpha
    z    += g - sigma * w
    n    += g^2
    w     = 0                                            if |z| <= l1
          = -(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)   otherwise

``z`` and ``n`` live in the optimizer's state (saved with ``ctx.save_checkpoint``), so a
restart goes on where it stopped. A parameter seen for the first time starts with the ``z``
whose weights are its current values, so FTRL continues from a warm-started (batch-trained)
model instead of resetting it to zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from flink_dl.errors import ConfigError


class FTRL(torch.optim.Optimizer):
    """FTRL-Proximal: per-coordinate adaptive rates (``alpha``, ``beta``) with L1 (sparse
    weights) and L2 regularisation (``l1``, ``l2``), the names of Flink ML's
    ``OnlineLogisticRegression`` (``alpha``, ``beta``, ``reg``, ``elasticNet``) spelled out."""

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], *,
                 alpha: float = 0.1, beta: float = 1.0, l1: float = 0.0,
                 l2: float = 0.0) -> None:
        for name, value, low in (("alpha", alpha, 0.0), ("beta", beta, -1e-300),
                                 ("l1", l1, -1e-300), ("l2", l2, -1e-300)):
            if not float(value) > low:
                raise ConfigError(f"FTRL: {name} must be {'> 0' if name == 'alpha' else '>= 0'}"
                                  f", got {value!r}")
        super().__init__(params, {"alpha": float(alpha), "beta": float(beta),
                                  "l1": float(l1), "l2": float(l2)})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha, beta, l1, l2 = group["alpha"], group["beta"], group["l1"], group["l2"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:  # z such that the weights stay what they are (warm start)
                    state["z"] = -(param * (beta / alpha + l2) + torch.sign(param) * l1)
                    state["n"] = torch.zeros_like(param)
                z, n = state["z"], state["n"]
                sigma = (torch.sqrt(n + grad * grad) - torch.sqrt(n)) / alpha
                z.add_(grad - sigma * param)
                n.add_(grad * grad)
                weight = -(z - torch.sign(z) * l1) / ((beta + torch.sqrt(n)) / alpha + l2)
                param.copy_(torch.where(z.abs() <= l1, torch.zeros_like(weight), weight))
        return loss


def initial_model(width: int, prior: float = 0.5) -> torch.nn.Linear:
    """The logistic regression FTRL starts from: zero weights and the bias
    ``logit(prior)``, so every row's probability is ``prior``."""
    model = torch.nn.Linear(width, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.constant_(model.bias, math.log(prior / (1.0 - prior)))
    return model
