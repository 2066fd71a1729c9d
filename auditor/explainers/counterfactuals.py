"""Counterfactual explanations (Mothilal, Sharma & Tan, 2020, "Explaining Machine Learning Classifiers
through Diverse Counterfactual Explanations", the DiCE method), for any model.

For each sampled decision the search looks for ``count`` diverse inputs, close to the decision, that the
model decides the other way, changing only the features that may change (``immutable`` features are
held fixed) within ``permitted_range``. For a regression model "the other way" is a score inside a target
range: ``desired_range``, or by default the favourable side of the model's decision cut-off (a decision
already there has none to find). Two engines:

- ``reference``: dice-ml's ``generate_counterfactuals`` per decision (random, genetic or kdtree search;
  for a regression model DiCE's regressor mode with the target range, an open end closed far outside the
  range of the model's scores on the reference data).
- ``batched`` (default for ``method: random``): DiCE's random search run for every decision at once.
  Per round each decision's 1,000 candidates change one more randomly chosen feature to a random value
  from its range, and the candidates of all decisions are scored in one model call; a decision stops
  after at least two rounds once it has ``count`` distinct candidates of the other class, ``count`` of
  which are drawn at random; DiCE's post-hoc sparsity step (binary search of each continuous feature
  back towards the decision, for changes within min(10% quantile, MAD) of the data) then runs for all
  counterfactuals together. DiCE's own loop spends almost all its time in pandas scalar indexing, not
  in the model; ``tests/test_counterfactual_engines.py`` checks that both engines give counterfactuals
  of the same quality (validity, proximity, sparsity, diversity) on the same decisions.

Missing values: a decision's missing value stays missing, unless the policy lists the feature as ``fillable``
(then a counterfactual may give it a value); no counterfactual turns a recorded value into a missing one.
dice-ml cannot take missing values, so on such data only the batched engine runs.

DiCE's constraint handling has known gaps (dice-ml #284, #426, #106, #441), so whatever the engine
every counterfactual is re-scored by the model and checked against the constraints here: only those
that really flip the decision and respect every constraint reach the evidence; the others are counted.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..datasets import python_label
from ..numbers import listed
from .base import (Batch, Explainer, ExplainerSpec, MethodSummary, Notes, Observation, Progress,
                   named_features)
from .dice_random import BatchedRandomSearch
from .dice_reference import at_target, dice_search

__all__ = ["Counterfactuals", "CounterfactualsResult", "CounterfactualsSpec", "CounterfactualsSummary"]


class CounterfactualsSpec(ExplainerSpec):
    type: Literal["counterfactuals"]
    method: Literal["random", "genetic", "kdtree"] = Field(
        default="random", description="DiCE's search: random sampling, a genetic algorithm, or nearest examples."
    )
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    for_: Literal["adverse", "all"] | None = Field(
        default=None, alias="for",
        description="Which decisions are searched: adverse (recourse: is there an actionable change that reverses "
        "an adverse decision?) or all. Default: adverse when the policy names an adverse outcome for the model "
        "(principal_reasons.adverse_class, or a regression model's decision cut-off), else all.")
    count: int = Field(default=3, ge=1, le=20, description="Counterfactuals asked for per decision.")
    immutable: list[str] = Field(default_factory=list, description="Features a counterfactual must not change.")
    desired: int | str = Field(
        default="any other",
        description="The decision a counterfactual must reach: a class label, or 'any other' (any class but the "
        "decision's; for a binary model, the other class). A decision already of the desired class has none to find. "
        "Classifiers only.")
    desired_range: list[float] | None = Field(
        default=None, min_length=2, max_length=2,
        description="Regression models only: [low, high], the scores a counterfactual must reach (low <= score <= "
        "high). Default: the favourable side of the model's decision cut-off (for adverse_if {above: 200}, scores "
        "up to 200). A decision already in the range has none to find.")
    fillable: list[str] = Field(
        default_factory=list,
        description="Features a counterfactual may give a value where the decision's is missing (by default a "
        "missing value stays missing; a recorded value never becomes missing).")
    permitted_range: dict[str, list[float | int | str]] = Field(
        default_factory=dict,
        description="Per feature: [min, max] for numeric features, or the allowed categories.",
    )
    engine: Literal["batched", "reference"] | None = Field(
        default=None,
        description="batched: DiCE's random search for every decision at once, one model call per round (the "
        "default for method random, tested for equal quality against dice-ml); reference: dice-ml's "
        "generate_counterfactuals per decision (the default, and the only engine, for genetic and kdtree).",
    )

    @field_validator("desired_range")
    @classmethod
    def _ascending(cls, value):
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"give [low, high] with low < high, got {value}")
        return value

    @model_validator(mode="after")
    def _default_engine(self):
        if self.engine is None:
            self.engine = "batched" if self.method == "random" else "reference"
        elif self.engine == "batched" and self.method != "random":
            raise ValueError(f"engine 'batched' implements DiCE's random search only; for method "
                             f"{self.method!r} write engine: reference (or leave engine out)")
        return self


class Change(BaseModel):
    before: float | str | None = Field(description="null: the value is missing.")
    after: float | str | None


class Counterfactual(BaseModel):
    changes: dict[str, Change] = Field(description="Only the features that differ from the decision.")
    predicted_label: int | str = Field(description="The new decision: a class; for a regression model the "
                                       "decision under its cut-off, or 'score' without one.")
    probability: float = Field(description="Model probability of the new predicted class; for a regression model "
                               "the counterfactual's score.")
    distance: float = Field(description="Mean per-feature distance to the decision (numeric: |Δ| / range; category: 0/1).")


class CounterfactualsResult(BaseModel):
    method: Literal["counterfactuals"] = "counterfactuals"
    original_label: int | str = Field(description="The decision's class (regression: as predicted_label).")
    target_range: list[float | None] | None = Field(
        default=None, description="Regression models only: the scores a counterfactual had to reach, [low, high] "
        "(null for an open end: the favourable side of a cut-off); null for a classifier.")
    asked: int = Field(description="Counterfactuals asked for: 0 when the decision already is the desired class "
                       "(regression: already in the target range), or is not adverse and only adverse decisions are "
                       "searched.")
    not_asked: Literal["not adverse", "already the desired outcome"] | None = Field(
        default=None, description="Why no counterfactual was asked for (None: the decision was searched).")
    recourse: bool | None = Field(
        default=None, description="An adverse decision that was searched: whether a valid counterfactual (an "
        "actionable change within the immutable features and permitted ranges) reverses it. None otherwise.")
    returned: int = Field(description="Counterfactuals the search returned.")
    dropped_not_flipping: int = Field(description="Returned but the model does not decide them the other way "
                                      "(regression: the score is outside the target range).")
    dropped_constraint_violations: int = Field(description="Flipped but changed an immutable feature or left a range.")
    counterfactuals: list[Counterfactual]
    valid: int | None = Field(default=None, description="Valid counterfactuals (those listed).")
    validity: float | None = Field(
        description="Valid counterfactuals / those the search returned (None when it returned none); valid: "
        "re-scored, it reaches the desired class (regression: a score in the target range) within the constraints. "
        "Whether any was found at all is 'found' in the summary, and 'recourse' here.")
    proximity: float | None = Field(description="Mean distance of valid counterfactuals (lower is closer).")
    sparsity: float | None = Field(description="Mean number of features changed (lower is simpler).")
    diversity: float | None = Field(description="Mean pairwise distance among valid counterfactuals (higher is more varied).")


class CounterfactualsSummary(MethodSummary):
    kind: Literal["counterfactuals"] = "counterfactuals"
    decisions: int
    scope: Literal["adverse", "all"] = Field(description="Which decisions were searched.")
    searched: int = Field(description="Decisions searched (asked for counterfactuals).")
    asked: int = Field(description="Counterfactuals asked for, over all decisions.")
    valid: int = Field(description="Valid counterfactuals found, over all decisions.")
    found: float | None = Field(description="Share of searched decisions with at least one valid counterfactual.")
    validity: float | None = Field(description="Share of the counterfactuals the search returned that are valid (None: "
                                   "it returned none).")
    min_validity: float | None = Field(description="Lowest validity of a decision the search returned any for.")
    adverse: int = Field(description="Adverse decisions searched (0 when the policy names no adverse outcome).")
    recourse_rate: float | None = Field(description="Share of the adverse decisions searched that have recourse: a "
                                        "valid counterfactual within the constraints (None: none searched).")
    no_recourse: list[int | str] = Field(description="Adverse decisions with no recourse found.")
    searched_space: str = Field(description="What the search could change: the features varied, the immutable "
                                "ones and the permitted ranges, in words.")
    mean_proximity: float | None = Field(description="Mean proximity of the decisions that have counterfactuals.")
    not_flipping: int = Field(description="Returned by the search but not changing the decision (removed).")
    constraint_violations: int = Field(description="Changing an immutable feature or leaving a range (removed).")
    none_found: list[int | str] = Field(description="Decisions with no valid counterfactual.")


class RecourseGroup(BaseModel):
    group: str
    adverse: int = Field(description="Adverse decisions of the group that were searched.")
    recourse: int = Field(description="Of those, decisions with recourse (a valid counterfactual).")
    recourse_rate: float | None = Field(description="recourse / adverse (None when the group has no adverse decision).")
    searched: int = Field(description="Decisions of the group that were searched.")
    found: float | None = Field(description="Share of them with a valid counterfactual.")


class Counterfactuals(Explainer):
    """Counterfactuals per decision (DiCE's method), re-scored and constraint-checked before they count."""

    scope = "local"
    regression_needs = "a target: desired_range, or a decision cut-off on the model"
    title = "Counterfactuals (DiCE method)"
    notes = Notes(
        computes="DiCE's method searches for a few diverse inputs, close to the decision, that the model decides the "
                 "other way (for a regression model: whose score reaches a target range, by default the favourable "
                 "side of the decision cut-off), changing only mutable features within their permitted ranges: for "
                 "method random, the auditor's batched engine (DiCE's random search for all decisions at once, tested for equal quality "
                 "against dice-ml); otherwise dice-ml itself (engine 'reference'). Every candidate is re-scored by "
                 "the model and checked against the immutable features and ranges; candidates that fail are removed "
                 "and counted.",
        reading="Each counterfactual lists only the features it changes. Validity is valid counterfactuals / asked; "
                "proximity the mean per-feature distance (numeric |change| / range, categorical 0 or 1; lower is "
                "closer); sparsity the features changed; diversity the mean distance between a decision's "
                "counterfactuals.",
        limits="A counterfactual shows one way the model's decision would change, not a causal or achievable path: "
               "features outside the policy's constraints may still be impossible to change in reality. Random "
               "search finds some counterfactuals, not the closest one.",
        cite="R. K. Mothilal, A. Sharma, C. Tan. Explaining Machine Learning Classifiers through Diverse "
             "Counterfactual Explanations. FAT* 2020.",
    )
    Spec = CounterfactualsSpec
    Results = (CounterfactualsResult,)
    Summaries = (CounterfactualsSummary,)
    figures = {
        "validity": "share of the counterfactuals the search returned that are valid",
        "min_validity": "lowest validity of a decision the search returned any for",
        "found": "share of searched decisions with at least one valid counterfactual",
        "recourse_rate": "share of adverse decisions searched that have recourse (a valid counterfactual)",
    }
    group_figures = ("recourse_rate", "found")
    partial = "partials/methods/counterfactuals.html.j2"

    @classmethod
    def reason_ranking(cls, result, adverse, names: list[str]) -> list[str]:
        """The features the valid counterfactuals change to reverse the decision, most often changed first."""
        counts: dict[str, int] = {}
        for cf in result.counterfactuals:
            for f in cf.changes:
                counts[f] = counts.get(f, 0) + 1
        return sorted(counts, key=lambda f: (-counts[f], names.index(f)))

    def summarize(self, name, model_id, results, decision_ids, parameters):
        if not results:
            return None, []
        prox = [r.proximity for r in results if r.proximity is not None]
        none = [i for i, r in zip(decision_ids, results) if r.asked and not r.counterfactuals]
        searched = [r for r in results if r.asked]
        measured = [r.validity for r in searched if r.validity is not None]
        returned = sum(r.returned for r in searched)
        adverse = [(i, r) for i, r in zip(decision_ids, results) if r.recourse is not None]
        stuck = [i for i, r in adverse if not r.recourse]
        summary = CounterfactualsSummary(
            decisions=len(results), scope=parameters.get("for", "all"), searched=len(searched),
            asked=sum(r.asked for r in results), valid=sum(len(r.counterfactuals) for r in results),
            found=sum(bool(r.counterfactuals) for r in searched) / len(searched) if searched else None,
            validity=sum(len(r.counterfactuals) for r in searched) / returned if returned else None,
            min_validity=min(measured) if measured else None,
            adverse=len(adverse), recourse_rate=(len(adverse) - len(stuck)) / len(adverse) if adverse else None,
            no_recourse=stuck, searched_space=parameters.get("searched", ""),
            mean_proximity=float(sum(prox) / len(prox)) if prox else None,
            not_flipping=sum(r.dropped_not_flipping for r in results),
            constraint_violations=sum(r.dropped_constraint_violations for r in results), none_found=none)
        observations = []
        if stuck:
            observations.append(Observation(
                level="warn", code="counterfactuals.no_recourse", method=name, decisions=stuck,
                message=f"{model_id}: no recourse found for {len(stuck)} of {len(adverse)} adverse decision(s) "
                        f"({listed(stuck)}): no change the search could make ({summary.searched_space}) reverses "
                        "them."))
            none = [i for i in none if i not in stuck]  # said above, as recourse
        if summary.constraint_violations:
            observations.append(Observation(
                level="warn", code="counterfactuals.constraint_violations", method=name,
                decisions=[i for i, r in zip(decision_ids, results) if r.dropped_constraint_violations],
                message=f"{model_id}: the search returned {summary.constraint_violations} counterfactual(s) that changed "
                        "an immutable feature or left a permitted range; they were removed and are not shown."))
        if none:
            observations.append(Observation(
                level="info", code="counterfactuals.none_found", method=name, decisions=none,
                message=f"{model_id}: no valid counterfactual was found for decision(s) {listed(none)} within the "
                        "constraints."))
        return summary, observations

    def by_group(self, results, groups) -> list[RecourseGroup]:
        out = []
        for g in sorted(set(map(str, groups)), key=str):
            mine = [r for r, label in zip(results, groups) if str(label) == g]
            adverse = [r for r in mine if r.recourse is not None]
            searched = [r for r in mine if r.asked]
            helped = sum(bool(r.recourse) for r in adverse)
            out.append(RecourseGroup(
                group=g, adverse=len(adverse), recourse=helped,
                recourse_rate=helped / len(adverse) if adverse else None, searched=len(searched),
                found=sum(bool(r.counterfactuals) for r in searched) / len(searched) if searched else None))
        return out

    @classmethod
    def check(cls, spec: CounterfactualsSpec, model) -> list[tuple[str, str, str]]:
        """Problems with this spec for a dataset's features: (field, message, fix)."""
        problems = []
        space = model.space
        names = space.names
        for key in ("immutable", "fillable"):
            for j, name in enumerate(getattr(spec, key)):
                if name not in names:
                    problems.append((f"{key}[{j}]", f"unknown feature {name!r}", f"use one of: {', '.join(names)}"))
        problems += _target_problems(spec, model)
        if spec.for_ == "adverse" and getattr(model, "adverse", None) is None:
            problems.append(("for", f"counterfactuals for adverse decisions need the model's adverse outcome, and the "
                             f"policy names none for {model.id!r}",
                             "add principal_reasons: {adverse_class: <label>} (a regression model: a decision "
                             "cut-off), or write for: all"))
        missing = getattr(model, "missing_features", ())
        if missing and spec.engine == "reference":
            problems.append(("engine", f"dice-ml cannot search data with missing values, and "
                             f"{named_features(missing)} have some",
                             "use method: random with the batched engine (it keeps missing values missing)"))
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

    def targets(self, model, proba: np.ndarray) -> np.ndarray:
        """Per decision the class index to reach, or ``-1 - c`` for any class but its own ``c``; for a regression
        model the score range to reach, ``[low, high]`` per row (an open end infinite)."""
        if model.regression:
            return np.tile(self.target_range(model), (len(proba), 1))
        if self.spec.desired != "any other":
            return np.full(len(proba), model.classes.index(python_label(self.spec.desired)))
        return _any_other(proba.argmax(axis=1), len(model.classes))

    def target_range(self, model) -> np.ndarray:
        """A regression model's scores to reach: ``desired_range``, else the favourable side of its cut-off
        (a score equal to the cut-off is favourable)."""
        if self.spec.desired_range is not None:
            return np.array(self.spec.desired_range, dtype=np.float64)
        decision = getattr(model.spec, "decision", None)
        if decision is None:  # refused by check() at validate; a clear error for direct callers
            raise ValueError(f"model {model.id!r} is a regression model without a decision cut-off: give the "
                             "counterfactuals a desired_range")
        cut = float(decision.adverse_if.value)
        return np.array([-np.inf, cut] if decision.adverse_if.side == "above" else [cut, np.inf])

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        names = model.space.names
        vary = [n for n in names if n not in self.spec.immutable]
        spans = _spans(background)
        proba = model.outputs(batch.X)
        targets = self.targets(model, proba)
        adverse = getattr(model, "adverse", None)
        scope = self.spec.for_ or ("adverse" if adverse is not None else "all")
        is_adverse = (np.array([_label(model, p) == adverse.label for p in proba], dtype=bool)
                      if adverse is not None else np.zeros(len(proba), dtype=bool))
        ask = ~at_target(model, proba, targets) & (is_adverse if scope == "adverse" else True)
        rows = np.flatnonzero(ask)  # only these are searched: a decision's search depends on its id alone
        part = Batch(X=batch.X[rows], ids=[batch.ids[k] for k in rows], y=None if batch.y is None else batch.y[rows])
        if progress and len(rows) < len(batch):
            progress(len(batch) - len(rows))
        if self.spec.engine == "batched":
            found = BatchedRandomSearch(model, background, vary, self.spec.permitted_range, self.spec.fillable).run(
                part, proba[rows], self.spec.count, seed, progress, targets[rows])
        else:
            aim = self.target_range(model) if model.regression else None
            found = dice_search(self.spec, aim, model, part, background, vary, seed, progress, targets[rows],
                                proba[rows])
        candidates = [np.empty((0, len(names)))] * len(batch)
        for k, rows_found in zip(rows, found):
            candidates[k] = rows_found
        # every decision's candidates re-scored in one model call: a call per decision costs a pipeline its fixed
        # overhead each time. Trees, and networks (scored in fixed blocks), score a row the same whatever rows share
        # the call; a model scored by a matrix product (a linear model) can differ in the last bits, as in the search
        ends = np.cumsum([len(c) for c in candidates])
        scores = model.outputs(np.concatenate(candidates)) if len(ends) and ends[-1] else None
        results = []
        for k, X_cf in enumerate(candidates):
            scored = None if scores is None else scores[ends[k] - len(X_cf):ends[k]]
            r = self._validate(model, batch.X[k], proba[k], X_cf, spans, targets[k], searched=bool(ask[k]),
                               scores=scored)
            if not ask[k] and r.not_asked is None:
                r.not_asked = "not adverse"
            if ask[k] and is_adverse[k]:
                r.recourse = bool(r.counterfactuals)
            results.append(r)
        return results, {"features_to_vary": vary, "engine": self.spec.engine, "for": scope,
                         "searched": self._space_text(model, vary)}

    def _space_text(self, model, vary: list[str]) -> str:
        """What the search could change, for the report: features varied, held fixed, and their ranges."""
        labels = dict(zip(model.space.names, model.space.labels))
        ranges = [f"{labels[n]} within {', '.join(map(str, v)) if isinstance(v[0], str) or len(v) != 2 else f'{v[0]}–{v[1]}'}"
                  for n, v in self.spec.permitted_range.items()]
        text = f"{self.spec.method} search over {len(vary)} feature(s)"
        if self.spec.immutable:
            text += f", holding {', '.join(labels[n] for n in self.spec.immutable)} fixed"
        return text + (f"; {'; '.join(ranges)}" if ranges else "") + f"; {self.spec.count} asked per decision"

    def _validate(self, model, x: np.ndarray, p: np.ndarray, X_cf: np.ndarray, spans,
                  target=None, searched: bool = True, scores: np.ndarray | None = None) -> CounterfactualsResult:
        """Re-score the candidates ``X_cf`` (feature-space rows) and keep those that reach the target (a class, any
        but the decision's for ``-1 - c``, or a regression model's score range) and obey the constraints.
        ``scores``: the model's outputs for ``X_cf`` when already computed."""
        space = model.space
        if target is None:
            target = int(_any_other(int(p.argmax()), len(model.classes)))
        target = np.asarray(target)
        valid, not_flipping, violations = [], 0, 0
        done = bool(at_target(model, p[None], target[None])[0])
        if done:  # already the desired class (or score): nothing to find
            X_cf = X_cf[:0]
        if len(X_cf):
            proba = model.outputs(X_cf) if scores is None else scores
            reached = at_target(model, proba, np.repeat(target[None], len(proba), axis=0))
            for row, pr, ok in zip(X_cf, proba, reached):
                if not ok:
                    not_flipping += 1
                elif not self._respects_constraints(space, x, row):
                    violations += 1
                else:
                    valid.append((row, pr))
        cfs = []
        for row, pr in valid:
            changed = np.flatnonzero(~_same_values(x, row)).tolist()
            cfs.append(Counterfactual(
                changes={space.names[i]: Change(before=_value(space, i, x[i]), after=_value(space, i, row[i]))
                         for i in changed},
                predicted_label=_label(model, pr),
                probability=float(pr[0] if model.regression else pr.max()),
                distance=_distance(space, x, row, spans),
            ))
        rows = [r for r, _ in valid]
        asked = 0 if done or not searched else self.spec.count
        return CounterfactualsResult(
            original_label=_label(model, p),
            target_range=[None if np.isinf(v) else float(v) for v in target] if model.regression else None,
            asked=asked,
            not_asked="already the desired outcome" if done else None,
            returned=len(X_cf),
            dropped_not_flipping=not_flipping,
            dropped_constraint_violations=violations,
            counterfactuals=cfs,
            valid=len(cfs),
            validity=len(cfs) / len(X_cf) if len(X_cf) else None,
            proximity=float(np.mean([c.distance for c in cfs])) if cfs else None,
            sparsity=float(np.mean([len(c.changes) for c in cfs])) if cfs else None,
            diversity=float(np.mean([_distance(space, a, b, spans) for a, b in combinations(rows, 2)]))
            if len(rows) > 1 else None,
        )

    def _respects_constraints(self, space, x: np.ndarray, row: np.ndarray) -> bool:
        filled = np.isnan(x) & ~np.isnan(row)
        if (np.isnan(row) & ~np.isnan(x)).any():  # a recorded value never becomes missing
            return False
        if any(space.names[i] not in self.spec.fillable for i in np.flatnonzero(filled)):
            return False
        for name in self.spec.immutable:
            i = space.names.index(name)
            if not _same(x[i], row[i]):
                return False
        for name, allowed in self.spec.permitted_range.items():
            i = space.names.index(name)
            if np.isnan(row[i]):  # left missing, as the decision's value was: no value to be out of range
                continue
            if space.features[i].type == "numeric":
                if not (allowed[0] - 1e-9 <= row[i] <= allowed[1] + 1e-9):
                    return False
            elif space.categories[i][int(round(row[i]))] not in allowed:
                return False
        return True


def _target_problems(spec: CounterfactualsSpec, model) -> list[tuple[str, str, str]]:
    """What a counterfactual must reach, checked against the model: a class of a classifier, a score range
    (or a cut-off's favourable side) of a regression model."""
    if model.regression:
        problems = []
        if spec.desired != "any other":
            problems.append(("desired", f"model {model.id!r} is a regression model: it has no class to reach",
                             "remove desired, and give desired_range: [low, high] for the score"))
        if spec.desired_range is None and getattr(model.spec, "decision", None) is None:
            problems.append(("desired_range", "a regression model's counterfactuals need desired_range, or a decision "
                             f"cut-off on the model, and model {model.id!r} has neither",
                             f"give desired_range: [low, high], or decision: {{adverse_if: {{above: <score>}}}} on "
                             f"model {model.id!r}"))
        return problems
    if spec.desired_range is not None:
        return [("desired_range", f"desired_range is for regression models, and {model.id!r} is a classifier",
                 "remove desired_range (desired: <class> names the class to reach)")]
    labels = [python_label(c) for c in model.classes]
    if spec.desired != "any other" and python_label(spec.desired) not in labels:
        return [("desired", f"{spec.desired!r} is not a class of model {model.id!r} ({labels})",
                 f"use one of: {', '.join(map(str, labels))}, or 'any other'")]
    if spec.desired == "any other" and spec.engine == "reference" and len(labels) > 2:
        return [("desired", f"dice-ml searches towards one class, and model {model.id!r} has {len(labels)}",
                 f"name the class: desired: <one of {', '.join(map(str, labels))}>, or use the batched engine")]
    return []


def _label(model, out: np.ndarray) -> int | str:
    """The decision an output row makes: its class, or a regression score's decision under the cut-off ('score'
    without one)."""
    if not model.regression:
        return model.classes[int(out.argmax())]
    decision = getattr(model.spec, "decision", None)
    return decision.labels([out[0]])[0] if decision is not None else model.classes[0]


def _any_other(original, classes: int):
    """The target 'any class but the decision's': the other class of a binary model, else ``-1 - original``."""
    return 1 - original if classes == 2 else -1 - original


def _same(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b):  # missing is the same state as missing only
        return bool(np.isnan(a) and np.isnan(b))
    return abs(a - b) <= 1e-9 * max(1.0, abs(a))


def _value(space, i: int, v: float) -> float | str | None:
    if np.isnan(v):
        return None
    return space.display_value(i, v) if space.features[i].type == "categorical" else float(v)


def _spans(background: np.ndarray) -> np.ndarray:
    """Each numeric feature's range over its recorded values (1 where it has one value or none)."""
    recorded = ~np.isnan(background)
    spans = np.array([np.ptp(c[r]) if r.any() else 0.0 for c, r in zip(background.T, recorded.T)])
    spans[spans == 0] = 1.0
    return spans


def _distance(space, a: np.ndarray, b: np.ndarray, spans: np.ndarray) -> float:
    """Mean per-feature distance: a category changed, or a missing value filled, counts 1; a number |Δ| / range."""
    discrete = np.array([f.type == "categorical" for f in space.features]) | np.isnan(a) | np.isnan(b)
    parts = np.where(discrete, (~_same_values(a, b)).astype(np.float64), np.abs(a - b) / spans)
    return float(np.mean(parts))


def _same_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_same` feature by feature."""
    gone_a, gone_b = np.isnan(a), np.isnan(b)
    close = np.abs(a - b) <= 1e-9 * np.maximum(1.0, np.abs(a))
    return np.where(gone_a | gone_b, gone_a & gone_b, close)
