"""Shapley values: known contributions of an additive model, efficiency, exact values by enumeration, Captum
parity of the batched engine, a tree ensemble, categorical features as one feature, per-decision seeding.

Every model is real and goes through the auditor's loaders (TorchScript, skops); exact values are computed
here independently, by enumerating every subset of features against the same background rows.
"""

from __future__ import annotations

import math
from itertools import combinations, permutations

import numpy as np
import pytest

from auditor.explainers import EXPLAINERS, Batch
from auditor.explainers.shapley import background_rows

from conftest import FEATURES, base_policy, save_torchscript

SHAPLEY = EXPLAINERS["shapley"]
WEIGHTS = np.array([0.12, -0.08, 0.05, 0.0])  # additive in probability space: p = 0.5 + sum w_i tanh(x_i)


def shapley(**options):
    return SHAPLEY(SHAPLEY.Spec(type="shapley", **options))


def batch_of(prep, rows) -> Batch:
    data = prep.dataset
    rows = list(rows)
    return Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])


def values(results, names) -> np.ndarray:
    return np.array([[r.attributions[n] for n in names] for r in results])


def policy_for(artifacts, folder, model: dict, explanations: list[dict]):
    """The tiny policy auditing one model on the tiny data against its background, loaded and prepared."""
    import yaml

    from auditor.audit import prepare
    from auditor.policy import load_policy

    tree = base_policy(artifacts, folder)
    tree.update(models=[model], explanations=explanations,
                audited=[{"model": model["id"], "dataset": "data", "background": "background"}])
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    (prep,) = prepare(load_policy(path))
    return prep


def engine_rows(prep, spec) -> np.ndarray:
    """The background rows an engine averages over (stratified by the model's output, seeded)."""
    model, background = prep.model, prep.background.X
    scores = model.predict_proba(background)[:, model.positive_index]
    return background_rows(background, spec.background_rows, 0, scores=scores)


def exact(model, x: np.ndarray, bg: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact interventional Shapley values of ``x`` against the rows ``bg``, by enumerating every subset, and
    the variance over all permutations of each feature's marginal contribution (for sampling tolerances)."""
    d = len(x)
    value = {}
    for size in range(d + 1):
        for subset in combinations(range(d), size):
            rows = bg.copy()
            rows[:, list(subset)] = x[list(subset)]
            value[frozenset(subset)] = float(model.predict_proba(rows)[:, target].mean())
    phi = np.zeros(d)
    for i in range(d):
        for subset, v in value.items():
            if i not in subset:
                s = len(subset)
                phi[i] += math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) * (value[subset | {i}] - v)
    contributions = np.zeros((math.factorial(d), d))
    for k, order in enumerate(permutations(range(d))):
        seen: set[int] = set()
        for i in order:
            contributions[k, i] = value[frozenset(seen | {i})] - value[frozenset(seen)]
            seen.add(i)
    assert np.allclose(contributions.mean(axis=0), phi)  # the two definitions agree
    return phi, contributions.var(axis=0)


