"""One test example per registry entry; ``test_registry_coverage`` fails for an entry without one.

Each example names a problem setting where the estimator's bias, if it has any, is large
(bernoulli_toy at theta = 1: straight-through and the relaxations are far off there),
and the sample count used by the statistical tests.
"""

from __future__ import annotations

ESTIMATOR_EXAMPLES: dict[str, dict] = {
    "reinforce": {"n_samples": 4},
    "reinforce_ema": {"n_samples": 4},
    "reinforce_loo": {"n_samples": 4},
    "reparam": {"n_samples": 4},
    "gumbel_softmax": {"n_samples": 4, "options": {"tau": 1.0}},
    "st_gumbel_softmax": {"n_samples": 4, "options": {"tau": 1.0}},
    "straight_through": {"n_samples": 4},
    "reinforce_exact_baseline": {"n_samples": 4},
    "arm": {"n_samples": 4},
    "disarm": {"n_samples": 4},
    "arsm": {"n_samples": 2},
    "arms": {"n_samples": 4},
    "muprop": {"n_samples": 4},
    "rebar": {"n_samples": 4},
    "relax": {"n_samples": 4, "options": {"warmup": 5}},
    "gumbel_rao": {"n_samples": 4, "options": {"tau": 1.0, "rao_samples": 4}},
    # at tau = 1 ReinMax is ZGR, exact in mean on the quadratic toys: tau = 2 is biased there
    "reinmax": {"n_samples": 4, "options": {"tau": 2.0}},
    "gst": {"n_samples": 4, "options": {"gap": "1", "tau": 1.0}},
    "zgr": {"n_samples": 4},
    "indecater": {"n_samples": 2},
    # K = 2 < the 4 configurations of bernoulli_toy's two bits (K = 4 would be exact)
    "unordered_set": {"n_samples": 2},
    "double_cv": {"n_samples": 4, "options": {"warmup": 20}},
    "carms": {"n_samples": 4},
    "stochastic_triples": {"n_samples": 4},
    "local_disarm": {"n_samples": 4},
    "nvil": {"n_samples": 4},
    "vimco": {"n_samples": 4},
    "mvd": {"n_samples": 4},
    "delta_cv": {"n_samples": 4},
    "stl": {"n_samples": 4},
    "dreg": {"n_samples": 4},
    "grpo": {"n_samples": 4},
    "dr_grpo": {"n_samples": 4},
    "reinforce_optimal_baseline": {"n_samples": 4},
    "lax": {"n_samples": 4, "options": {"warmup": 20}},
    "rqmc_reparam": {"n_samples": 4},
    "implicit_reparam": {"n_samples": 4},
    "generalized_reparam": {"n_samples": 4},
    "rsvi": {"n_samples": 4},
    "sst": {"n_samples": 4, "options": {"tau": 1.0}},
    "st_sst": {"n_samples": 4, "options": {"tau": 1.0}},
    "igr": {"n_samples": 4, "options": {"tau": 1.0}},
    "decoupled_st": {"n_samples": 4, "options": {"tau_forward": 0.5, "tau_backward": 2.0}},
}

#: biased estimators that are exact in mean on a problem's example, with the reason: the
#: statistical tests expect them to match the truth there
EXACT_IN_MEAN: dict[tuple[str, str], str] = {
    ("zgr", "bernoulli_toy"): "ZGR is exact for costs quadratic in z (Shekhovtsov 2023)",
    ("zgr", "categorical_toy"): "ZGR is exact for costs quadratic in z (Shekhovtsov 2023)",
    ("stl", "gaussian_elbo"): "STL is unbiased for the ELBO (Roeder et al. 2017)",
    ("nvil", "bernoulli_toy"): "NVIL's variance normalization is inactive (signal std < 1)",
    ("nvil", "categorical_toy"): "NVIL's variance normalization is inactive (signal std < 1)",
    ("nvil", "polynomial"): "NVIL's variance normalization is inactive (signal std < 1)",
}

#: problem options at which every applicable estimator is tested against the truth
PROBLEM_EXAMPLES: dict[str, dict] = {
    "gaussian_quadratic": {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2},
    "bernoulli_toy": {"theta": 1.0, "d": 2},
    "categorical_toy": {"theta": 1.0, "d": 2, "classes": 4},
    "gaussian_elbo": {"d": 2, "n_obs": 3},
    "bernoulli_iwae": {"theta": 0.5, "d": 2},
    "gamma_quadratic": {"alpha": 2.0, "beta": 1.5, "t": 1.0, "d": 2},
    "k_subset": {"n": 5, "k": 2, "theta": 1.0},
    # p = 3: ZGR and ReinMax, exact for quadratic costs, are biased here
    "polynomial": {"theta": 1.0, "d": 2, "p": 3.0},
    # tested in tests/test_logistic_regression.py (quadrature truth, 62 coordinates)
    "logistic_regression": {"batch": 4, "log_scale": -1.0, "loc": 0.1},
    "poisson_quadratic": {"rate": 2.0, "k": 3.0, "d": 2},
    "bernoulli_vae": {"latents": 3, "batch": 2},
    # tested in tests/test_sbn.py (brute force, estimators against enumeration)
    "sbn": {"layers": "2-2", "batch": 2},
    "categorical_vae": {"groups": 2, "categories": 3, "batch": 2},
    # tested in tests/test_gan.py (enumeration and grid-quadrature truth)
    "gan_continuous": {"noise_dim": 1, "gen_width": 4, "critic_width": 16, "critic_steps": 100},
    "gan_discrete": {},
    # tested in tests/test_policy.py and tests/test_group.py (enumeration truth)
    "policy": {"vocab": 2, "length": 3, "prompts": 2},
}
