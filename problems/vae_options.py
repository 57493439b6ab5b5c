"""The options that ``bernoulli_vae``, ``categorical_vae`` (``problems.discrete_vae``) and the
sigmoid belief nets (``problems.sbn``) share: network, KL term, data and split, pretraining,
truth and the test metrics, declared once.
"""

from __future__ import annotations

from problems.data import BINARIZATIONS, BUILTIN
from problems.options import MAX_ENUMERATED, Option
from problems.vae_parts import ACTIVATIONS

#: the ``truth`` choices of the discrete VAEs
TRUTH_CHOICES = ("auto", "enumeration", "reference", "none")

COMMON_OPTIONS: dict[str, Option] = {
    "arch": Option("linear", "encoder/decoder network", choices=("linear", "mlp")),
    "hidden": Option("64", "hidden widths of the mlp, dash-separated, e.g. 200-200",
                     pattern=r"[1-9][0-9]*(-[1-9][0-9]*)*",
                     pattern_help="positive integers separated by dashes, e.g. 200-200",
                     applies=("arch", ("mlp",))),
    "activation": Option("leaky_relu", "mlp activation", choices=tuple(ACTIVATIONS),
                         applies=("arch", ("mlp",))),
    "beta": Option(1.0, "weight of the KL term (beta-VAE)", minimum=0),
    "kl": Option("sample", "KL term: sample (log q - log p at z) or analytic", choices=(
        "sample", "analytic")),
    "batch": Option(16, "images in the minibatch", minimum=1),
    "data": Option(BUILTIN, "'digits' (built in) or the path of an IDX or .npz image file"),
    "test_data": Option("", "path of a separate test file; empty: hold out test_fraction"),
    "test_fraction": Option(0.2, "share of the data held out as test set", minimum=0,
                            exclusive=True, maximum=0.9),
    "binarize": Option("threshold", "binarization of the images", choices=BINARIZATIONS),
    "seed": Option(0, "seed of the split, initialization, minibatch and pretraining", minimum=0),
    "pretrain_steps": Option(0, "Adam steps of exact/unbiased training before evaluating",
                             minimum=0),
    "pretrain_lr": Option(3e-3, "learning rate of the pretraining", minimum=0, exclusive=True),
    "grad_decoder": Option(False, "also estimate the gradient w.r.t. the decoder parameters"),
    "truth": Option("auto", "exact truth: auto, enumeration, reference or none",
                    choices=TRUTH_CHOICES),
    "max_configs": Option(2**16, "largest per-image latent space enumerated", minimum=1,
                          maximum=MAX_ENUMERATED),
    "reference_samples": Option(100, "samples per estimate of the truth=reference gradient",
                                minimum=2),
    "reference_repeats": Option(1000, "estimates averaged for the truth=reference gradient",
                                minimum=2),
    "iw_samples": Option(0, "samples of the importance-weighted test bound (0: off)", minimum=0),
    "eval_samples": Option(64, "samples per test image when the latent space is not enumerated",
                           minimum=1),
    "signals": Option("local", "score-function learning signals: local (each image its own "
                      "f_i) or global (the minibatch's f)", choices=("local", "global")),
    "objective": Option("elbo", "elbo, or iwae: the K-sample importance-weighted bound",
                        choices=("elbo", "iwae")),
}
