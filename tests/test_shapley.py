"""Shapley values: known contributions of an additive model, efficiency, exact values by enumeration, Captum
parity of the batched engine, a tree ensemble, categorical features as one feature, per-decision seeding; the
tree engine held to enumeration on every kind of tree ensemble it reads.

Every model is real and goes through the auditor's loaders (TorchScript, skops); exact values are computed
here independently, by enumerating every subset of features against the same background rows.
"""

from __future__ import annotations

import math
from itertools import combinations, permutations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingClassifier, GradientBoostingRegressor,
                              HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier)
from sklearn.tree import DecisionTreeClassifier

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
            value[frozenset(subset)] = float(model.outputs(rows)[:, target].mean())
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

    folder = tmp_path_factory.mktemp("forest")
    frame = pd.read_csv(artifacts.background)
    model = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0)
    sio.dump(model.fit(frame[FEATURES], frame["label"]), folder / "gbm.skops")
    return policy_for(artifacts, folder, {"id": "gbm", "path": "gbm.skops", "format": "skops"}, [{"type": "shapley"}])


def test_a_tree_ensemble_matches_its_exact_values(forest):
    """Trees split on thresholds, so a feature's contribution jumps with the reference row's value: the exact
    values of the probability by enumeration, and the batched engine within four standard errors of them."""
    prep = forest
    spec = SHAPLEY.Spec(type="shapley", engine="batched", background_rows=30, n_samples=300)
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


# --- the tree engine ------------------------------------------------------------------------------------------
#
# Eight features with interactions, so that deep trees have paths through more features than the mask groups
# take (CODE_SLOTS): both of the engine's ways are exercised. Values are rounded to three decimals, so that rows
# share values and some sit exactly on a split. The exact values are computed here by enumerating all 256
# coalitions against every background row.

TREE_FEATURES = [f"t{i}" for i in range(8)]


def tree_frame(n: int, seed: int, gaps: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(TREE_FEATURES)))
    score = (X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] ** 2 + 0.4 * X[:, 4] * X[:, 5] + 0.3 * X[:, 6]
             - 0.2 * X[:, 7])
    frame = pd.DataFrame(X.round(3), columns=TREE_FEATURES)
    if gaps:  # missing values, which the libraries route by what they learnt
        frame.loc[rng.random(n) < 0.15, "t1"] = np.nan
        frame.loc[rng.random(n) < 0.1, "t5"] = 0.0
    frame["score"] = score.round(3)
    frame["label"] = np.where(score + rng.normal(0, 0.5, n) > 0, "yes", "no")
    frame["kind"] = np.array(["low", "mid", "high"])[np.digitize(score, [-0.6, 0.6])]
    return frame


@pytest.fixture(scope="module")
def tree_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tree_data")
    frames = {}
    for gaps in (False, True):
        for name, n, seed in (("data", 40, 31), ("background", 120, 32)):
            frame = tree_frame(n, seed, gaps)
            frame.to_csv(folder / f"{'gappy_' if gaps else ''}{name}.csv", index=False)
            frames[gaps, name] = frame
    return folder, frames


