"""Permutation feature importance (Breiman, 2001; Fisher, Rudin & Dominici, 2019) via scikit-learn.

Each feature's importance is the drop in a performance score when that feature's values are
shuffled across rows, breaking its link with the outcome; repeated ``n_repeats`` times with seeded
shuffles. It describes the model on the audited dataset as a whole (a global explanation).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from .base import Explainer, ExplainerSpec, Notes, Progress, Ranking

__all__ = ["PermutationImportance", "PermutationImportanceResult", "PermutationImportanceSpec"]


class PermutationImportanceSpec(ExplainerSpec):
    type: Literal["permutation_importance"]
    n_repeats: int = Field(default=10, ge=1, le=1000)
    scoring: Literal["roc_auc", "accuracy", "balanced_accuracy", "neg_log_loss", "r2", "neg_root_mean_squared_error",
                     "neg_mean_absolute_error"] | None = Field(
        default=None, description="The score whose drop is measured: roc_auc, accuracy, balanced_accuracy or "
        "neg_log_loss for classifiers (default roc_auc); r2, neg_root_mean_squared_error or neg_mean_absolute_error "
        "for regression models (default r2).")
    max_rows: int = Field(default=5000, ge=10, description="Rows used (a seeded subsample beyond this).")
    engine: Literal["batched", "reference"] = Field(
        default="batched",
        description="batched: scikit-learn's shuffles, every repeat of a feature scored in one model call (the same "
        "importances, tested against scikit-learn); reference: sklearn.inspection.permutation_importance, one call "
        "per shuffle.",
    )


class FeatureImportance(BaseModel):
    mean: float
    std: float


class PermutationImportanceResult(BaseModel):
    method: Literal["permutation_importance"] = "permutation_importance"
    scoring: str
    baseline_score: float
    rows_used: int
    importances: dict[str, FeatureImportance]


class _Scored:
    """The minimal estimator face scikit-learn's permutation_importance needs."""

    def __init__(self, model):
        self.model = model

    def fit(self, X, y):  # pragma: no cover - never called; present for sklearn's duck typing
        return self


REGRESSION_SCORES = ("r2", "neg_root_mean_squared_error", "neg_mean_absolute_error")


def _score(scoring: str, model, X: np.ndarray, y_index: np.ndarray) -> float:
    return _metric(scoring, model, model.outputs(X), y_index)


def _metric(scoring: str, model, proba: np.ndarray, y_index: np.ndarray) -> float:
    """``proba``: the model's outputs; ``y_index``: true class indices, or a regression model's true values."""
    from sklearn import metrics

    if scoring == "r2":
        return float(metrics.r2_score(y_index, proba[:, 0]))
    if scoring == "neg_root_mean_squared_error":
        return -float(np.sqrt(metrics.mean_squared_error(y_index, proba[:, 0])))
    if scoring == "neg_mean_absolute_error":
        return -float(metrics.mean_absolute_error(y_index, proba[:, 0]))
    if scoring == "accuracy":
        return float(metrics.accuracy_score(y_index, proba.argmax(axis=1)))
    if scoring == "balanced_accuracy":
        return float(metrics.balanced_accuracy_score(y_index, proba.argmax(axis=1)))
    if scoring == "neg_log_loss":
        return -float(metrics.log_loss(y_index, proba, labels=list(range(proba.shape[1]))))
    if proba.shape[1] == 2:
        return float(metrics.roc_auc_score(y_index == model.positive_index, proba[:, model.positive_index]))
    return float(metrics.roc_auc_score(y_index, proba, multi_class="ovr", labels=list(range(proba.shape[1]))))


