"""Model formats: torch.export programs, ONNX, XGBoost and LightGBM boosters in their own files, skops with a
trusted library. Each model is trained here on small data; for each, the scores the auditor reads equal the
library's own prediction, and an audit runs end to end (gradient methods skipped, with the reason, where the
format is not differentiable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from auditor.audit import prepare, run_audit
from auditor.errors import PolicyError
from auditor.formats import FORMATS
from auditor.plan import plan_run
from auditor.policy import load_policy

NUMERIC = ["income", "debt_ratio", "age"]
FEATURES = NUMERIC + ["housing"]
HOUSING = ["own", "rent", "free"]


AGNOSTIC = [{"type": "lime", "num_samples": 300}, {"type": "shapley", "background_rows": 20, "n_samples": 3},
            {"type": "permutation_importance", "n_repeats": 2}]
def make_frame(n: int, seed: int, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50, 15, n).round(1), "debt_ratio": rng.random(n).round(3),
                          "age": rng.integers(18, 80, n).astype(float),
                          "housing": rng.choice(HOUSING, n).astype(object)})
    score = 0.06 * (frame.income - 50) - 3 * (frame.debt_ratio - 0.5) + frame.housing.map({"own": 1, "rent": -0.5,
                                                                                           "free": -0.5})
    if classes == 2:
        frame["y"] = np.where(rng.random(n) < 1 / (1 + np.exp(-score)), "good", "bad")
    else:
        frame["y"] = np.select([score < -0.7, score < 0.7], ["low", "mid"], "high")
    frame.loc[rng.random(n) < 0.1, "debt_ratio"] = np.nan if classes == 2 else frame.debt_ratio  # boosters route NaN
    return frame


def ordinal(frame: pd.DataFrame) -> np.ndarray:
    """The encoded matrix the auditor hands encoded-input models with categorical_encoding: ordinal."""
    out = frame[NUMERIC].to_numpy(dtype=float)
    return np.column_stack([out, frame.housing.map({h: i for i, h in enumerate(HOUSING)}).to_numpy(dtype=float)])


def onehot(frame: pd.DataFrame) -> np.ndarray:
    out = frame[NUMERIC].to_numpy(dtype=float)
    return np.column_stack([out] + [(frame.housing == h).to_numpy(dtype=float) for h in HOUSING])


def policy_for(folder: Path, model: dict, *, explanations=None, classes=("bad", "good")) -> Path:
    features = [{"name": n} for n in NUMERIC] + [{"name": "housing", "type": "categorical", "categories": HOUSING}]
    tree = {"version": 1,
            "audit": {"id": "formats", "title": "Formats", "audience": "finance", "owner": "t", "intended_use": "u"},
            "models": [{"id": "m", "classes": list(classes), **model}],
            "datasets": [{"id": "a", "path": "audit.csv", "target": "y", "features": features},
                         {"id": "bg", "path": "bg.csv", "target": "y", "features": features}],
            "audited": [{"model": "m", "dataset": "a", "background": "bg"}],
            "sample": {"size": 4, "strategy": "stratified", "seed": 1},
            "explanations": explanations or AGNOSTIC,
            "report": {"formats": ["html"]}}
    if "classes" in model and model["classes"] is None:
        del tree["models"][0]["classes"]
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path):
    train, test = make_frame(300, 0), make_frame(80, 1)
    train.to_csv(tmp_path / "bg.csv", index=False)
    test.to_csv(tmp_path / "audit.csv", index=False)
    return tmp_path, train, test


def scores(policy: Path):
    prepared = prepare(load_policy(policy))[0]
    return prepared, prepared.model.predict_proba(prepared.dataset.X)


def audited(policy: Path):
    p = load_policy(policy)
    return run_audit(plan_run(p), prepare(p)).subjects[0]


def test_torch_export_scores_and_gradients(data):
    import torch

    folder, train, test = data
    train, test = train.dropna(), test.dropna()  # Integrated Gradients needs every input value
    train.to_csv(folder / "bg.csv", index=False)
    test.to_csv(folder / "audit.csv", index=False)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(torch.nan_to_num(x) / 50.0)

    torch.manual_seed(0)
    net = Net().eval()
    program = torch.export.export(net, (torch.zeros(4, 6),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "net.pt2"))
    gradients = AGNOSTIC[:1] + [{"type": "integrated_gradients", "n_steps": 8}] + AGNOSTIC[1:]
    prepared, proba = scores(policy_for(folder, {"path": "net.pt2", "format": "torch_export"}))
    with torch.no_grad():
        own = net(torch.as_tensor(onehot(test), dtype=torch.float32)).softmax(-1).double().numpy()
    np.testing.assert_allclose(proba, own / own.sum(axis=1, keepdims=True), atol=1e-6)
    assert prepared.model.kind == "PyTorch exported program (torch.export)"
    s = audited(policy_for(folder, {"path": "net.pt2", "format": "torch_export"}, explanations=gradients))
    assert [m.name for m in s.methods] == ["lime", "integrated_gradients", "shapley", "permutation_importance"]
    import pickle

    again = pickle.loads(pickle.dumps(prepared.model))  # ships to Dask workers as the file's bytes
    np.testing.assert_array_equal(again.predict_proba(prepared.dataset.X), proba)


def test_torch_export_without_a_dynamic_batch_is_refused(data):
    import torch

    folder, *_ = data
    program = torch.export.export(torch.nn.Linear(6, 2).eval(), (torch.zeros(512, 6),))
    torch.export.save(program, str(folder / "fixed.pt2"))
    from auditor.errors import PolicyError as Refused

    with pytest.raises(Refused) as info:
        prepare(load_policy(policy_for(folder, {"path": "fixed.pt2", "format": "torch_export"})))
    assert "dynamic batch dimension" in str(info.value)


def test_onnx_scores_equal_onnxruntime_and_gradient_methods_are_skipped(data):
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    folder, train, test = data
    complete = train.dropna()
    model = LogisticRegression(max_iter=500).fit(onehot(complete).astype(np.float32), complete.y)
    onnx = to_onnx(model, onehot(complete).astype(np.float32)[:1], options={"zipmap": False})
    (folder / "m.onnx").write_bytes(onnx.SerializeToString())
    test.dropna().to_csv(folder / "audit.csv", index=False)
    train.dropna().to_csv(folder / "bg.csv", index=False)
    prepared, proba = scores(policy_for(folder, {"path": "m.onnx", "format": "onnx"}))
    session = ort.InferenceSession(str(folder / "m.onnx"), providers=["CPUExecutionProvider"])
    own = session.run(["probabilities"], {session.get_inputs()[0].name: onehot(test.dropna()).astype(np.float32)})[0]
    np.testing.assert_allclose(proba, own / own.sum(axis=1, keepdims=True), atol=1e-7)
    np.testing.assert_allclose(proba, model.predict_proba(onehot(test.dropna()).astype(np.float32)), atol=1e-5)
    from auditor.explainers import EXPLAINERS

    assert "needs a PyTorch model (gradients)" in EXPLAINERS["integrated_gradients"].not_applicable(prepared.model)
    with pytest.raises(PolicyError) as info:  # asked for, and no audited model can give it: refused at validate
        load_policy(policy_for(folder, {"path": "m.onnx", "format": "onnx"},
                               explanations=[{"type": "integrated_gradients"}]))
    assert "integrated_gradients needs a PyTorch model" in str(info.value)
    s = audited(policy_for(folder, {"path": "m.onnx", "format": "onnx"}, explanations=AGNOSTIC))
    assert [m.name for m in s.methods] == ["lime", "shapley", "permutation_importance"]


def test_xgboost_native_file_scores_equal_the_library(data):
    import xgboost

    folder, train, test = data
    clf = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0)
    clf.fit(ordinal(train), (train.y == "good").astype(int))
    clf.get_booster().save_model(str(folder / "m.ubj"))
    policy = policy_for(folder, {"path": "m.ubj", "format": "xgboost", "categorical_encoding": "ordinal"})
    prepared, proba = scores(policy)
    np.testing.assert_allclose(proba, clf.predict_proba(ordinal(test)), atol=1e-7)
    assert prepared.model.missing_features == ("debt_ratio",)  # the booster routes NaN: no imputer needed
    assert prepared.model.kind == "XGBoost Booster (binary:logistic)"
    s = audited(policy)
    assert [m.name for m in s.methods] == ["lime", "shapley", "permutation_importance"]


def test_lightgbm_native_file_scores_equal_the_library(data):
    import lightgbm

    folder, train, test = data
    clf = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, random_state=0, verbose=-1)
    clf.fit(ordinal(train), (train.y == "good").astype(int))
    clf.booster_.save_model(str(folder / "m.txt"))
    policy = policy_for(folder, {"path": "m.txt", "format": "lightgbm", "categorical_encoding": "ordinal"})
    prepared, proba = scores(policy)
    np.testing.assert_allclose(proba, clf.predict_proba(ordinal(test)), atol=1e-7)
    s = audited(policy)
    assert [m.name for m in s.methods] == ["lime", "shapley", "permutation_importance"]


def test_a_booster_whose_inputs_do_not_match_the_policy_is_refused(data):
    import xgboost

    folder, train, _ = data
    clf = xgboost.XGBClassifier(n_estimators=5).fit(ordinal(train)[:, :3], (train.y == "good").astype(int))
    clf.get_booster().save_model(str(folder / "m.ubj"))
    with pytest.raises(PolicyError) as info:
        prepare(load_policy(policy_for(folder, {"path": "m.ubj", "format": "xgboost",
                                                "categorical_encoding": "ordinal"})))
    assert "the model takes 3 inputs, the policy's features encode to 4" in str(info.value)


def test_skops_pipeline_with_xgboost_needs_only_the_library_named(data):
    import skops.io as sio
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder, train, test = data
    pipe = Pipeline([("encode", ColumnTransformer([("h", OneHotEncoder(), ["housing"])], remainder="passthrough")),
                     ("xgb", xgboost.XGBClassifier(n_estimators=10, max_depth=2))])
    pipe.fit(train[FEATURES], (train.y == "good").astype(int))
    sio.dump(pipe, folder / "pipe.skops")
    model = {"path": "pipe.skops", "format": "skops", "classes": None}
    with pytest.raises(PolicyError) as info:
        prepare(load_policy(policy_for(folder, model, classes=(0, 1))))
    assert "trusted_libraries: [xgboost]" in str(info.value)
    test.assign(y=(test.y == "good").astype(int)).to_csv(folder / "audit.csv", index=False)
    train.assign(y=(train.y == "good").astype(int)).to_csv(folder / "bg.csv", index=False)
    prepared, proba = scores(policy_for(folder, model | {"trusted_libraries": ["xgboost"]}, classes=(0, 1)))
    np.testing.assert_allclose(proba, pipe.predict_proba(test[FEATURES]), atol=1e-7)


def test_every_format_is_in_the_policy_schema_with_its_description():
    from auditor.policy import policy_json_schema

    schema = policy_json_schema()
    spec = schema["$defs"]["ModelSpec"]["properties"]["format"]
    assert set(spec["enum"]) == set(FORMATS)
    for f in FORMATS.values():
        assert f.description in spec["description"]


def test_library_warnings_are_recorded_once_and_never_printed(data):
    """An XGBoost pipeline gives float32 probabilities, and scikit-learn's metrics warn that they do not sum to
    one: the warning goes into the evidence once, not onto the terminal."""
    import subprocess
    import sys

    import skops.io as sio
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder, train, test = data
    train, test = train.assign(y=(train.y == "good").astype(int)), test.assign(y=(test.y == "good").astype(int))
    train.to_csv(folder / "bg.csv", index=False)
    test.to_csv(folder / "audit.csv", index=False)
    pipe = Pipeline([("encode", ColumnTransformer([("h", OneHotEncoder(), ["housing"])], remainder="passthrough")),
                     ("xgb", xgboost.XGBClassifier(n_estimators=30, max_depth=3))]).fit(train[FEATURES], train.y)
    sio.dump(pipe, folder / "pipe.skops")
    policy = policy_for(folder, {"path": "pipe.skops", "format": "skops", "classes": None,
                                 "trusted_libraries": ["xgboost"]}, classes=(0, 1))
    out = folder / "out"
    run = subprocess.run([str(Path(sys.executable).parent / "auditor"), "run", str(policy), "--out", str(out)],
                         capture_output=True, text=True, cwd=folder)
    assert run.returncode in (0, 1), run.stderr
    assert "Warning" not in run.stderr and "warnings.warn" not in run.stderr, run.stderr
    import json

    warned = json.loads((out / "evidence.json").read_text())["warnings"]
    library = [w for w in warned if "A library warned" in w]
    assert len(library) == len(set(library)) >= 1
    assert any("do not sum to one" in w for w in library), warned