def tree_subject(artifacts, tree_data, folder, estimator, *, target="label", gaps=False, fmt="skops", **entry):
    """``estimator`` fitted on the background rows, saved in ``fmt`` and audited through the auditor's loaders."""
    import skops.io as sio
    import yaml

    from auditor.audit import prepare
    from auditor.policy import load_policy

    data_folder, frames = tree_data
    train = frames[gaps, "background"]
    prefix = "gappy_" if gaps else ""
    if fmt == "skops":
        estimator.fit(train[TREE_FEATURES], train[target])
        path = folder / "model.skops"
        sio.dump(estimator, path)
    else:  # a booster, trained on the matrix, saved in its own format
        labels = (train[target] == "yes").to_numpy(dtype=float) if target == "label" else train[target].to_numpy()
        path = folder / ("model.ubj" if fmt == "xgboost" else "model.txt")
        estimator(train[TREE_FEATURES].to_numpy(), labels).save_model(str(path))
    tree = base_policy(artifacts, folder)
    features = [{"name": n} for n in TREE_FEATURES]
    tree["datasets"] = [{"id": name, "path": str(data_folder / f"{prefix}{name}.csv"), "target": target,
                         "features": features}
                        for name in ("data", "background")]
    model = {"id": "trees", "path": str(path), "format": fmt, **entry}
    if target == "score":
        model["task"] = "regression"
    tree.update(models=[model], explanations=[{"type": "shapley"}],
                audited=[{"model": "trees", "dataset": "data", "background": "background"}])
    (folder / "policy.yaml").write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    (prep,) = prepare(load_policy(folder / "policy.yaml"))
    return prep


def coalitions(model, x: np.ndarray, bg: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """The output at every hybrid of ``x`` and each background row, (coalitions, background rows), and the
    matrix that turns one reference row's column of it into that row's exact Shapley values (features x
    coalitions)."""
    d = len(x)
    masks = np.array([[(c >> i) & 1 for i in range(d)] for c in range(2 ** d)], dtype=bool)
    rows = np.where(masks[:, None, :], x[None, None, :], bg[None, :, :]).reshape(-1, d)
    games = model.outputs(rows)[:, target].reshape(2 ** d, len(bg))
    size = masks.sum(axis=1)
    w = np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)] + [0.0])
    weights = np.where(masks.T, w[np.maximum(size - 1, 0)][None, :], -w[size][None, :])
    return games, weights


def rescaled_exact(model, x: np.ndarray, bg: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """For a classifier whose probability is the logistic function of log-odds g: the exact Shapley values of g
    against each background row z, times (p(x) - p(z)) / (g(x) - g(z)), averaged; and, apart, the exact values of
    the probability itself."""
    games, weights = coalitions(model, x, bg, target)
    g = np.log(games / (1 - games))
    # where the two rows' log-odds are equal (their routes need not be) the factor is its limit, p (1 - p)
    limit = np.full(len(bg), games[-1, 0] * (1 - games[-1, 0]))
    rescale = np.divide(games[-1] - games[0], g[-1] - g[0], out=limit, where=g[-1] != g[0])
    return ((weights @ g) * rescale).mean(axis=1), (weights @ games).mean(axis=1)


def tree_run(prep, rows, **options):
    explainer = shapley(**options)
    batch = batch_of(prep, rows)
    results, parameters = explainer.explain(prep.model, batch, background=prep.background.X, seed=0)
    return batch, results, parameters


SUMS_OF_TREES = {
    "decision tree": lambda: DecisionTreeClassifier(random_state=0),
    "random forest": lambda: RandomForestClassifier(n_estimators=12, random_state=0),
    "extra trees, regression": lambda: ExtraTreesRegressor(n_estimators=8, random_state=0),
    "gradient boosting, regression": lambda: GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0),
    "histogram boosting, regression": lambda: HistGradientBoostingRegressor(max_iter=30, max_leaf_nodes=15,
                                                                            random_state=0),
}