class PermutationImportance(Explainer):
    """Global importance: score drop when each feature is shuffled, via sklearn.inspection."""

    scope = "global"
    title = "Permutation importance"
    notes = Notes(
        computes="Shuffles one feature at a time across the audited rows and measures how much the model's score "
                 "drops (scikit-learn). Repeated with seeded shuffles; the bar is the mean drop and the whisker its "
                 "standard deviation.",
        reading="A large drop means the model relies on the feature overall; a drop near zero (or below) means "
                "shuffling it does not hurt the score.",
        limits="Importance of correlated features is shared between them and can look small for each. Shuffling "
               "creates combinations of values that may not occur in reality.",
        cite="L. Breiman. Random Forests. Machine Learning 45, 2001; A. Fisher, C. Rudin, F. Dominici. All Models "
             "are Wrong, but Many are Useful. JMLR 2019.",
    )
    Spec = PermutationImportanceSpec
    Results = (PermutationImportanceResult,)
    partial = "partials/methods/permutation_importance.html.j2"

    @classmethod
    def check(cls, spec, model) -> list[tuple[str, str, str]]:
        if spec.scoring is None:
            return []
        if model.regression and spec.scoring not in REGRESSION_SCORES:
            return [("scoring", f"{spec.scoring} scores a classifier, and {model.id!r} is a regression model",
                     f"use one of: {', '.join(REGRESSION_SCORES)} (or leave scoring out: r2)")]
        if not model.regression and spec.scoring in REGRESSION_SCORES:
            return [("scoring", f"{spec.scoring} scores a regression model, and {model.id!r} is a classifier",
                     "use roc_auc, accuracy, balanced_accuracy or neg_log_loss (or leave scoring out: roc_auc)")]
        return []

    @classmethod
    def comparable(cls, result) -> Ranking:
        return Ranking(scores={f: v.mean for f, v in result.importances.items()}, scoring=result.scoring)

    def explain(self, model, batch, *, background, seed, progress: Progress | None = None, sample=None):
        """``batch`` here is the whole audited dataset, with its true labels."""
        from sklearn.inspection import permutation_importance

        X = batch.X
        scoring = self.spec.scoring or ("r2" if model.regression else "roc_auc")
        if model.regression:
            y_index = np.asarray(batch.y, dtype=np.float64)
        else:
            y_index = np.array([model.classes.index(v) for v in batch.y], dtype=np.int64)
        if len(X) > self.spec.max_rows:
            keep = np.sort(np.random.default_rng(seed).choice(len(X), self.spec.max_rows, replace=False))
            X, y_index = X[keep], y_index[keep]
        if self.spec.engine == "batched":
            means, stds = _batched(scoring, model, X, y_index, self.spec.n_repeats, seed)
        else:
            scorer = lambda est, X_, y_: _score(scoring, est.model, X_, y_)  # noqa: E731
            out = permutation_importance(
                _Scored(model), X, y_index, scoring=scorer, n_repeats=self.spec.n_repeats, random_state=seed, n_jobs=1
            )
            means, stds = out.importances_mean, out.importances_std
        result = PermutationImportanceResult(
            scoring=scoring,
            baseline_score=_score(scoring, model, X, y_index),
            rows_used=len(X),
            importances={
                name: FeatureImportance(mean=float(m), std=float(s))
                for name, m, s in zip(model.space.names, means, stds)
            },
        )
        if progress:
            progress(1)
        return result, {"engine": self.spec.engine}


def _batched(scoring: str, model, X: np.ndarray, y_index: np.ndarray, n_repeats: int, seed: int):
    """scikit-learn's permutation_importance, with every repeat of one feature scored in one model call.

    The shuffles are scikit-learn's own: one seed drawn from RandomState(seed), then for each feature a fresh
    RandomState of that seed shuffling a row index ``n_repeats`` times, each shuffle applied to the column as
    it already stands. The scores are the same metric functions on the same probabilities (a row's score does
    not depend on the rows scored with it), computed without scikit-learn's per-call argument validation: the
    importances equal scikit-learn's (tests/test_explainers.py).
    """
    from sklearn import config_context

    random_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    n = len(X)
    with config_context(skip_parameter_validation=True):
        baseline = _metric(scoring, model, model.outputs(X), y_index)
        importances = np.empty((X.shape[1], n_repeats))
        for col in range(X.shape[1]):
            rng = np.random.RandomState(random_seed)
            permuted, order = X.copy(), np.arange(n)
            blocks = []
            for _ in range(n_repeats):
                rng.shuffle(order)
                permuted[:, col] = permuted[order, col]
                blocks.append(permuted.copy())
            proba = model.outputs(np.concatenate(blocks))
            importances[col] = [baseline - _metric(scoring, model, proba[r * n:(r + 1) * n], y_index)
                                for r in range(n_repeats)]
    return importances.mean(axis=1), importances.std(axis=1)
