"""Tests of auditor.diff on real audits of the credit sample: the same run, a retrained model, a dropped feature.

The audits are real ``auditor run`` invocations (through click's CliRunner) of a fast copy of
policies/credit_finance.yaml: the gradient-boosted pipeline only, LIME, surrogate rules and permutation
importance, principal reasons from LIME, HTML report only. The retrained models are real
scikit-learn pipelines fitted on the sample's training data and saved with skops.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from auditor.cli import cli
from auditor.diff import AuditDiff, diff_audits, load_run
from auditor.diff_text import diff_text
from auditor.errors import AuditorError

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "credit_finance.yaml"
CREDIT = REPO / "sample_audits" / "credit"
MODEL = CREDIT / "models" / "gbm_pipeline.skops"
TRAIN = CREDIT / "data" / "train.csv"
TEST = CREDIT / "data" / "test.csv"
TARGET = "credit_risk"
DROPPED = "telephone"


def fast_policy(model_path: str, drop: str | None = None) -> dict:
    """The credit policy with the gbm pipeline only, fast explanations, absolute data paths."""
    policy = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    policy["models"] = [dict(m, path=model_path) for m in policy["models"] if m["id"] == "gbm"]
    features = [f for f in policy["datasets"][0]["features"] if f["name"] != drop]
    for d in policy["datasets"]:
        d["path"] = str((POLICY.parent / d["path"]).resolve())
        d["features"] = [dict(f) for f in features]
    policy["audited"] = [a for a in policy["audited"] if a["model"] == "gbm"]
    policy["explanations"] = [
        {"type": "lime", "num_samples": 1000},
        {"type": "rules", "max_depth": 3, "min_samples_leaf": 25, "min_fidelity": 0.8},
        {"type": "permutation_importance", "n_repeats": 3},
    ]
    names = {e["type"] for e in policy["explanations"]}
    policy["thresholds"] = [t for t in policy.get("thresholds", [])  # those on the explanations kept
                            if t["metric"].partition(".")[0] in names | {"performance", "fairness", "agreement"}]
    policy["principal_reasons"]["methods"] = ["lime"]
    policy["principal_reasons"]["texts"].pop(drop, None)
    policy["report"] = {"formats": ["html"], "top_features": 8}
    return policy


def retrain(path: Path, *, seed: int, drop: str | None = None) -> Path:
    """A GradientBoosting pipeline like build.py's, fitted on train.csv with another seed, saved with skops."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    spec = [f for f in fast_policy("unused", drop=drop)["datasets"][0]["features"]]
    categorical = [f["name"] for f in spec if f.get("type") == "categorical"]
    numeric = [f["name"] for f in spec if f.get("type") != "categorical"]
    categories = {f["name"]: f["categories"] for f in spec if f.get("type") == "categorical"}
    train = pd.read_csv(TRAIN)
    pipeline = Pipeline([
        ("encode", ColumnTransformer([
            ("categorical", OneHotEncoder(categories=[categories[c] for c in categorical], sparse_output=False),
             categorical),
            ("numeric", StandardScaler(), numeric),
        ])),
        ("classify", GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.1, subsample=0.7,
                                                random_state=seed)),
    ]).fit(train[[f["name"] for f in spec]], train[TARGET])
    sio.dump(pipeline, path)
    return path


def audit(folder: Path, model: Path, *, drop: str | None = None, name: str = "out") -> Path:
    """Write the policy in ``folder`` with the model beside it (relative path), and run the audit."""
    folder.mkdir(parents=True, exist_ok=True)
    if model.parent != folder:
        shutil.copyfile(model, folder / "model.skops")
    policy = folder / "policy.yaml"
    policy.write_text(yaml.safe_dump(fast_policy("model.skops", drop=drop), sort_keys=False), encoding="utf-8")
    out = folder / name
    result = CliRunner().invoke(cli, ["run", str(policy), "--sample", "4", "--out", str(out), "-q"])
    # 0: every finding passed; 1: the audit was written and a threshold failed (still a complete run)
    assert result.exit_code in (0, 1), result.output + repr(result.exception)
    assert (out / "evidence.json").is_file(), result.output
    return out


@dataclass(frozen=True)
class Runs:
    a: Path  # original model
    a_again: Path  # the same policy and model, run again
    retrained: Path  # the model retrained with another seed
    dropped: Path  # a model trained without DROPPED, and a policy without it


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    if not (MODEL.is_file() and TRAIN.is_file() and TEST.is_file()):
        pytest.skip("credit sample models not built: run python sample_audits/credit/build.py (or make demo)")
    root = tmp_path_factory.mktemp("diff")
    a = audit(root / "a", MODEL)
    a_again = audit(root / "a", root / "a" / "model.skops", name="out_again")
    (root / "b").mkdir()
    retrained = audit(root / "b", retrain(root / "b" / "model.skops", seed=7))
    (root / "c").mkdir()
    dropped = audit(root / "c", retrain(root / "c" / "model.skops", seed=0, drop=DROPPED), drop=DROPPED)
    return Runs(a, a_again, retrained, dropped)


