"""Principal reasons for adverse decisions (ECOA / Regulation B 1002.9; CFPB Circulars 2022-03, 2023-03).

For each decision the model decides adversely, up to four reasons, ranked, each a feature the model
actually uses, worded from the policy's reason text. They are derived from the per-decision
explanations the policy asked for:

- attributions (LIME, Integrated Gradients): features whose contribution pushes *towards* the
  adverse class, ranked by size;
- counterfactuals: features that the valid counterfactuals change to reverse the decision, ranked
  by how many of them change it.

Each method ranks its features; a feature's combined score is its mean Borda score over the methods
(1 for a method's first feature, falling linearly to 0 after its tenth). The evidence keeps every
method's own top reasons and whether the methods agree (mean pairwise overlap of their top reasons).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from pydantic import BaseModel, Field

__all__ = ["PrincipalReasons", "Reason", "derive_reasons", "used_features"]

BORDA_DEPTH = 10
AGREEMENT_MIN_OVERLAP = 0.5


class Reason(BaseModel):
    rank: int
    feature: str
    text: str
    score: float = Field(description="Mean Borda score over methods (1 = first for every method).")
    method_ranks: dict[str, int | None] = Field(description="The feature's rank in each method (None: not a reason there).")


class PrincipalReasons(BaseModel):
    adverse_class: int | str
    reasons: list[Reason]
    methods: list[str]
    by_method: dict[str, list[str]] = Field(description="Each method's own top reasons, best first.")
    overlap: float | None = Field(description="Mean pairwise Jaccard overlap of the methods' top reasons.")
    agree: bool | None = Field(description=f"Overlap at least {AGREEMENT_MIN_OVERLAP} (None with one method).")


def used_features(model, X: np.ndarray, seed: int, max_rows: int = 1000) -> list[str]:
    """Features whose values change the model's output: shuffling one changes some probability."""
    rng = np.random.default_rng(seed)
    rows = X if len(X) <= max_rows else X[rng.choice(len(X), max_rows, replace=False)]
    base = model.predict_proba(rows)
    used = []
    for i, name in enumerate(model.space.names):
        shuffled = rows.copy()
        shuffled[:, i] = rng.permutation(shuffled[:, i])
        if np.any(np.abs(model.predict_proba(shuffled) - base) > 1e-9):
            used.append(name)
    return used


def _method_ranking(result, adverse, names: list[str]) -> list[str]:
    """Features pushing towards the adverse class, strongest first."""
    if result.method == "counterfactuals":
        counts: dict[str, int] = {}
        for cf in result.counterfactuals:
            for f in cf.changes:
                counts[f] = counts.get(f, 0) + 1
        return sorted(counts, key=lambda f: (-counts[f], names.index(f)))
    values = result.attributions if result.method == "integrated_gradients" else result.weights
    sign = 1.0 if result.target == adverse else -1.0
    towards = {f: sign * v for f, v in values.items() if sign * v > 0}
    return sorted(towards, key=lambda f: (-towards[f], names.index(f)))


def derive_reasons(explanations: dict, *, adverse, methods: list[str], used: list[str], names: list[str],
                   labels: dict[str, str], texts: dict[str, str], max_reasons: int) -> PrincipalReasons:
    methods = [m for m in methods if m in explanations]
    rankings = {m: [f for f in _method_ranking(explanations[m], adverse, names) if f in used] for m in methods}
    scores: dict[str, float] = {}
    for ranking in rankings.values():
        for r, f in enumerate(ranking[:BORDA_DEPTH]):
            scores[f] = scores.get(f, 0.0) + (BORDA_DEPTH - r) / BORDA_DEPTH / max(len(rankings), 1)
    ranked = sorted(scores, key=lambda f: (-scores[f], names.index(f)))[:max_reasons]
    reasons = [
        Reason(rank=k + 1, feature=f, text=texts.get(f, labels[f]), score=round(scores[f], 12),
               method_ranks={m: (rankings[m].index(f) + 1 if f in rankings[m] else None) for m in methods})
        for k, f in enumerate(ranked)
    ]
    tops = {m: r[:max_reasons] for m, r in rankings.items()}
    pairs = [(set(tops[a]), set(tops[b])) for a, b in combinations(methods, 2)]
    overlap = float(np.mean([len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs])) if pairs else None
    return PrincipalReasons(adverse_class=adverse, reasons=reasons, methods=methods, by_method=tops,
                            overlap=overlap, agree=None if overlap is None else overlap >= AGREEMENT_MIN_OVERLAP)
