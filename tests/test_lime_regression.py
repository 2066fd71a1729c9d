"""LIME on regression models: the batched engine against lime's own regression mode, and results on the score scale.

The models are real scikit-learn pipelines (one-hot for the categorical feature), saved with skops and loaded
through the auditor's policy and adapter as an audit loads them. Scores are on a scale far from [0, 1] (around
150, spread ~50), so any step that treated them as probabilities (clipping, normalising) would show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from test_lime_engines import assert_same, explain

NUMERIC = ["x0", "x1", "x2", "x3"]
SITES = ["north", "south", "west"]
COEF = np.array([30.0, -20.0, 12.0, 0.0])  # x3 is ignored by the linear model
SITE_EFFECT = {"north": 0.0, "south": 25.0, "west": -10.0}


def make_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: np.round(rng.normal(0, 1, n), 3) for name in NUMERIC})
    frame.insert(2, "site", rng.choice(SITES, n))
    score = 150 + frame[NUMERIC].to_numpy() @ COEF + frame["site"].map(SITE_EFFECT).to_numpy()
    frame["outcome"] = score + 8 * np.sin(3 * frame["x0"]) + rng.normal(0, 5, n)
    frame.insert(0, "case", [f"r{seed}-{i:03d}" for i in range(n)])
    return frame


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """{'gbr': Prepared, 'linear': Prepared}: a gradient-boosted and a linear regression pipeline, audited."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from auditor.audit import prepare
    from auditor.policy import load_policy

    folder = tmp_path_factory.mktemp("lime_regression")
    data, background = make_rows(120, seed=31), make_rows(300, seed=32)
    data.to_csv(folder / "data.csv", index=False)
    background.to_csv(folder / "background.csv", index=False)
    features = NUMERIC[:2] + ["site"] + NUMERIC[2:]
    X, y = background[features], background["outcome"]
    linear_score = 150 + X[NUMERIC].to_numpy() @ COEF + X["site"].map(SITE_EFFECT).to_numpy()
    for name, regressor, target in [("gbr", GradientBoostingRegressor(n_estimators=60, max_depth=2, random_state=0), y),
                                    ("linear", LinearRegression(), linear_score)]:
        pipe = Pipeline([("encode", ColumnTransformer([("site", OneHotEncoder(categories=[SITES]), ["site"])],
                                                      remainder="passthrough")),
                         ("regress", regressor)]).fit(X, target)
        sio.dump(pipe, folder / f"{name}.skops")
    spec = [{"name": n} | ({"type": "categorical", "categories": SITES} if n == "site" else {}) for n in features]
    policy = {
        "version": 1,
        "audit": {"id": "lime-regression", "title": "LIME regression test", "audience": "medical",
                  "owner": "Test team", "intended_use": "Exercising LIME on regression models."},
        "models": [{"id": m, "path": f"{m}.skops", "format": "skops", "task": "regression"} for m in ("gbr", "linear")],
        "datasets": [{"id": "data", "path": "data.csv", "target": "outcome", "id_column": "case", "features": spec},
                     {"id": "background", "path": "background.csv", "target": "outcome", "id_column": "case",
                      "features": spec}],
        "audited": [{"model": m, "dataset": "data", "background": "background"} for m in ("gbr", "linear")],
        "sample": {"size": 6, "seed": 3},
        "explanations": [{"type": "lime", "num_samples": 500}],
        "report": {"formats": ["html"]},
    }
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return {p.model.id: p for p in prepare(load_policy(folder / "policy.yaml"))}


@pytest.mark.parametrize("model", ["gbr", "linear"])
@pytest.mark.parametrize("options", [{}, {"discretize_continuous": False}, {"discretizer": "decile"},
                                     {"repeats": 3}])
def test_batched_lime_matches_lime_s_regression_mode(scored, model, options):
    prep = scored[model]
    assert prep.model.regression and prep.model.space.categorical_indices
    ref, ref_params = explain(prep, "reference", [0, 5, 17, 40], num_samples=1000, **options)
    bat, bat_params = explain(prep, "batched", [0, 5, 17, 40], num_samples=1000, **options)
    assert ref_params["engine"] == "reference" and bat_params["engine"] == "batched"
    assert_same(ref, bat)  # the same tolerance as the classifiers' parity
    assert [r.stability for r in ref] == [r.stability for r in bat]
    assert {r.target for r in ref + bat} == {"score"}


def test_regression_lime_is_on_the_score_scale(scored):
    """A linear model, continuous features: lime's local model is the model itself, so each weight is the
    coefficient times the feature's spread, the local fit is close and it predicts the model's score."""
    prep = scored["linear"]
    rows = [0, 5, 17, 40]
    results, _ = explain(prep, "batched", rows, num_samples=4000, discretize_continuous=False)
    scores = prep.model.predict(prep.dataset.X[rows])
    assert scores.min() > 20  # far from [0, 1]
    spread = prep.background.X[:, [prep.model.space.names.index(n) for n in NUMERIC]].std(axis=0)
    for result, score in zip(results, scores):
        assert result.target == "score"
        assert result.model_prediction == pytest.approx(score, rel=1e-12)
        assert result.score > 0.9  # not 1: lime sees the 3-valued site only as "the decision's site or not"
        assert result.local_prediction == pytest.approx(score, abs=3.0)
        weights = np.array([result.weights[n] for n in NUMERIC])
        np.testing.assert_allclose(weights, COEF * spread, rtol=0.03, atol=0.5)
        assert result.intercept > 50  # the score's level, not a probability


def test_lime_s_forward_selection_on_a_regression_model_reads_the_score_s_sign(scored):
    """num_features <= 6 runs lime itself; its regression explanation is read from label 1 (label 0 is negated)."""
    prep = scored["linear"]
    (result,), params = explain(prep, "batched", [5], num_samples=2000, num_features=2,
                                discretize_continuous=False)
    assert params["engine"] == "reference"
    assert list(result.weights) == ["x0", "x1"]
    assert result.weights["x0"] > 0 > result.weights["x1"]


def test_validate_refuses_the_entropy_discretiser_for_a_regression_model(scored, tiny):
    from auditor.explainers import EXPLAINERS

    lime = EXPLAINERS["lime"]
    spec = lime.Spec(type="lime", discretizer="entropy")
    (problem,) = lime.check(spec, scored["gbr"].model)
    assert problem[0] == "discretizer" and "regression" in problem[1]
    assert lime.check(lime.Spec(type="lime"), scored["gbr"].model) == []
    assert lime.check(spec, tiny["logreg"].model) == []