@pytest.mark.parametrize("gaps", [False, True], ids=["complete", "missing values"])
@pytest.mark.parametrize("name", sorted(SUMS_OF_TREES))
def test_tree_engine_is_exact_where_the_output_is_a_sum_of_trees(artifacts, tree_data, tmp_path, name, gaps):
    """Forests' class probabilities and regression ensembles' scores are sums over trees: engine auto takes the
    tree engine, and its values are the exact interventional Shapley values (enumerated) to 1e-9; they add up to
    the output's difference from the background's mean (efficiency gap at rounding level)."""
    if gaps and name.startswith("gradient"):
        pytest.skip("GradientBoosting does not take missing values")
    prep = tree_subject(artifacts, tree_data, tmp_path, SUMS_OF_TREES[name](),
                        target="score" if "regression" in name else "label", gaps=gaps)
    bg = prep.background.X
    batch, results, parameters = tree_run(prep, [0, 7, 19], background_rows=len(bg))
    assert parameters["engine"] == "tree" and "n_samples" not in parameters
    assert parameters["tree_output"] == ("score" if "regression" in name else "probability")
    for k, r in enumerate(results):
        games, weights = coalitions(prep.model, batch.X[k], bg, prep.model.classes.index(r.target))
        exact_values = (weights @ games).mean(axis=1)
        np.testing.assert_allclose(values([r], TREE_FEATURES)[0], exact_values, rtol=0, atol=1e-9)
        assert r.efficiency_gap < 1e-9


def xgboost_model(**params):
    def train(X, y):
        import xgboost

        options = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1} | params
        return xgboost.train(options, xgboost.DMatrix(X, label=y, missing=np.nan), 25)
    return train


def lightgbm_model(**params):
    def train(X, y):
        import lightgbm

        options = {"objective": "binary", "num_leaves": 12, "min_data_in_leaf": 5, "verbose": -1,
                   "num_threads": 1} | params
        return lightgbm.train(options, lightgbm.Dataset(X, label=y), 25)
    return train


BOOSTED = {
    "gradient boosting": ("skops", lambda: GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0)),
    "gradient boosting, exponential loss": ("skops", lambda: GradientBoostingClassifier(
        loss="exponential", n_estimators=20, random_state=0)),
    "histogram boosting": ("skops", lambda: HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=20,
                                                                           random_state=0)),
    "xgboost": ("xgboost", xgboost_model),
    "lightgbm": ("lightgbm", lightgbm_model),
    "lightgbm, zero as missing": ("lightgbm", lambda: lightgbm_model(zero_as_missing=True)),
}


@pytest.mark.parametrize("name", sorted(BOOSTED))
def test_tree_engine_rescales_exact_log_odds_values_for_a_boosted_classifier(artifacts, tree_data, tmp_path, name):
    """A boosted classifier's probability is the logistic function of summed log-odds g. Against each background
    row z the values are the exact (enumerated) Shapley values of g, rescaled by (p(x) - p(z)) / (g(x) - g(z)),
    then averaged: to 1e-9 (XGBoost: to its float32 output). Rows with equal log-odds but different routes occur
    (the exponential loss's leaves take few values), and get the factor's limit. The values add up exactly; they are
    not the exact values of the probability itself, which differ by far more than rounding."""
    fmt, make_model = BOOSTED[name]
    entry = {} if fmt == "skops" else {"classes": ["no", "yes"]}
    prep = tree_subject(artifacts, tree_data, tmp_path, make_model(), gaps=fmt != "skops" or "histogram" in name,
                        fmt=fmt, **entry)
    bg = prep.background.X
    batch, results, parameters = tree_run(prep, [0, 7, 19, 33], background_rows=len(bg))
    assert parameters["engine"] == "tree" and parameters["tree_output"] == "log-odds, rescaled per background row"
    tolerance = 2e-6 if fmt == "xgboost" else 1e-9
    apart = 0.0
    for k, r in enumerate(results):
        expected, of_probability = rescaled_exact(prep.model, batch.X[k], bg, prep.model.classes.index(r.target))
        np.testing.assert_allclose(values([r], TREE_FEATURES)[0], expected, rtol=0, atol=tolerance)
        assert r.efficiency_gap < tolerance
        apart = max(apart, float(np.abs(of_probability - expected).max()))
    assert apart > 1e-4  # the limit the methods text states