def _diff(a: Path, b: Path) -> AuditDiff:
    return diff_audits(*load_run(a), *load_run(b), top_k=5)


def _assert_no_change(d: AuditDiff) -> None:
    assert d.changed is False
    assert d.same_audit and not d.policy_changed and not d.overrides_changed
    assert d.inputs.source == "manifest"
    assert d.inputs.changed is False
    assert not any(m.changed for m in d.inputs.models) and not any(x.changed for x in d.inputs.datasets)
    assert [m.id for m in d.inputs.models] == ["gbm"]
    assert {x.id for x in d.inputs.datasets} == {"applications", "development"}
    assert not (d.subjects_added or d.subjects_removed)
    assert not (d.findings.changed or d.findings.added or d.findings.removed)
    (s,) = d.subjects
    assert (s.model, s.dataset) == ("gbm", "applications")
    assert not s.changed
    assert [p.metric for p in s.performance] == ["accuracy", "balanced_accuracy", "roc_auc", "brier_score"]
    assert all(p.delta == 0 for p in s.performance)
    (imp,) = s.importance
    assert imp.rank_correlation in (1.0, None)
    assert imp.rank_correlation == pytest.approx(1.0)
    assert imp.top_a == imp.top_b and len(imp.top_a) == 5
    assert not (imp.entered or imp.left or imp.features_only_a or imp.features_only_b)
    assert imp.max_abs_change == 0
    (rules,) = s.rules
    assert rules.fidelity.delta == 0 and not (rules.added or rules.removed)
    assert not s.reasons_changed and not s.decisions_only_a and not s.decisions_only_b
    assert not (s.explanations_only_a or s.explanations_only_b)
    text = diff_text(d)
    assert "No change." in text and len(text.strip().splitlines()) == 2


def test_run_against_itself_is_no_change(runs):
    evidence, manifest = load_run(runs.a)
    assert manifest is not None
    assert any(dec.principal_reasons is not None for dec in evidence.subjects[0].decisions)
    d = diff_audits(evidence, manifest, evidence, manifest)
    _assert_no_change(d)
    assert d.a.run_id == d.b.run_id
    assert d.a.policy_sha256 == d.b.policy_sha256 == evidence.policy_sha256


def test_rerun_of_the_same_audit_is_no_change(runs):
    d = _diff(runs.a, runs.a_again)
    assert d.a.run_id != d.b.run_id  # run ids and timestamps differ, and are not changes
    _assert_no_change(d)


def test_without_manifests_inputs_come_from_evidence(runs):
    (ea, _), (eb, _) = load_run(runs.a), load_run(runs.retrained)
    d = diff_audits(ea, None, eb, None)
    assert d.inputs.source == "evidence" and d.a.run_id is None
    (m,) = d.inputs.models
    assert m.changed and m.sha256_a != m.sha256_b
    assert [x.id for x in d.inputs.datasets] == ["applications"] and not d.inputs.datasets[0].changed
    assert diff_audits(ea, None, ea, None).changed is False


def test_retrained_model(runs):
    d = _diff(runs.a, runs.retrained)
    assert d.changed is True
    assert d.same_audit and not d.policy_changed and not d.overrides_changed  # same policy text, other model file
    (m,) = d.inputs.models
    assert m.id == "gbm" and m.changed and m.sha256_a != m.sha256_b
    assert d.inputs.datasets and not any(x.changed for x in d.inputs.datasets)
    (s,) = d.subjects
    assert s.changed
    assert all(p.delta is not None for p in s.performance)
    assert any(p.delta != 0 for p in s.performance)
    (imp,) = s.importance
    assert imp.rank_correlation is not None
    assert imp.rank_correlation < 1 or imp.entered or imp.left
    assert set(imp.entered) == set(imp.top_b) - set(imp.top_a)
    assert set(imp.left) == set(imp.top_a) - set(imp.top_b)
    (rules,) = s.rules
    assert rules.fidelity.delta != 0 or rules.added or rules.removed
    assert rules.changed
    assert not s.decisions_only_a and not s.decisions_only_b  # same seed and data: same decisions sampled
    text = diff_text(d)
    assert "No change." not in text
    assert "gbm" in text and "performance:" in text and "fidelity" in text


def test_dropped_feature(runs):
    d = _diff(runs.a, runs.dropped)
    assert d.changed is True and d.policy_changed
    assert d.inputs.models[0].changed
    (s,) = d.subjects
    (imp,) = s.importance
    assert imp.features_only_a == [DROPPED] and not imp.features_only_b
    assert DROPPED not in imp.top_b
    assert imp.common_features == 19
    assert DROPPED in imp.left or imp.features_only_a
    assert f"features only in A: {DROPPED}" in diff_text(d)
    for change in s.reasons_changed:
        assert DROPPED not in change.features_b


