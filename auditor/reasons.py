"""Principal reasons for adverse decisions (ECOA / Regulation B 1002.9; CFPB Circulars 2022-03, 2023-03).

For each decision the model decides adversely, up to four reasons, ranked, each a feature the model
actually uses, worded from the policy's reason text. They are derived from the per-decision
explanations the policy asked for:

- per-feature attributions: features whose contribution pushes *towards* the adverse class, ranked
  by size;
- counterfactuals: features that the valid counterfactuals change to reverse the decision, ranked
  by how many of them change it.

Each family says how its result ranks features (:meth:`~auditor.explainers.base.Explainer.reason_ranking`).
A feature's combined score is its mean Borda score over the methods (1 for a method's first feature,
falling linearly to 0 after its tenth). A reason whose value is missing at the decision says so plainly
("No record of: Months employed", or the policy's ``missing_texts``). The evidence keeps every method's own top reasons and whether the
methods agree: the mean pairwise overlap of their top reasons is at least the policy's
``principal_reasons.min_overlap``.

A reason never names a protected characteristic (the policy's ``protected:``; Regulation B 1002.2(z), 1002.6):
when one ranks among a decision's top reasons, the notice's reasons are the permissible features re-ranked
without it, and the record keeps what was withheld, at which rank and on which basis (``withheld``). The summary
lists those decisions, raises an observation (``reasons.protected``) and gives the share of adverse decisions
affected (``protected_share``, a threshold metric). The methods' own top reasons and their overlap are taken
over the permissible features too; ``method_ranks`` stay each method's own ranks over every used feature.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from pydantic import BaseModel, Field

from .explainers.base import Observation
from .numbers import listed

__all__ = ["PrincipalReasons", "Reason", "ReasonsSummary", "Withheld", "derive_reasons", "summarize_reasons",
           "used_features"]

BORDA_DEPTH = 10


class Reason(BaseModel):
    rank: int
    feature: str
    text: str
    missing: bool = Field(default=False, description="The decision's value of the feature is missing.")
    score: float = Field(description="Mean Borda score over methods (1 = first for every method).")
    method_ranks: dict[str, int | None] = Field(description="The feature's rank in each method (None: not a reason there).")


class Withheld(BaseModel):
    """A protected characteristic that ranked among the decision's top reasons, and is not stated as one."""

    feature: str
    rank: int = Field(description="Its rank among every used feature, before it was withheld.")
    basis: str = Field(description="The prohibited basis, as the policy's protected entry names it.")
    score: float = Field(description="Its mean Borda score over methods.")
    method_ranks: dict[str, int | None] = Field(description="Its rank in each method (None: not a reason there).")


class PrincipalReasons(BaseModel):
    adverse_class: int | str
    reasons: list[Reason] = Field(description="The notice's reasons: permissible features only, ranked.")
    withheld: list[Withheld] = Field(default_factory=list, description="Protected characteristics that ranked among "
                                     "the top reasons and were withheld from the notice.")
    methods: list[str]
    by_method: dict[str, list[str]] = Field(description="Each method's own top reasons, best first.")
    overlap: float | None = Field(description="Mean pairwise Jaccard overlap of the methods' top reasons.")
    agree: bool | None = Field(description="Overlap at least the policy's min_overlap (None with one method).")
    reruns: list[list[str]] | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="The reasons' features in each re-run with another seed (principal_reasons.stability_repeats).")
    stable: bool | None = Field(default=None, exclude_if=lambda v: v is None,
                                description="The set of reasons is the same in every re-run (None: not re-run).")


class ReasonsSummary(BaseModel):
    methods: list[str] = Field(description="The explanations the reasons derive from.")
    adverse: int = Field(description="Sampled decisions with principal reasons (adverse decisions).")
    agree: int = Field(description="Of those, decisions whose methods agree on the top reasons (or one method).")
    min_overlap: float = Field(description="The policy's bound on the methods' overlap for them to agree.")
    disagree: list[int | str] = Field(description="Adverse decisions whose methods disagree.")
    protected: list[int | str] = Field(default_factory=list, description="Adverse decisions where a protected "
                                       "characteristic ranked among the top reasons (withheld from the notice).")
    protected_share: float | None = Field(default=None, description="Their share of the adverse decisions.")
    stability_repeats: int = Field(default=0, description="Re-runs of the explanations behind the reasons with other "
                                   "seeds (principal_reasons.stability_repeats).")
    stability: float | None = Field(default=None, description="Share of the adverse decisions whose set of principal "
                                    "reasons is the same in every re-run (None without re-runs).")
    unstable: list[int | str] = Field(default_factory=list, description="Adverse decisions whose reasons change.")


def used_features(model, X: np.ndarray, seed: int, max_rows: int = 1000) -> list[str]:
    """Features whose values change the model's output: shuffling one changes some probability (or score)."""
    rng = np.random.default_rng(seed)
    rows = X if len(X) <= max_rows else X[rng.choice(len(X), max_rows, replace=False)]
    names = model.space.names
    shuffled = np.repeat(rows[None, :, :], len(names), axis=0)  # one copy per feature, scored in one call
    for i in range(len(names)):
        shuffled[i, :, i] = rng.permutation(shuffled[i, :, i])
    proba = model.outputs(shuffled.reshape(-1, rows.shape[1])).reshape(len(names), len(rows), -1)
    base = model.outputs(rows)
    return [name for i, name in enumerate(names) if np.any(np.abs(proba[i] - base) > 1e-9)]


