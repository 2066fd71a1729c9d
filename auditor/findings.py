"""Thresholds -> findings: each threshold of the policy, evaluated on the evidence, is a finding
``pass | warn | fail`` with the measured value, the threshold and where in the evidence it rests.

Metrics:

- ``performance.<accuracy|balanced_accuracy|roc_auc|brier_score>`` (classifiers) and
  ``performance.<rmse|mae|r2>`` (regression models), overall or ``by`` a feature's groups; a model of the
  other task is not measured by it (no finding for it);
- ``fairness.positive_rate_gap`` ``by`` a feature: the largest difference between two groups' shares
  of decisions predicted as the positive class;
- ``fairness.<adverse_impact_ratio|tpr_gap|fpr_gap>``, ``by`` a protected feature or, without ``by``, the worst
  of them (the lowest ratio, the largest gap; see :mod:`auditor.fairness`), and
  ``principal_reasons.protected_share``: the share of sampled adverse decisions whose top reasons held a
  protected characteristic (withheld from their notices; see :mod:`auditor.reasons`);
- ``agreement.rate``: share of decisions whose attribution methods agree;
- ``data.<missing_rate|duplicate_share|overlap_share>``, one finding per audited dataset (``data.missing_rate``
  ``by`` a feature, else the feature with the most missing values), and ``stability.psi`` ``by`` a feature,
  ``by: score`` (per model), else the feature with the largest PSI (see :mod:`auditor.data_checks`);
- ``<explanation name>.<figure>``: a quality figure of an explanation: a field of its family's summary,
  offered in the family's ``figures`` (see :data:`auditor.explainers.EXPLAINERS`).

Every value a finding reports is a field of the evidence, and the finding names its path. A performance
figure's finding also records the figure's confidence interval (its ``<figure>_ci`` in the evidence) and what
was compared with the threshold (``compare``: the value, or the interval's lower or upper bound), and its message
says when a group has too few rows to conclude from (the policy's ``performance.min_group_rows``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .explainers import EXPLAINERS
from .fairness import FIGURES as FAIRNESS_FIGURES
from .intervals import Interval
from .paths import path as evidence_path

__all__ = ["PERFORMANCE", "PROTECTED_METRICS", "Finding", "evaluate", "known_metric", "metric_names"]


class Finding(BaseModel):
    id: str
    metric: str
    model: str | None
    subgroup: str | None = None
    status: Literal["pass", "warn", "fail"]
    value: float | None = Field(description="Measured value; None when it could not be measured (a fail).")
    threshold: float | None = Field(description="The bound that decided the status.")
    comparator: Literal[">=", "<="] | None = None
    evidence: str = Field(description="Where the value comes from in evidence.json.")
    message: str
    interval: Interval | None = Field(default=None, description="Performance figures: the value's confidence "
                                      "interval (the evidence's <figure>_ci beside the value).")
    compare: Literal["point", "lower", "upper"] = Field(
        default="point", description="What was compared with the threshold: the value (point), or the lower or "
        "upper bound of its interval.")

    @property
    def label(self) -> str:
        """The finding as a summary line names it: its id, and its model where it concerns one."""
        return f"{self.id} ({self.model})" if self.model else self.id


CLASSIFICATION_ONLY = ("accuracy", "balanced_accuracy", "roc_auc", "brier_score")
REGRESSION_ONLY = ("rmse", "mae", "r2")
PERFORMANCE = CLASSIFICATION_ONLY + REGRESSION_ONLY
DATA = ("missing_rate", "duplicate_share", "overlap_share")
PROTECTED_METRICS = tuple(f"fairness.{f}" for f in FAIRNESS_FIGURES) + ("principal_reasons.protected_share",)
"""Metrics of the policy's protected features (``by`` one of them, never with ``bins``)."""


def metric_names(explanation_types: dict[str, str]) -> list[str]:
    """Every metric a threshold may name for a policy whose explanations are {name: type}."""
    return ([f"performance.{p}" for p in PERFORMANCE] + ["fairness.positive_rate_gap", *PROTECTED_METRICS,
                                                          "principal_reasons.stability", "agreement.rate"]
            + [f"data.{d}" for d in DATA] + ["stability.psi"]
            + [f"{name}.{figure}" for name, t in explanation_types.items() for figure in EXPLAINERS[t].figures])


