"""Protected characteristics: how a model's decisions fall on the groups of each protected feature, and which
other features may stand in for one (ECOA / Regulation B 1002.2(z), 1002.6; EEOC Uniform Guidelines 1607.4(D)).

The policy's ``protected:`` entries name the features (each with the basis the report shows, and bins for a
numeric one); ``fairness:`` holds the bounds. Per audited tabular (model, dataset) pair, on every row of the
audited dataset:

- **the outcome counted**: for a classifier, the *favourable* outcome, every class but
  ``principal_reasons.adverse_class``, when the policy names one; else the model's positive class, the outcome of
  interest. A regression model with a decision cut-off: its favourable decision (the score not on the adverse
  side). :class:`Fairness` says which (``kind``, ``outcome``, ``note``);
- per group: the share of rows decided as that outcome (the selection rate), with its count, n and a 95% Wilson
  interval; the **adverse impact ratio**, the group's rate over the highest group's (the four-fifths rule flags
  a ratio below ``fairness.min_impact_ratio``, 0.8 by default: an observation ``fairness.four_fifths``);
- per group: the true-positive rate (of the rows whose true outcome is the outcome, the share decided so: equal
  opportunity) and the false-positive rate (of the others, the share decided so), each with n and interval, and
  their largest differences between groups; a regression model's true outcome is the side of the cut-off its
  true value falls on;
- per group, for classifiers: calibration, the mean predicted probability of the outcome against the observed
  share of it;
- **possible proxies**: every other feature's association with the protected one, as Cramér's V of their
  contingency table with the small-sample bias correction of Bergsma (2013) (plain V grows with the table's size
  over the rows even between independent features; both are recorded). Numeric features fall into
  ``fairness.proxy_bins`` quantile bins, a numeric protected feature into its groups, and a missing value is a
  category of its own. A feature at ``fairness.proxy_cramers_v`` (0.3) or above is a possible proxy (an
  observation ``fairness.proxy``). Measured on the audited dataset, or with ``proxy_data: reference`` on the
  reference (background) data; :attr:`Fairness.proxy_dataset` says which.

Thresholds name ``fairness.adverse_impact_ratio`` (the lowest ratio), ``fairness.tpr_gap`` and
``fairness.fpr_gap``, by a protected feature or, without ``by``, the worst of them (see :data:`FIGURES`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .explainers.base import Observation
from .intervals import Interval, difference, ratio, wilson
from .numbers import listed, num, pct

__all__ = ["FIGURES", "Association", "Fairness", "FairnessSpec", "GroupFairness", "Outcome", "Proportion",
           "ProtectedFairness", "ProtectedSpec", "assess_fairness", "cramers_v", "decision_outcome"]

Label = Union[int, str]

FIGURES = {"adverse_impact_ratio": ("min_impact_ratio", min), "tpr_gap": ("tpr_gap", max),
           "fpr_gap": ("fpr_gap", max)}
"""Threshold metrics ``fairness.<name>``: the field of :class:`ProtectedFairness` each reads (its interval is the
field ``<field>_ci``), and which value of several protected features is the worst (the lowest ratio, the largest
gap)."""


class ProtectedSpec(BaseModel):
    """One protected characteristic under ``protected:`` in the policy."""

    model_config = ConfigDict(extra="forbid")

    feature: str = Field(min_length=1, description="A feature of every audited tabular dataset.")
    basis: str = Field(min_length=1, description="The prohibited basis as the report names it, e.g. national "
                       "origin (ECOA / Reg B 1002.2(z)).")
    bins: list[float] | None = Field(default=None, min_length=1, description="Numeric features: the groups' edges, "
                                     "e.g. [25, 40, 60] gives < 25, 25 to < 40, 40 to < 60, >= 60.")

    @field_validator("bins")
    @classmethod
    def _increasing(cls, value):
        if value is not None and any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("bin edges must increase, e.g. [25, 40, 60]")
        return value


class FairnessSpec(BaseModel):
    """Where the fairness checks raise observations."""

    model_config = ConfigDict(extra="forbid")

    min_impact_ratio: float = Field(default=0.8, gt=0, le=1, description="Four-fifths rule (29 CFR 1607.4(D)): a "
                                    "group whose rate of the favourable outcome is below this share of the highest "
                                    "group's is flagged.")
    proxy_cramers_v: float = Field(default=0.3, gt=0, le=1, description="A feature whose association with a "
                                   "protected one (bias-corrected Cramér's V) is at least this is a possible proxy.")
    proxy_bins: int = Field(default=5, ge=2, le=20, description="Numeric features: quantile bins for the proxy check.")
    min_rate_rows: int = Field(default=10, ge=1, description="A group's true- or false-positive rate taken over fewer "
                               "rows than this is shown, but left out of the rate gaps (a rate over 2 rows is noise).")
    proxy_data: Literal["audited", "reference"] = Field(default="audited", description="Where proxies are measured: "
                                                        "the audited dataset, or the reference (background) data.")


class Proportion(BaseModel):
    """A share of rows, with its 95% Wilson interval."""

    count: int
    n: int
    rate: float | None = Field(description="count / n; None when n is 0.")
    low: float | None = Field(description="Lower end of the 95% Wilson score interval.")
    high: float | None = Field(description="Upper end of the 95% Wilson score interval.")


class GroupFairness(BaseModel):
    group: str
    rows: int
    decided: Proportion = Field(description="Rows decided as the outcome (the selection rate).")
    impact_ratio: float | None = Field(description="decided.rate over the highest group's (None when that is 0).")
    tpr: Proportion = Field(description="Of the rows whose true outcome is the outcome, those decided so.")
    fpr: Proportion = Field(description="Of the rows whose true outcome is not the outcome, those decided so.")
    mean_predicted: float | None = Field(description="Calibration (classifiers): mean predicted probability of the "
                                         "outcome; None for a regression model.")
    observed: float = Field(description="Share of the group's rows whose true outcome is the outcome.")


class Association(BaseModel):
    feature: str
    display_name: str
    cramers_v: float = Field(description="Bias-corrected Cramér's V (Bergsma 2013) with the protected feature.")
    plain_v: float = Field(description="Cramér's V without the correction.")
    levels: int = Field(description="Categories (or quantile bins, and missing) of the feature in the table.")
    proxy: bool = Field(description="cramers_v at least the policy's fairness.proxy_cramers_v.")
    used: bool | None = Field(default=None, description="Whether the model's output changes with the feature "
                              "(the subject's used_features); None where that was not measured.")


class ProtectedFairness(BaseModel):
    feature: str
    display_name: str
    basis: str
    bins: list[float] | None
    groups: list[GroupFairness] = Field(description="In category or bin order, missing last; empty without decisions.")
    highest_group: str | None = Field(description="The group with the highest rate: the impact ratios' reference.")
    min_impact_ratio: float | None = Field(description="The lowest group's impact ratio (adverse impact ratio).")
    min_impact_group: str | None
    min_impact_ratio_ci: Interval | None = Field(default=None, description="95% MOVER interval of the adverse impact ratio, the "
                                                 "lowest group's rate over the highest's as two independent "
                                                 "proportions (the highest group is taken as given).")
    rate_gap: float | None = Field(description="Highest minus lowest group rate of the outcome.")
    tpr_gap: float | None = Field(description="Highest minus lowest true-positive rate (groups whose rate rests on "
                                  "at least fairness.min_rate_rows rows).")
    tpr_groups: list[str] = Field(description="The groups of the highest and the lowest true-positive rate.")
    tpr_gap_ci: Interval | None = Field(default=None, description="95% Newcombe interval of the true-positive rate gap, the two "
                                        "groups' rates as independent proportions.")
    fpr_gap: float | None = Field(description="Highest minus lowest false-positive rate (groups whose rate rests "
                                  "on at least fairness.min_rate_rows rows).")
    fpr_groups: list[str] = Field(description="The groups of the highest and the lowest false-positive rate.")
    fpr_gap_ci: Interval | None = Field(default=None, description="95% Newcombe interval of the false-positive rate gap.")
    associations: list[Association] = Field(description="Every other non-protected feature, strongest first.")
    proxies: list[str] = Field(description="Features at or above the proxy bound: possible proxies.")


class Fairness(BaseModel):
    kind: Literal["favourable", "positive"] | None = Field(
        description="favourable: rates count the favourable outcome (not the adverse class or decision); positive: "
        "the positive class, the outcome of interest; None: the model makes no decisions (a score without a cut-off).")
    outcome: str | None = Field(description="The outcome the rates count, by name.")
    note: str = Field(description="How the outcome was chosen, in words.")
    rows: int
    level: float = Field(default=0.95, description="Confidence level of the intervals (Wilson score intervals).")
    settings: FairnessSpec
    proxy_dataset: str = Field(description="The dataset the proxies are measured on.")
    proxy_data: Literal["audited", "reference"]
    features: list[ProtectedFairness]

    def figure(self, name: str, by: str | None) -> tuple[int | None, float | None]:
        """Threshold metric ``fairness.<name>``: the protected feature (its index) and value, of ``by`` or the
        worst of every protected feature; (None, None) when none is measured."""
        field, worst = FIGURES[name]
        measured = [(i, getattr(f, field)) for i, f in enumerate(self.features) if by in (None, f.feature)]
        known = [(i, v) for i, v in measured if v is not None]
        if not known:
            return (measured[0][0] if measured else None), None
        value = worst(v for _, v in known)
        return next(i for i, v in known if v == value), value


@dataclass(frozen=True)
class Outcome:
    """What the rates count for one model, on every row of its audited data."""

    kind: str
    name: str
    note: str
    decided: np.ndarray  # bool: the model decides the row as the outcome
    truth: np.ndarray  # bool: the row's true outcome is the outcome
    score: np.ndarray | None  # the predicted probability of the outcome (classifiers)


def _proportion(mask: np.ndarray) -> Proportion:
    count, n = int(mask.sum()), int(mask.size)
    ci = wilson(count, n)
    return Proportion(count=count, n=n, rate=count / n if n else None, low=ci and ci.lower, high=ci and ci.upper)


def cramers_v(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Cramér's V of two label arrays: (bias-corrected, plain, levels of ``b``). The correction (Bergsma 2013)
    subtracts what independent features of these sizes give on average."""
    _, ia = np.unique(np.asarray(a).astype(str), return_inverse=True)
    _, ib = np.unique(np.asarray(b).astype(str), return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1)
    n = table.sum()
    r, k = table.shape
    if r < 2 or k < 2 or n < 2:
        return 0.0, 0.0, int(k)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    phi2 = float(np.sum((table - expected) ** 2 / expected)) / n
    plain = math.sqrt(phi2 / min(r - 1, k - 1))
    corrected = max(0.0, phi2 - (r - 1) * (k - 1) / (n - 1))
    rc, kc = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denominator = min(rc - 1, kc - 1)
    return (math.sqrt(corrected / denominator) if denominator > 0 else 0.0), plain, int(k)


