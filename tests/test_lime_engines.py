"""Parity of the batched LIME engine with the lime library itself (engine: reference).

The batched engine draws each decision's neighbourhood with lime's own sampler and seed, scores every
decision's perturbations in one model call, and solves lime's weighted ridge in closed form. For the
same data and seeds it must give lime's weights, conditions, local fit and local prediction.
"""

from __future__ import annotations

import numpy as np
import pytest

from auditor.explainers import EXPLAINERS, Batch


def explain(prep, engine: str, rows, **options):
    data = prep.dataset
    batch = Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])
    spec = EXPLAINERS["lime"].Spec(type="lime", engine=engine, **options)
    return EXPLAINERS["lime"](spec).explain(prep.model, batch, background=prep.background.X, seed=7)


def assert_same(reference, batched):
    assert len(reference) == len(batched)
    for a, b in zip(reference, batched):
        assert list(a.weights) == list(b.weights)  # same features, same order (by |weight|)
        assert a.conditions == b.conditions
        np.testing.assert_allclose([a.weights[f] for f in a.weights], [b.weights[f] for f in a.weights],
                                   rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose([a.score, a.intercept, a.local_prediction, a.model_prediction],
                                   [b.score, b.intercept, b.local_prediction, b.model_prediction],
                                   rtol=1e-6, atol=1e-10)
        # the top features a reviewer reads agree
        assert list(a.weights)[:5] == list(b.weights)[:5]


@pytest.mark.parametrize("model", ["logreg", "mlp"])
@pytest.mark.parametrize("options", [{}, {"discretize_continuous": False}, {"discretizer": "decile"},
                                     {"discretizer": "entropy"}])
def test_batched_lime_matches_the_library_on_numeric_data(tiny, model, options):
    (ref, ref_params) = explain(tiny[model], "reference", [0, 3, 8, 21], num_samples=800, **options)
    (bat, bat_params) = explain(tiny[model], "batched", [0, 3, 8, 21], num_samples=800, **options)
    assert ref_params["engine"] == "reference" and bat_params["engine"] == "batched"
    assert_same(ref, bat)


@pytest.mark.parametrize("model", ["pipe", "mlp"])
def test_batched_lime_matches_the_library_with_categorical_features(loans, model):
    prep = loans.prepared[model]
    assert prep.model.space.categorical_indices
    assert_same(explain(prep, "reference", [1, 4, 9], num_samples=800)[0],
                explain(prep, "batched", [1, 4, 9], num_samples=800)[0])


def test_batched_lime_matches_with_feature_selection(tiny):
    """Fewer features than the model has, above lime's forward-selection cut-off of 6: 'highest_weights'."""
    from auditor.audit import prepare
    from auditor.policy import load_policy

    from conftest import SAMPLE_POLICY

    prep = prepare(load_policy(SAMPLE_POLICY))[0]
    assert_same(explain(prep, "reference", [2, 5], num_samples=1000, num_features=8)[0],
                explain(prep, "batched", [2, 5], num_samples=1000, num_features=8)[0])


def test_few_features_fall_back_to_the_library(tiny):
    """num_features <= 6 and fewer than the model has: lime's forward selection, which only lime implements."""
    _, params = explain(tiny["logreg"], "batched", [0], num_samples=300, num_features=2)
    assert params["engine"] == "reference"


@pytest.mark.parametrize("discretizer", ["quartile", "decile", "entropy"])
def test_fast_undiscretiser_draws_lime_s_own_samples(discretizer):
    """The batched engine's per-bin inverse CDF: lime's sampler gives the same neighbourhood with it,
    the same binary rows exactly and the same numeric values to 1e-12 (scipy's truncnorm.rvs without it)."""
    import copy

    from lime.lime_tabular import LimeTabularExplainer
    from sklearn.datasets import load_breast_cancer

    from auditor.explainers.lime_tabular import _fast_undiscretize, _reseed

    X, y = load_breast_cancer(return_X_y=True)
    library = LimeTabularExplainer(X, mode="classification", discretizer=discretizer, training_labels=y,
                                   random_state=0)
    fast = copy.deepcopy(library)
    _fast_undiscretize(fast.discretizer)
    for k in (0, 7, 300):
        _reseed(library, k)
        _reseed(fast, k)
        data_a, inverse_a = library._LimeTabularExplainer__data_inverse(X[k], 2000)
        data_b, inverse_b = fast._LimeTabularExplainer__data_inverse(X[k], 2000)
        np.testing.assert_array_equal(data_a, data_b)
        np.testing.assert_allclose(inverse_b, inverse_a, rtol=1e-12, atol=1e-12)
        assert len(np.unique(inverse_a[1:, 0])) > 100  # real draws, not bin edges