def derive_reasons(explanations: dict, families: dict, *, adverse, methods: list[str], used: list[str],
                   names: list[str], labels: dict[str, str], texts: dict[str, str], max_reasons: int,
                   min_overlap: float = 0.5, missing: frozenset = frozenset(),
                   missing_texts: dict[str, str] | None = None,
                   protected: dict[str, str] | None = None) -> PrincipalReasons:
    """``families`` maps each explanation name to its family, which ranks the features its result points to;
    ``protected`` maps each protected feature to its basis: never a reason, withheld when it ranks among the top."""
    protected = protected or {}
    ranked = {m: families[m].reason_ranking(explanations[m], adverse, names) for m in methods if m in explanations}
    rankings = {m: [f for f in r if f in used] for m, r in ranked.items() if r is not None}
    methods = list(rankings)
    scores: dict[str, float] = {}
    for ranking in rankings.values():
        for r, f in enumerate(ranking[:BORDA_DEPTH]):
            scores[f] = scores.get(f, 0.0) + (BORDA_DEPTH - r) / BORDA_DEPTH / max(len(rankings), 1)
    order = sorted(scores, key=lambda f: (-scores[f], names.index(f)))
    withheld = [Withheld(feature=f, rank=k + 1, basis=protected[f], score=round(scores[f], 12),
                         method_ranks={m: (rankings[m].index(f) + 1 if f in rankings[m] else None) for m in methods})
                for k, f in enumerate(order[:max_reasons]) if f in protected]
    ranked = [f for f in order if f not in protected][:max_reasons]
    reasons = [
        Reason(rank=k + 1, feature=f, missing=f in missing, score=round(scores[f], 12),
               text=(missing_texts or {}).get(f, f"No record of: {labels[f]}") if f in missing
               else texts.get(f, labels[f]),
               method_ranks={m: (rankings[m].index(f) + 1 if f in rankings[m] else None) for m in methods})
        for k, f in enumerate(ranked)
    ]
    tops = {m: [f for f in r if f not in protected][:max_reasons] for m, r in rankings.items()}
    pairs = [(set(tops[a]), set(tops[b])) for a, b in combinations(methods, 2)]
    overlap = float(np.mean([len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs])) if pairs else None
    label = getattr(adverse, "label", adverse)  # an Adverse outcome, or a class label
    return PrincipalReasons(adverse_class=label, reasons=reasons, withheld=withheld, methods=methods, by_method=tops,
                            overlap=overlap, agree=None if overlap is None else overlap >= min_overlap)


def summarize_reasons(model_id: str, decisions: list, methods: list[str], *, min_overlap: float, repeats: int = 0
                      ) -> tuple[ReasonsSummary | None, list[Observation]]:
    """How many sampled decisions got principal reasons and whether their methods agree. ``decisions`` are read
    once, and only their ids and reasons kept (they may be on disk)."""
    adverse = [(d.id, d.principal_reasons) for d in decisions if d.principal_reasons is not None]
    if not adverse:
        return None, []
    disagree = [i for i, pr in adverse if pr.agree is False]
    affected = [(i, pr) for i, pr in adverse if pr.withheld]
    summary = ReasonsSummary(methods=methods, adverse=len(adverse), agree=len(adverse) - len(disagree),
                             min_overlap=min_overlap, disagree=disagree, protected=[i for i, _ in affected],
                             protected_share=len(affected) / len(adverse))
    rerun = [(i, pr) for i, pr in adverse if pr.stable is not None]
    if repeats and rerun:
        summary.stability_repeats = repeats
        summary.unstable = [i for i, pr in rerun if not pr.stable]
        summary.stability = (len(rerun) - len(summary.unstable)) / len(rerun)
    observations = []
    if summary.unstable:
        observations.append(Observation(
            level="warn", code="reasons.unstable", decisions=summary.unstable,
            setting="principal_reasons.stability_repeats",
            message=f"{model_id}: the principal reasons of {len(summary.unstable)} of {len(rerun)} adverse decision(s) "
                    f"({listed(summary.unstable)}) change when the explanations behind them are re-run with "
                    f"{'another seed' if repeats == 1 else f'{repeats} other seeds'}: Regulation B's reasons must not "
                    "depend on the run; review them (give the methods behind them more samples or background rows)."))
    if affected:
        features: dict[str, tuple[str, list]] = {}
        for i, pr in affected:
            for w in pr.withheld:
                features.setdefault(w.feature, (w.basis, []))[1].append(f"{i} (#{w.rank})")
        observations.append(Observation(
            level="warn", code="reasons.protected", decisions=[i for i, _ in affected],
            message=f"{model_id}: a protected characteristic ranked among the top reasons of {len(affected)} of "
                    f"{len(adverse)} adverse decision(s); it was withheld from their notices, which state only "
                    "permissible reasons; the decisions still rely on it: "
                    + "; ".join(f"{f} ({basis}) in decision(s) {listed(ids)}" for f, (basis, ids) in features.items())
                    + "."))
    if disagree:
        observations.append(Observation(
            level="warn", code="reasons.disagree", decisions=disagree, threshold=min_overlap,
            setting="principal_reasons.min_overlap",
            message=f"{model_id}: the methods behind the principal reasons disagree for decision(s) {listed(disagree)}; "
                    "review those reasons before they are used in an adverse-action notice."))
    return summary, observations
