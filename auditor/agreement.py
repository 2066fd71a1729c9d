"""Method agreement: do a decision's attribution methods point to the same features?

Every family with per-feature attributions (``attribution_field``) takes part. For each decision the
evidence keeps each method's top-k features by |attribution|, how many are in every method's top k, and
the Spearman correlation of the first two methods' attributions over all features; the methods *agree*
when at least ``min_shared`` of the top k are shared and the correlation is not negative. Both bounds are
policy settings (``agreement:``), recorded in the evidence with the subject's summary.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from .explainers.base import Observation
from .numbers import listed

__all__ = ["Agreement", "AgreementSummary", "decision_agreement", "summarize_agreement"]


class Agreement(BaseModel):
    methods: list[str]
    top_k: int
    top_features: dict[str, list[str]] = Field(description="Each method's top-k features by |attribution|.")
    shared: int = Field(description="Features in every method's top k.")
    rank_correlation: float | None = Field(description="Spearman correlation of attributions over all features.")
    agree: bool = Field(description="At least min_shared of the top k are shared and the correlation is positive.")


class AgreementSummary(BaseModel):
    methods: list[str] = Field(description="The attribution methods compared.")
    top_k: int
    min_shared: float = Field(description="Share of the top k that must be shared for the methods to agree.")
    decisions: int = Field(description="Decisions with at least two attribution methods.")
    agree: int = Field(description="Decisions on which the methods agree.")
    rate: float = Field(description="agree / decisions.")
    disagree: list[int | str] = Field(description="Decisions on which they disagree.")


def _values(family, result, names: list[str]) -> np.ndarray:
    """A result's attributions in feature order (features a method left out count as 0)."""
    values = family.attributions(result)
    return np.array([values.get(n, 0.0) for n in names], dtype=np.float64)


def decision_agreement(explanations: dict, families: dict, names: list[str], *, top_k: int,
                       min_shared: float) -> Agreement | None:
    """Agreement of one decision's attribution methods (None with fewer than two)."""
    attributing = {n: r for n, r in explanations.items() if families[n].attributions(r) is not None}
    if len(attributing) < 2:
        return None
    from scipy.stats import spearmanr

    k = min(top_k, len(names))
    vectors = {m: _values(families[m], r, names) for m, r in attributing.items()}
    tops = {m: [names[i] for i in np.argsort(-np.abs(v), kind="stable")[:k]] for m, v in vectors.items()}
    shared = set.intersection(*(set(t) for t in tops.values()))
    first, second = list(vectors.values())[:2]
    corr = None
    if np.ptp(first) > 0 and np.ptp(second) > 0:
        corr = float(spearmanr(first, second).statistic)
    return Agreement(methods=list(attributing), top_k=k, top_features=tops, shared=len(shared),
                     rank_correlation=corr, agree=len(shared) >= min_shared * k and (corr is None or corr > 0))


def summarize_agreement(model_id: str, decisions: list, *, min_shared: float
                        ) -> tuple[AgreementSummary | None, list[Observation]]:
    """The subject's agreement over its decisions, and an observation naming those that disagree. ``decisions`` are
    read once, and only their ids and agreement kept (they may be on disk)."""
    rated = [(d.id, d.agreement) for d in decisions if d.agreement is not None]
    if not rated:
        return None, []
    disagree = [i for i, a in rated if not a.agree]
    first = rated[0][1]
    summary = AgreementSummary(methods=first.methods, top_k=first.top_k, min_shared=min_shared, decisions=len(rated),
                               agree=len(rated) - len(disagree), rate=(len(rated) - len(disagree)) / len(rated),
                               disagree=disagree)
    observations = []
    if disagree:
        observations.append(Observation(
            level="info", code="agreement.disagree", decisions=disagree, threshold=min_shared,
            setting="agreement.min_shared",
            message=f"{model_id}: attribution methods disagree on the top features of decision(s) {listed(disagree)}; "
                    "read those with both methods in view."))
    return summary, observations