def known_metric(metric: str, explanation_types: dict[str, str]) -> str | None:
    """None if ``metric`` can be measured for a policy whose explanations are {name: type}; else why not."""
    head, _, figure = metric.partition(".")
    if head == "performance":
        return None if figure in PERFORMANCE else f"use one of: {', '.join('performance.' + p for p in PERFORMANCE)}"
    if head == "fairness":
        names = ["positive_rate_gap", *FAIRNESS_FIGURES]
        return None if figure in names else f"use one of: {', '.join('fairness.' + f for f in names)}"
    if head == "principal_reasons":
        return None if figure in ("protected_share", "stability") else \
            "use principal_reasons.protected_share or principal_reasons.stability"
    if head == "agreement":
        return None if figure == "rate" else "use agreement.rate"
    if head == "data":
        return None if figure in DATA else f"use one of: {', '.join('data.' + d for d in DATA)}"
    if head == "stability":
        return None if figure == "psi" else "use stability.psi"
    if head not in explanation_types:
        return f"'{head}' is not an explanation in this policy (names: {', '.join(explanation_types) or 'none'})"
    figures = EXPLAINERS[explanation_types[head]].figures
    if figure not in figures:
        return (f"{explanation_types[head]} records: {', '.join(head + '.' + f for f in figures)}" if figures
                else f"{explanation_types[head]} has no quality figure to threshold")
    return None


def _status(value: float | None, t) -> tuple[str, float | None, str | None]:
    if value is None:
        return "fail", t.min if t.min is not None else t.max, None
    if t.min is not None and value < t.min:
        return "fail", t.min, ">="
    if t.max is not None and value > t.max:
        return "fail", t.max, "<="
    if t.warn_min is not None and value < t.warn_min:
        return "warn", t.warn_min, ">="
    if t.warn_max is not None and value > t.warn_max:
        return "warn", t.warn_max, "<="
    bound = t.min if t.min is not None else t.max
    return "pass", bound, ">=" if t.min is not None else "<="


def _requirement(t) -> str:
    parts = []
    if t.min is not None:
        parts.append(f"fails below {_fmt(t.min)}")
    if t.max is not None:
        parts.append(f"fails above {_fmt(t.max)}")
    if t.warn_min is not None:
        parts.append(f"warns below {_fmt(t.warn_min)}")
    if t.warn_max is not None:
        parts.append(f"warns above {_fmt(t.warn_max)}")
    return "; ".join(parts)


def _fmt(v: float | None) -> str:
    return "not measured" if v is None else f"{v:.4g}"


def evaluate(policy, evidence) -> list[Finding]:
    """Every threshold on every model it applies to (and every group, with ``by``)."""

    findings: list[Finding] = []
    for t in policy.thresholds:
        head, _, figure = t.metric.partition(".")
        if head == "data" or (head == "stability" and t.by != "score"):
            findings.extend(_data_findings(t, head, figure, evidence))
            continue
        for si, s in enumerate(evidence.subjects):
            if t.models is not None and s.model.id not in t.models:
                continue
            where = f"subjects[{si}]"
            values: list[tuple[str | None, float | None, str]] = []
            intervals: dict[str, Interval | None] = {}  # performance figures: by the value's path
            small: dict[str, int] = {}  # groups with too few rows to conclude: their rows, by the value's path
            if head == "performance" and figure not in _task_figures(s):
                continue  # a regression figure of a classifier, or the other way round: not this model's measure
            if head == "performance" and not t.by:
                values.append((None, getattr(s.performance, figure), f"{where}.performance.{figure}"))
                intervals[values[-1][2]] = getattr(s.performance, f"{figure}_ci", None)
            elif t.metric == "principal_reasons.stability":
                if s.reasons is None:  # no sampled adverse decision: nothing to re-run
                    continue
                values.append((None, s.reasons.stability, f"{where}.reasons.stability"))
            elif t.metric in PROTECTED_METRICS:
                finding = _protected_finding(t, s, where, figure)
                findings.extend([finding] if finding is not None else [])
                continue
            elif head in ("performance", "fairness"):
                groups = (s.subgroups or {}).get(t.by)
                at = evidence_path(where, "subgroups", t.by)
                if groups is None:
                    values.append((None, None, at))
                elif head == "fairness":
                    rates = [g.positive_rate for g in groups if g.rows]
                    gap = max(rates) - min(rates) if len(rates) > 1 else None
                    values.append((None, gap, f"{at}[*].positive_rate"))
                else:
                    for gi, g in enumerate(groups):
                        values.append((f"{t.by} = {g.group}", getattr(g, figure), evidence_path(at, gi, figure)))
                        intervals[values[-1][2]] = getattr(g, f"{figure}_ci", None)
                        if getattr(g, "too_few_rows", False):
                            small[values[-1][2]] = g.rows
            elif head == "stability":  # by: score
                values.append((None, s.score_stability.psi if s.score_stability else None,
                               f"{where}.score_stability.psi"))
            elif head == "agreement":
                if s.agreement is None:  # fewer than two attribution methods ran for this model: nothing to agree
                    continue
                values.append((None, s.agreement.rate, f"{where}.agreement.rate"))
            else:
                index = next((i for i, m in enumerate(s.methods) if m.name == head), None)
                if index is None:  # the explanation did not run for this model (not applicable): nothing to check
                    continue
                summary = s.methods[index].summary
                if t.by:  # a family's figure per group of the sampled decisions
                    at = evidence_path(f"{where}.methods[{index}]", "groups", t.by)
                    rows = (s.methods[index].groups or {}).get(t.by)
                    if rows is None:
                        values.append((None, None, at))
                    for gi, g in enumerate(rows or []):
                        values.append((f"{t.by} = {g['group']}", g.get(figure), evidence_path(at, gi, figure)))
                else:
                    values.append((None, getattr(summary, figure, None), f"{where}.methods[{index}].summary.{figure}"))
            findings.extend(_finding(t, s.model.id, group, value, path, model=s.model.id, interval=intervals.get(path),
                                     small=None if path not in small else (small[path], policy.performance.min_group_rows))
                            for group, value, path in values)
    return findings


