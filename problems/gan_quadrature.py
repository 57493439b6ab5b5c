"""An exact truth for ``gan_continuous`` at one noise coordinate and no packing.

``gan_continuous``'s reference truth is an average of ``reparam`` estimates, so a cell of
``reparam`` on it compares the estimator with itself. With ``noise_dim = 1`` and ``pack = 1``
the objective is a two-dimensional integral over the output given a one-dimensional noise,

    L(theta) = E_{eps ~ N(0, 1)} [ int N(x; G_theta(eps), s^2 I) c(D(x)) dx ]
             ~ sum_i w_i sum_g h^2 N(x_g; G_theta(e_i), s^2 I) c(D(x_g)),

with Gauss-Hermite nodes e_i and weights w_i over eps and a fixed square grid x_g of spacing
h over the outputs, covering every G_theta(e_i) +- 8 s. The critic's kinks sit at fixed grid
points, so the integrand that moves with theta (the Gaussian density) is smooth and the rule
converges fast (``tests/test_gan.py`` checks h = 0.02 against h = 0.01); its gradient by
autograd is ``truth=quadrature``, an independent check of ``reparam`` (and of every other
unbiased estimator) on this problem.
"""

from __future__ import annotations

import math

import torch
from numpy.polynomial.hermite_e import hermegauss
from torch import Tensor

from problems.base import Params

#: grid spacing h of the outputs and Gauss-Hermite nodes over the noise of ``truth=quadrature``
SPACING = 0.01
NOISE_NODES = 40
#: the output grid covers every node's mean output +- this many output stds
REACH = 8.0


def grid_quadrature_gradient(problem, params: Params, spacing: float = SPACING,
                             noise_nodes: int = NOISE_NODES) -> Params:
    """dL/dtheta of ``gan_continuous`` (noise_dim = 1, pack = 1) at ``params`` (no repeat
    dimension) by the rule of the module docstring, in float64, shapes as ``params``."""
    values = problem.option_values
    if values["noise_dim"] != 1 or values["pack"] != 1:
        raise ValueError("grid quadrature needs noise_dim=1 and pack=1, got "
                         f"noise_dim={values['noise_dim']}, pack={values['pack']}")
    nodes, weights = hermegauss(noise_nodes)
    t = torch.tensor(nodes, dtype=torch.float64, device=problem.device)
    w = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64, device=problem.device)
    leaf = {k: v.detach().double().requires_grad_() for k, v in params.items()}
    hidden = torch.tanh(t.reshape(-1, 1) * leaf["w1"] + leaf["b1"])  # [E, h]
    centre = hidden @ leaf["w2"] + leaf["b2"]  # [E, 2]
    s = values["output_std"]
    low = centre.detach().min(0).values - REACH * s
    high = centre.detach().max(0).values + REACH * s
    axes = [torch.arange(float(lo), float(hi), spacing, dtype=torch.float64,
                         device=problem.device) for lo, hi in zip(low, high, strict=True)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)  # [G, 2]
    cost = _grid_cost(problem, grid)  # [G]
    sq = ((grid.unsqueeze(0) - centre.unsqueeze(1)) ** 2).sum(-1)  # [E, G]
    density = torch.exp(-sq / (2 * s**2)) / (2 * math.pi * s**2)
    objective = (w.unsqueeze(1) * density * cost).sum() * spacing**2
    grads = torch.autograd.grad(objective, list(leaf.values()))
    return {k: g.detach() for k, g in zip(leaf, grads, strict=True)}


def _grid_cost(problem, grid: Tensor) -> Tensor:
    """c(D(x_g)) at the grid outputs ``[G, 2]`` (the noise coordinate is unused): ``[G]``."""
    z = torch.cat([torch.zeros(len(grid), 1, dtype=torch.float64, device=grid.device), grid], -1)
    with torch.no_grad():
        return problem.cost(z.reshape(-1, 1, 1, 3).to(problem.dtype), {}).reshape(-1).double()
