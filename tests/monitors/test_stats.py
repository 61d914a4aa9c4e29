"""The distribution tests drift alerts rest on, checked against scipy and known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from charter.monitors.stats import (
    SCORE_BINS,
    categorical_psi,
    histogram,
    ks_critical,
    ks_statistic,
    psi,
    score_psi,
    two_proportion_z,
    welch_t,
)


def test_psi_is_zero_for_one_distribution_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    small = psi([50, 50], [55, 45])
    large = psi([50, 50], [90, 10])
    assert 0 < small < large
    # (0.9 - 0.5) ln(0.9/0.5) + (0.1 - 0.5) ln(0.1/0.5), by hand
    assert large == pytest.approx(0.4 * np.log(1.8) + 0.4 * np.log(5))


def test_binned_ks_equals_scipy_on_samples_that_sit_on_their_bins() -> None:
    rng = np.random.default_rng(7)
    a = np.floor(rng.beta(2, 8, 700) * SCORE_BINS) / SCORE_BINS
    b = np.floor(rng.beta(3, 6, 400) * SCORE_BINS) / SCORE_BINS
    ours = ks_statistic(histogram(a.tolist()), histogram(b.tolist()))
    assert ours == pytest.approx(scipy_stats.ks_2samp(a, b).statistic)


def test_ks_critical_value_matches_the_asymptotic_distribution() -> None:
    # P(D > c * sqrt((n+m)/nm)) = alpha: scipy's Kolmogorov distribution gives c for 0.001.
    c = scipy_stats.kstwobign.isf(0.001)
    assert ks_critical(400, 900) == pytest.approx(c * np.sqrt(1300 / 360_000), rel=0.01)


def test_score_psi_uses_baseline_deciles_so_crowded_scores_still_show_a_shift() -> None:
    rng = np.random.default_rng(3)
    base = histogram(rng.beta(1, 30, 2000).tolist())  # nearly all in the first bins
    same = histogram(rng.beta(1, 30, 500).tolist())
    moved = histogram(rng.beta(1, 12, 500).tolist())
    stable, groups = score_psi(base, same)
    shifted, _ = score_psi(base, moved)
    assert groups >= 3 and stable < 0.1 and shifted > 0.25


def test_categorical_psi_counts_a_category_seen_on_one_side_only() -> None:
    assert categorical_psi({"orders": 90, "returns": 10}, {"orders": 90, "returns": 10}) == 0
    assert categorical_psi({"orders": 100}, {"orders": 50, "legal": 50}) > 1


def test_significance_helpers() -> None:
    assert two_proportion_z(5, 100, 5, 100) == 0
    assert two_proportion_z(30, 100, 5, 100) > 4
    assert two_proportion_z(0, 10, 0, 10) == 0  # nothing happened on either side
    assert welch_t(10.0, 4.0, 100, 10.0, 4.0, 100) == 0
    assert welch_t(12.0, 4.0, 100, 10.0, 4.0, 100) == pytest.approx(2 / np.sqrt(0.08))
    assert welch_t(3.0, 0.0, 5, 2.0, 0.0, 5) == float("inf")
