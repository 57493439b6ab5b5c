"""k-subset latents: the Gumbel-top-k distribution and the ``k_subset`` problem.

A k-subset of n items is a k-hot vector z in {0, 1}^n with sum z = k. With logits theta and
Gumbels G_i, the k largest of theta_i + G_i (Gumbel-top-k) are a sample of k items drawn
without replacement, item by item, from softmax(theta) (Yellott 1977; Vieira 2014; Kool et
al. 2019). Its probability as a set, with w = exp(theta), w_rest the total weight of the items
outside S and w(C) that of C, is the integral over the exponential race
P(S) = int_0^1 prod_{i in S} (1 - u^{w_i / w_rest}) du (Kool et al. 2020, Appendix), i.e.

    P(S) = sum_{C subset of S} (-1)^{|C|} w_rest / (w_rest + w(C)),

2^k terms. ``tests/test_subsets.py`` checks it against the sum over the k! orders of the
sequential draws and against sampling frequencies.

References: Kool, van Hoof, Welling (2019), "Stochastic Beams and Where to Find Them: The
Gumbel-Top-k Trick", ICML; Kool, van Hoof, Welling (2020), "Estimating Gradients for Discrete
Random Variables by Sampling without Replacement", ICLR; Paulus, Choi, Tarlow, Krause,
Maddison (2020), "Gradient Estimation with Stochastic Softmax Tricks", NeurIPS, Section 6.1.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from problems.base import Capability, LatentKind, Params, Problem, StressSetting, Truth
from problems.options import Option, resolve_options
from problems.truth import TruthSource

#: the largest subset size whose set probability is summed over its 2^k sub-subsets
MAX_K = 8


def top_k_hot(scores: Tensor, k: int) -> Tensor:
    """The k-hot vector of the k largest scores along the last dimension."""
    index = scores.topk(k, -1).indices
    return torch.zeros_like(scores).scatter_(-1, index, 1.0)


class GumbelTopK(Distribution):
    """k items drawn without replacement from softmax(logits): k-hot vectors ``[n]``.

    Args:
        logits: ``[R, n]``.
        k: the subset size, 1 <= k < n.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real  # k-hot vectors; not validated
    has_rsample = False

    def __init__(self, logits: Tensor, k: int) -> None:
        self.logits, self.k = logits, k
        super().__init__(batch_shape=logits.shape[:-1], event_shape=logits.shape[-1:],
                         validate_args=False)

    def gumbels(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        """Standard Gumbels shaped ``[*sample_shape, R, n]``."""
        shape = torch.Size(sample_shape) + self.logits.shape
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
        tiny = torch.finfo(u.dtype).tiny
        return -torch.log(-torch.log(u.clamp(tiny, 1 - torch.finfo(u.dtype).eps)))

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        with torch.no_grad():
            return top_k_hot(self.logits + self.gumbels(sample_shape), self.k)

    def log_prob(self, value: Tensor) -> Tensor:
        """log P(S) of k-hot ``value`` ``[*S, R, n]`` (module docstring): ``[*S, R]``."""
        log_w = self.logits - self.logits.detach().max(-1, keepdim=True).values  # [R, n]
        shape = torch.broadcast_shapes(value.shape, log_w.shape)
        w = log_w.exp().expand(shape)
        chosen = value.expand(shape).topk(self.k, -1).indices  # [*S, R, k]
        w_in = w.gather(-1, chosen)  # [*S, R, k]
        rest = w.sum(-1, keepdim=True) - w_in.sum(-1, keepdim=True)  # [*S, R, 1]
        masks = torch.tensor(list(itertools.product((0.0, 1.0), repeat=self.k)),
                             dtype=w.dtype, device=w.device)  # [2^k, k]
        signs = (-1.0) ** masks.sum(-1)  # [2^k]
        terms = signs * rest / (rest + w_in @ masks.T)  # [*S, R, 2^k]
        return torch.log(terms.sum(-1))


class KSubset(Problem):
    """Choose k of n items: z ~ Gumbel-top-k(theta), f(z) = (z . v / k - t)^2 with item values
    v_i = i / (n - 1): the squared gap between the chosen items' mean value and a target, which
    couples the items (not a sum of per-item costs). The exact gradient is the autograd
    gradient of sum_S P(S) f(S) over the C(n, k) subsets (n <= 12). Initial logits are
    theta (2 v_i - 1).

    References: Paulus, Choi, Tarlow, Krause, Maddison (2020), "Gradient Estimation with
    Stochastic Softmax Tricks", NeurIPS, Section 6.1 (k-subset selection); Kool et al. (2020),
    ICLR (the set probability).
    """

    name = "k_subset"
    example_options: ClassVar[dict] = {"n": 5, "k": 2, "theta": 1.0}
    benchmark_options: ClassVar[dict] = {"n": 8, "k": 3}
    verify_settings = (
        StressSetting({"k": 3, "n": 8, "t": 0.3, "theta": 2.0}, quick=True),
        StressSetting({"k": 1, "n": 5, "theta": 0.0}),
    )
    description = "choose k of n items (Gumbel-top-k), f = (mean value of the chosen - t)^2"
    latent = LatentKind.SUBSET
    provides = frozenset({
        Capability.SUBSET, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE,
        Capability.EXACT_OBJECTIVE,
    })
    options: ClassVar[dict[str, Option]] = {
        "n": Option(6, "items", minimum=2, maximum=12),
        "k": Option(3, "items chosen (1 <= k < n, k <= 8)", minimum=1, maximum=MAX_K),
        "theta": Option(1.0, "tilt of the initial logits towards high-value items"),
        "t": Option(0.45, "target of the chosen items' mean value"),
    }

    @classmethod
    def truth_of(cls, options=None, n_samples: int = 1) -> TruthSource:
        """Enumeration of the C(n, k) subsets."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        return TruthSource.enumeration(math.comb(values["n"], values["k"]))

    def __init__(self, options=None, *, dtype=torch.float32, device="cpu") -> None:
        super().__init__(options, dtype=dtype, device=device)
        if self.option_values["k"] >= self.option_values["n"]:
            raise ValueError(
                f"problem 'k_subset': k={self.option_values['k']} must be below "
                f"n={self.option_values['n']}"
            )

    def values(self) -> Tensor:
        n = self.option_values["n"]
        return torch.arange(n, dtype=self.dtype, device=self.device) / (n - 1)

    def init_params(self) -> Params:
        return {"logits": self.option_values["theta"] * (2 * self.values() - 1)}

    def distribution(self, params: Params) -> GumbelTopK:
        return GumbelTopK(params["logits"], self.option_values["k"])

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return (z @ self.values() / self.option_values["k"] - self.option_values["t"]) ** 2

    def subsets(self) -> Tensor:
        """Every k-subset as a k-hot row: ``[C(n, k), n]``."""
        n, k = self.option_values["n"], self.option_values["k"]
        rows = torch.zeros(math.comb(n, k), n, dtype=self.dtype, device=self.device)
        for row, chosen in enumerate(itertools.combinations(range(n), k)):
            rows[row, list(chosen)] = 1.0
        return rows

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        support = self.subsets().unsqueeze(1)  # [S, 1, n]
        log_p = self.distribution(params).log_prob(support)  # [S, R]
        return (log_p.exp() * self.cost(support, params)).sum(0)

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        with torch.enable_grad():
            logits = params["logits"].detach().unsqueeze(0).requires_grad_()
            (grad,) = torch.autograd.grad(self.objective({"logits": logits}).sum(), logits)
        return Truth(grad={"logits": grad[0]}, kind="enumeration")
