"""Confidence intervals for the performance figures: Wilson intervals for proportions, a seeded percentile
bootstrap over rows for everything else.

Clinical reporting guidance (STARD, TRIPOD+AI) asks for every accuracy figure with its 95% confidence interval.

- :func:`wilson`: the Wilson score interval of ``successes`` out of ``n`` (Wilson 1927; Brown, Cai & DasGupta
  2001 recommend it over the normal approximation for small ``n`` and proportions near 0 or 1).
- :func:`bootstrap`: the percentile interval of a statistic over ``reps`` resamples of the rows, drawn with
  replacement from ``numpy.random.default_rng(seed)`` (Efron & Tibshirani 1993). It is vectorised: the
  statistic receives one matrix of resample counts (a row per replicate: how often each original row is drawn)
  and computes every replicate at once, so it never copies the data per replicate. The same ``seed``, number
  of rows and ``reps`` draw the same resamples, so intervals are deterministic and every statistic of the same
  rows is computed on the same resamples.
- :func:`difference` and :func:`ratio` of two independent proportions, from their Wilson intervals: Newcombe's
  hybrid score interval of a difference (Newcombe 1998, method 10) and the MOVER interval of a ratio (Donner &
  Zou 2012). Both keep the Wilson interval's good coverage for small groups and rates near 0 or 1, where the
  normal approximation and the log method (undefined at a count of 0) fail.
- Weighted statistics for that matrix: :func:`weighted_mean`, :func:`weighted_auc` (a rank-based AUC that
  handles ties as scikit-learn's ``roc_auc_score`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

__all__ = ["Interval", "bootstrap", "difference", "ratio", "resample_counts", "weighted_auc", "weighted_mean",
           "wilson"]

COUNTS = 500_000
"""Resample counts made and handed to a statistic at once (replicates x rows): larger draws are made and used in
parts of this size, which bounds their temporary arrays (an AUC makes about ten of that size) whatever the number
of rows. The parts depend only on the rows and replicates, so the intervals are deterministic (a mean's matrix
product can round a replicate differently in its last bit in another part); up to 500 rows with 1,000 replicates,
the draw is one part."""


class Interval(BaseModel):
    """A confidence interval of a figure."""

    lower: float
    upper: float
    level: float = Field(default=0.95, description="Confidence level, e.g. 0.95.")
    method: Literal["wilson", "bootstrap", "newcombe", "mover"] = Field(
        description="wilson: Wilson score interval of a proportion; bootstrap: percentile interval over resamples "
        "of the rows (seeded with the audit seed); newcombe: Newcombe's hybrid score interval of the difference of "
        "two proportions; mover: the MOVER interval of the ratio of two proportions (Donner & Zou).")
    n: int = Field(description="Rows (or, for a proportion, the trials: its denominator) the figure rests on; for "
                   "a difference or ratio of two proportions, both denominators together.")
    replicates: int | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Bootstrap: resamples in which the figure is defined (e.g. an AUC needs both "
        "classes); the others are left out.")


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(successes: int | float, n: int, level: float = 0.95) -> Interval | None:
    """The Wilson score interval of ``successes`` out of ``n`` trials; None when ``n`` is 0."""
    n = int(n)
    if n <= 0:
        return None
    if not 0 < level < 1:
        raise ValueError(f"Expected a confidence level between 0 and 1, got {level!r}.")
    z = _z(level)
    p = float(successes) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(lower=float(max(0.0, centre - half)), upper=float(min(1.0, centre + half)), level=level,
                    method="wilson", n=n)


def difference(a: tuple[int, int], b: tuple[int, int], level: float = 0.95) -> Interval | None:
    """Newcombe's hybrid score interval of ``a`` minus ``b``, two independent proportions given as (successes,
    n); None when either n is 0."""
    ca, cb = wilson(*a, level), wilson(*b, level)
    if ca is None or cb is None:
        return None
    pa, pb = a[0] / a[1], b[0] / b[1]
    d = pa - pb
    lower = d - float(np.hypot(pa - ca.lower, cb.upper - pb))
    upper = d + float(np.hypot(ca.upper - pa, pb - cb.lower))
    return Interval(lower=max(-1.0, lower), upper=min(1.0, upper), level=level, method="newcombe", n=a[1] + b[1])


def ratio(a: tuple[int, int], b: tuple[int, int], level: float = 0.95) -> Interval | None:
    """The MOVER interval (Donner & Zou 2012, from Wilson intervals) of the ratio of proportion ``a`` over
    proportion ``b``, each (successes, n); None when either n is 0 or ``b`` has no successes (no ratio), or when
    the upper end is unbounded (``b``'s interval reaches 0)."""
    ca, cb = wilson(*a, level), wilson(*b, level)
    if ca is None or cb is None or b[0] == 0:
        return None
    p1, p2 = a[0] / a[1], b[0] / b[1]
    l1, u1, l2, u2 = ca.lower, ca.upper, cb.lower, cb.upper
    if l2 <= 0:
        return None
    product = p1 * p2
    lower = (product - np.sqrt(max(0.0, product ** 2 - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2)))) / (u2 * (2 * p2 - u2)) \
        if u2 * (2 * p2 - u2) > 0 else 0.0
    upper = (product + np.sqrt(max(0.0, product ** 2 - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2)))) / (l2 * (2 * p2 - l2))
    return Interval(lower=float(max(0.0, lower)), upper=float(upper), level=level, method="mover", n=a[1] + b[1])


