"""lime's tabular neighbourhood sampler, for many decisions at once, drawing lime's own numbers.

``LimeTabularExplainer.__data_inverse`` draws a decision's perturbations column by column: one
``RandomState.choice`` per column (a bin of a discretised feature, or a category, by its frequency in the
reference data), then, per discretised feature, a value inside the drawn bin from the truncated normal of the
reference values in that bin (``scipy.stats.truncnorm.rvs``). At 5,000 perturbations of 30 features that is
60 numpy calls per decision and, in scipy's truncated normal, an inverse CDF in log space per value: most of
LIME's time beside the model.

:class:`Sampler` draws the same numbers from the same ``RandomState`` stream (seeded per decision, see
:func:`reseed`), in a few calls per chunk of decisions:

- ``choice(values, n, p=freqs)`` is ``cdf.searchsorted(random_sample(n), side="right")`` with ``cdf =
  cumsum(freqs) / its last element``; the columns draw in order, so one ``random_sample(columns * n)`` per
  decision holds every column's uniforms;
- the truncated normal takes one uniform per value that is not a bin's single point, feature after feature
  (lime's ``discretizer.means`` order), row after row (rows 1 on: row 0 is the decision); Phi at a bin's bounds
  is computed once per bin (:func:`bin_table`), and each value costs one ``ndtri``.

Without a discretiser lime first draws ``normal(0, 1, n * columns)`` (numeric features around the reference
mean), then the categorical columns' choices: so does the sampler. ``tests/test_lime_engines.py`` checks the
samples against lime's own sampler, and the explanations against lime's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Sampler", "bin_table", "reseed", "with_missing"]

BLOCK = 4  # decisions drawn at once: 4 x 5,000 perturbations x 30 features is ~5 MB per temporary


def reseed(explainer, seed: int) -> None:
    """Give the explainer, its sampler and its discretiser one fresh RandomState (lime #389)."""
    state = np.random.RandomState(seed)
    explainer.random_state = state
    explainer.base.random_state = state
    if explainer.discretizer is not None:
        explainer.discretizer.random_state = state


def bin_table(discretizer) -> dict[int, np.ndarray]:
    """Per discretised feature, a (6, bins) table: offset, slope, mean, scale, whether the bin is drawn from (not a
    single point), and lime's value where it is not (the bin's lower bound as a z-score).

    scipy inverts the truncated normal in the left tail, mirroring bins with a >= 0, for accuracy:
      left:  z = ndtri(Phi(a) + q (Phi(b) - Phi(a)))
      right: z = -ndtri(Phi(-b) + (1 - q) (Phi(-a) - Phi(-b)))
    both written as sign * ndtri(offset + q * slope); the value is then mean + std * z."""
    from scipy.special import ndtr

    table = {}
    for feature in discretizer.means:
        mins, maxs = np.array(discretizer.mins[feature]), np.array(discretizer.maxs[feature])
        means, stds = np.array(discretizer.means[feature]), np.array(discretizer.stds[feature])
        a, b = (mins - means) / stds, (maxs - means) / stds
        left = a < 0
        low = np.where(left, ndtr(a), ndtr(-b))
        mass = np.where(left, ndtr(b), ndtr(-a)) - low
        offset, slope = np.where(left, low, low + mass), np.where(left, mass, -mass)
        scale = stds * np.where(left, 1.0, -1.0)
        table[feature] = np.stack([offset, slope, means, scale, a != b, a])
    return table


def _truncated_normal(params: np.ndarray, bins: np.ndarray, q: np.ndarray,
                      draw: np.ndarray | None = None) -> np.ndarray:
    """Values in bins ``bins`` of one feature (its :func:`bin_table`, ``params``) from their uniforms ``q``:
    mean + scale * ndtri(offset + q * slope), computed in place from the four parameters gathered. With ``draw``
    (whether each value's bin is drawn from), lime's lower z-score where the bin is a single point."""
    from scipy.special import ndtri

    offset, slope, mean, scale, _, lower = params
    if draw is not None and not draw.all():
        out = np.take(lower, bins)
        out[draw] = _truncated_normal(params, bins[draw], q[draw])
        return out
    z = np.take(slope, bins)
    z *= q
    z += np.take(offset, bins)
    ndtri(z, out=z)
    z *= np.take(scale, bins)
    z += np.take(mean, bins)
    return z


def with_missing(data: np.ndarray, inverse: np.ndarray, row: np.ndarray, rates: np.ndarray,
                 rng: np.random.Generator) -> None:
    """Add the missing state to lime's perturbations of ``row``, in place.

    Each feature with a missing rate in the reference data (or missing at the decision) is missing in a
    perturbation with that rate, drawn from ``rng`` (its own stream, so lime's draws are untouched): the model
    then sees NaN there (``inverse``), and the interpretable column (``data``, 1 where the perturbation is in the
    decision's state) reads 1 where both are missing, 0 where one is. The first row stays the decision itself.
    """
    gone = np.isnan(row)
    for j in np.flatnonzero((rates > 0) | gone):
        mask = rng.random(len(data)) < rates[j]
        mask[0] = gone[j]
        inverse[mask, j] = np.nan
        data[:, j] = mask if gone[j] else np.where(mask, 0.0, data[:, j])


class Sampler:
    """lime's neighbourhoods of many decisions, each from its own seed: ``sample(rows, seeds, n)`` gives what
    ``explain_instance`` would draw for each row after ``reseed(explainer, seed)``, as two (decisions, n,
    features) arrays: the interpretable ``data`` (1 where a perturbation is in the decision's bin or category;
    the sampled value of a numeric feature without a discretiser) and ``inverse`` (what the model scores)."""

    def __init__(self, explainer) -> None:
        self.discretizer = explainer.discretizer
        self.mean, self.scale = explainer.scaler.mean_, explainer.scaler.scale_
        self.columns = len(self.mean)
        drawn = range(self.columns) if self.discretizer is not None else explainer.categorical_features
        self.choices = [(c, np.asarray(explainer.feature_values[c]),
                         _cdf(np.asarray(explainer.feature_frequencies[c], dtype=float))) for c in drawn]
        if self.discretizer is not None:
            table = bin_table(self.discretizer)
            self.binned = [(f, table[f]) for f in self.discretizer.means]  # lime's order of undiscretising
            # every bin a range (none a single point): every value takes a uniform, and none is masked out
            self.every_bin_drawn = all(params[4].all() for _, params in self.binned)

    def sample(self, rows: np.ndarray, seeds: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=float)
        data, inverse = np.empty((2, len(rows), n, self.columns))
        # a few decisions at a time, column by column: the temporaries stay small (allocator-reused, in cache)
        for start in range(0, len(rows), BLOCK):
            block = slice(start, start + BLOCK)
            self._block(rows[block], seeds[block], n, data[block], inverse[block])
        return data, inverse

    def _block(self, rows: np.ndarray, seeds: list[int], n: int, data: np.ndarray, inverse: np.ndarray) -> None:
        states = [np.random.RandomState(s) for s in seeds]
        k, columns = len(rows), self.columns
        inv = np.empty((k, columns, n))  # column-major while drawing; written out row-major at the end
        if self.discretizer is None:
            for d, state in enumerate(states):
                inv[d] = (state.normal(0, 1, n * columns).reshape(n, columns) * self.scale + self.mean).T
            first = rows
        else:
            first = self.discretizer.discretize(rows)
        dat = inv.copy() if self.discretizer is None else np.empty((k, columns, n))
        uniforms = np.stack([state.random_sample(len(self.choices) * n) for state in states])
        uniforms = uniforms.reshape(k, len(self.choices), n)
        for i, (c, values, cdf) in enumerate(self.choices):
            np.take(values, _draw(cdf, uniforms[:, i]), out=inv[:, c])
            np.equal(inv[:, c], first[:, c:c + 1], out=dat[:, c])
        del uniforms
        if self.discretizer is not None:
            self._undiscretize(inv, states)
        data[:] = dat.transpose(0, 2, 1)
        inverse[:] = inv.transpose(0, 2, 1)
        data[:, 0] = rows  # row 0 is the decision: its values, and 1 for every binned or categorical column
        for c, _, _ in self.choices:
            data[:, 0, c] = 1.0
        inverse[:, 0] = rows

    def _undiscretize(self, inv: np.ndarray, states: list) -> None:
        """Rows 1 on of each discretised feature (``inv``: decisions, features, rows), from its bin to a value, in
        place: per decision one ``random_sample`` holds every drawn value's uniform, feature after feature, row
        after row (when every bin is drawn from, one (features, rows) block with nothing masked out)."""
        bins = [(f, params, inv[:, f, 1:].astype(np.intp)) for f, params in self.binned]
        n = inv.shape[2] - 1
        if self.every_bin_drawn:
            draws = None
            q = np.empty((len(states), len(bins), n))
            for d, state in enumerate(states):
                q[d] = state.random_sample(len(bins) * n).reshape(len(bins), n)
        else:
            draws = np.stack([params[4][b].astype(bool) for _, params, b in bins], axis=1)  # (decisions, features, n)
            q = np.zeros(draws.shape)
            for d, state in enumerate(states):
                q[d][draws[d]] = state.random_sample(int(draws[d].sum()))
        for i, (f, params, b) in enumerate(bins):
            inv[:, f, 1:] = _truncated_normal(params, b, q[:, i], None if draws is None else draws[:, i])


def _draw(cdf: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """``cdf.searchsorted(uniforms, side="right")``: how many of the cdf's values are <= each uniform; for a few
    values (a feature's bins) counted by comparisons, which numpy vectorises, instead of a binary search each."""
    if len(cdf) > 8:
        return cdf.searchsorted(uniforms, side="right")
    index = np.zeros(uniforms.shape, dtype=np.intp)
    for edge in cdf[:-1]:  # the last is 1.0, above every uniform (RandomState draws in [0, 1))
        index += uniforms >= edge
    return index


def _cdf(freqs: np.ndarray) -> np.ndarray:
    """RandomState.choice's cumulative distribution of ``p``."""
    cdf = freqs.cumsum()
    cdf /= cdf[-1]
    return cdf