def test_load_run_without_evidence(tmp_path):
    (tmp_path / "manifest.json").write_text("{}", encoding="utf-8")
    with pytest.raises(AuditorError) as info:
        load_run(tmp_path)
    assert "evidence.json" in info.value.message and info.value.hint
    with pytest.raises(AuditorError) as info:
        load_run(tmp_path / "missing")
    assert info.value.hint


def test_load_run_without_manifest(runs, tmp_path):
    shutil.copyfile(runs.a / "evidence.json", tmp_path / "evidence.json")
    evidence, manifest = load_run(tmp_path)
    assert manifest is None and evidence.subjects


def test_json_round_trip(runs):
    for d in (_diff(runs.a, runs.retrained), _diff(runs.a, runs.dropped), _diff(runs.a, runs.a)):
        text = d.model_dump_json()
        again = AuditDiff.model_validate_json(text)
        assert again == d
        assert json.loads(again.model_dump_json()) == json.loads(text)


def test_findings_are_compared_when_present(runs):
    """Evidence may carry ``findings`` (a list of objects with id, metric, model, status, value)."""
    from types import SimpleNamespace as F

    ea, ma = load_run(runs.a)
    a = ea.model_copy()
    b = ea.model_copy()
    object.__setattr__(a, "findings", [
        F(id="accuracy", metric="performance.accuracy", model="gbm", status="pass", value=0.77, threshold=0.7),
        F(id="fidelity", metric="rules.fidelity", model="gbm", status="warn", value=0.85, threshold=0.8),
        F(id="old", metric="performance.roc_auc", model="gbm", status="pass", value=0.8, threshold=0.7),
    ])
    object.__setattr__(b, "findings", [
        F(id="accuracy", metric="performance.accuracy", model="gbm", status="fail", value=0.65, threshold=0.7),
        F(id="fidelity", metric="rules.fidelity", model="gbm", status="warn", value=0.84, threshold=0.8),
        F(id="new", metric="performance.brier_score", model=None, status="pass", value=0.1, threshold=0.2),
    ])
    d = diff_audits(a, ma, b, ma)
    assert d.changed
    (c,) = d.findings.changed
    assert (c.id, c.model, c.status_a, c.status_b, c.value_a, c.value_b) == ("accuracy", "gbm", "pass", "fail", 0.77, 0.65)
    assert [f.id for f in d.findings.added] == ["new"] and [f.id for f in d.findings.removed] == ["old"]
    text = diff_text(d)
    assert "accuracy (gbm): pass → fail" in text and "new: added" in text
    assert diff_audits(a, ma, a, ma).changed is False


def test_real_findings(runs):
    """With the findings the auditor writes (the policy's thresholds): none change against itself; a flipped
    status is reported with both values."""
    ea, ma = load_run(runs.a)
    findings = list(getattr(ea, "findings", None) or [])
    if not findings:
        pytest.skip("this evidence has no findings (thresholds not evaluated by this auditor version)")
    assert not diff_audits(ea, ma, ea, ma).findings.has_changes
    first = findings[0]
    flipped = first.model_copy(update={"status": "fail" if first.status != "fail" else "pass", "value": None})
    eb = ea.model_copy(update={"findings": [flipped, *findings[1:]]})
    d = diff_audits(ea, ma, eb, ma)
    assert d.changed
    (c,) = d.findings.changed
    assert (c.id, c.model, c.status_a, c.value_a, c.value_b) == (first.id, first.model, first.status, first.value, None)
    assert not d.findings.added and not d.findings.removed
    eb = ea.model_copy(update={"findings": findings[1:]})
    assert [f.id for f in diff_audits(ea, ma, eb, ma).findings.removed] == [first.id]


def test_fairness_figures_are_compared():
    """A protected feature's adverse impact ratio and rate gaps are compared run to run, by feature: a moved
    ratio is a change, reported with both values; the same evidence is no change."""
    from auditor.evidence import read_evidence

    fixture = Path(__file__).resolve().parent / "fixtures" / "evidence" / "finance_tabular.json"
    a, b = read_evidence(fixture), read_evidence(fixture)
    assert not diff_audits(a, None, b, None).changed
    s = next(i for i, s in enumerate(b.subjects) if s.fairness is not None and s.fairness.features)
    feature = b.subjects[s].fairness.features[0]
    before = feature.min_impact_ratio
    feature.min_impact_ratio = before - 0.25
    diff = diff_audits(a, None, b, None)
    moved = [m for m in diff.subjects[s].fairness if m.changed]
    assert [m.metric for m in moved] == [f"adverse_impact_ratio by {feature.feature}"]
    assert moved[0].a == pytest.approx(before) and moved[0].delta == pytest.approx(-0.25)
    assert diff.changed and f"adverse_impact_ratio by {feature.feature}" in diff_text(diff)
