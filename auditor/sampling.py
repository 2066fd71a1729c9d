"""Choose which decisions to explain: seeded, reproducible, each keeping its stable id.

Strategies (the policy's ``sample.strategy``):

- ``random``: a uniform sample without replacement.
- ``stratified``: proportional to the true classes, at least one of each class where possible.
- ``boundary``: the decisions the model is least sure of (smallest margin between the two most
  probable classes); ties are broken by the seeded shuffle.
- ``misclassified``: decisions where the model's predicted class is not the true class.

For a regression model (``decision`` is its cut-off, if any) the strategies mean what they can for a score:
``stratified`` draws proportionally from the ten deciles of the prediction, ``boundary`` takes the scores
nearest the cut-off, and ``misclassified`` the decisions where the cut-off decides otherwise than the true
value would. The policy's checks refuse ``boundary`` and ``misclassified`` for a score with no cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Sample", "draw_sample"]


@dataclass(frozen=True)
class Sample:
    rows: np.ndarray  # positions in the dataset, ordered by decision id
    strategy: str
    requested: int
    available: int  # rows eligible for the strategy
    seed: int

    @property
    def note(self) -> str | None:
        if len(self.rows) < self.requested:
            return (f"{self.requested} decisions were requested but only {self.available} were eligible "
                    f"for the '{self.strategy}' strategy; all of them are explained.")
        return None


def draw_sample(
    strategy: str, size: int, seed: int, *, y_true: np.ndarray, proba: np.ndarray, classes: list, ids: np.ndarray,
    regression: bool = False, decision=None,
) -> Sample:
    """Pick ``size`` rows. ``proba`` are the model's outputs for every row (columns = ``classes``): probabilities,
    or with ``regression`` the score as one column."""
    n = len(y_true)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)  # one seeded shuffle; every strategy draws from it, so ties are seeded too
    if regression and strategy != "random":
        chosen, available = _score_sample(strategy, order, size, proba[:, 0], np.asarray(y_true, dtype=float),
                                          decision)
    elif strategy == "random":
        chosen = order[:size]
        available = n
    elif strategy == "stratified":
        chosen, available = _stratified(order, y_true, size), n
    elif strategy == "boundary":
        top2 = np.sort(proba, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        ranked = order[np.argsort(margin[order], kind="stable")]
        chosen, available = ranked[:size], n
    elif strategy == "misclassified":
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        wrong = np.array([p != t for p, t in zip(predicted, y_true)], dtype=bool)
        eligible = order[wrong[order]]
        chosen, available = eligible[:size], int(wrong.sum())
    else:  # the policy's Literal makes this unreachable from user input
        raise ValueError(f"unknown sampling strategy {strategy!r}")
    chosen = sorted((int(i) for i in chosen), key=lambda i: (type(ids[i]).__name__, ids[i]))
    return Sample(rows=np.asarray(chosen, dtype=int), strategy=strategy, requested=size, available=available, seed=seed)


def _score_sample(strategy: str, order: np.ndarray, size: int, score: np.ndarray, y: np.ndarray, decision):
    if strategy == "stratified":
        edges = np.quantile(score, np.linspace(0, 1, 11)[1:-1])
        return _stratified(order, np.searchsorted(edges, score, side="right"), size), len(score)
    if decision is None:  # the policy's checks refuse these strategies for a score without a cut-off
        raise ValueError(f"the {strategy!r} sample of a regression model needs a decision cut-off")
    if strategy == "boundary":
        distance = np.abs(score - decision.adverse_if.value)
        return order[np.argsort(distance[order], kind="stable")][:size], len(score)
    wrong = decision.adverse_if.adverse(score) != decision.adverse_if.adverse(y)
    return order[wrong[order]][:size], int(wrong.sum())


def _stratified(order: np.ndarray, y_true: np.ndarray, size: int) -> np.ndarray:
    labels = [str(v) for v in y_true]
    classes = sorted(set(labels))
    size = min(size, len(order))
    counts = {c: sum(1 for l in labels if l == c) for c in classes}
    quota = {c: max(1, int(round(size * counts[c] / len(labels)))) for c in classes}
    while sum(quota.values()) > size:  # rounding overshoot: trim the largest class
        biggest = max(quota, key=lambda c: (quota[c], c))
        quota[biggest] -= 1
    while sum(quota.values()) < size:  # undershoot: give to the class with most rows left
        spare = max(classes, key=lambda c: (counts[c] - quota[c], c))
        quota[spare] += 1
    taken = {c: 0 for c in classes}
    chosen = []
    for i in order:
        c = labels[i]
        if taken[c] < quota[c]:
            chosen.append(i)
            taken[c] += 1
    return np.asarray(chosen, dtype=int)