def _levels(dataset, i: int, bins: int) -> np.ndarray:
    """A feature's column as labels for the proxy table: categories as codes, numbers in quantile bins, missing
    as a level of its own."""
    column = dataset.X[:, i]
    gone = np.isnan(column)
    if dataset.space.features[i].type == "categorical":
        codes = np.where(gone, -1, np.nan_to_num(column, nan=-1)).astype(np.int64)
        return codes
    recorded = column[~gone]
    edges = np.unique(np.quantile(recorded, np.arange(1, bins) / bins)) if len(recorded) else np.array([])
    return np.where(gone, -1, np.digitize(np.nan_to_num(column), edges)).astype(np.int64)


def decision_outcome(model, proba: np.ndarray, y: np.ndarray, adverse_class: Label | None) -> Outcome | None:
    """The outcome the fairness rates count for ``model`` (see the module's docstring); None for a regression
    model without a decision cut-off."""
    if model.regression:
        decision = model.spec.decision
        if decision is None:
            return None
        cut = decision.adverse_if
        return Outcome(kind="favourable", name=decision.favourable,
                       note=f"the favourable decision, '{decision.favourable}' (a score not {cut.side} {cut.value:g}); "
                            "the true outcome is the side of the cut-off the true value falls on",
                       decided=~cut.adverse(proba[:, 0]), truth=~cut.adverse(np.asarray(y, dtype=np.float64)),
                       score=None)
    classes, names = list(model.classes), list(model.class_names)
    pred = proba.argmax(axis=1)
    truth = np.array([classes.index(v) for v in y], dtype=np.int64)
    if adverse_class is not None and adverse_class in classes:
        a = classes.index(adverse_class)
        others = [n for i, n in enumerate(names) if i != a]
        name = others[0] if len(others) == 1 else f"not {names[a]}"
        return Outcome(kind="favourable", name=name,
                       note=f"the favourable outcome, {name}: every class but principal_reasons.adverse_class "
                            f"({names[a]})",
                       decided=pred != a, truth=truth != a, score=1.0 - proba[:, a])
    p = model.positive_index
    return Outcome(kind="positive", name=names[p],
                   note=f"the positive class, {names[p]}, as the outcome of interest (the policy names no "
                        "principal_reasons.adverse_class)",
                   decided=pred == p, truth=truth == p, score=proba[:, p])


