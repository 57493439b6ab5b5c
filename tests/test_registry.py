"""Registry coverage and the declared contract of every entry."""

import pytest

from estimators import ESTIMATORS, get_estimator
from problems import PROBLEMS, get_problem
from problems.base import Capability, LatentKind
from tests.examples import ESTIMATOR_EXAMPLES, PROBLEM_EXAMPLES


def test_every_estimator_has_an_example():
    assert set(ESTIMATORS) == set(ESTIMATOR_EXAMPLES)


def test_every_problem_has_an_example():
    missing = set(PROBLEMS) - set(PROBLEM_EXAMPLES)
    assert not missing, f"problems without a test example in tests/examples.py: {missing}"


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
