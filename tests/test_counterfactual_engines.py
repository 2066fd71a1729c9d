"""Quality parity of the batched counterfactual engine with dice-ml itself (engine: reference).

The batched engine runs DiCE's random search for every decision at once. It cannot reproduce DiCE's
random stream draw for draw (DiCE seeds numpy's global state per feature and loops over a DataFrame), so
parity is on what a reviewer reads: over the same decisions, the batched counterfactuals must be at least
as valid, as close, as sparse and as diverse as DiCE's, as measured by the same validator, within a small
tolerance for sampling noise. Both sides are real: the sample audit's gradient-boosting model and MLP
on the breast-cancer data, and the loan models with immutable features and permitted ranges.
"""

from __future__ import annotations

import numpy as np
import pytest

from auditor.explainers import EXPLAINERS, Batch

# Allowance for sampling noise between two random searches over the same 20-30 decisions. Measured: dice-ml
# itself, re-run with three seeds on 60 breast-cancer decisions, moves proximity and sparsity by up to ~5% and
# diversity by ~12%. A real loss of quality shows above it: drawing each feature independently (not DiCE's
# coupled draws) changed 34% more features than DiCE and fails here.
TOLERANCE = {"validity": 0.02, "proximity": 0.15, "sparsity": 0.15, "diversity": 0.15}


def explain(prep, engine: str, rows, **options):
    data = prep.dataset
    batch = Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])
    spec = EXPLAINERS["counterfactuals"].Spec(type="counterfactuals", engine=engine, count=3,
                                               **({"for": "all"} | options))
    results, params = EXPLAINERS["counterfactuals"](spec).explain(prep.model, batch, background=prep.background.X,
                                                                  seed=11)
    assert params["engine"] == engine
    return results


def quality(results, common: list[int]) -> dict[str, float]:
    """Validity over every decision; proximity, sparsity and diversity over the decisions both engines
    explain (an engine that finds counterfactuals for harder decisions is not penalised for their distance)."""

    def mean(metric):
        values = [getattr(results[k], metric) for k in common]
        values = [v for v in values if v is not None]
        return float(np.mean(values))

    # the share of asked counterfactuals each engine finds valid (the summary's validity is of what it returned)
    return {"validity": float(np.mean([len(r.counterfactuals) / r.asked for r in results if r.asked])), "proximity": mean("proximity"),
            "sparsity": mean("sparsity"), "diversity": mean("diversity"),
            "valid": sum(len(r.counterfactuals) for r in results)}


def compare(prep, rows, **options) -> tuple[dict, dict]:
    reference = explain(prep, "reference", rows, **options)
    batched = explain(prep, "batched", rows, **options)
    common = [k for k in range(len(rows)) if len(reference[k].counterfactuals) > 1 and len(batched[k].counterfactuals) > 1]
    assert len(common) >= len(rows) // 2, "too few decisions explained by both engines to compare"
    return quality(batched, common), quality(reference, common)


def assert_at_least_as_good(batched: dict, reference: dict) -> None:
    report = f"batched {batched} vs dice-ml {reference}"
    assert batched["validity"] >= reference["validity"] - TOLERANCE["validity"], report
    assert batched["proximity"] <= reference["proximity"] * (1 + TOLERANCE["proximity"]), report  # lower is closer
    assert batched["sparsity"] <= reference["sparsity"] * (1 + TOLERANCE["sparsity"]), report  # fewer changes
    assert batched["diversity"] >= reference["diversity"] * (1 - TOLERANCE["diversity"]), report


@pytest.fixture(scope="module")
def breast_cancer():
    from auditor.audit import prepare
    from auditor.policy import load_policy

    from conftest import SAMPLE_POLICY

    return {p.model.id: p for p in prepare(load_policy(SAMPLE_POLICY))}


@pytest.mark.parametrize("model", ["gbm", "mlp"])
def test_batched_counterfactuals_as_good_as_dice_on_breast_cancer(breast_cancer, model):
    prep = breast_cancer[model]
    rows = np.random.default_rng(3).choice(prep.dataset.n_rows, 20, replace=False)
    batched, reference = compare(prep, rows)
    print(f"\n{model}: batched {batched}\n{model}: dice-ml {reference}")
    assert_at_least_as_good(batched, reference)


@pytest.mark.parametrize("model", ["pipe", "mlp"])
def test_batched_counterfactuals_as_good_as_dice_under_constraints(loans, model):
    prep = loans.prepared[model]
    rows = np.random.default_rng(4).choice(prep.dataset.n_rows, 30, replace=False)
    options = {"immutable": ["housing", "tenure"],
               "permitted_range": {"income": [20, 90], "purpose": ["car", "education", "furniture"]}}
    batched, reference = compare(prep, rows, **options)
    print(f"\n{model}: batched {batched}\n{model}: dice-ml {reference}")
    assert_at_least_as_good(batched, reference)


def test_batched_engine_is_the_default_for_random_search_only():
    spec = EXPLAINERS["counterfactuals"].Spec
    assert spec(type="counterfactuals").engine == "batched"
    assert spec(type="counterfactuals", method="genetic").engine == "reference"
    with pytest.raises(ValueError, match="engine: reference"):
        spec(type="counterfactuals", method="kdtree", engine="batched")