def _ordered(labels: np.ndarray, column: np.ndarray) -> list[str]:
    """The groups in category or bin order (by the lowest value of the feature they hold), missing last."""
    keys = {}
    for g in dict.fromkeys(labels.tolist()):
        values = column[labels == g]
        values = values[~np.isnan(values)]
        keys[g] = (0, float(values.min())) if len(values) else (1, 0.0)
    return sorted(keys, key=lambda g: (keys[g], str(g)))


def _gap(groups: list[GroupFairness], field: str, min_rows: int = 1
         ) -> tuple[float | None, list[str], Interval | None]:
    """Highest minus lowest rate over the groups whose rate rests on at least ``min_rows`` rows, the two groups,
    and the gap's Newcombe interval."""
    rated = [(getattr(g, field), g.group) for g in groups
             if getattr(g, field).rate is not None and getattr(g, field).n >= min_rows]
    if len(rated) < 2:
        return None, [], None
    high, low = max(rated, key=lambda x: x[0].rate), min(rated, key=lambda x: x[0].rate)
    ci = difference((high[0].count, high[0].n), (low[0].count, low[0].n))
    return high[0].rate - low[0].rate, [high[1], low[1]], ci


def _groups(labels: np.ndarray, column: np.ndarray, outcome: Outcome) -> list[GroupFairness]:
    out = []
    for g in _ordered(labels, column):
        m = labels == g
        truth, decided = outcome.truth[m], outcome.decided[m]
        out.append(GroupFairness(
            group=str(g), rows=int(m.sum()), decided=_proportion(decided), impact_ratio=None,
            tpr=_proportion(decided[truth]), fpr=_proportion(decided[~truth]),
            mean_predicted=None if outcome.score is None else float(outcome.score[m].mean()),
            observed=float(truth.mean())))
    top = max((g.decided.rate for g in out), default=0.0)
    for g in out:
        g.impact_ratio = g.decided.rate / top if top else None
    return out


