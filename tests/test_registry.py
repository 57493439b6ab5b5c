"""Registry coverage and the declared contract of every entry: every registered estimator
and problem declares what the tests, the asv suites and bench verify run it at."""

import pytest
import torch

from bench.verify import plan
from bench.verify.settings import settings_of
from benchmarks import common
from estimators import ESTIMATORS, Estimator, get_estimator
from problems import PROBLEMS, get_problem
from problems.base import Capability, LatentKind, StressSetting
from problems.truth import TruthSource
from tests.examples import ESTIMATOR_EXAMPLES, PROBLEM_EXAMPLES

#: what every registered class declares for itself (not inherited), and who reads it
ESTIMATOR_DECLARATIONS = {"example_samples": "the tests", "example_options": "the tests"}
PROBLEM_DECLARATIONS = {"example_options": "the tests", "benchmark_options": "the asv suites",
                        "verify_settings": "bench verify"}


def undeclared(cls: type, declarations: dict[str, str]) -> list[str]:
    """The declarations of ``declarations`` that ``cls`` does not state itself."""
    return [f"{cls.__name__} declares no {attr} (read by {who})"
            for attr, who in declarations.items() if attr not in vars(cls)]


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_estimator_appears_in_the_examples_asv_and_verify(name):
    cls = ESTIMATORS[name]
    assert not undeclared(cls, ESTIMATOR_DECLARATIONS), name
    assert name in ESTIMATOR_EXAMPLES and name in common.ESTIMATOR_NAMES, name
    cls(cls.example_options)  # valid options
    assert cls.sample_rule(cls.example_samples) is None, name
    assert set(cls.exact_in_mean) <= set(PROBLEMS) and not (cls.unbiased and cls.exact_in_mean)
    assert plan(cls, quick=False), f"{name}: no bench verify setting applies to it"
    # warm-up steps come from a declared option, the same one for every instance
    assert not cls.declaration_errors(), name
    assert cls.warmup_option is None or cls.warmup_option in cls.options, name
    if cls.warmup_option is not None and "warmup_steps" not in vars(cls):
        values = {cls.warmup_option: 7}
        assert cls(values).warmup_steps() == 7, name


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_every_problem_appears_in_the_examples_asv_and_verify(name):
    cls = PROBLEMS[name]
    assert not undeclared(cls, PROBLEM_DECLARATIONS), name
    assert name in PROBLEM_EXAMPLES and name in common.PROBLEM_NAMES, name
    assert cls.verify_settings, f"{name}: no bench verify setting"
    for stress in cls.verify_settings:
        assert isinstance(stress, StressSetting)
        assert cls.truth_of(stress.options).exact, f"{name}: {stress} has no exact truth"


def test_a_new_entry_without_declarations_is_named():
    class Bare(Estimator):
        """References: none (a test)."""

        name = "bare"

    class Subclass(PROBLEMS["bernoulli_toy"]):
        """Inherits every declaration, states none."""

    assert undeclared(Bare, ESTIMATOR_DECLARATIONS) == [
        "Bare declares no example_samples (read by the tests)",
        "Bare declares no example_options (read by the tests)"]
    assert [m.split(" (")[0] for m in undeclared(Subclass, PROBLEM_DECLARATIONS)] == [
        "Subclass declares no example_options", "Subclass declares no benchmark_options",
        "Subclass declares no verify_settings"]
    assert settings_of({"sub": Subclass})[0].problem == "sub"


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_problem_example_truth_is_of_the_declared_kind(name):
    cls = PROBLEMS[name]
    source = cls.truth_of(cls.example_options)
    assert isinstance(source, TruthSource)
    if name.startswith("gan_") or name.endswith("_vae") or name == "sbn":
        return  # built in their own tests (a trained critic, an encoder): the kinds below
    problem = cls(cls.example_options, dtype=torch.float64)
    truth = problem.truth(problem.init_params())
    assert (truth is None) == (not source.exact), name
    assert truth is None or truth.kind == source.kind, name


def test_the_reference_names_an_unbiased_estimator_and_flags_only_itself():
    for cls in PROBLEMS.values():
        for truth in ("reference",):
            if "truth" not in cls.options or truth not in (cls.options["truth"].choices or ()):
                continue
            source = cls.truth_of({"truth": truth})
            assert get_estimator(source.estimator).unbiased, cls.name
            assert source.self_reference(source.estimator).startswith(
                "reference is the estimator itself")
            assert all(source.self_reference(e) is None for e in ESTIMATORS
                       if e != source.estimator)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimator_declares_its_contract(name):
    cls = ESTIMATORS[name]
    assert cls.name == name
    assert isinstance(cls.unbiased, bool)
    assert cls.requires <= set(Capability)
    assert "References:" in (cls.__doc__ or "")


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_problem_declares_its_contract(name):
    cls = PROBLEMS[name]
    assert cls.name == name
    assert isinstance(cls.latent, LatentKind)
    assert "References:" in (cls.__doc__ or "")
    # DISCRETE means Bernoulli or one-hot categorical latents with logits (counts have none)
    discrete = cls.latent in (LatentKind.BINARY, LatentKind.CATEGORICAL)
    assert (Capability.DISCRETE in cls.provides) == discrete


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid estimators: reinforce"):
        get_estimator("reinfrce")
    with pytest.raises(ValueError, match="valid problems: gaussian_quadratic"):
        get_problem("nope")


def test_bad_option_values_name_the_rule():
    with pytest.raises(ValueError, match=r"tau=-1.0 .*float > 0"):
        get_estimator("gumbel_softmax")({"tau": -1.0})
    with pytest.raises(ValueError, match=r"unknown option 'tua' .*valid options: tau"):
        get_estimator("gumbel_softmax")({"tua": 1.0})
    with pytest.raises(ValueError, match=r"d=0 .*int >= 1"):
        get_problem("bernoulli_toy")({"d": 0})
    with pytest.raises(ValueError, match=r"d=1.5"):
        get_problem("bernoulli_toy")({"d": 1.5})


def test_incompatible_pairs_say_why():
    reason = get_estimator("reparam").incompatibility(get_problem("bernoulli_toy"))
    assert reason == "reparam requires rsample, which bernoulli_toy lacks"
    assert get_estimator("reinforce").incompatibility(get_problem("bernoulli_toy")) is None


def test_a_warmup_option_that_is_not_an_option_is_a_declaration_error():
    class Broken(ESTIMATORS["reinforce_ema"]):
        """References: none (a test)."""

        warmup_option = "warm_up"

    assert ESTIMATORS["reinforce_ema"].declaration_errors() == []
    assert Broken.declaration_errors() == [
        "warmup_option = 'warm_up' is not among its options; valid: decay, warmup"]