def _protected_finding(t, s, where: str, figure: str) -> Finding | None:
    """``fairness.<figure>`` by a protected feature (or the worst of them), or ``principal_reasons.protected_share``;
    None when the subject has no such figure (no tabular data, no sampled adverse decision)."""
    if t.metric.startswith("principal_reasons."):
        if s.reasons is None:
            return None
        return _finding(t, s.model.id, None, s.reasons.protected_share, f"{where}.reasons.protected_share",
                        model=s.model.id)
    fairness = getattr(s, "fairness", None)
    if fairness is None:
        return None
    index, value = fairness.figure(figure, t.by)
    at = f"{where}.fairness" if index is None else f"{where}.fairness.features[{index}].{FAIRNESS_FIGURES[figure][0]}"
    worst = fairness.features[index].feature if index is not None and t.by is None else None
    interval = None if index is None else getattr(fairness.features[index], f"{FAIRNESS_FIGURES[figure][0]}_ci")
    return _finding(t, s.model.id, None, value, at, model=s.model.id, worst=worst, interval=interval)


def _task_figures(subject) -> tuple[str, ...]:
    return REGRESSION_ONLY if subject.model.task == "regression" else CLASSIFICATION_ONLY


def _finding(t, subject: str, group: str | None, value: float | None, path: str, *, model: str | None,
             worst: str | None = None, interval: Interval | None = None,
             small: tuple[int, int] | None = None) -> Finding:
    """One finding of threshold ``t`` about ``subject`` (a model, or a dataset for data metrics, which concern no
    ``model``); ``worst``: the feature a data metric without ``by`` was measured on (named in the message, not the
    id, which stays stable); ``interval``: the value's confidence interval, whose bound ``t.compare`` may test;
    ``small``: (rows, minimum) of a group with too few rows to conclude from."""
    on = getattr(t, "compare", "point")
    tested = value if on == "point" or value is None else (None if interval is None else getattr(interval, on))
    status, bound, comparator = _status(tested, t)
    name = t.name + (f" [{group}]" if group else "")
    about = f"{subject}: {t.metric}{' (' + group + ')' if group else ''}{' (worst: ' + worst + ')' if worst else ''}"
    measured = f"{about} = {_fmt(value)}"
    if interval is not None:
        measured += (f", {100 * interval.level:g}% CI {_fmt(interval.lower)} to {_fmt(interval.upper)}"
                     + (f", its {on} bound tested" if on != "point" else ""))
    caveat = f"; too few rows to conclude ({small[0]} < {small[1]})" if small else ""
    if value is None:
        message = f"{about} could not be measured (see {path}): fail"
    elif tested is None:
        message = f"{measured}: no confidence interval to test its {on} bound (see {path}_ci): fail"
    else:
        message = f"{measured} ({_requirement(t)}): {status}{caveat}"
    return Finding(
        id=name, metric=t.metric, model=model, subgroup=group, status=status,
        value=None if value is None else float(value), threshold=bound, comparator=comparator, evidence=path,
        message=message, interval=interval, compare=on)


def _feature_value(feature, field: str):
    """``missing_rate`` or ``stability.psi`` of a feature check (None when it has no stability)."""
    if field == "missing_rate":
        return feature.missing_rate
    return feature.stability.psi if feature.stability is not None else None


def _data_findings(t, head: str, figure: str, evidence) -> list[Finding]:
    """data.* and stability.psi (by a feature): one finding per audited dataset's data check."""
    out = []
    for ci, c in enumerate(evidence.data_checks):
        where = f"data_checks[{ci}]"
        subject = c.dataset if len(evidence.data_checks) == 1 else f"{c.dataset} vs {c.background}"
        worst, value, path = None, None, f"{where}.{figure}"
        if head == "data" and figure != "missing_rate":
            value = getattr(c, figure)
        else:
            field = "missing_rate" if head == "data" else "stability.psi"
            measured = [(fi, _feature_value(f, field)) for fi, f in enumerate(c.features) if t.by in (None, f.name)]
            measured = [(fi, v) for fi, v in measured if v is not None]  # no PSI where the data are the reference
            if measured:
                fi, value = max(measured, key=lambda item: item[1])
                worst = c.features[fi].name if t.by is None else None
                path = f"{where}.features[{fi}].{field}"
        out.append(_finding(t, subject, None, value, path, model=None, worst=worst))
    return out