def _feature(p: ProtectedSpec, data, proxy_data, outcome: Outcome | None, protected: set[str],
             spec: FairnessSpec, groups: Callable, used: list[str] | None) -> ProtectedFairness:
    space = data.space
    i = space.names.index(p.feature)
    by_group = _groups(groups(data, p.feature, p.bins), data.X[:, i], outcome) if outcome is not None else []
    ratios = [(g.impact_ratio, g.group) for g in by_group if g.impact_ratio is not None]
    lowest = min(ratios, key=lambda x: x[0]) if ratios else (None, None)
    top = max(by_group, key=lambda g: g.decided.rate or 0.0) if by_group else None
    low = next((g for g in by_group if g.group == lowest[1]), None)
    air_ci = None if low is None else ratio((low.decided.count, low.decided.n), (top.decided.count, top.decided.n))
    rates = [g.decided.rate for g in by_group if g.decided.rate is not None]
    tpr_gap, tpr_groups, tpr_ci = _gap(by_group, "tpr", spec.min_rate_rows)
    fpr_gap, fpr_groups, fpr_ci = _gap(by_group, "fpr", spec.min_rate_rows)
    target = groups(proxy_data, p.feature, p.bins)
    associations = []
    for j, f in enumerate(space.features):
        if f.name in protected:
            continue
        corrected, plain, levels = cramers_v(target, _levels(proxy_data, j, spec.proxy_bins))
        associations.append(Association(feature=f.name, display_name=f.label, cramers_v=round(corrected, 12),
                                        plain_v=round(plain, 12), levels=levels,
                                        proxy=round(corrected, 12) >= spec.proxy_cramers_v,
                                        used=None if used is None else f.name in used))
    associations.sort(key=lambda a: -a.cramers_v)
    return ProtectedFairness(
        feature=p.feature, display_name=space.features[i].label, basis=p.basis, bins=p.bins, groups=by_group,
        highest_group=None if top is None else top.group,
        min_impact_ratio=lowest[0], min_impact_group=lowest[1], min_impact_ratio_ci=air_ci,
        rate_gap=max(rates) - min(rates) if len(rates) > 1 else None,
        tpr_gap=tpr_gap, tpr_groups=tpr_groups, tpr_gap_ci=tpr_ci, fpr_gap=fpr_gap, fpr_groups=fpr_groups,
        fpr_gap_ci=fpr_ci,
        associations=associations, proxies=[a.feature for a in associations if a.proxy])


