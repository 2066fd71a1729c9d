"""Shapley values (Shapley, 1953; Štrumbelj & Kononenko, 2014, "Explaining prediction models and individual
predictions with feature contributions"; Lundberg & Lee, 2017, "A Unified Approach to Interpreting Model
Predictions"), relative to the reference population, for any tabular model.

A decision's Shapley value for a feature is its average marginal contribution to the model's probability
over every order in which the features can be switched from a reference row's values to the decision's.
Averaged over a seeded sample of the reference (background) rows, these are *interventional* Shapley
values: they sum to f(x) - E[f(reference row)] (efficiency). Categorical features are switched as one
feature, whatever the model's encoding of them.

Engines (``engine: auto``, the default, takes ``tree`` when the model is a tree ensemble the auditor reads, and
``batched`` otherwise; the evidence names the engine that ran):

- ``tree``: exact values for tree ensembles (:mod:`auditor.explainers.treeshap`: interventional TreeSHAP,
  Lundberg et al. 2020, Algorithm 3, over every decision and background row at once). scikit-learn's decision
  trees, random forests, extra trees, gradient boosting and histogram gradient boosting (without categorical
  splits), XGBoost (gbtree) and LightGBM boosters, binary or regression, and multiclass forests; bare or after a
  Pipeline whose preprocessing maps each feature on its own (scalers, imputers, one-hot and ordinal encoders).
  Where the output is the sum of the trees (forests' probabilities, regression scores) the values are the exact
  Shapley values of the output. Where the probability is the logistic function of the summed log-odds (boosted
  classifiers) they are the exact values of the log-odds, each background row's rescaled so that they add up to
  its difference of probability, (p(x) - p(z)) / (g(x) - g(z)): what shap's ``TreeExplainer`` computes with
  ``model_output="probability"`` (shap compares rows with thresholds rounded to float32, so it routes a row near
  a split unlike the model now and then; the engine routes as the model does). The exact values of the
  probability itself cost time exponential in the features a decision and a reference row route apart on, so no
  engine here computes them for a boosted model; the sampling engines estimate them. The engine first checks
  that the trees it read reproduce the model's own output on the background rows (else ``auto`` samples, and the
  parameters say why). ``bench/shapley_trees.py`` measures it against shap.
- ``batched``: Captum's ``ShapleyValueSampling`` algorithm (baseline Shapley by permutation
  sampling) for every background row and every decision at once, with one model call per chunk of
  perturbed rows instead of Captum's call per permutation step. Each decision draws its permutations
  with ``torch.randperm`` from a generator seeded by its id, as Captum does from the seeded global
  generator, so ``tests/test_shapley.py`` holds it to Captum itself.
- ``reference``: Captum's ``ShapleyValueSampling`` per decision, over the background rows.

The quality figure per decision is the efficiency gap, |sum of values - (f(x) - mean f(reference))|,
with the mean over the whole reference population: it includes how far the sampled background rows'
mean output is from the population's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from ..numbers import listed, num
from ..errors import ExplanationError
from .base import (Batch, Explainer, ExplainerSpec, MethodSummary, Notes, Observation, Progress,
                   attribution_targets, decision_seed)
from .treeshap import read_trees, tree_values

__all__ = ["Shapley", "ShapleyResult", "ShapleySpec", "ShapleySummary", "background_rows"]

CHUNK_ROWS = 250_000
"""Perturbed rows the batched engine holds and scores at once (about 60 MB for 30 features)."""


class ShapleySpec(ExplainerSpec):
    type: Literal["shapley"]
    engine: Literal["auto", "tree", "batched", "reference"] = Field(
        default="auto",
        description="auto: tree when the model is a tree ensemble the auditor reads, else batched; tree: exact values "
        "from the model's trees (for boosted classifiers, exact in log-odds and rescaled to probability per "
        "background row); batched: Captum's permutation-sampling algorithm for every decision and background row at "
        "once (tested for parity with Captum); reference: Captum's ShapleyValueSampling per decision.",
    )
    background_rows: int = Field(
        default=100, ge=1, le=100_000,
        description="Rows of the reference data, drawn with the audit seed, the values are averaged over (all of "
        "them when the reference data has fewer).",
    )
    background_sample: Literal["stratified", "random"] = Field(
        default="stratified",
        description="How those rows are drawn: stratified (one at random from each of background_rows equal-sized "
        "strata of the model's output, so their mean output is close to the whole reference population's) or "
        "random (a uniform sample).",
    )
    n_samples: int = Field(
        default=25, ge=1, le=10_000,
        description="Feature permutations per decision (Captum's n_samples; the sampling engines only); the values' "
        "sampling error shrinks with its square root.",
    )
    warn_efficiency_gap: float | None = Field(
        default=None, gt=0,
        description="A decision whose efficiency gap exceeds this is flagged: the values do not add up to the "
        "decision's difference from the reference population's mean (increase background_rows). In the model's "
        "output units; default 0.02 for a classifier's probability, and for a regression model 2% of the standard "
        "deviation of its score on the reference data.",
    )


class ShapleyResult(BaseModel):
    method: Literal["shapley"] = "shapley"
    target: int | str = Field(description="Class whose probability is attributed ('score': a regression model's).")
    attributions: dict[str, float] = Field(description="Per feature, in probability units (a regression model's: "
                                           "score units).")
    output: float = Field(description="Model probability of the target class at the decision.")
    expected_value: float = Field(description="Mean probability of the target class over the reference population.")
    attribution_sum: float
    efficiency_gap: float = Field(description="|attribution_sum - (output - expected_value)|.")


class ShapleySummary(MethodSummary):
    kind: Literal["shapley"] = "shapley"
    decisions: int
    engine: str
    background_rows: int = Field(description="Reference rows the values are averaged over.")
    reference_rows: int = Field(description="Rows of the reference population.")
    max_efficiency_gap: float
    warn_efficiency_gap: float
    flagged: list[int | str] = Field(description="Decisions whose efficiency gap exceeds the bound.")


def background_rows(background: np.ndarray, size: int, seed: int, *, scores: np.ndarray | None = None) -> np.ndarray:
    """The reference rows the values are averaged over, in file order: all of them when there are at most
    ``size``; else a seeded sample without replacement, stratified by ``scores`` when given (the rows sorted by
    score, cut into ``size`` strata of equal count, one row drawn at random from each)."""
    if len(background) <= size:
        return background
    rng = np.random.default_rng(seed)
    if scores is None:
        return background[np.sort(rng.choice(len(background), size, replace=False))]
    strata = np.array_split(np.argsort(scores, kind="stable"), size)
    return background[np.sort([stratum[rng.integers(len(stratum))] for stratum in strata])]


class Shapley(Explainer):
    """Interventional Shapley values against the reference population, batched across decisions."""

    scope = "local"
    title = "Shapley values"
    notes = Notes(
        computes="Each feature's average marginal contribution to the model's probability over the orders in which "
                 "the features can be switched from a reference row's values to the decision's, averaged over a "
                 "seeded sample of rows of the reference population (interventional Shapley values). For a tree "
                 "ensemble (engine tree) the values are computed exactly from the model's trees (interventional "
                 "TreeSHAP): exact Shapley values of the probability when it is the sum of the trees (forests) or of "
                 "a regression score; for a boosted classifier, whose probability is the logistic function of summed "
                 "log-odds, exact values of the log-odds rescaled per reference row to add up to its difference of "
                 "probability (as shap's TreeExplainer does). Otherwise permutations are sampled as Captum's "
                 "ShapleyValueSampling does, for every decision at once (engine batched, tested for parity with "
                 "Captum). Categorical features are switched as one feature.",
        reading="Values are in probability units and sum to the decision's probability minus the mean probability "
                "over the reference population (efficiency): a positive value pushes the decision towards the "
                "attributed class, relative to a typical reference row. The quality figure is the efficiency gap, "
                "how far the sum misses that difference; it includes the sampling of the background rows.",
        limits="Interventional values break correlations between features: a feature's contribution is measured on "
               "combinations of values that may not occur together. The values describe the model relative to the "
               "reference population named below; another reference gives other values. Sampled permutations add "
               "noise that shrinks with n_samples. A boosted classifier's tree values are exact for its log-odds; in "
               "probability they are a rescaling, which adds up exactly but can share an interaction between features "
               "differently from the exact Shapley values of the probability.",
        cite="E. Štrumbelj, I. Kononenko. Explaining prediction models and individual predictions with feature "
             "contributions. Knowledge and Information Systems 41, 2014; S. M. Lundberg, S.-I. Lee. A Unified "
             "Approach to Interpreting Model Predictions. NeurIPS 2017; S. M. Lundberg et al. From local "
             "explanations to global understanding with explainable AI for trees. Nature Machine Intelligence 2, "
             "2020.",
    )
    Spec = ShapleySpec
    Results = (ShapleyResult,)
    Summaries = (ShapleySummary,)
    figures = {"max_efficiency_gap": "largest efficiency gap over decisions (the model's output units: probability, "
                                     "or a regression model's score)"}
    partial = "partials/methods/shapley.html.j2"
    attribution_field = "attributions"

    @classmethod
    def check(cls, spec: ShapleySpec, model) -> list[tuple[str, str, str]]:
        if spec.engine != "tree":
            return []
        trees = read_trees(model)
        if trees is None or isinstance(trees, str):
            why = trees or "it is not a tree ensemble"
            return [("engine", f"the tree engine cannot read {model.id!r} ({model.kind}): {why}",
                     "use engine: auto (it samples permutations for such a model) or batched")]
        return []

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        reference = model.outputs(background)
        expected = reference.mean(axis=0)
        scores = reference[:, model.positive_index] if self.spec.background_sample == "stratified" else None
        bg = background_rows(background, self.spec.background_rows, seed, scores=scores)
        proba = model.outputs(batch.X)
        targets = attribution_targets(model, proba)
        engine, extra, values = self.spec.engine, {}, None
        if engine in ("auto", "tree"):
            trees = read_trees(model)
            why = "it is not a tree ensemble" if trees is None else trees if isinstance(trees, str) else None
            if why is None:
                values, why = tree_values(trees, model, batch.X, bg, targets, proba, model.outputs(bg))
            if why is None:
                engine = "tree"
                extra = {"trees": trees.trees.count,
                         "tree_output": "log-odds, rescaled per background row" if trees.link == "logistic" else
                         ("score" if model.regression else "probability")}
                if progress:
                    progress(len(batch))
            elif engine == "tree":
                raise ExplanationError(f"model {model.id!r}: the tree engine cannot explain it: {why}",
                                       hint="use engine: auto or batched")
            else:
                engine, extra = "batched", {"tree_engine_declined": why} if trees is not None else {}
        if values is None:
            values = {"batched": self._batched, "reference": self._captum}[engine](model, batch, bg, targets, seed,
                                                                                 progress)
        results = []
        for k, row in enumerate(values):
            t = int(targets[k])
            total = float(row.sum())
            results.append(ShapleyResult(
                target=model.classes[t], attributions=dict(zip(model.space.names, row.tolist())),
                output=float(proba[k, t]), expected_value=float(expected[t]), attribution_sum=total,
                efficiency_gap=abs(total - (float(proba[k, t]) - float(expected[t])))))
        bound = self.spec.warn_efficiency_gap or (0.02 * float(reference[:, 0].std()) if model.regression else 0.02)
        parameters = {"engine": engine, "background_rows": len(bg), "reference_rows": len(background),
                      "warn_efficiency_gap": bound,
                      "background_sample": self.spec.background_sample if len(bg) < len(background) else "all rows"}
        if engine != "tree":
            parameters["n_samples"] = self.spec.n_samples
        return results, parameters | extra

    # --- engines: each returns (decisions, features) values towards each decision's target ---------------

    def _batched(self, model, batch, bg, targets, seed, progress) -> np.ndarray:
        import torch

        d, n, b = bg.shape[1], self.spec.n_samples, len(bg)
        f_bg = model.outputs(bg)
        f_x = model.outputs(batch.X)
        out = np.zeros((len(batch), d))
        # Work comes in segments (decision, first permutation, last permutation); a chunk of segments is scored
        # in one model call of at most about CHUNK_ROWS rows, whether that is many decisions or part of one.
        per_permutation = max(d - 1, 0) * b
        segments: list[tuple[int, int, int]] = []
        budget = max(1, CHUNK_ROWS // max(per_permutation, 1))
        for k in range(len(batch)):
            for s in range(0, n, budget):
                segments.append((k, s, min(s + budget, n)))
        chunks, current, rows = [], [], 0
        for seg in segments:
            if current and rows + (seg[2] - seg[1]) * per_permutation > CHUNK_ROWS:
                chunks.append(current)
                current, rows = [], 0
            current.append(seg)
            rows += (seg[2] - seg[1]) * per_permutation
        if current:
            chunks.append(current)

        perms = {}
        for k in range(len(batch)):
            generator = torch.Generator().manual_seed(decision_seed(seed, batch.ids[k]))
            perms[k] = np.array([torch.randperm(d, generator=generator).tolist() for _ in range(n)], dtype=np.int64)
        for chunk in chunks:
            blocks = [_switched(batch.X[k], bg, perms[k][s0:s1]) for k, s0, s1 in chunk] if d > 1 else []
            scores = model.outputs(np.concatenate(blocks)) if blocks else np.empty((0, f_bg.shape[1]))
            offset = 0
            for k, s0, s1 in chunk:
                t, m = int(targets[k]), s1 - s0
                chain = np.empty((m, d + 1, b))
                chain[:, 0] = f_bg[:, t]
                chain[:, d] = f_x[k, t]
                if d > 1:
                    size = m * per_permutation
                    chain[:, 1:d] = scores[offset:offset + size, t].reshape(m, d - 1, b)
                    offset += size
                steps = np.diff(chain, axis=1).mean(axis=2)  # (m, d): contribution of perms[k][s, j] at step j
                np.add.at(out[k], perms[k][s0:s1], steps)
                if s1 == n and progress:
                    progress(1)
        return out / n

    def _captum(self, model, batch, bg, targets, seed, progress) -> np.ndarray:
        import torch
        from captum.attr import ShapleyValueSampling

        def forward(inputs):
            return torch.from_numpy(model.outputs(inputs.detach().numpy()))

        svs = ShapleyValueSampling(forward)
        d = bg.shape[1]
        baselines = torch.from_numpy(np.ascontiguousarray(bg, dtype=np.float64))
        mask = torch.arange(d).unsqueeze(0)
        per_eval = max(1, min(d, CHUNK_ROWS // max(len(bg), 1)))
        out = np.zeros((len(batch), d))
        for k in range(len(batch)):
            torch.manual_seed(decision_seed(seed, batch.ids[k]))
            inputs = torch.from_numpy(np.repeat(batch.X[k:k + 1], len(bg), axis=0))
            attr = svs.attribute(inputs, baselines=baselines, target=int(targets[k]), feature_mask=mask,
                                 n_samples=self.spec.n_samples, perturbations_per_eval=per_eval)
            out[k] = attr.double().numpy().mean(axis=0)
            if progress:
                progress(1)
        return out

    # --- evidence ----------------------------------------------------------------------------------------

    def summarize(self, name, model_id, results, decision_ids, parameters):
        if not results:
            return None, []
        bound = parameters.get("warn_efficiency_gap") or self.spec.warn_efficiency_gap or 0.02
        flagged = [i for i, r in zip(decision_ids, results) if r.efficiency_gap > bound]
        summary = ShapleySummary(decisions=len(results), engine=parameters.get("engine", self.spec.engine),
                                 background_rows=parameters["background_rows"],
                                 reference_rows=parameters["reference_rows"],
                                 max_efficiency_gap=max(r.efficiency_gap for r in results),
                                 warn_efficiency_gap=bound, flagged=flagged)
        observations = []
        if flagged:
            observations.append(Observation(
                level="warn", code="shapley.efficiency", method=name, decisions=flagged, threshold=bound,
                setting=f"explanations[{name}].warn_efficiency_gap",
                message=f"{model_id}: Shapley values miss efficiency by more than {num(bound)} for {len(flagged)} "
                        f"decision(s) ({listed(flagged)}): the {parameters['background_rows']} background rows are "
                        "not representative of the reference population; increase background_rows."))
        return summary, observations


def _switched(x: np.ndarray, bg: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Every background row with the first 1 .. d-1 features of each permutation switched to the decision's
    values: (permutations x (d - 1) x background rows) rows, in that order."""
    n, d = perms.shape
    order = np.empty_like(perms)
    np.put_along_axis(order, perms, np.arange(d)[None, :].repeat(n, axis=0), axis=1)  # position of each feature
    switched = order[:, None, :] < np.arange(1, d)[None, :, None]  # (n, d - 1, d): feature switched at step t
    return np.where(switched[:, :, None, :], x[None, None, None, :], bg[None, None, :, :]).reshape(-1, d)
