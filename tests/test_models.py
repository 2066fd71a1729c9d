"""auditor.models: safe loading (skops allow-list, TorchScript, trusted pickle) and fit checks."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from auditor.audit import prepare
from auditor.datasets import load_dataset
from auditor.errors import ModelError, PolicyError
from auditor.models import load_model
from auditor.policy import load_policy

from conftest import CLASSES, FEATURES, TARGET, make_frame, save_torchscript


def load(policy_path, model_id: str, dataset_id: str = "data"):
    policy = load_policy(policy_path)
    data = load_dataset(policy.dataset(dataset_id), policy)
    return load_model(policy.model(model_id), policy, data), data


def model_error(policy_path, model_id: str) -> ModelError:
    with pytest.raises(ModelError) as info:
        load(policy_path, model_id)
    return info.value


# --- skops -----------------------------------------------------------------------------------------------


def test_skops_model_with_default_trusted_types_loads(write_policy, tmp_path, artifacts):
    adapter, data = load(write_policy(tmp_path), "logreg")
    assert adapter.framework == "sklearn"
    assert adapter.classes == CLASSES
    assert "LogisticRegression" in adapter.kind
    assert adapter.positive_index == 1  # the last class by default
    assert adapter.warnings == []
    assert len(adapter.sha256) == 64
    # the adapter scores exactly like the estimator it loaded
    expected = adapter.estimator.predict_proba(data.space.decode(data.X))
    np.testing.assert_allclose(adapter.predict_proba(data.X), expected)


@pytest.fixture(scope="module")
def untrusted_skops(tmp_path_factory):
    """A real pipeline whose FunctionTransformer holds a function outside sklearn/numpy."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame = make_frame(80, seed=5)
    pipe = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    pipe.fit(frame[FEATURES], frame[TARGET])
    path = tmp_path_factory.mktemp("untrusted") / "neg.skops"
    sio.dump(pipe, path)
    assert sio.get_untrusted_types(file=path) == ["_operator.neg"]
    return path


def test_skops_untrusted_type_is_refused(write_policy, tmp_path, untrusted_skops):
    error = model_error(write_policy(tmp_path, models__0__path=str(untrusted_skops)), "logreg")
    assert "_operator.neg" in error.message and "not trusted" in error.message
    assert "trusted_types" in error.hint


def test_skops_type_listed_in_trusted_types_loads(write_policy, tmp_path, untrusted_skops):
    path = write_policy(tmp_path, models__0__path=str(untrusted_skops), models__0__trusted_types=["_operator.neg"])
    adapter, data = load(path, "logreg")
    assert "Pipeline" in adapter.kind and "FunctionTransformer" in adapter.kind
    assert adapter.predict_proba(data.X).shape == (data.n_rows, 2)


def test_file_that_is_not_skops(write_policy, tmp_path):
    bogus = tmp_path / "bogus.skops"
    bogus.write_bytes(b"definitely not a zip file")
    error = model_error(write_policy(tmp_path, models__0__path="bogus.skops"), "logreg")
    assert "not a readable skops file" in error.message