def assess_fairness(model, data, background, proba: np.ndarray, protected: list[ProtectedSpec], spec: FairnessSpec,
                    *, adverse_class: Label | None, groups: Callable, used: list[str] | None = None
                    ) -> tuple[Fairness, list[Observation]]:
    """The fairness evidence of one model on its audited tabular ``data`` (every row), and its observations.
    ``groups(dataset, feature, bins)`` gives each row's group label (the modality's); ``used``: the features the
    model's output changes with, when measured (a possible proxy the model does not use is a note, not a warning)."""
    outcome = decision_outcome(model, proba, data.y, adverse_class)
    proxy_data = background if spec.proxy_data == "reference" else data
    names = {p.feature for p in protected}
    features = [_feature(p, data, proxy_data, outcome, names, spec, groups, used) for p in protected]
    fairness = Fairness(
        kind=None if outcome is None else outcome.kind, outcome=None if outcome is None else outcome.name,
        note=("the model makes no decisions (a score without a cut-off, models[].decision): no rates, only proxies"
              if outcome is None else outcome.note),
        rows=data.n_rows, settings=spec, proxy_dataset=proxy_data.spec.id, proxy_data=spec.proxy_data,
        features=features)
    return fairness, _observations(model.id, fairness, spec)


def _observations(model_id: str, fairness: Fairness, spec: FairnessSpec) -> list[Observation]:
    out = []
    for f in fairness.features:
        top = next((g for g in f.groups if g.group == f.highest_group), None)
        low = [g for g in f.groups if g.impact_ratio is not None and g.impact_ratio < spec.min_impact_ratio]
        if low and top is not None:
            parts = [f"{g.group} {pct(g.decided.rate)} (n = {g.rows}, 95% CI {pct(g.decided.low)} to "
                     f"{pct(g.decided.high)}; ratio {num(g.impact_ratio, 2)})" for g in low]
            overlap = all(g.decided.high >= top.decided.low for g in low)
            out.append(Observation(
                level="warn", code="fairness.four_fifths", threshold=spec.min_impact_ratio,
                setting="fairness.min_impact_ratio",
                message=f"{model_id}: by {f.display_name} ({f.basis}), the rate of {fairness.outcome} decisions is "
                        f"below {pct(spec.min_impact_ratio, 0)} of the highest group's ({top.group}: "
                        f"{pct(top.decided.rate)}, n = {top.rows}) for {'; '.join(parts)}: adverse impact under the "
                        "four-fifths rule."
                        + (" The groups' 95% intervals overlap: with these counts the gap may be chance."
                           if overlap else "")))
        if f.proxies:
            found = [a for a in f.associations if a.proxy]
            use = {True: ", used by the model", False: ", not used by the model", None: ""}
            named = listed(f"{a.display_name} (V = {num(a.cramers_v, 2)}{use[a.used]})" for a in found)
            out.append(Observation(
                level="info" if all(a.used is False for a in found) else "warn", code="fairness.proxy",
                threshold=spec.proxy_cramers_v, setting="fairness.proxy_cramers_v",
                message=f"{model_id}: {named} "
                        f"{'is' if len(found) == 1 else 'are'} associated with {f.display_name} ({f.basis}) on "
                        f"{fairness.proxy_dataset} at Cramér's V {num(spec.proxy_cramers_v, 2)} or more: possible "
                        f"prox{'y' if len(found) == 1 else 'ies'}; review whether the model's use of "
                        f"{'it' if len(found) == 1 else 'them'} stands in for the protected characteristic."))
    return out
