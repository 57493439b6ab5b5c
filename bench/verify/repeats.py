"""The checks of ``bench verify`` on how an estimator's repeats and runs relate:

* **Independence of repeats**: the harness reads estimate r off d loss[r] / d params[r], so the
  gradient of loss[r] w.r.t. every other repeat's parameters must be exactly zero.
* **Determinism**: the same seed gives the same estimates, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.cell.estimate import estimate_chunks, expand_state, prepare
from estimators.base import Estimator, State, leaf_grads
from problems.base import Params, Problem, repeat_params

#: seeds the repeat-leak check tries for a draw at which moving one repeat leaves the others'
#: samples unchanged (a rejection sampler's shifted stream changes them at some seeds)
LEAK_TRIES = 4


def repeat_leak(
    problem: Problem, estimator: Estimator, state: State, point: Params, n_samples: int
) -> float:
    """How much three repeats of a prepared estimator leak into each other (must be 0): the
    largest |d loss[r] / d params[s]| over s != r, and the largest change of the estimates of
    repeats 0 and 1 when params[2] moves at the same random draws (which also catches mixing
    through detached quantities, such as a baseline averaged over repeats).

    The moved repeat is the last one because a sampler that draws a parameter-dependent
    amount of randomness (torch's Gamma sampler is a rejection sampler: Marsaglia-Tsang, one
    normal and one uniform per try) shifts the draws of the repeats after the moved one. A
    pilot batch drawn repeat by repeat, whose samples are not returned, then changed the
    baseline of a later repeat while the returned samples of the others could still agree
    (the normal cached by Box-Muller can bring the generator back into step), a false alarm
    on ``reinforce_optimal_baseline``. Drawn last, the moved repeat's draws come after the
    others' in every batch that is drawn repeat by repeat; where a shift still reaches the
    others (samples drawn sample by sample, or a later batch), their returned samples differ
    and that seed is skipped: up to ``LEAK_TRIES`` seeds are tried."""
    seeds = [int(torch.randint(2**62, ())) for _ in range(LEAK_TRIES)]
    samples, grads = _repeat_grads(problem, estimator, state, point, n_samples, seeds[0], False)
    worst = 0.0
    for r, per_param in enumerate(grads):
        for grad in per_param.values():
            worst = max(worst, float(grad[[s for s in range(3) if s != r]].abs().max()))
    for i, seed in enumerate(seeds):
        if i:
            samples, grads = _repeat_grads(problem, estimator, state, point, n_samples, seed,
                                           False)
        moved_samples, moved_grads = _repeat_grads(problem, estimator, state, point,
                                                   n_samples, seed, True)
        if torch.equal(samples[:, :2], moved_samples[:, :2]):
            for r in (0, 1):
                for a, b in zip(grads[r].values(), moved_grads[r].values(), strict=True):
                    worst = max(worst, float((a[r] - b[r]).abs().max()))
            break
    return worst


def _repeat_grads(
    problem: Problem, estimator: Estimator, state: State, point: Params, n_samples: int,
    seed: int, moved: bool,
) -> tuple[torch.Tensor, list[Params]]:
    """The samples and d loss[r] / d params (zeros where loss[r] does not depend on one) of
    three repeats from ``seed``, the last repeat's parameters moved by 0.1 (|value| + 1) if
    ``moved``."""
    params = repeat_params(point, 3)
    if moved:
        with torch.no_grad():
            for value in params.values():
                value[2] += 0.1 * (value[2].abs() + 1)
    torch.manual_seed(seed)
    out = estimator.surrogate(problem, params, n_samples, expand_state(state, 3))
    grads = [leaf_grads(out.loss[r], params, retain_graph=True) for r in range(3)]
    return out.samples, grads


def deterministic(
    problem: Problem, make: Callable[[], Estimator], point: Params, n_samples: int, seed: int
) -> bool:
    """Whether two runs from the same seed (set-up and warm-up included) give identical
    estimates."""
    draws = []
    for _ in range(2):
        torch.manual_seed(seed)
        estimator = make()
        state, _ = prepare(problem, estimator, point, n_samples)
        draws.append(torch.cat(list(estimate_chunks(problem, estimator, point, n_samples, 64,
                                                    state))))
    return bool(torch.equal(draws[0], draws[1]))
