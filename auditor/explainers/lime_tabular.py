"""LIME for tabular data (Ribeiro, Singh & Guestrin, 2016, "Why Should I Trust You?") via the
``lime`` package, for any model.

LIME perturbs a decision's features, scores the perturbations with the model, weights them by an
exponential kernel on their distance to the decision, and fits a weighted ridge regression whose
coefficients are the explanation. The R² of that local fit (``score``) and the kernel width are
recorded for every decision: a low score means the linear explanation does not describe the model
near that decision.

Missing values are a state of the feature, as the model sees them: in the interpretable representation a
feature's state is its bin (or category) or "missing", and perturbations are missing at the reference data's
missing rate of the feature, with NaN reaching the model. lime's own sampler draws the other states, from
the reference data's observed values (see :func:`_observed_fill`). lime itself cannot sample missing values,
so on such data only the batched engine runs.

A regression model's score is explained as lime's regression mode does: the ridge is fitted on the raw scores
(no probabilities), and the weights are in the score's units. lime keeps that fit under label 1 (its
``dummy_label``; label 0 holds the negated weights), and so does the batched engine (:data:`REGRESSION_LABEL`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from ..numbers import listed, num
from .base import (Explainer, ExplainerSpec, MethodSummary, Notes, Observation, Progress, attribution_targets,
                   decision_seed, named_features)
from .lime_sampling import Sampler, reseed, with_missing

__all__ = ["Lime", "LimeResult", "LimeSpec", "LimeSummary"]

CHUNK_ROWS = 200_000  # batched engine: perturbations held and scored at once (~50 MB for 30 features)
REGRESSION_LABEL = 1  # lime's Explanation.dummy_label: where its regression mode keeps the explanation


class LimeSpec(ExplainerSpec):
    type: Literal["lime"]
    num_samples: int = Field(default=5000, ge=100, le=1_000_000, description="Perturbations per decision.")
    num_features: int | None = Field(
        default=None, ge=1, description="Features in each local model (default: all)."
    )
    kernel_width: float | None = Field(
        default=None, gt=0, description="Exponential kernel width; default 0.75 * sqrt(number of features)."
    )
    discretize_continuous: bool = True
    discretizer: Literal["quartile", "decile", "entropy"] = Field(
        default="quartile", description="Bins of the continuous features: quartiles or deciles of the reference data, "
        "or entropy (lime's: bins where the classes change, here the model's own decisions on the reference data; "
        "classifiers only).")
    engine: Literal["batched", "reference"] = Field(
        default="batched",
        description="batched: lime's own sampling per decision, one model call for every decision's perturbations, "
        "and the weighted ridge solved in closed form (same results as lime, tested for parity); reference: lime's "
        "explain_instance per decision.",
    )
    repeats: int = Field(
        default=1, ge=1, le=50,
        description="Explain each decision this many times with different seeds and record how stable its top "
        "features are (mean pairwise Jaccard overlap of the top 5). The first run is the explanation shown.",
    )
    warn_score: float = Field(
        default=0.5, ge=0, le=1,
        description="A decision whose local fit R² is below this is flagged: the linear explanation describes the "
        "model poorly there.",
    )
    warn_stability: float = Field(
        default=0.6, ge=0, le=1,
        description="With repeats: a decision whose top-5 stability is below this is flagged as unstable.",
    )


class LimeResult(BaseModel):
    method: Literal["lime"] = "lime"
    target: int | str = Field(description="Class whose probability the local model explains (regression: score).")
    weights: dict[str, float] = Field(description="Local linear weight per feature, in probability units "
                                      "(regression: in the score's units).")
    conditions: dict[str, str] = Field(description="The feature condition each weight applies to.")
    intercept: float
    local_prediction: float = Field(description="The local model's prediction at the decision.")
    model_prediction: float = Field(description="The model's probability of the target class (regression: its "
                                    "score).")
    score: float = Field(description="R² of the weighted local fit (1 = perfect).")
    stability: float | None = Field(
        default=None, description="With repeats: mean pairwise Jaccard overlap of the top-5 features across runs."
    )
    unstable_top: list[str] | None = Field(
        default=None, description="With repeats: top-5 features that did not appear in every run's top 5."
    )


class LimeSummary(MethodSummary):
    kind: Literal["lime"] = "lime"
    decisions: int
    median_score: float = Field(description="Median local-fit R² over the decisions.")
    min_score: float = Field(description="Lowest local-fit R².")
    warn_score: float = Field(description="The policy's bound below which a decision's fit is flagged.")
    poor_fit: list[int | str] = Field(description="Decisions whose local fit is below the bound.")
    repeats: int
    stability: float | None = Field(description="With repeats: mean top-5 stability over the decisions.")
    warn_stability: float
    unstable: list[int | str] = Field(description="With repeats: decisions whose stability is below its bound.")


class Lime(Explainer):
    """LIME tabular explanations, one ``explain_instance`` per decision, each seeded by its id."""

    scope = "local"
    title = "LIME (local surrogate)"
    notes = Notes(
        computes="Perturbs the decision's features, scores the perturbations with the model, weights them by closeness "
                 "(exponential kernel) and fits a weighted linear model; its weights are the explanation (lime "
                 "package, or the auditor's batched engine, tested for parity with it). Continuous features are "
                 "discretised into quartiles of the reference data, so a weight applies to the condition shown (the "
                 "quartile of the feature's values the decision falls in). For a regression model the linear model "
                 "is fitted on the model's scores (lime's regression mode).",
        reading="A positive weight pushes the decision towards the explained class (for a regression model: raises "
                "the score, in the score's units). The quality figure is the local "
                "fit R²: how well the linear model reproduces the model near the decision. With repeats, stability "
                "is the overlap of the top five features between runs with different seeds.",
        limits="The explanation depends on the sampling and the kernel width; a low local fit or low stability means "
               "it should not be relied on for that decision. Correlated features are perturbed independently.",
        cite="M. T. Ribeiro, S. Singh, C. Guestrin. \"Why Should I Trust You?\" Explaining the Predictions of Any "
             "Classifier. KDD 2016.",
    )
    Spec = LimeSpec
    Results = (LimeResult,)
    Summaries = (LimeSummary,)
    figures = {
        "median_score": "median local-fit R²",
        "min_score": "lowest local-fit R²",
        "stability": "mean top-feature stability across repeats (Jaccard of top 5)",
    }
    partial = "partials/methods/lime.html.j2"
    attribution_field = "weights"
    annotation = ("conditions", "LIME condition")

    def summarize(self, name, model_id, results, decision_ids, parameters):
        if not results:
            return None, []
        spec = self.spec
        poor = [i for i, r in zip(decision_ids, results) if r.score < spec.warn_score]
        stabilities = [(i, r.stability) for i, r in zip(decision_ids, results) if r.stability is not None]
        unstable = [(i, v) for i, v in stabilities if v < spec.warn_stability]
        summary = LimeSummary(
            decisions=len(results), median_score=statistics.median(r.score for r in results),
            min_score=min(r.score for r in results), warn_score=spec.warn_score, poor_fit=poor,
            repeats=spec.repeats, stability=statistics.fmean(v for _, v in stabilities) if stabilities else None,
            warn_stability=spec.warn_stability, unstable=[i for i, _ in unstable])
        observations = []
        if unstable:
            observations.append(Observation(
                level="warn", code="lime.unstable", method=name, decisions=summary.unstable,
                threshold=spec.warn_stability, setting=f"explanations[{name}].warn_stability",
                message=f"{model_id}: LIME's top features change from run to run (stability < {spec.warn_stability:g}) "
                        f"for decision(s) {listed(f'{i} ({num(v, 2)})' for i, v in unstable)}: do not rely on those "
                        "explanations' ranking."))
        if poor:
            observations.append(Observation(
                level="warn", code="lime.poor_fit", method=name, decisions=poor, threshold=spec.warn_score,
                setting=f"explanations[{name}].warn_score",
                message=f"{model_id}: LIME's local model fits poorly (R² < {spec.warn_score:g}) for decision(s) "
                        f"{listed(poor)}: treat those explanations with caution."))
        return summary, observations

    def kernel_width(self, n_features: int) -> float:
        return self.spec.kernel_width or 0.75 * math.sqrt(n_features)

    @classmethod
    def check(cls, spec: LimeSpec, model) -> list[tuple[str, str, str]]:
        problems = []
        if getattr(model, "regression", False) and spec.discretizer == "entropy":
            problems.append(("discretizer", f"the entropy discretiser places bins by class labels (a classification "
                             f"tree), and {model.id!r} is a regression model: it gives scores, not classes",
                             "use discretizer: quartile or decile"))
        missing = getattr(model, "missing_features", ())
        if not missing:
            return problems
        named = named_features(missing)
        if spec.engine == "reference":
            problems.append(("engine", f"lime's own explain_instance cannot sample missing values, and {named} have "
                             "missing values in the data", "use engine: batched (it treats missing as a state)"))
        if not spec.discretize_continuous:
            problems.append(("discretize_continuous", f"{named} have missing values, and a continuous (not "
                             "discretised) LIME representation has no place for a missing state",
                             "set discretize_continuous: true"))
        return problems

    def explain(self, model, batch, *, background, seed, progress: Progress | None = None):
        from lime.lime_tabular import LimeTabularExplainer

        space = model.space
        width = self.kernel_width(len(space.features))
        rates = np.isnan(background).mean(axis=0)
        filled = _observed_fill(background) if (rates.any() or np.isnan(batch.X).any()) else None
        # lime samples around a complete row: a decision's missing value stands in as the feature's median
        missing = None if filled is None else _Missing(rates, np.quantile(filled, 0.5, axis=0, method="inverted_cdf"))
        explainer = LimeTabularExplainer(
            background if filled is None else filled,
            mode="regression" if model.regression else "classification",
            feature_names=space.labels,
            categorical_features=space.categorical_indices,
            categorical_names={i: [str(c) for c in space.categories[i]] for i in space.categorical_indices},
            class_names=model.class_names,
            kernel_width=width,
            discretize_continuous=self.spec.discretize_continuous,
            discretizer=self.spec.discretizer,
            training_labels=(model.outputs(background if filled is None else filled).argmax(axis=1)
                             if self.spec.discretizer == "entropy" else None),  # the model's own decisions
            random_state=seed,
        )
        decisions = batch.X
        proba = model.outputs(decisions)
        targets = attribution_targets(model, proba)  # regression: 0, the score column
        predict = model.predict if model.regression else model.outputs  # lime's regression mode wants (n,) scores
        num_features = self.spec.num_features or len(space.features)
        # lime chooses features by forward selection for num_features <= 6: only the reference engine does that.
        # With missing values only the batched engine runs (lime cannot sample them); it selects by weight.
        batched = missing is not None or (
            self.spec.engine == "batched" and (num_features >= len(space.features) or num_features > 6))
        if batched:
            first = _batched(explainer, model, batch, targets, num_features, seed, self.spec.num_samples, missing)
            # repeats: the same engine with the repeat's seeds (each decision's seed + r, as run(r) reseeds)
            again = [_batched(explainer, model, batch, targets, num_features, seed + r, self.spec.num_samples,
                              missing) for r in range(1, self.spec.repeats)]
        results = []
        for k, row in enumerate(decisions):
            t = int(targets[k])
            label = REGRESSION_LABEL if model.regression else t  # where the explanation is kept

            def run(repeat: int):
                reseed(explainer, decision_seed(seed + repeat, batch.ids[k]))
                with contextlib.redirect_stdout(io.StringIO()):
                    return explainer.explain_instance(row, predict, labels=(t,), num_features=num_features,
                                                      num_samples=self.spec.num_samples)

            exp = first[k] if batched else run(0)
            stability = unstable = None
            if self.spec.repeats > 1:
                tops = [_top(exp, label)] + [_top(again[r - 1][k] if batched else run(r), label)
                                         for r in range(1, self.spec.repeats)]
                pairs = [(a, b) for i, a in enumerate(tops) for b in tops[i + 1:]]
                stability = float(np.mean([len(a & b) / len(a | b) for a, b in pairs]))
                common = set.intersection(*tops)
                unstable = sorted(space.names[j] for j in tops[0] - common)
            weights, conditions = {}, {}
            for (j, w), (text, _) in zip(exp.as_map()[label], exp.as_list(label=label)):
                name = space.names[j]
                weights[name] = float(w)
                conditions[name] = text
            results.append(
                LimeResult(
                    target=model.classes[t],
                    weights=weights,
                    conditions=conditions,
                    intercept=float(exp.intercept[label]),
                    local_prediction=float(np.ravel(exp.local_pred)[0]),
                    model_prediction=float(proba[k, t]),
                    score=float(exp.score),
                    stability=stability,
                    unstable_top=unstable,
                )
            )
            if progress:
                progress(1)
        parameters = {"kernel_width": width, "num_features": num_features, "repeats": self.spec.repeats,
                      "engine": "batched" if batched else "reference"}
        if missing is not None:
            parameters["missing_rates"] = {space.names[i]: float(r) for i, r in enumerate(missing.rates) if r > 0}
        return results, parameters


class _Fitted:
    """What the batched engine returns per decision: the parts of lime's Explanation the auditor reads."""

    def __init__(self, label: int, weights: list[tuple[int, float]], names: list[str], intercept: float,
                 score: float, local_pred: float) -> None:
        self.label, self._weights, self._names = label, weights, names
        self.intercept = {label: intercept}
        self.score = score
        self.local_pred = np.array([local_pred])

    def as_map(self):
        return {self.label: self._weights}

    def as_list(self, label: int):
        return [(self._names[j], w) for j, w in self._weights]


