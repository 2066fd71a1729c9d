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


@pytest.mark.parametrize("discretizer", ["quartile", "decile", "entropy", None])
@pytest.mark.parametrize("categorical", [False, True])
def test_sampler_draws_lime_s_own_samples(discretizer, categorical):
    """The batched engine's sampler gives, for many decisions at once, each decision's neighbourhood as lime's
    own sampler draws it after the same reseed: the same interpretable rows exactly, the same categories and bins
    exactly, and the same numeric values to 1e-12 (lime inverts scipy's truncated normal per value)."""
    from lime.lime_tabular import LimeTabularExplainer
    from sklearn.datasets import load_breast_cancer

    from auditor.explainers.lime_sampling import Sampler, reseed

    X, y = load_breast_cancer(return_X_y=True)
    X = X[:, :8].copy()
    categories = []
    if categorical:  # two categorical columns: three and five codes, unevenly frequent
        X[:, 1] = np.digitize(X[:, 1], [15, 20])
        X[:, 6] = np.digitize(X[:, 6], [0.02, 0.05, 0.1, 0.2])
        categories = [1, 6]
    library = LimeTabularExplainer(X, mode="classification", categorical_features=categories,
                                   discretize_continuous=discretizer is not None,
                                   discretizer=discretizer or "quartile", training_labels=y, random_state=0)
    rows, seeds = X[[0, 7, 300, 301]], [11, 7, 2**31 + 5, 0]
    data_b, inverse_b = Sampler(library).sample(rows, seeds, 2000)
    assert data_b.shape == inverse_b.shape == (4, 2000, 8)
    for k, (row, seed) in enumerate(zip(rows, seeds)):
        reseed(library, seed)
        data_a, inverse_a = library._LimeTabularExplainer__data_inverse(row, 2000)
        if discretizer is None:
            np.testing.assert_array_equal(data_a[:, categories], data_b[k][:, categories])
            np.testing.assert_allclose(data_b[k], data_a, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_array_equal(data_a, data_b[k])
        np.testing.assert_array_equal(inverse_a[:, categories], inverse_b[k][:, categories])
        np.testing.assert_allclose(inverse_b[k], inverse_a, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(inverse_b[k][0], row)
        assert len(np.unique(inverse_a[1:, 0])) > 100  # real draws, not bin edges
        if categorical:
            assert set(np.unique(inverse_a[:, 6])) == set(np.unique(X[:, 6]))


@pytest.mark.parametrize("point", [False, True])
def test_sampler_draws_lime_s_numbers_with_and_without_a_single_point_bin(point):
    """A bin whose reference values are all one number is not drawn from (lime writes its lower bound, and draws
    no uniform for it): the sampler's masked path. Without such a bin every value takes a uniform: its unmasked
    path. Both give lime's own numbers."""
    from lime.lime_tabular import LimeTabularExplainer
    from sklearn.datasets import load_breast_cancer

    from auditor.explainers.lime_sampling import Sampler, reseed

    X, y = load_breast_cancer(return_X_y=True)
    X = X[:, :5].copy()
    if point:
        X[: int(0.6 * len(X)), 2] = 0.0  # the lowest quartiles of column 2 hold only zeros
    library = LimeTabularExplainer(X, mode="classification", discretize_continuous=True, discretizer="quartile",
                                   training_labels=y, random_state=0)
    sampler = Sampler(library)
    assert sampler.every_bin_drawn is (not point)
    rows, seeds = X[[0, 400, 9]], [3, 2**31 + 1, 77]
    data_b, inverse_b = sampler.sample(rows, seeds, 1500)
    for k, (row, seed) in enumerate(zip(rows, seeds)):
        reseed(library, seed)
        data_a, inverse_a = library._LimeTabularExplainer__data_inverse(row, 1500)
        np.testing.assert_array_equal(data_a, data_b[k])
        np.testing.assert_allclose(inverse_b[k], inverse_a, rtol=1e-12, atol=1e-12)
    if point:
        assert (inverse_b[:, 1:, 2] == 0.0).any()  # the single point, written as lime writes it
