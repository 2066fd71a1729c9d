"""Thresholds -> findings: each threshold of the policy, evaluated on the evidence, is a finding
``pass | warn | fail`` with the measured value, the threshold and where in the evidence it rests.

Metrics:

- ``performance.<accuracy|balanced_accuracy|roc_auc|brier_score>``, overall or ``by`` a feature's groups;
- ``fairness.positive_rate_gap`` ``by`` a feature: the largest difference between two groups' shares
  of decisions predicted as the positive class;
- ``agreement.rate``: share of decisions whose attribution methods agree;
- ``<explanation name>.<figure>``: a quality figure of an explanation, see ``FIGURES``.
"""

from __future__ import annotations

import statistics
from typing import Callable, Literal

from pydantic import BaseModel, Field

__all__ = ["FIGURES", "Finding", "evaluate", "known_metric"]


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


def _ig_deltas(results) -> list[float]:
    out = []
    for r in results:
        if getattr(r, "method", "") == "integrated_gradients":
            out.append(abs(r.convergence_delta))
        elif getattr(r, "method", "") == "image_map":
            out += [abs(m.convergence_delta) for m in r.maps if m.convergence_delta is not None]
        elif getattr(r, "method", "") == "token_attribution":
            out += [abs(t.convergence_delta) for t in r.targets if t.convergence_delta is not None]
    return out


def _maps(results):
    return [m for r in results for m in getattr(r, "maps", []) if m.pointing_hit is not None]


def _mean(values):
    return statistics.fmean(values) if values else None


_POINTING = {
    "pointing_game": ("share of ground-truth images where the map's maximum is inside the mask",
                      lambda rs: _mean([float(m.pointing_hit) for m in _maps(rs)])),
    "mass_in_mask": ("mean share of positive attribution inside the mask",
                     lambda rs: _mean([m.mass_in_mask for m in _maps(rs)])),
}
# Per explanation type: figure -> (description, function of the per-decision results or the global result).
FIGURES: dict[str, dict[str, tuple[str, Callable]]] = {
    "integrated_gradients": {
        "max_delta": ("largest |convergence delta| over decisions", lambda rs: max(_ig_deltas(rs), default=None)),
        **_POINTING,
    },
    "layer_integrated_gradients": {
        "max_delta": ("largest |convergence delta| over decisions", lambda rs: max(_ig_deltas(rs), default=None)),
        "rationale_mass": ("mean share of positive attribution on the ground-truth rationale",
                           lambda rs: _mean([t.rationale_mass for r in rs for t in r.targets[:1]
                                             if t.rationale_mass is not None])),
    },
    "lime": {
        "median_score": ("median local-fit R²", lambda rs: statistics.median([r.score for r in rs]) if rs else None),
        "min_score": ("lowest local-fit R²", lambda rs: min((r.score for r in rs), default=None)),
        "stability": ("mean top-feature stability across repeats (Jaccard of top 5)",
                      lambda rs: _mean([r.stability for r in rs if r.stability is not None])),
    },
    "counterfactuals": {
        "validity": ("mean share of asked counterfactuals that are valid", lambda rs: _mean([r.validity for r in rs])),
        "min_validity": ("lowest validity of any decision", lambda rs: min((r.validity for r in rs), default=None)),
    },
    "rules": {"fidelity": ("agreement of the rules with the model on held-out rows", lambda g: g.fidelity)},
    "gradcam": dict(_POINTING),
    "lrp": dict(_POINTING),
    "lime_image": dict(_POINTING),
}
PERFORMANCE = ("accuracy", "balanced_accuracy", "roc_auc", "brier_score")


def known_metric(metric: str, explanation_types: dict[str, str]) -> str | None:
    """None if ``metric`` can be measured for a policy whose explanations are {name: type}; else why not."""
    head, _, figure = metric.partition(".")
    if head == "performance":
        return None if figure in PERFORMANCE else f"use one of: {', '.join('performance.' + p for p in PERFORMANCE)}"
    if head == "fairness":
        return None if figure == "positive_rate_gap" else "use fairness.positive_rate_gap"
    if head == "agreement":
        return None if figure == "rate" else "use agreement.rate"
    if head not in explanation_types:
        return f"'{head}' is not an explanation in this policy (names: {', '.join(explanation_types) or 'none'})"
    figures = FIGURES.get(explanation_types[head], {})
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
        for si, s in enumerate(evidence.subjects):
            if t.models is not None and s.model.id not in t.models:
                continue
            where = f"subjects[{si}]"
            values: list[tuple[str | None, float | None, str]] = []
            if head == "performance" and not t.by:
                values.append((None, getattr(s.performance, figure), f"{where}.performance.{figure}"))
            elif head in ("performance", "fairness"):
                groups = (s.subgroups or {}).get(t.by)
                if groups is None:
                    values.append((None, None, f"{where}.subgroups.{t.by}"))
                elif head == "fairness":
                    rates = [g.positive_rate for g in groups if g.rows]
                    gap = max(rates) - min(rates) if len(rates) > 1 else None
                    values.append((None, gap, f"{where}.subgroups.{t.by}[*].positive_rate"))
                else:
                    for gi, g in enumerate(groups):
                        values.append((f"{t.by} = {g.group}", getattr(g, figure),
                                       f"{where}.subgroups.{t.by}[{gi}].{figure}"))
            elif head == "agreement":
                flags = [d.agreement.agree for d in s.decisions if d.agreement is not None]
                if not flags:  # fewer than two attribution methods ran for this model: nothing to agree
                    continue
                values.append((None, _mean([float(f) for f in flags]), f"{where}.decisions[*].agreement.agree"))
            else:
                method = next((m for m in s.methods if m.name == head), None)
                if method is None:  # the explanation did not run for this model (not applicable): nothing to check
                    continue
                extract = FIGURES[method.type][figure][1]
                if method.scope == "global":
                    data = s.global_explanations[head]
                    path = f"{where}.global_explanations.{head}"
                else:
                    data = [d.explanations[head] for d in s.decisions if head in d.explanations]
                    path = f"{where}.decisions[*].explanations.{head}"
                values.append((None, extract(data), path))
            for group, value, path in values:
                status, bound, comparator = _status(value, t)
                name = t.name + (f" [{group}]" if group else "")
                rule = _requirement(t)
                findings.append(Finding(
                    id=name, metric=t.metric, model=s.model.id, subgroup=group, status=status,
                    value=None if value is None else float(value), threshold=bound, comparator=comparator,
                    evidence=path,
                    message=(f"{s.model.id}: {t.metric}{' (' + group + ')' if group else ''} = {_fmt(value)} "
                             f"({rule}): {status}") if value is not None else
                            f"{s.model.id}: {t.metric}{' (' + group + ')' if group else ''} could not be measured "
                            f"(see {path}): fail",
                ))
    return findings