def test_tree_engine_reads_a_booster_on_one_hot_categories(loans, tmp_path):
    """An XGBoost booster trained on one-hot categories: each category's columns belong to its feature, which is
    switched as one; the values are the rescaled exact log-odds values (enumerated over the 6 features)."""
    import xgboost

    from auditor.audit import prepare
    from auditor.policy import load_policy

    from conftest import LOAN_TARGET, loan_design

    frame = loans.background_frame
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                            xgboost.DMatrix(loan_design(frame), label=(frame[LOAN_TARGET] == "bad").astype(float)), 20)
    booster.save_model(str(tmp_path / "loans.ubj"))
    entry = {"id": "pipe", "path": "loans.ubj", "format": "xgboost", "classes": ["good", "bad"],
             "positive_class": "bad", "categorical_encoding": "onehot"}
    audited = [{"model": "pipe", "dataset": "loans", "background": "history"}]
    path = loans.write(tmp_path, models=[entry], audited=audited)
    (prep,) = prepare(load_policy(path))
    batch, results, parameters = tree_run(prep, [3, 11, 42], background_rows=20)
    assert parameters["engine"] == "tree"
    bg = engine_rows(prep, SHAPLEY.Spec(type="shapley", background_rows=20))
    for k, r in enumerate(results):
        expected, _ = rescaled_exact(prep.model, batch.X[k], bg, prep.model.classes.index(r.target))
        np.testing.assert_allclose(values([r], prep.model.space.names)[0], expected, rtol=0, atol=2e-6)


def test_tree_engine_reads_a_pipeline_that_maps_each_feature_on_its_own(loans, tmp_path):
    """One-hot categories and scaled numbers before a forest: each encoded column belongs to one feature, so the
    engine reads the pipeline and its values are exact (enumerated over the 6 features) to 1e-9. A step that mixes
    features (PCA) makes engine auto sample permutations instead, and say why in the parameters; engine tree is
    then a policy problem."""
    import skops.io as sio
    import yaml
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from auditor.audit import prepare
    from auditor.policy import load_policy

    from conftest import LOAN_CATEGORIES, LOAN_FEATURES, LOAN_NUMERIC, LOAN_TARGET

    frame = loans.background_frame
    encode = ColumnTransformer([("cat", OneHotEncoder(categories=[LOAN_CATEGORIES[c] for c in LOAN_CATEGORIES]),
                                 list(LOAN_CATEGORIES)), ("num", StandardScaler(), LOAN_NUMERIC)])
    prepared = {}
    pipelines = {
        "forest": [("encode", encode),
                   ("forest", RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0))],
        "mixed": [("encode", encode), ("pca", PCA(n_components=4)),
                  ("forest", RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0))],
    }
    for name, steps in pipelines.items():
        sio.dump(Pipeline(steps).fit(frame[LOAN_FEATURES], frame[LOAN_TARGET]), tmp_path / f"{name}.skops")
        path = loans.write(tmp_path, name=f"{name}.yaml", models__0__path=f"{name}.skops",
                           audited=[{"model": "pipe", "dataset": "loans", "background": "history"}])
        (prepared[name],) = prepare(load_policy(path))

    prep = prepared["forest"]
    bg = engine_rows(prep, SHAPLEY.Spec(type="shapley", background_rows=20))
    batch, results, parameters = tree_run(prep, [3, 11, 42], background_rows=20)
    assert parameters["engine"] == "tree"
    names = prep.model.space.names
    for k, r in enumerate(results):
        phi, _ = exact(prep.model, batch.X[k], bg, prep.model.classes.index(r.target))
        np.testing.assert_allclose(values([r], names)[0], phi, rtol=0, atol=1e-9)

    mixed = prepared["mixed"]
    _, results, parameters = tree_run(mixed, [3, 11], background_rows=20, n_samples=3)
    assert parameters["engine"] == "batched" and "PCA" in parameters["tree_engine_declined"]
    (problem,) = SHAPLEY.check(SHAPLEY.Spec(type="shapley", engine="tree"), mixed.model)
    assert problem[0] == "engine" and "PCA" in problem[1]