@pytest.fixture(scope="module")
def additive(artifacts, tmp_path_factory):
    """A TorchScript model that is additive in probability space, over the tiny data set."""
    import torch

    class Additive(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.tensor(WEIGHTS, dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = 0.5 + (torch.tanh(x) * self.w).sum(dim=1, keepdim=True)
            return torch.cat([1 - p, p], dim=1)

    folder = tmp_path_factory.mktemp("additive")
    save_torchscript(Additive(), folder / "additive.pt")
    return policy_for(artifacts, folder, {"id": "additive", "path": "additive.pt", "format": "torchscript",
                                          "classes": ["no", "yes"], "outputs": "probabilities"},
                      [{"type": "shapley"}])


def test_additive_model_gets_its_known_contributions(additive):
    """With every reference row, an additive model's Shapley values are exactly each feature's own term minus
    its mean: no permutation noise (marginal contributions do not depend on the coalition)."""
    prep = additive
    bg = prep.background.X
    batch = batch_of(prep, range(0, 60, 6))
    results, parameters = shapley(background_rows=len(bg), n_samples=3).explain(prep.model, batch, background=bg,
                                                                                 seed=0)
    assert parameters["background_rows"] == len(bg) and parameters["background_sample"] == "all rows"
    known = WEIGHTS * (np.tanh(batch.X) - np.tanh(bg).mean(axis=0))
    np.testing.assert_allclose(values(results, FEATURES), known, atol=2e-6)  # float32 network
    assert all(r.target == "yes" for r in results)


def test_additive_model_within_background_sampling_error(additive):
    """With a sample of the reference rows the values differ from the population's contributions by the
    sampling error of each term's mean: within four standard errors."""
    prep = additive
    bg = prep.background.X
    size = 40
    results, _ = shapley(background_rows=size, n_samples=3).explain(prep.model, batch_of(prep, range(10)),
                                                                    background=bg, seed=0)
    known = WEIGHTS * (np.tanh(prep.dataset.X[:10]) - np.tanh(bg).mean(axis=0))
    error = np.abs(WEIGHTS) * np.tanh(bg).std(axis=0) / np.sqrt(size) * np.sqrt(1 - size / len(bg))
    assert np.all(np.abs(values(results, FEATURES) - known) <= 4 * error + 2e-6)


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_efficiency_holds_within_the_recorded_gap(additive, tiny, engine):
    for prep in (additive, tiny["mlp"], tiny["logreg"]):
        bg = prep.background.X
        results, _ = shapley(engine=engine, background_rows=30, n_samples=5).explain(
            prep.model, batch_of(prep, [1, 7, 30]), background=bg, seed=2)
        reference = prep.model.predict_proba(bg).mean(axis=0)  # computed here, not by the explainer
        proba = prep.model.predict_proba(batch_of(prep, [1, 7, 30]).X)
        for k, r in enumerate(results):
            t = prep.model.classes.index(r.target)
            total = sum(r.attributions.values())
            assert r.attribution_sum == pytest.approx(total, abs=1e-12)
            assert r.expected_value == pytest.approx(reference[t], abs=1e-12)
            assert r.output == pytest.approx(proba[k, t], abs=1e-12)
            assert abs(total - (r.output - r.expected_value)) <= r.efficiency_gap + 1e-6
            assert r.efficiency_gap == pytest.approx(abs(total - (r.output - r.expected_value)), abs=1e-12)


def test_matches_exact_values_by_enumeration(loans):
    """The loan pipeline: 6 features (two categorical, switched as one feature each), logistic link, so the
    features interact in probability space. Against the same 25 background rows, the batched engine's values
    are within four standard errors of the exact ones; the standard error of each value is computed from the
    exact variance of its marginal contribution over all 720 feature orders and the 400 permutations sampled."""
    prep = loans.prepared["pipe"]
    spec = SHAPLEY.Spec(type="shapley", background_rows=25, n_samples=400)
    batch = batch_of(prep, [3, 11, 42])
    results, _ = SHAPLEY(spec).explain(prep.model, batch, background=prep.background.X, seed=0)
    bg = engine_rows(prep, spec)
    names = prep.model.space.names
    assert set(results[0].attributions) == set(names)  # one value per feature, not per one-hot column
    for k, r in enumerate(results):
        phi, variance = exact(prep.model, batch.X[k], bg, prep.model.classes.index(r.target))
        tolerance = 4 * np.sqrt(variance / spec.n_samples) + 1e-9
        got = np.array([r.attributions[n] for n in names])
        assert np.all(np.abs(got - phi) <= tolerance), (got, phi, tolerance)
        assert np.abs(got - phi).max() < 0.02  # and close in absolute terms


def test_batched_engine_is_captums_shapley_value_sampling(loans, tiny):
    """The batched engine draws each decision's permutations as Captum does and averages the same marginal
    contributions: its values are Captum's (which accumulates in float32) to 1e-6."""
    for prep in (loans.prepared["pipe"], loans.prepared["mlp"], tiny["mlp"]):
        batch = batch_of(prep, [0, 5, 9, 20])
        options = {"background_rows": 20, "n_samples": 7}
        ours, p1 = shapley(engine="batched", **options).explain(prep.model, batch, background=prep.background.X,
                                                                 seed=4)
        captum, p2 = shapley(engine="reference", **options).explain(prep.model, batch,
                                                                     background=prep.background.X, seed=4)
        names = prep.model.space.names
        np.testing.assert_allclose(values(ours, names), values(captum, names), atol=1e-6)
        assert p1 | {"engine": None} == p2 | {"engine": None}


@pytest.fixture(scope="module")
def forest(artifacts, tmp_path_factory):
    """A gradient-boosting classifier on the tiny data, saved with skops."""
    import pandas as pd
    import skops.io as sio
    from sklearn.ensemble import GradientBoostingClassifier

    folder = tmp_path_factory.mktemp("forest")
    frame = pd.read_csv(artifacts.background)
    model = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0)
    sio.dump(model.fit(frame[FEATURES], frame["label"]), folder / "gbm.skops")
    return policy_for(artifacts, folder, {"id": "gbm", "path": "gbm.skops", "format": "skops"}, [{"type": "shapley"}])


def test_a_tree_ensemble_matches_its_exact_values(forest):
    """Trees split on thresholds, so a feature's contribution jumps with the reference row's value: the exact
    values by enumeration, and the batched engine within four standard errors of them."""
    prep = forest
    spec = SHAPLEY.Spec(type="shapley", background_rows=30, n_samples=300)
    batch = batch_of(prep, range(0, 80, 16))
    results, _ = SHAPLEY(spec).explain(prep.model, batch, background=prep.background.X, seed=0)
    bg = engine_rows(prep, spec)
    for k, r in enumerate(results):
        phi, variance = exact(prep.model, batch.X[k], bg, prep.model.classes.index(r.target))
        got = np.array([r.attributions[n] for n in FEATURES])
        assert np.all(np.abs(got - phi) <= 4 * np.sqrt(variance / spec.n_samples) + 1e-9), (got, phi)


def test_a_decision_gets_the_same_values_alone_or_in_a_batch(loans):
    prep = loans.prepared["pipe"]
    explainer = shapley(background_rows=15, n_samples=4)
    alone, _ = explainer.explain(prep.model, batch_of(prep, [17]), background=prep.background.X, seed=9)
    among, _ = explainer.explain(prep.model, batch_of(prep, [3, 17, 40]), background=prep.background.X, seed=9)
    assert alone[0].attributions == among[1].attributions
    other_seed, _ = explainer.explain(prep.model, batch_of(prep, [17]), background=prep.background.X, seed=10)
    assert other_seed[0].attributions != alone[0].attributions


def test_a_gap_above_the_bound_is_an_observation(additive):
    prep = additive
    explainer = shapley(background_rows=5, n_samples=3, warn_efficiency_gap=1e-9)
    batch = batch_of(prep, [0, 1, 2])
    results, parameters = explainer.explain(prep.model, batch, background=prep.background.X, seed=0)
    summary, observations = explainer.summarize("shapley", "additive", results, batch.ids, parameters)
    assert summary.max_efficiency_gap == max(r.efficiency_gap for r in results) > 1e-9
    assert summary.background_rows == 5 and summary.reference_rows == len(prep.background.X)
    (o,) = observations
    assert o.level == "warn" and o.decisions == summary.flagged == list(batch.ids)
    assert o.threshold == 1e-9 and o.setting == "explanations[shapley].warn_efficiency_gap"
