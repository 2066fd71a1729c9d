"""auditor.explainers: Integrated Gradients, LIME and permutation importance on real small models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


from auditor.explainers import EXPLAINERS, Batch, decision_seed
from auditor.explainers.integrated_gradients import IntegratedGradients
from auditor.explainers.lime_tabular import Lime

# Small settings per explainer type, so the suite stays fast. A new explainer runs with its defaults.
FAST = {
    "integrated_gradients": {"n_steps": 16},
    "lime": {"num_samples": 500},
    "permutation_importance": {"n_repeats": 2},
}


def make(name: str, **options):
    cls = EXPLAINERS[name]
    return cls(EXPLAINERS[name].Spec(type=name, **{**FAST.get(name, {}), **options}))


def batch_of(prepared, rows) -> Batch:
    data = prepared.dataset
    rows = list(rows)
    return Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])


# --- Integrated Gradients: completeness ------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["mean", "median", "zeros"])
def test_integrated_gradients_completeness(tiny, baseline):
    prep = tiny["mlp"]
    model, background = prep.model, prep.background.X
    explainer = make("integrated_gradients", n_steps=32, baseline=baseline)
    batch = batch_of(prep, range(0, 40, 3))
    results, parameters = explainer.explain(model, batch, background=background, seed=0)
    assert len(results) == len(batch)

    # the baseline, computed independently of the explainer's own bookkeeping
    if baseline == "zeros":
        base = np.zeros(len(model.space.names))
    elif baseline == "median":
        base = np.median(background, axis=0)  # the middle pair averaged for an even count
    else:
        base = background.mean(axis=0)
    np.testing.assert_allclose(explainer.baseline_inputs(model, background).numpy()[0], base, atol=1e-5)
    np.testing.assert_allclose(list(parameters["baseline_values"].values()), base, atol=1e-5)
    assert list(parameters["baseline_values"]) == model.space.names

    base_proba = model.predict_proba(base[None, :].astype(np.float32).astype(np.float64))[0]
    proba = model.predict_proba(batch.X)
    for k, result in enumerate(results):
        t = model.classes.index(result.target)
        assert result.target == "yes"  # binary: always the positive class
        expected = proba[k, t] - base_proba[t]
        total = sum(result.attributions.values())
        assert abs(total - expected) <= abs(result.convergence_delta) + 1e-5, (k, total, expected)
        assert result.output == pytest.approx(proba[k, t], abs=1e-6)
        assert result.baseline_output == pytest.approx(base_proba[t], abs=1e-5)
        # the recorded delta is what it claims to be
        assert result.convergence_delta == pytest.approx(total - expected, abs=1e-5)
        assert list(result.attributions) == model.space.names
    # the path integral is accurate with 32 Gauss-Legendre points on this smooth network
    assert max(abs(r.convergence_delta) for r in results) < 1e-3


def test_integrated_gradients_attributes_the_right_features(tiny):
    """Input equal to the baseline except in one feature: only that feature gets attribution."""
    prep = tiny["mlp"]
    model, background = prep.model, prep.background.X
    explainer = make("integrated_gradients", n_steps=32)
    base = explainer.baseline_inputs(model, background).numpy()[0].astype(np.float64)
    X = np.repeat(base[None, :], 2, axis=0)
    X[0, 0] += 1.5  # f0 has true weight +2
    X[1, 1] += 1.5  # f1 has true weight -1.5
    results, _ = explainer.explain(model, Batch(X=X, ids=[0, 1]), background=background, seed=0)
    a0, a1 = (np.array(list(r.attributions.values())) for r in results)
    assert a0[0] > 0.05 and np.allclose(a0[1:], 0, atol=1e-6)
    assert a1[1] < -0.05 and np.allclose(np.delete(a1, 1), 0, atol=1e-6)


# --- LIME on a model whose true weights are known ------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_lime_setup(tmp_path_factory, artifacts):
    """A LogisticRegression fitted on logit = 4*x0 - 3*x1 + 2*x2 (x3..x5 irrelevant), loaded from skops."""
    import skops.io as sio
    import yaml
    from sklearn.linear_model import LogisticRegression

    from auditor.audit import prepare
    from auditor.policy import load_policy

    from conftest import base_policy

    names = [f"x{i}" for i in range(6)]
    rng = np.random.default_rng(42)
    X = rng.normal(size=(3000, 6))
    logit = X @ np.array([4.0, -3.0, 2.0, 0.0, 0.0, 0.0])
    frame = pd.DataFrame(X, columns=names)
    frame["y"] = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    folder = tmp_path_factory.mktemp("linear")
    frame.iloc[:40].to_csv(folder / "audit.csv", index=False)
    frame.iloc[40:].to_csv(folder / "train.csv", index=False)
    model = LogisticRegression(C=1e4).fit(frame[names].iloc[40:], frame["y"].iloc[40:])
    coef = model.coef_[0]
    assert np.allclose(coef[:3], [4, -3, 2], atol=0.6) and np.all(np.abs(coef[3:]) < 0.3)
    sio.dump(model, folder / "linear.skops")

    policy = base_policy(artifacts, folder)
    features = [{"name": n} for n in names]
    policy["models"] = [{"id": "linear", "path": "linear.skops", "format": "skops"}]
    policy["datasets"] = [
        {"id": "audit", "path": "audit.csv", "target": "y", "features": features},
        {"id": "train", "path": "train.csv", "target": "y", "features": features},
    ]
    policy["audited"] = [{"model": "linear", "dataset": "audit", "background": "train"}]
    policy["explanations"] = [{"type": "lime", "num_samples": 1000, "discretize_continuous": False}]
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    (prep,) = prepare(load_policy(folder / "policy.yaml"))
    return prep


def test_lime_recovers_known_linear_weights(linear_lime_setup):
    prep = linear_lime_setup
    explainer = make("lime", num_samples=1000, discretize_continuous=False)
    batch = batch_of(prep, range(20))
    results, parameters = explainer.explain(prep.model, batch, background=prep.background.X, seed=1)
    assert parameters["kernel_width"] == pytest.approx(0.75 * np.sqrt(6))
    in_order = 0
    for result in results:
        assert result.target == 1  # the positive class: weights are signed towards y = 1
        w = result.weights
        top3 = sorted(w, key=lambda n: -abs(w[n]))[:3]
        assert set(top3) == {"x0", "x1", "x2"}, w
        assert w["x0"] > 0 and w["x1"] < 0 and w["x2"] > 0, w
        in_order += top3 == ["x0", "x1", "x2"]
        # without discretisation the condition is the feature itself
        assert result.conditions["x0"] == "x0"
        assert 0 < result.score <= 1
    assert in_order >= 0.75 * len(results), in_order
    # the weights are proportional to the true ones (4 : -3 : 2) up to sampling noise
    ratios = np.array([[r.weights["x1"] / r.weights["x0"], r.weights["x2"] / r.weights["x0"]] for r in results])
    np.testing.assert_allclose(ratios.mean(axis=0), [-0.75, 0.5], atol=0.15)


# --- the contract every explainer keeps ---------------------------------------------------------------------


@pytest.fixture
def subjects(request, tiny):
    """The tiny subjects by modality; image and text ones are built only when a test asks for them."""

    class Lazy(dict):
        def __missing__(self, key):
            self[key] = request.getfixturevalue({"image": "tiny_image", "text": "tiny_text"}[key])
            return self[key]

    return Lazy(tiny=tiny)


def subject_for(subjects, name: str):
    """The tiny model an explainer applies to: tabular (a PyTorch model for gradient methods), image or text."""
    cls = EXPLAINERS[name]
    if "tabular" in cls.modalities:
        tiny = subjects["tiny"]
        return tiny["mlp"] if cls.requires == "torch" else tiny["logreg"]
    return subjects["image"] if "image" in cls.modalities else subjects["text"]


def media_batch(prep, rows) -> Batch:
    data = prep.dataset
    rows = list(rows)
    return Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows],
                 masks=None if getattr(data, "masks", None) is None else data.masks[rows],
                 rationales=None if getattr(data, "rationales", None) is None else [data.rationales[r] for r in rows])


def _batch(prep, cls):
    if prep.dataset.kind != "tabular":
        return media_batch(prep, [0, 1, 5])
    return batch_of(prep, [0, 5, 17]) if cls.scope == "local" else batch_of(prep, range(prep.dataset.n_rows))


def run(subjects, name: str, seed: int = 0):
    prep = subject_for(subjects, name)
    batch = _batch(prep, EXPLAINERS[name])
    return make(name, **EXTRA.get(name, {})).explain(prep.model, batch, background=prep.background.X, seed=seed), batch


EXTRA = {"gradcam": {"layer": "features.2"}, "lime_image": {"num_samples": 60, "n_segments": 6},
         "lime_text": {"num_samples": 60}, "layer_integrated_gradients": {"n_steps": 8}}


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_explainer_contract_typed_results_round_trip(subjects, name):
    cls = EXPLAINERS[name]
    assert cls.scope in ("local", "global") and cls.title
    prep = subject_for(subjects, name)
    assert cls.applies_to(prep.model)
    progress: list[int] = []
    batch = _batch(prep, cls)
    results, parameters = make(name, **EXTRA.get(name, {})).explain(prep.model, batch, background=prep.background.X,
                                                                     seed=0, progress=progress.append)
    assert isinstance(parameters, dict)
    if cls.scope == "local":
        assert isinstance(results, list) and len(results) == len(batch)
        assert sum(progress) == len(batch)
    else:
        assert sum(progress) == 1
        results = [results]
    for result in results:
        assert isinstance(result, cls.Results)
        assert result.method == name or getattr(result, "technique", None) == name or result.method == "attention"
        again = type(result).model_validate_json(result.model_dump_json())
        assert again == result


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_explainer_contract_deterministic_for_a_seed(subjects, name):
    (first, params_1), _ = run(subjects, name, seed=3)
    (second, params_2), _ = run(subjects, name, seed=3)
    assert first == second
    assert params_1 == params_2


@pytest.mark.parametrize("name", [n for n, c in sorted(EXPLAINERS.items()) if c.requires == "torch"])
def test_gradient_explainers_do_not_apply_to_sklearn_models(tiny, name):
    assert not EXPLAINERS[name].applies_to(tiny["logreg"].model)


def test_lime_seed_changes_the_result(subjects):
    (a, _), _ = run(subjects, "lime", seed=3)
    (b, _), _ = run(subjects, "lime", seed=4)
    assert a != b


def test_permutation_importance_finds_the_irrelevant_feature(tiny):
    prep = tiny["logreg"]
    result, _ = make("permutation_importance", n_repeats=5).explain(
        prep.model, batch_of(prep, range(prep.dataset.n_rows)), background=prep.background.X, seed=0)
    means = {n: v.mean for n, v in result.importances.items()}
    assert result.rows_used == prep.dataset.n_rows and result.scoring == "roc_auc"
    assert 0.5 < result.baseline_score <= 1
    assert max(means, key=means.get) == "f0"  # weight 2
    assert abs(means["f3"]) < means["f0"] / 5  # weight 0


# --- LIME: per-decision seeding -------------------------------------------------------------------------------


def test_lime_decision_result_independent_of_batch(tiny):
    prep = tiny["logreg"]
    explainer = make("lime")
    background = prep.background.X
    alone, _ = explainer.explain(prep.model, batch_of(prep, [17]), background=background, seed=9)
    with_others, _ = explainer.explain(prep.model, batch_of(prep, [3, 17, 40]), background=background, seed=9)
    reordered, _ = explainer.explain(prep.model, batch_of(prep, [60, 2, 17]), background=background, seed=9)
    assert with_others[0] != with_others[2]
    # Everything LIME computes for the decision is bit-identical. model_prediction comes from scoring the
    # whole batch at once, where BLAS may round the last bit differently (see the report), so it is
    # compared to 1e-12.
    one, two, three = (r.model_dump() for r in (alone[0], with_others[1], reordered[2]))
    for other in (two, three):
        assert other.pop("model_prediction") == pytest.approx(one["model_prediction"], abs=1e-12)
    one.pop("model_prediction")
    assert one == two == three


def test_lime_with_discretisation_and_categorical_features(write_policy, tmp_path):
    """Default LIME (quartile discretiser) on a pipeline that one-hot encodes a categorical feature."""
    import skops.io as sio
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from auditor.audit import prepare
    from auditor.policy import load_policy

    from conftest import make_frame

    frame = make_frame(120, seed=11)
    frame["colour"] = np.where(frame["label"] == "yes", "red", "blue")
    frame.loc[::5, "colour"] = "green"
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough"),
                         LogisticRegression())
    pipe.fit(frame[["f0", "colour", "f1"]], frame["label"])
    sio.dump(pipe, tmp_path / "pipe.skops")
    frame.to_csv(tmp_path / "cat.csv", index=False)
    features = [{"name": "f0"}, {"name": "colour", "type": "categorical"}, {"name": "f1"}]
    dataset = {"id": "data", "path": "cat.csv", "target": "label", "features": features}
    path = write_policy(tmp_path, models__0__path="pipe.skops", datasets__0=dataset,
                        datasets__1=dataset | {"id": "background"},
                        audited=[{"model": "logreg", "dataset": "data"}], explanations=[{"type": "lime"}])
    (prep,) = prepare(load_policy(path))
    results, _ = make("lime").explain(prep.model, batch_of(prep, [0, 1, 2]), background=prep.background.X, seed=0)
    for k, result in enumerate(results):
        assert set(result.weights) == {"f0", "colour", "f1"}
        value = frame["colour"].iloc[k]
        assert result.conditions["colour"] == f"colour={value}"
    assert max(abs(r.weights["colour"]) for r in results) > 0.01


def test_decision_seed_depends_on_seed_and_id_only():
    assert decision_seed(7, "case-1") == decision_seed(7, "case-1")
    assert decision_seed(7, "case-1") != decision_seed(7, "case-2")
    assert decision_seed(7, 3) != decision_seed(8, 3)
    assert 0 <= decision_seed(123, 456) < 2**32


def test_explainer_classes():
    assert IntegratedGradients.requires == "torch" and IntegratedGradients.scope == "local"
    assert Lime.requires == "any" and Lime.scope == "local"
    assert EXPLAINERS["permutation_importance"].scope == "global"


@pytest.mark.parametrize("scoring", ["roc_auc", "accuracy", "neg_log_loss"])
def test_batched_permutation_importance_is_scikit_learns(tiny, loans, scoring):
    """The batched engine draws scikit-learn's shuffles and scores every repeat of a feature in one call: the
    importances are sklearn.inspection.permutation_importance's, to the last bit."""
    for prep in (tiny["logreg"], tiny["mlp"], loans.prepared["pipe"]):
        batch = batch_of(prep, range(prep.dataset.n_rows))
        results = {engine: make("permutation_importance", n_repeats=3, scoring=scoring, engine=engine).explain(
            prep.model, batch, background=prep.background.X, seed=5) for engine in ("batched", "reference")}
        (batched, p1), (reference, p2) = results["batched"], results["reference"]
        assert batched.importances == reference.importances and batched.baseline_score == reference.baseline_score
        assert (p1["engine"], p2["engine"]) == ("batched", "reference")
