"""Counterfactual explanations via DiCE (Mothilal, Sharma & Tan, 2020, "Explaining Machine Learning
Classifiers through Diverse Counterfactual Explanations"), for any model.

For each sampled decision DiCE searches for ``count`` diverse inputs, close to the decision, that the
model decides the other way, changing only the features that may change (``immutable`` features are
held fixed) within ``permitted_range``. DiCE's own constraint handling has known gaps (dice-ml
#284, #426, #106, #441), so every counterfactual is re-scored by the model and checked against the
constraints here: only those that really flip the decision and respect every constraint reach the
evidence; the others are counted.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import warnings
from itertools import combinations
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from .base import Batch, Explainer, ExplainerSpec, Progress, decision_seed

__all__ = ["Counterfactuals", "CounterfactualsSpec", "CounterfactualsResult"]


class CounterfactualsSpec(ExplainerSpec):
    type: Literal["counterfactuals"]
    method: Literal["random", "genetic", "kdtree"] = Field(
        default="random", description="DiCE's search: random sampling, a genetic algorithm, or nearest examples."
    )
    count: int = Field(default=3, ge=1, le=20, description="Counterfactuals asked for per decision.")
    immutable: list[str] = Field(default_factory=list, description="Features a counterfactual must not change.")
    permitted_range: dict[str, list[float | int | str]] = Field(
        default_factory=dict,
        description="Per feature: [min, max] for numeric features, or the allowed categories.",
    )


class Change(BaseModel):
    before: float | str
    after: float | str


class Counterfactual(BaseModel):
    changes: dict[str, Change] = Field(description="Only the features that differ from the decision.")
    predicted_label: int | str
    probability: float = Field(description="Model probability of the new predicted class.")
    distance: float = Field(description="Mean per-feature distance to the decision (numeric: |Δ| / range; category: 0/1).")


class CounterfactualsResult(BaseModel):
    method: Literal["counterfactuals"] = "counterfactuals"
    original_label: int | str
    asked: int
    returned: int = Field(description="Counterfactuals DiCE returned.")
    dropped_not_flipping: int = Field(description="Returned but the model does not decide them the other way.")
    dropped_constraint_violations: int = Field(description="Flipped but changed an immutable feature or left a range.")
    counterfactuals: list[Counterfactual]
    validity: float = Field(description="Valid counterfactuals / asked.")
    proximity: float | None = Field(description="Mean distance of valid counterfactuals (lower is closer).")
    sparsity: float | None = Field(description="Mean number of features changed (lower is simpler).")
    diversity: float | None = Field(description="Mean pairwise distance among valid counterfactuals (higher is more varied).")


class Counterfactuals(Explainer):
    """DiCE counterfactuals per decision, re-scored and constraint-checked before they count."""

    scope = "local"
    title = "Counterfactuals (DiCE)"
    Spec = CounterfactualsSpec
    Result = CounterfactualsResult

    @classmethod
    def check(cls, spec: CounterfactualsSpec, model) -> list[tuple[str, str, str]]:
        """Problems with this spec for a dataset's features: (field, message, fix)."""
        problems = []
        space = model.space
        names = space.names
        for j, name in enumerate(spec.immutable):
            if name not in names:
                problems.append((f"immutable[{j}]", f"unknown feature {name!r}", f"use one of: {', '.join(names)}"))
        for name, allowed in spec.permitted_range.items():
            field = f"permitted_range.{name}"
            if name not in names:
                problems.append((field, f"unknown feature {name!r}", f"use one of: {', '.join(names)}"))
                continue
            i = names.index(name)
            f = space.features[i]
            if f.type == "numeric":
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in allowed)
                if len(allowed) != 2 or not numeric:
                    problems.append((field, f"{name!r} is numeric: give [min, max] as two numbers, got {allowed}",
                                     "write e.g. [6, 72]"))
                elif allowed[0] > allowed[1]:
                    problems.append((field, f"min {allowed[0]} is above max {allowed[1]}", "swap them"))
            else:
                unknown = [v for v in allowed if v not in space.categories[i]]
                if unknown or not allowed:
                    problems.append((field, f"{name!r} is categorical; {unknown or allowed} are not among its "
                                     f"categories", f"list some of: {', '.join(map(str, space.categories[i]))}"))
            if name in spec.immutable:
                problems.append((field, f"{name!r} is both immutable and given a permitted range",
                                 "remove one of the two"))
        return problems

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        import dice_ml

        from ..errors import ExplanationError

        if len(model.classes) != 2:
            raise ExplanationError(f"counterfactuals: model {model.id!r} has {len(model.classes)} classes; "
                                   "this version supports binary models ('the other class')")
        space = model.space
        names = space.names
        numeric = [f.name for f in space.features if f.type == "numeric"]
        # Whole-number features stay integers so DiCE proposes whole numbers (no "1.8 dependents");
        # the rest are float64 (DiCE fails on float32 frames under pandas 3).
        whole = {n for n in numeric if np.all(np.mod(background[:, names.index(n)], 1) == 0)}
        frame = _typed(space.decode(background), numeric, whole)
        frame["__outcome__"] = model.predict_proba(background).argmax(axis=1)
        data = dice_ml.Data(dataframe=frame, continuous_features=numeric, outcome_name="__outcome__")
        dice_model = dice_ml.Model(model=_DiceModel(model), backend="sklearn", model_type="classifier")
        dice = dice_ml.Dice(data, dice_model, method=self.spec.method)
        vary = [n for n in names if n not in self.spec.immutable]
        ranges = {n: list(v) for n, v in self.spec.permitted_range.items()}
        spans = np.ptp(background, axis=0)
        spans[spans == 0] = 1.0

        proba = model.predict_proba(batch.X)
        results = []
        for k in range(len(batch)):
            query = _typed(space.decode(batch.X[k : k + 1]), numeric, whole)
            s = decision_seed(seed, batch.ids[k])
            random.seed(s)
            np.random.seed(s)
            kwargs = {"random_seed": s} if self.spec.method == "random" else {}
            with _quiet():
                try:
                    out = dice.generate_counterfactuals(
                        query, total_CFs=self.spec.count, desired_class="opposite", features_to_vary=vary,
                        permitted_range=ranges or None, posthoc_sparsity_algorithm="binary", verbose=False, **kwargs)
                    found = out.cf_examples_list[0].final_cfs_df
                except Exception as exc:  # DiCE raises when it finds nothing ("No counterfactuals found")
                    if "no counterfactuals found" not in str(exc).lower():
                        raise
                    found = None
            candidates = found.drop(columns="__outcome__") if found is not None and len(found) else query.iloc[:0]
            results.append(self._validate(model, batch.X[k], proba[k], candidates, spans))
            if progress:
                progress(1)
        return results, {"features_to_vary": vary}

    def _validate(self, model, x: np.ndarray, p: np.ndarray, candidates, spans) -> CounterfactualsResult:
        space = model.space
        original = int(p.argmax())
        valid, not_flipping, violations = [], 0, 0
        if len(candidates):
            X_cf = space.encode(candidates[space.names])
            proba = model.predict_proba(X_cf)
            for row, pr in zip(X_cf, proba):
                if int(pr.argmax()) == original:
                    not_flipping += 1
                elif not self._respects_constraints(space, x, row):
                    violations += 1
                else:
                    valid.append((row, pr))
        cfs = []
        for row, pr in valid:
            changed = [i for i in range(len(x)) if not _same(x[i], row[i])]
            cfs.append(Counterfactual(
                changes={space.names[i]: Change(before=_value(space, i, x[i]), after=_value(space, i, row[i]))
                         for i in changed},
                predicted_label=model.classes[int(pr.argmax())],
                probability=float(pr.max()),
                distance=_distance(space, x, row, spans),
            ))
        rows = [r for r, _ in valid]
        return CounterfactualsResult(
            original_label=model.classes[original],
            asked=self.spec.count,
            returned=len(candidates),
            dropped_not_flipping=not_flipping,
            dropped_constraint_violations=violations,
            counterfactuals=cfs,
            validity=len(cfs) / self.spec.count,
            proximity=float(np.mean([c.distance for c in cfs])) if cfs else None,
            sparsity=float(np.mean([len(c.changes) for c in cfs])) if cfs else None,
            diversity=float(np.mean([_distance(space, a, b, spans) for a, b in combinations(rows, 2)]))
            if len(rows) > 1 else None,
        )

    def _respects_constraints(self, space, x: np.ndarray, row: np.ndarray) -> bool:
        for name in self.spec.immutable:
            i = space.names.index(name)
            if not _same(x[i], row[i]):
                return False
        for name, allowed in self.spec.permitted_range.items():
            i = space.names.index(name)
            if space.features[i].type == "numeric":
                if not (allowed[0] - 1e-9 <= row[i] <= allowed[1] + 1e-9):
                    return False
            elif space.categories[i][int(round(row[i]))] not in allowed:
                return False
        return True


class _DiceModel:
    """What DiCE's sklearn backend calls: predict/predict_proba on DataFrames of original values."""

    def __init__(self, model) -> None:
        self.model = model

    def predict_proba(self, frame):
        return self.model.predict_proba(self.model.space.encode(frame[self.model.space.names]))

    def predict(self, frame):
        return self.predict_proba(frame).argmax(axis=1)


def _typed(frame, numeric: list[str], whole: set[str]):
    for name in numeric:
        frame[name] = np.rint(frame[name]).astype(np.int64) if name in whole else frame[name].astype(np.float64)
    return frame


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a))


def _value(space, i: int, v: float) -> float | str:
    return space.display_value(i, v) if space.features[i].type == "categorical" else float(v)


def _distance(space, a: np.ndarray, b: np.ndarray, spans: np.ndarray) -> float:
    parts = [float(not _same(a[i], b[i])) if f.type == "categorical" else abs(a[i] - b[i]) / spans[i]
             for i, f in enumerate(space.features)]
    return float(np.mean(parts))


@contextlib.contextmanager
def _quiet():
    """DiCE prints tqdm bars and warnings for every decision; keep the audit's output readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)