def resample_counts(n: int, reps: int, seed: int):
    """Parts of the resample counts, each ``(replicates, n)``: row ``r`` says how often each of the ``n`` rows is
    drawn in replicate ``r`` (each row sums to ``n``). ``reps`` replicates in all, from ``default_rng(seed)``,
    about ``COUNTS`` counts in a part."""
    rng = np.random.default_rng(seed)
    part = max(1, COUNTS // max(n, 1))
    done = 0
    while done < reps:
        size = min(part, reps - done)
        idx = rng.integers(0, n, size=(size, n))
        flat = (idx + (np.arange(size) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)
        done += size


def bootstrap(statistic: Callable[..., np.ndarray], *arrays: np.ndarray, seed: int, reps: int = 1000,
              level: float = 0.95) -> Interval | None:
    """Percentile bootstrap interval of ``statistic`` over the rows of ``arrays`` (all of the same length).

    ``statistic(w, *arrays)`` gets a ``(replicates, n)`` matrix of resample counts and the arrays as they are,
    and returns one value per replicate (NaN where the figure is undefined in that resample; those replicates
    are left out). None when ``reps`` is 0, there are no rows, or the figure is undefined in more than half of
    the resamples."""
    if reps <= 0:
        return None
    if not 0 < level < 1:
        raise ValueError(f"Expected a confidence level between 0 and 1, got {level!r}.")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0]) if arrays else 0
    if n == 0 or any(len(a) != n for a in arrays):
        if n and any(len(a) != n for a in arrays):
            raise ValueError(f"Expected arrays of one length, got lengths {[len(a) for a in arrays]}.")
        return None
    values = np.concatenate([np.asarray(statistic(w, *arrays), dtype=np.float64)
                             for w in resample_counts(n, reps, seed)])
    values = values[np.isfinite(values)]
    if len(values) * 2 < reps:
        return None
    alpha = 1 - level
    lower, upper = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return Interval(lower=float(lower), upper=float(upper), level=level, method="bootstrap", n=n,
                    replicates=int(len(values)))


def weighted_mean(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per replicate: the mean of ``values`` over the resample (NaN for an empty one)."""
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.asarray(values, dtype=np.float64)) / total


def weighted_auc(w: np.ndarray, truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per replicate: the ROC AUC of ``score`` for the boolean ``truth`` (the Mann-Whitney statistic: the share of
    (positive, negative) pairs the score orders correctly, ties counting one half); NaN without both classes."""
    truth = np.asarray(truth, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="stable")
    s, t = score[order], truth[order]
    ws = w[:, order]
    pos, neg = ws * t, ws * ~t
    below_or_equal = np.cumsum(neg, axis=1)
    # each row's tie group: its first and last position among the sorted scores
    first = np.searchsorted(s, s, side="left")
    last = np.searchsorted(s, s, side="right") - 1
    lower = np.where(first > 0, below_or_equal[:, np.maximum(first - 1, 0)], 0.0)
    equal = below_or_equal[:, last] - lower
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (lower + 0.5 * equal)).sum(axis=1) / pairs
    return np.where(pairs > 0, auc, np.nan)