# --- fit between model and data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_columns_model(tmp_path_factory):
    """A LogisticRegression trained on f0, f1, f2 and 'age' instead of f3."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    frame = make_frame(80, seed=6).rename(columns={"f3": "age"})
    model = LogisticRegression().fit(frame[["f0", "f1", "f2", "age"]], frame[TARGET])
    path = tmp_path_factory.mktemp("mismatch") / "age.skops"
    sio.dump(model, path)
    return path


def test_feature_mismatch_names_the_features(write_policy, tmp_path, other_columns_model):
    error = model_error(write_policy(tmp_path, models__0__path=str(other_columns_model)), "logreg")
    assert "feature mismatch" in error.message
    assert "['age']" in error.message and "['f3']" in error.message


def test_feature_mismatch_reported_by_prepare_as_policy_problem(write_policy, tmp_path, other_columns_model):
    policy = load_policy(write_policy(tmp_path, models__0__path=str(other_columns_model)))  # files exist: loads
    with pytest.raises(PolicyError) as info:
        prepare(policy)
    problems = info.value.problems
    assert [p.field for p in problems] == ["models[0]"]
    assert "feature mismatch" in problems[0].message and "'age'" in problems[0].message
    assert problems[0].line is not None


def test_feature_count_mismatch_without_names(write_policy, tmp_path):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    frame = make_frame(60, seed=7)
    model = LogisticRegression().fit(frame[FEATURES[:3]].to_numpy(), frame[TARGET])  # numpy: no feature names
    sio.dump(model, tmp_path / "three.skops")
    error = model_error(write_policy(tmp_path, models__0__path="three.skops"), "logreg")
    assert "takes 3 features" in error.message and "lists 4" in error.message


def test_policy_classes_must_match_sklearn_classes(write_policy, tmp_path):
    error = model_error(write_policy(tmp_path, models__0__classes=["yes", "no"]), "logreg")
    assert "['yes', 'no']" in error.message and "['no', 'yes']" in error.message


def test_dataset_labels_must_be_model_classes(write_policy, tmp_path):
    error = model_error(write_policy(tmp_path, models__1__classes=["n", "y"], models__1__positive_class="y"), "mlp")
    assert "'label'" in error.message and "not classes of the model" in error.message


# --- TorchScript ---------------------------------------------------------------------------------------------


def test_torchscript_model_loads(write_policy, tmp_path):
    adapter, data = load(write_policy(tmp_path), "mlp")
    assert adapter.framework == "torch" and "TorchScript" in adapter.kind
    assert adapter.classes == CLASSES and adapter.positive_index == 1
    assert adapter.input_groups == [[0], [1], [2], [3]]
    # the MLP learned the data: better than chance on held-out rows
    accuracy = np.mean(np.asarray(CLASSES, dtype=object)[adapter.predict_proba(data.X).argmax(1)] == data.y)
    assert accuracy > 0.7


def test_torch_outputs_fewer_than_classes(write_policy, tmp_path):
    path = write_policy(tmp_path, models__1__classes=["no", "yes", "maybe"])
    error = model_error(path, "mlp")
    assert "returned shape (2, 2)" in error.message and "(n, 3)" in error.message


def test_class_names_count_checked_against_the_loaded_model(write_policy, tmp_path):
    # without 'classes' the policy cannot count them; load_model checks against the estimator's classes_
    path = write_policy(tmp_path, models__0__class_names=["negative", "positive", "unsure"])
    load_policy(path)
    error = model_error(path, "logreg")
    assert "3 class names for 2 classes" in error.message


def test_positive_class_must_be_a_model_class(write_policy, tmp_path):
    error = model_error(write_policy(tmp_path, models__0__positive_class="maybe"), "logreg")
    assert "positive_class 'maybe'" in error.message


def test_not_a_torchscript_file(write_policy, tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"\x00\x01garbage")
    error = model_error(write_policy(tmp_path, models__1__path="garbage.pt"), "mlp")
    assert "not a TorchScript file" in error.message


def test_categorical_onehot_input_groups(write_policy, tmp_path):
    import torch

    frame = make_frame(40, seed=8)
    frame["colour"] = ["red", "green", "blue", "green"] * 10
    frame.to_csv(tmp_path / "cat.csv", index=False)
    torch.manual_seed(0)
    save_torchscript(torch.nn.Sequential(torch.nn.Linear(5, 2)), tmp_path / "cat.pt")  # f0, f1 + 3 one-hot
    features = [{"name": "f0"}, {"name": "colour", "type": "categorical"}, {"name": "f1"}]
    path = write_policy(tmp_path, models__1__path="cat.pt", datasets__0={
        "id": "data", "path": "cat.csv", "target": TARGET, "features": features})
    adapter, data = load(path, "mlp")
    assert adapter.input_groups == [[0], [1, 2, 3], [4]]
    inputs = adapter.to_tensor(data.X[:4]).numpy()
    # categories sorted: blue, green, red
    np.testing.assert_array_equal(inputs[:, 1:4], [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 0]])


# --- pickle ------------------------------------------------------------------------------------------------


def test_trusted_pickle_loads_with_a_warning(write_policy, tmp_path, artifacts):
    path = write_policy(tmp_path, models__0__format="pickle", models__0__path=str(artifacts.pickle),
                        models__0__trust="pickle")
    adapter, data = load(path, "logreg")
    assert adapter.framework == "sklearn" and adapter.classes == CLASSES
    assert len(adapter.warnings) == 1
    assert "'logreg'" in adapter.warnings[0] and "arbitrary code" in adapter.warnings[0]
    skops_adapter, _ = load(write_policy(tmp_path, name="skops.yaml"), "logreg")
    np.testing.assert_allclose(adapter.predict_proba(data.X), skops_adapter.predict_proba(data.X))


def test_load_model_refuses_untrusted_pickle_even_if_policy_was_not_checked(write_policy, tmp_path, artifacts):
    trusted = load_policy(write_policy(tmp_path, models__0__format="pickle", models__0__path=str(artifacts.pickle),
                                       models__0__trust="pickle"))
    data = load_dataset(trusted.dataset("data"), trusted)
    spec = trusted.model("logreg").model_copy(update={"trust": None})
    with pytest.raises(ModelError, match="trust: pickle"):
        load_model(spec, trusted, data)


# --- predict_proba ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["logreg", "mlp"])
def test_predict_proba_shape_and_rows_sum_to_one(tiny, model_id):
    prepared = tiny[model_id]
    X = prepared.dataset.X
    proba = prepared.model.predict_proba(X)
    assert proba.shape == (len(X), len(CLASSES))
    assert proba.dtype == np.float64
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # one row as a 1-D vector is a batch of one, and the result does not depend on batching
    np.testing.assert_allclose(prepared.model.predict_proba(X[3]), proba[3:4], rtol=0, atol=1e-6)
    assert prepared.model.predict_proba(X[:0]).shape[0] == 0


def test_predict_proba_chunks_large_batches(tiny, monkeypatch):
    import auditor.models as models

    adapter = tiny["logreg"].model
    X = np.random.default_rng(0).normal(size=(25, 4))
    whole = adapter.predict_proba(X)
    monkeypatch.setattr(models, "PREDICT_BATCH", 7)  # a constant of ours, not a library mock
    np.testing.assert_allclose(adapter.predict_proba(X), whole, rtol=0, atol=1e-15)


# --- the model's own input form, built in one pass ----------------------------------------------------------


def _onehot_by_columns(space, X):
    """The one-hot encoding written out feature by feature (what ``encoded`` computes in one pass)."""
    cols = []
    for i, f in enumerate(space.features):
        if f.type == "categorical":
            k = len(space.categories[i])
            gone = np.isnan(X[:, i])
            onehot = np.eye(k)[np.clip(np.rint(np.where(gone, 0, X[:, i])).astype(int), 0, k - 1)]
            onehot[gone] = np.nan
            cols.append(onehot)
        else:
            cols.append(X[:, i:i + 1])
    return np.concatenate(cols, axis=1)


def test_credit_models_take_the_same_inputs_as_decoded_rows():
    """The credit sample's Pipeline gets the DataFrame ``space.decode`` gives (same columns, values and dtypes),
    and its MLP the one-hot matrix written out feature by feature, also with missing categories and padding."""
    from pathlib import Path

    import pandas as pd

    policy = load_policy(Path(__file__).resolve().parents[1] / "policies" / "credit_finance.yaml")
    prepared = {p.model.id: p for p in prepare(policy)}
    pipeline, mlp = prepared["gbm"].model, prepared["mlp"].model
    X = prepared["gbm"].background.X[:57].copy()
    cats = pipeline.space.categorical_indices
    assert cats, "the credit sample has categorical features"
    X[::5, cats[0]] = np.nan  # a missing category
    frame = pipeline.sklearn_input(X)
    expected = pipeline.space.decode(X)[list(pipeline.estimator.feature_names_in_)]
    pd.testing.assert_frame_equal(frame, expected)
    whole = ~np.isnan(X).any(axis=1)  # the Pipeline's encoder refuses a missing category
    np.testing.assert_array_equal(pipeline.predict_proba(X[whole]), pipeline.estimator.predict_proba(expected[whole]))
    for dtype, pad in ((np.float64, 1), (np.float32, 512)):
        out = mlp.encoded(X, dtype, pad_to=pad)
        want = _onehot_by_columns(mlp.space, X).astype(dtype)
        assert out.dtype == dtype and len(out) == len(X) + (-len(X) % pad)
        np.testing.assert_array_equal(out[:len(X)], want)
        np.testing.assert_array_equal(out[len(X):], np.repeat(want[-1:], len(out) - len(X), axis=0))
