"""The numbers fixed seeds give do not move unless a change means them to (tests/golden.py)."""

import math

import pytest

from tests import golden


def assert_same(name: str, got: dict[str, list[float]]) -> None:
    stored, exact = golden.load(name)
    assert set(got) == set(stored), f"{name}: pairs differ: {set(got) ^ set(stored)}"
    for key, values in stored.items():
        assert len(got[key]) == len(values), f"{name}: {key} has {len(got[key])} values"
        for a, b in zip(got[key], values, strict=True):
            if exact:
                assert a == b or (math.isnan(a) and math.isnan(b)), f"{name}: {key}: {a} != {b}"
            else:
                # float32 kernels round differently on other CPUs (AVX2 vs AVX-512, AMD vs
                # Intel): statistics move by ~1e-8 relative across machines, a far-tail
                # p-value by 2e-6 (8.1178e-10 on two AVX-512 CPUs); real changes far more
                assert a == pytest.approx(b, rel=1e-5, abs=1e-12, nan_ok=True), f"{key}"


def test_estimates_match_the_golden_record():
    assert_same("estimates.json", golden.estimates())


def test_sweep_statistics_match_the_golden_record():
    assert_same("sweep.json", golden.sweep())
