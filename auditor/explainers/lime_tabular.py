"""LIME for tabular data (Ribeiro, Singh & Guestrin, 2016, "Why Should I Trust You?") via the
``lime`` package, for any model.

LIME perturbs a decision's features, scores the perturbations with the model, weights them by an
exponential kernel on their distance to the decision, and fits a weighted ridge regression whose
coefficients are the explanation. The R² of that local fit (``score``) and the kernel width are
recorded for every decision: a low score means the linear explanation does not describe the model
near that decision.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from .base import Explainer, ExplainerSpec, Progress, attribution_targets, decision_seed

__all__ = ["Lime", "LimeSpec", "LimeResult"]


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
    discretizer: Literal["quartile", "decile", "entropy"] = "quartile"
    repeats: int = Field(
        default=1, ge=1, le=50,
        description="Explain each decision this many times with different seeds and record how stable its top "
        "features are (mean pairwise Jaccard overlap of the top 5). The first run is the explanation shown.",
    )


class LimeResult(BaseModel):
    method: Literal["lime"] = "lime"
    target: int | str = Field(description="Class whose probability the local model explains.")
    weights: dict[str, float] = Field(description="Local linear weight per feature, in probability units.")
    conditions: dict[str, str] = Field(description="The feature condition each weight applies to.")
    intercept: float
    local_prediction: float = Field(description="The local model's prediction at the decision.")
    model_prediction: float = Field(description="The model's probability of the target class.")
    score: float = Field(description="R² of the weighted local fit (1 = perfect).")
    stability: float | None = Field(
        default=None, description="With repeats: mean pairwise Jaccard overlap of the top-5 features across runs."
    )
    unstable_top: list[str] | None = Field(
        default=None, description="With repeats: top-5 features that did not appear in every run's top 5."
    )


class Lime(Explainer):
    """LIME tabular explanations, one ``explain_instance`` per decision, each seeded by its id."""

    scope = "local"
    title = "LIME (local surrogate)"
    Spec = LimeSpec
    Result = LimeResult

    def kernel_width(self, n_features: int) -> float:
        return self.spec.kernel_width or 0.75 * math.sqrt(n_features)

    def explain(self, model, batch, *, background, seed, progress: Progress | None = None):
        from lime.lime_tabular import LimeTabularExplainer

        space = model.space
        width = self.kernel_width(len(space.features))
        explainer = LimeTabularExplainer(
            background,
            mode="classification",
            feature_names=space.labels,
            categorical_features=space.categorical_indices,
            categorical_names={i: [str(c) for c in space.categories[i]] for i in space.categorical_indices},
            class_names=model.class_names,
            kernel_width=width,
            discretize_continuous=self.spec.discretize_continuous,
            discretizer=self.spec.discretizer,
            training_labels=None,
            random_state=seed,
        )
        decisions = batch.X
        proba = model.predict_proba(decisions)
        targets = attribution_targets(model, proba)
        num_features = self.spec.num_features or len(space.features)
        results = []
        for k, row in enumerate(decisions):
            t = int(targets[k])

            def run(repeat: int):
                _reseed(explainer, decision_seed(seed + repeat, batch.ids[k]))
                with contextlib.redirect_stdout(io.StringIO()):
                    return explainer.explain_instance(row, model.predict_proba, labels=(t,), num_features=num_features,
                                                      num_samples=self.spec.num_samples)

            exp = run(0)
            stability = unstable = None
            if self.spec.repeats > 1:
                tops = [_top(exp, t)] + [_top(run(r), t) for r in range(1, self.spec.repeats)]
                pairs = [(a, b) for i, a in enumerate(tops) for b in tops[i + 1:]]
                stability = float(np.mean([len(a & b) / len(a | b) for a, b in pairs]))
                common = set.intersection(*tops)
                unstable = sorted(space.names[j] for j in tops[0] - common)
            weights, conditions = {}, {}
            for (j, w), (text, _) in zip(exp.as_map()[t], exp.as_list(label=t)):
                name = space.names[j]
                weights[name] = float(w)
                conditions[name] = text
            results.append(
                LimeResult(
                    target=model.classes[t],
                    weights=weights,
                    conditions=conditions,
                    intercept=float(exp.intercept[t]),
                    local_prediction=float(np.ravel(exp.local_pred)[0]),
                    model_prediction=float(proba[k, t]),
                    score=float(exp.score),
                    stability=stability,
                    unstable_top=unstable,
                )
            )
            if progress:
                progress(1)
        return results, {"kernel_width": width, "num_features": num_features, "repeats": self.spec.repeats}


def _top(exp, label: int, k: int = 5) -> set[int]:
    """Indices of the k features with the largest |weight|."""
    ranked = sorted(exp.as_map()[label], key=lambda jw: -abs(jw[1]))
    return {j for j, _ in ranked[:k]}


def _reseed(explainer, seed: int) -> None:
    """Give the explainer, its sampler and its discretiser one fresh RandomState (lime #389)."""
    state = np.random.RandomState(seed)
    explainer.random_state = state
    explainer.base.random_state = state
    if explainer.discretizer is not None:
        explainer.discretizer.random_state = state
