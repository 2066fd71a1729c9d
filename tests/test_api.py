"""The Python API (auditor.run, auditor.audit, AuditResult) and `auditor init`: the same audit as the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import auditor
from conftest import REPO

AUDITOR = str(Path(sys.executable).parent / "auditor")


def loans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50, 15, n).round(1), "debt_ratio": rng.random(n).round(3),
                          "housing": rng.choice(["own", "rent", "free"], n)})
    logit = 0.06 * (frame.income - 50) - 3 * (frame.debt_ratio - 0.5) + (frame.housing == "own") * 1.0
    frame["outcome"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "good", "bad")
    frame.loc[rng.random(n) < 0.1, "debt_ratio"] = np.nan
    return frame


def pipeline(frame: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer([("h", OneHotEncoder(handle_unknown="ignore"), ["housing"])], remainder="passthrough")
    model = Pipeline([("encode", encode), ("hgb", HistGradientBoostingClassifier(max_iter=40, random_state=0))])
    return model.fit(frame.drop(columns="outcome"), frame.outcome)


def probabilities(X):
    """A model as a plain function (module level, so it can be saved by reference): P(bad), P(good)."""
    income = np.asarray(X[:, 0], dtype=float)
    p = 1 / (1 + np.exp(-0.05 * (income - 50)))
    return np.column_stack([1 - p, p])


def test_the_api_exports_a_curated_surface():
    assert set(auditor.__all__) >= {"load_policy", "run", "audit", "AuditResult", "PolicyError", "__version__"}
    assert all(hasattr(auditor, name) for name in auditor.__all__)
    with pytest.raises(AttributeError):
        auditor.nothing_here  # noqa: B018


def test_audit_in_memory_model_gives_the_evidence_auditor_run_gives(tmp_path):
    train, test = loans(300, 0), loans(80, 1)
    result = auditor.audit(pipeline(train), test, target="outcome", background=train, audience="finance",
                           explanations=["lime", {"type": "rules", "max_depth": 2}, "counterfactuals"], sample=6,
                           seed=3, workdir=tmp_path / "work", title="Loans <script>alert(1)</script>")
    assert isinstance(result, auditor.AuditResult) and result.exit_code == 0
    assert [m.name for m in result.evidence.subjects[0].methods] == ["lime", "rules", "counterfactuals"]
    text = result.policy_yaml()
    assert "TODO" in text and yaml.safe_load(text)["models"][0]["format"] == "skops"
    run = subprocess.run([AUDITOR, "run", str(tmp_path / "work" / "policy.yaml"), "--out", str(tmp_path / "cli"), "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "cli" / "evidence.json").read_bytes() == result.evidence.to_json().encode("utf-8")
    shown = result._repr_html_()
    assert "<script>" not in shown and "&lt;script&gt;" in shown and "Audit" in shown
    assert "Loans" in result.html()


def test_run_in_memory_then_write_signed(tmp_path, write_policy):
    identity = tmp_path / "identity"
    subprocess.run([AUDITOR, "keys", "init", str(identity)], check=True, capture_output=True)
    result = auditor.run(write_policy(tmp_path), sample=4)
    assert result.out is None and result.findings == [] and result.exit_code == 0
    folder = result.write(tmp_path / "out", identity=identity)
    assert result.signed and (folder / "manifest.sig").is_file() and (folder / "report.html").is_file()
    verify = subprocess.run([AUDITOR, "verify", str(folder)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    stored = json.loads((folder / "evidence.json").read_text())
    assert stored["subjects"][0]["sample"]["size"] == 4
    with pytest.raises(auditor.AuditorError):
        result.write(tmp_path / "out")  # not empty: refused, nothing overwritten


def test_audit_a_torch_module_and_a_function(tmp_path):
    import torch

    train, test = loans(200, 0).dropna(), loans(60, 1).dropna()
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))  # 2 numbers + 3 one-hot
    result = auditor.audit(net, test, target="outcome", background=train, classes=["bad", "good"], sample=4,
                           explanations=["integrated_gradients", "lime"], workdir=tmp_path / "torch")
    assert [m.name for m in result.evidence.subjects[0].methods] == ["integrated_gradients", "lime"]
    assert yaml.safe_load(result.policy_yaml())["models"][0]["format"] == "torch_export"
    plain = auditor.audit(probabilities, test[["income", "outcome"]], target="outcome", classes=["bad", "good"],
                          sample=4, explanations=["lime"], workdir=tmp_path / "function")
    assert plain.evidence.subjects[0].decisions[0].explanations["lime"].weights
    with pytest.raises(auditor.AuditorError) as info:
        auditor.audit(lambda X: probabilities(X), test[["income", "outcome"]], target="outcome",
                      classes=["bad", "good"], workdir=tmp_path / "lambda")
    assert "top level of a module" in info.value.hint


SAMPLES = [
    ("credit/models/gbm_pipeline.skops", "credit/data/test.csv", "credit_risk", "credit/data/train.csv"),
    ("credit/models/mlp.pt2", "credit/data/test.csv", "credit_risk", None),
    ("breast_cancer/models/gbm.skops", "breast_cancer/data/test.csv", "diagnosis", "breast_cancer/data/train.csv"),
    ("liver/models/hgb.skops", "liver/data/test.csv", "outcome", "liver/data/train.csv"),
    ("diabetes/models/gbr.skops", "diabetes/data/test.csv", "progression", "diabetes/data/train.csv"),
    ("diabetes/models/mlp.pt2", "diabetes/data/test.csv", "progression", "diabetes/data/train.csv"),
    ("lesion/models/cnn.pt", "lesion/data/test/labels.csv", "label", None),
    ("triage/models/classifier", "triage/data/test.csv", "label", None),
]


@pytest.mark.parametrize("model, data, target, background", SAMPLES, ids=[s[0].split("/")[0] + ":" + Path(s[0]).name
                                                                        for s in SAMPLES])
def test_init_writes_a_policy_that_validates_for_every_sample(tmp_path, model, data, target, background):
    root = REPO / "sample_audits"
    if not (root / model).exists():
        pytest.skip("sample models not built (make samples)")
    args = [AUDITOR, "init", "--model", str(root / model), "--data", str(root / data), "--target", target,
            "-o", str(tmp_path / "policy.yaml")] + (["--background", str(root / background)] if background else [])
    made = subprocess.run(args, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert "Traceback" not in made.stderr
    from auditor.audit import prepare

    prepare(auditor.load_policy(tmp_path / "policy.yaml"))  # what `auditor validate` checks, in this process
    tree = yaml.safe_load((tmp_path / "policy.yaml").read_text())
    assert tree["audit"]["intended_use"] == "TODO" and "# thresholds:" in (tmp_path / "policy.yaml").read_text()
    if model.startswith("credit/"):  # columns whose names suggest a protected characteristic are offered
        assert "#   - {feature: foreign_worker, basis: TODO}" in (tmp_path / "policy.yaml").read_text()
    if model.startswith("diabetes/"):  # a regressor, and a network's numeric target of many values: score models
        assert tree["models"][0]["task"] == "regression" and "classes" not in tree["models"][0]
        assert "decision: {adverse_if:" in (tmp_path / "policy.yaml").read_text()


def test_a_drafted_policy_runs_into_a_complete_report(tmp_path):
    root = REPO / "sample_audits" / "breast_cancer"
    if not (root / "models" / "gbm.skops").exists():
        pytest.skip("sample models not built (make samples)")
    subprocess.run([AUDITOR, "init", "--model", str(root / "models/gbm.skops"), "--data", str(root / "data/test.csv"),
                    "--target", "diagnosis", "--background", str(root / "data/train.csv"), "-o",
                    str(tmp_path / "policy.yaml")], check=True, capture_output=True)
    tree = yaml.safe_load((tmp_path / "policy.yaml").read_text())
    tree["sample"]["size"] = 4
    tree["report"]["formats"] = ["html"]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    run = subprocess.run([AUDITOR, "run", str(tmp_path / "policy.yaml"), "--out", str(tmp_path / "out"), "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    html = (tmp_path / "out" / "report.html").read_text()
    for section in ("Case-by-case explanations", "Data checks: audited against reference", "Methods"):
        assert section in html


def test_init_refuses_what_it_cannot_draft(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,x\n")
    (tmp_path / "m.bin").write_bytes(b"\0")
    run = subprocess.run([AUDITOR, "init", "--model", str(tmp_path / "m.bin"), "--data", str(tmp_path / "data.csv"),
                          "--target", "b", "-o", str(tmp_path / "p.yaml")], capture_output=True, text=True)
    assert run.returncode == 2 and "cannot tell the model's format" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_the_notebook_example_runs(tmp_path, monkeypatch):
    """sample_audits/notebook/audit_from_python.ipynb: its code cells, run in order in a fresh folder."""
    notebook = json.loads((REPO / "sample_audits/notebook/audit_from_python.ipynb").read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "notebook", "exec"), namespace)  # noqa: S102
    assert namespace["result"].exit_code == 0
    assert {"report.html", "report.pdf", "evidence.json", "manifest.json"} <= {p.name for p in namespace["folder"].iterdir()}


def test_init_does_not_load_a_skops_file_whose_types_are_not_trusted(tmp_path):
    """Reading a draft's feature names must not run code the audit itself would refuse to load."""
    import skops.io as sio
    import xgboost

    frame = loans(120, 0).dropna()
    model = xgboost.XGBClassifier(n_estimators=5).fit(frame[["income", "debt_ratio"]], frame.outcome == "good")
    sio.dump(model, tmp_path / "xgb.skops")
    frame.to_csv(tmp_path / "data.csv", index=False)
    run = subprocess.run([AUDITOR, "init", "--model", str(tmp_path / "xgb.skops"), "--data", str(tmp_path / "data.csv"),
                          "--target", "outcome", "-o", str(tmp_path / "p.yaml")], capture_output=True, text=True)
    assert run.returncode == 2 and "not trusted by default" in run.stderr and "trusted_libraries: [xgboost]" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "p.yaml").exists()