def _weighted_ridge(X: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """scikit-learn's Ridge(alpha, fit_intercept=True).fit(X, y, sample_weight=w), in closed form."""
    x_offset = np.average(X, axis=0, weights=w)
    y_offset = np.average(y, weights=w)
    root = np.sqrt(w)[:, None]
    Xs = (X - x_offset) * root
    ys = (y - y_offset) * root[:, 0]
    coef = np.linalg.solve(Xs.T @ Xs + alpha * np.eye(X.shape[1]), Xs.T @ ys)
    return coef, float(y_offset - x_offset @ coef)


def _weighted_r2(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> float:
    """sklearn's r2_score(y, pred, sample_weight=w)."""
    numerator = float(np.sum(w * (y - pred) ** 2))
    denominator = float(np.sum(w * (y - np.average(y, weights=w)) ** 2))
    if denominator == 0:
        return 1.0 if numerator == 0 else 0.0
    return 1.0 - numerator / denominator


@dataclass(frozen=True)
class _Missing:
    """What the batched engine needs to add the missing state: the reference data's missing rate per feature, and
    the value a decision's missing feature stands in as while lime samples around the row."""

    rates: np.ndarray
    placeholder: np.ndarray

    def complete(self, rows: np.ndarray) -> np.ndarray:
        """A row (or rows) with each missing value replaced by its feature's placeholder."""
        return np.where(np.isnan(rows), self.placeholder, rows)


def _observed_fill(background: np.ndarray) -> np.ndarray:
    """The reference data with each missing cell replaced by one of the feature's observed values, spread
    evenly over their distribution (the observed values' quantiles), so that lime's statistics of a feature
    (its quartiles, bin means and frequencies) are those of its observed values. The missing state is drawn
    apart, at the feature's missing rate. A feature with no observed value becomes 0 (a single state)."""
    filled = background.copy()
    for i in np.flatnonzero(np.isnan(background).any(axis=0)):
        column = background[:, i]
        gone = np.isnan(column)
        observed = column[~gone]
        if not len(observed):
            filled[:, i] = 0.0
            continue
        levels = (np.arange(int(gone.sum())) + 0.5) / gone.sum()
        filled[gone, i] = np.quantile(observed, levels, method="inverted_cdf")
    return filled


def _feature_names(explainer, row: np.ndarray, labels: list[str], missing: "_Missing | None" = None) -> list[str]:
    """The condition lime writes for each feature at this decision (its Explanation.as_list names); a missing
    value reads "<feature> is missing"."""
    gone = np.isnan(row)
    if gone.any():
        names = _feature_names(explainer, missing.complete(row), labels)
        return [f"{labels[i]} is missing" if g else n for i, (n, g) in enumerate(zip(names, gone))]
    names = list(labels)
    lambdas = explainer.discretizer.lambdas if explainer.discretizer is not None else {}
    for i in explainer.categorical_features:
        if i in lambdas:
            continue
        value = int(row[i])
        if i in explainer.categorical_names:
            value = explainer.categorical_names[i][value]
        names[i] = f"{names[i]}={value}"
    if explainer.discretizer is not None:
        binned = explainer.discretizer.discretize(row)
        for f in explainer.discretizer.names:
            names[f] = explainer.discretizer.names[f][int(binned[f])]
    return names


def _batched(explainer, model, batch, targets, num_features: int, seed: int, num_samples: int,
             missing: "_Missing | None" = None) -> list[_Fitted]:
    """LIME for every decision, with one model call per chunk of decisions.

    Each decision's neighbourhood is lime's own, drawn with the decision's seed as explain_instance draws it
    (:class:`~auditor.explainers.lime_sampling.Sampler`, for a chunk of decisions at once); the perturbations of
    a chunk are scored in one model call; the kernel-weighted ridge (alpha 1, and lime's 'highest_weights'
    selection when fewer features are asked for) is solved in closed form instead of by scikit-learn per
    decision.

    Chunks bound memory (about ``CHUNK_ROWS`` perturbations at a time, whatever the sample size) and run on a
    few threads: numpy, scipy and the models release the GIL, and every draw depends only on the decision's
    seed, so the result is the same on any machine.

    ``missing`` (when the data has missing values) adds the missing state: see
    :func:`~auditor.explainers.lime_sampling.with_missing`.
    """
    threads = min(os.cpu_count() or 1, 4)
    # enough chunks to keep every thread busy to the end, none over CHUNK_ROWS perturbations
    per_chunk = max(1, min(CHUNK_ROWS // num_samples, math.ceil(len(batch) / (4 * threads))))
    chunks = [range(i, min(i + per_chunk, len(batch))) for i in range(0, len(batch), per_chunk)]
    workers = max(1, min(len(chunks), threads))
    sampler = Sampler(explainer)

    def chunk(rows: range) -> list[_Fitted]:
        return _explain_chunk(explainer, sampler, model, batch, rows, targets, num_features, seed, num_samples,
                              missing)

    if workers == 1:
        return [f for rows in chunks for f in chunk(rows)]
    with ThreadPoolExecutor(workers, thread_name_prefix="lime") as pool:
        return [f for fitted in pool.map(chunk, chunks) for f in fitted]


def _explain_chunk(explainer, sampler: Sampler, model, batch, rows: range, targets, num_features: int, seed: int,
                   num_samples: int, missing: "_Missing | None" = None) -> list[_Fitted]:
    seeds = [decision_seed(seed, batch.ids[k]) for k in rows]
    decisions = batch.X[rows.start:rows.stop]
    datas, inverses = sampler.sample(decisions if missing is None else missing.complete(decisions), seeds,
                                     num_samples)
    if missing is not None:
        for j, s in enumerate(seeds):
            with_missing(datas[j], inverses[j], decisions[j], missing.rates, np.random.default_rng([s, 1]))
    scores = model.outputs(inverses.reshape(-1, inverses.shape[2]))
    del inverses
    n = len(model.space.features)
    out = []
    for j, (k, data) in enumerate(zip(rows, datas)):
        t = int(targets[k])  # the output column: a class's probability, or a regression model's raw score
        scaled = (data - explainer.scaler.mean_) / explainer.scaler.scale_
        weights = explainer.base.kernel_fn(np.sqrt(((scaled - scaled[0]) ** 2).sum(axis=1)))
        y = scores[j * num_samples:(j + 1) * num_samples, t]
        used = np.arange(n)
        if num_features < n:  # lime's 'highest_weights': rank by |coef * x0| under a light ridge
            coef, _ = _weighted_ridge(scaled, y, weights, alpha=0.01)
            used = np.array(sorted(range(n), key=lambda i: -abs(coef[i] * scaled[0, i]))[:num_features])
        coef, intercept = _weighted_ridge(scaled[:, used], y, weights, alpha=1.0)
        fitted = intercept + scaled[:, used] @ coef
        ranked = sorted(zip(used.tolist(), coef.tolist()), key=lambda jw: -abs(jw[1]))
        names = _feature_names(explainer, batch.X[k], model.space.labels, missing)
        out.append(_Fitted(REGRESSION_LABEL if model.regression else t, ranked, names, intercept,
                           _weighted_r2(y, fitted, weights), float(intercept + scaled[0, used] @ coef)))
    return out


def _top(exp, label: int, k: int = 5) -> set[int]:
    """Indices of the k features with the largest |weight|."""
    ranked = sorted(exp.as_map()[label], key=lambda jw: -abs(jw[1]))
    return {j for j, _ in ranked[:k]}