def test_tree_engine_explains_a_forest_of_three_classes_and_declines_boosted_ones(artifacts, tree_data, tmp_path):
    """A forest's probability of each class is a sum over its trees: exact for the predicted class. A boosted
    model's probability of one class depends on every class's trees (softmax): engine auto samples."""

    forest = tree_subject(artifacts, tree_data, tmp_path, RandomForestClassifier(n_estimators=6, random_state=0),
                          target="kind")
    bg = forest.background.X
    batch, results, parameters = tree_run(forest, [0, 5, 9, 21], background_rows=len(bg))
    assert parameters["engine"] == "tree" and len({r.target for r in results}) > 1
    for k, r in enumerate(results):
        games, weights = coalitions(forest.model, batch.X[k], bg, forest.model.classes.index(r.target))
        exact_values = (weights @ games).mean(axis=1)
        np.testing.assert_allclose(values([r], TREE_FEATURES)[0], exact_values, rtol=0, atol=1e-9)

    (tmp_path / "boosted").mkdir()
    boosted = tree_subject(artifacts, tree_data, tmp_path / "boosted", GradientBoostingClassifier(
        n_estimators=5, random_state=0), target="kind")
    _, _, parameters = tree_run(boosted, [0, 5], n_samples=3)
    assert parameters["engine"] == "batched" and "softmax" in parameters["tree_engine_declined"]


def test_tree_engine_takes_both_ways_through_the_same_values(artifacts, tree_data, tmp_path, monkeypatch):
    """Leaves computed by mask groups and leaves computed over every (decision, background row) pair give the
    same values (to rounding), with equal weights (a forest) and with the logistic rescaling (boosting)."""
    import auditor.explainers.treeshap as treeshap

    for name, estimator in (("forest", RandomForestClassifier(n_estimators=5, max_depth=5, random_state=0)),
                            ("boosted", GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0))):
        (tmp_path / name).mkdir()
        prep = tree_subject(artifacts, tree_data, tmp_path / name, estimator)
        _, grouped, _ = tree_run(prep, range(0, 40, 3), background_rows=50)
        with monkeypatch.context() as patch:
            patch.setattr(treeshap, "CODE_SLOTS", 0)
            _, paired, _ = tree_run(prep, range(0, 40, 3), background_rows=50)
        np.testing.assert_allclose(values(grouped, TREE_FEATURES), values(paired, TREE_FEATURES), rtol=0, atol=1e-12)


def test_tree_engine_gives_a_decision_the_same_values_alone_or_in_a_batch(artifacts, tree_data, tmp_path):
    """Decisions are computed in blocks of a fixed size, so a decision's values are the same to the last bit
    whichever decisions share its call; and the same inputs and seed give the same values."""

    prep = tree_subject(artifacts, tree_data, tmp_path, GradientBoostingClassifier(n_estimators=20, random_state=0))
    _, alone, _ = tree_run(prep, [17])
    _, among, _ = tree_run(prep, list(range(40)) + [17] * 60)
    _, again, _ = tree_run(prep, [17])
    assert alone[0].attributions == among[17].attributions == among[-1].attributions == again[0].attributions


def test_engine_tree_on_a_model_without_trees_is_refused(additive):
    """auto samples permutations for a network (and says nothing about trees); engine tree is a policy problem
    there, and an explanation error if it runs anyway."""
    from auditor.errors import ExplanationError

    prep = additive
    _, _, parameters = tree_run(prep, [0, 1], background_rows=5, n_samples=2)
    assert parameters["engine"] == "batched" and "tree_engine_declined" not in parameters
    (problem,) = SHAPLEY.check(SHAPLEY.Spec(type="shapley", engine="tree"), prep.model)
    assert problem[0] == "engine" and "not a tree ensemble" in problem[1]
    with pytest.raises(ExplanationError, match="tree engine"):
        tree_run(prep, [0], engine="tree")
