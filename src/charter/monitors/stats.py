"""Distribution tests on binned data: population stability index, Kolmogorov-Smirnov statistic.

Monitors keep histograms, not samples, so memory stays flat whatever the traffic; both tests are
computed from bin counts. Guard scores live in [0, 1] and are binned into ``SCORE_BINS`` equal bins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

SCORE_BINS = 50
# A bin empty on one side would make PSI infinite; this floor is the usual remedy, small enough
# that a bin must really move to matter.
PSI_FLOOR = 1e-4


def score_bin(score: float) -> int:
    """The bin of a score in [0, 1] (scores outside are clamped)."""
    return min(SCORE_BINS - 1, max(0, int(score * SCORE_BINS)))


def _shares(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    if total <= 0:
        raise ValueError("a distribution needs at least one observation")
    shares: npt.NDArray[np.float64] = array / total
    return shares


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index of ``actual`` against ``expected`` (bin counts, same bins).

    Sum over bins of (a - e) * ln(a / e) on the shares; 0 for identical distributions. A common
    reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a large one.
    """
    e = np.maximum(_shares(expected), PSI_FLOOR)
    a = np.maximum(_shares(actual), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def decile_groups(expected: npt.ArrayLike, groups: int = 10) -> npt.NDArray[np.intp]:
    """Group labels that merge fine bins into about ``groups`` bins of equal expected mass.

    PSI is read on deciles of the baseline: with equal-width bins, scores that crowd near 0 (as
    a guard's do on clean traffic) would put nearly everything in one bin and hide a shift.
    """
    cumulative = np.cumsum(_shares(expected))
    # A fine bin belongs to the decile its cumulative mass (before it) falls in.
    before = np.concatenate(([0.0], cumulative[:-1]))
    labels: npt.NDArray[np.intp] = np.minimum((before * groups).astype(np.intp), groups - 1)
    return labels


def merge(counts: npt.ArrayLike, labels: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
    """Sum fine-bin ``counts`` into the groups ``labels`` assigns (empty groups dropped)."""
    array = np.asarray(counts, dtype=np.float64)
    merged: npt.NDArray[np.float64] = np.bincount(
        labels, weights=array, minlength=int(labels.max()) + 1
    ).astype(np.float64)
    return merged


def score_psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> tuple[float, int]:
    """PSI of two score histograms on the baseline's deciles, and how many groups it used."""
    labels = decile_groups(expected)
    e, a = merge(expected, labels), merge(actual, labels)
    keep = (e > 0) | (a > 0)
    return psi(e[keep], a[keep]), int(keep.sum())


def ks_statistic(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """The two-sample Kolmogorov-Smirnov statistic D on binned data: the largest gap between the
    two empirical CDFs at a bin edge (D on the samples when each sample sits on its bin)."""
    return float(np.max(np.abs(np.cumsum(_shares(expected)) - np.cumsum(_shares(actual)))))


def ks_critical(n: int, m: int, coefficient: float = 1.95) -> float:
    """The KS statistic two samples of sizes ``n`` and ``m`` exceed by chance with probability
    about 0.001 (``coefficient`` 1.95; 1.36 for 0.05), from the asymptotic distribution."""
    return coefficient * float(np.sqrt((n + m) / (n * m)))


def two_proportion_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """|z| of the difference between two proportions (pooled); 0 when both are 0 or 1."""
    pooled = (hits_a + hits_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    return abs(hits_a / n_a - hits_b / n_b) / float(np.sqrt(variance)) if variance > 0 else 0.0


def welch_t(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int) -> float:
    """|t| of the difference between two means (Welch); infinite when both are constant."""
    scale = float(np.sqrt(var_a / n_a + var_b / n_b))
    if scale == 0:
        return 0.0 if mean_a == mean_b else float("inf")
    return abs(mean_a - mean_b) / scale


def categorical_psi(expected: Mapping[str, int], actual: Mapping[str, int]) -> float:
    """PSI over named categories (e.g. topics); a category seen on one side only counts too."""
    names = sorted(set(expected) | set(actual))
    return psi([expected.get(n, 0) for n in names], [actual.get(n, 0) for n in names])


def histogram(scores: Sequence[float]) -> npt.NDArray[np.int64]:
    """Bin counts of scores in [0, 1]."""
    counts = np.zeros(SCORE_BINS, dtype=np.int64)
    for score in scores:
        counts[score_bin(score)] += 1
    return counts
