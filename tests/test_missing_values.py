"""Missing values as the model sees them: loading, the probe, every explainer's missing state, and the
data checks (missingness, duplicates, independence, population stability) with their thresholds.

The models are real and take missing values as real models do: a HistGradientBoosting pipeline that routes
them natively, a pipeline with a SimpleImputer, a TorchScript network that reads NaN as a missing indicator,
and, to be refused, a pipeline and a network that cannot take them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from auditor.audit import prepare, run_audit
from auditor.data_checks import DataChecksSpec, check_data, psi, score_stability
from auditor.errors import PolicyError
from auditor.paths import locate
from auditor.plan import plan_run
from auditor.policy import load_policy

from conftest import REPO, save_torchscript

NUMERIC = ["income", "debt_ratio", "months_employed", "bureau_score"]
CATEGORIES = {"housing": ["own", "rent", "free"], "contact": ["phone", "email"]}
FEATURES = ["income", "housing", "debt_ratio", "months_employed", "contact", "bureau_score"]


def make_records(n: int, seed: int) -> pd.DataFrame:
    """Applications whose months employed (25%), bureau score (15%) and contact (20%) are often missing;
    a missing employment record raises the risk of a bad outcome."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": np.round(rng.normal(50, 15, n), 1),
        "housing": rng.choice(CATEGORIES["housing"], n, p=[0.45, 0.4, 0.15]).astype(object),
        "debt_ratio": np.round(rng.random(n), 3),
        "months_employed": np.round(rng.exponential(40, n)),
        "contact": rng.choice(CATEGORIES["contact"], n).astype(object),
        "bureau_score": np.round(rng.normal(650, 60, n)),
    })
    no_record = rng.random(n) < 0.25
    frame.loc[no_record, "months_employed"] = np.nan
    frame.loc[rng.random(n) < 0.15, "bureau_score"] = np.nan
    frame.loc[rng.random(n) < 0.2, "contact"] = np.nan
    logit = (0.05 * (frame["income"] - 50) - 2.5 * (frame["debt_ratio"] - 0.5) + 2.2 * no_record - 0.6
             + frame["housing"].map({"own": 0.8, "rent": -0.3, "free": -0.5}))
    frame["outcome"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "bad", "good")
    frame.insert(0, "application", [f"A{seed}-{i:04d}" for i in range(n)])
    return frame


def _encoder(numeric_step):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    return ColumnTransformer([("cats", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                               list(CATEGORIES))], remainder=numeric_step, verbose_feature_names_out=False)


def _torch_net(handles_missing: bool):
    import torch

    width = len(NUMERIC) + sum(len(c) for c in CATEGORIES.values())

    class Net(torch.nn.Module):
        """Reads NaN as 'no value': zero plus a missing indicator per input (or, without it, passes NaN on)."""

        def __init__(self, handles: bool) -> None:
            super().__init__()
            self.handles = handles
            self.net = torch.nn.Sequential(torch.nn.Linear(2 * width, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gone = torch.isnan(x)
            if self.handles:
                x = torch.nan_to_num(x, nan=0.0)
            return self.net(torch.cat([x / 100.0, gone.to(x.dtype)], dim=1))

    torch.manual_seed(0)
    return Net(handles_missing).eval()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    folder = tmp_path_factory.mktemp("records")
    audited, background = make_records(160, 1), make_records(300, 2)
    audited.to_csv(folder / "audited.csv", index=False)
    background.to_csv(folder / "background.csv", index=False)
    X, y = background[FEATURES], background["outcome"]
    hgb = Pipeline([("encode", _encoder("passthrough")),
                    ("hgb", HistGradientBoostingClassifier(max_iter=60, max_depth=3, random_state=0))]).fit(X, y)
    numbers = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())])
    cats = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="none")),
                     ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    imputed = Pipeline([("encode", ColumnTransformer([("num", numbers, NUMERIC), ("cat", cats, list(CATEGORIES))])),
                        ("logit", LogisticRegression(max_iter=1000))]).fit(X, y)
    bare = Pipeline([("encode", _encoder("passthrough")), ("logit", LogisticRegression(max_iter=1000))])
    bare.fit(X.fillna({"months_employed": 0, "bureau_score": 650, "contact": "phone"}), y)
    for name, model in (("hgb", hgb), ("imputed", imputed), ("bare", bare)):
        sio.dump(model, folder / f"{name}.skops")
    save_torchscript(_torch_net(True), folder / "net.pt")
    save_torchscript(_torch_net(False), folder / "net_nan.pt")
    return folder


def write_policy(folder: Path, tmp_path: Path, *, models=("hgb", "imputed"), explanations=None, name="policy.yaml",
                 audited="audited.csv", **extra) -> Path:
    features = [{"name": n} if n in NUMERIC else {"name": n, "type": "categorical", "categories": CATEGORIES[n]}
                for n in FEATURES]
    specs = {"hgb": {"format": "skops"}, "imputed": {"format": "skops"}, "bare": {"format": "skops"},
             "net": {"format": "torchscript", "classes": ["bad", "good"]},
             "net_nan": {"format": "torchscript", "classes": ["bad", "good"]}}
    suffix = {"net": ".pt", "net_nan": ".pt"}
    tree = {
        "version": 1,
        "audit": {"id": "missing-values", "title": "Missing values", "audience": "finance", "owner": "Tests",
                  "intended_use": "Testing missing values."},
        "models": [{"id": m, "path": str(folder / f"{m}{suffix.get(m, '.skops')}"), "positive_class": "bad",
                    **specs[m]} for m in models],
        "datasets": [
            {"id": "audited", "path": str(tmp_path / audited if (tmp_path / audited).exists() else folder / audited),
             "target": "outcome", "id_column": "application", "features": features},
            {"id": "background", "path": str(folder / "background.csv"), "target": "outcome",
             "id_column": "application", "features": features},
        ],
        "audited": [{"model": m, "dataset": "audited", "background": "background"} for m in models],
        "sample": {"size": 8, "strategy": "stratified", "seed": 5},
        "explanations": explanations or [{"type": "lime", "num_samples": 600}],
        "report": {"formats": ["html"], "top_features": 6},
        **extra,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def audit(path: Path):
    policy = load_policy(path)
    prepared = prepare(policy)
    return prepared, run_audit(plan_run(policy), prepared)


# --- loading and the probe ----------------------------------------------------------------------------------


def test_models_that_take_missing_values_load_and_say_which_features(records, tmp_path):
    policy = load_policy(write_policy(records, tmp_path, models=("hgb", "imputed", "net")))
    prepared = prepare(policy)
    for p in prepared:
        assert p.model.missing_features == ("months_employed", "contact", "bureau_score")
        assert np.isnan(p.dataset.X).any() and np.isfinite(p.model.predict_proba(p.dataset.X)).all()


@pytest.mark.parametrize("model, why", [("bare", "rejected a row holding one"),
                                        ("net_nan", "returned no probability (NaN)")])
def test_a_model_that_rejects_missing_values_exits_2_naming_the_feature(records, tmp_path, model, why):
    out = tmp_path / "out"
    path = write_policy(records, tmp_path, models=(model,))
    run = subprocess.run([str(Path(sys.executable).parent / "auditor"), "run", str(path), "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, env=os.environ | {"NO_COLOR": "1"})
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert "cannot take missing values" in run.stderr and "'months_employed'" in run.stderr and why in run.stderr
    assert "imputer inside the model's pipeline" in run.stderr
    assert not out.exists()


# --- explainers: missing is a state of the feature -------------------------------------------------------------


def test_counterfactuals_keep_missing_values_missing_unless_fillable(records, tmp_path):
    cf = {"type": "counterfactuals", "count": 3}
    for fillable in ([], ["months_employed"]):
        spec = cf | {"fillable": fillable}
        prepared, evidence = audit(write_policy(records, tmp_path, models=("hgb",), explanations=[spec]))
        subject = evidence.subjects[0]
        filled = 0
        gone_decisions = [d for d in subject.decisions if d.values["months_employed"] is None]
        assert gone_decisions, "the sample must hold a decision with no employment record"
        for d in subject.decisions:
            result = d.explanations["counterfactuals"]
            for c in result.counterfactuals:
                for name, change in c.changes.items():
                    assert not (change.before is not None and change.after is None), "a value became missing"
                    if change.before is None:
                        assert name in fillable, f"{d.id}: filled {name}, which is not fillable"
                        filled += 1
        if fillable:
            assert filled > 0, "with months_employed fillable, some counterfactual gives it a value"
        assert all(r.valid == len(r.counterfactuals) for r in (d.explanations["counterfactuals"] for d in subject.decisions))


def test_lime_ranks_first_a_feature_whose_missingness_alone_drives_the_model(tmp_path):
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    gone = rng.random(n) < 0.3
    frame.loc[gone, "c"] = np.nan
    frame["y"] = np.where(gone, "yes", "no")  # the outcome is whether c is missing, nothing else
    frame.iloc[:400].to_csv(tmp_path / "bg.csv", index=False)
    frame.iloc[400:].to_csv(tmp_path / "audit.csv", index=False)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(frame.iloc[:400, :4], frame.y[:400])
    sio.dump(model, tmp_path / "m.skops")
    features = [{"name": c} for c in "abcd"]
    tree = {"version": 1, "audit": {"id": "m", "title": "t", "audience": "medical", "owner": "o", "intended_use": "u"},
            "models": [{"id": "m", "path": "m.skops", "format": "skops", "positive_class": "yes"}],
            "datasets": [{"id": "a", "path": "audit.csv", "target": "y", "features": features},
                         {"id": "bg", "path": "bg.csv", "target": "y", "features": features}],
            "audited": [{"model": "m", "dataset": "a", "background": "bg"}],
            "sample": {"size": 10, "strategy": "stratified", "seed": 1},
            "explanations": [{"type": "lime", "num_samples": 1000}, {"type": "rules", "max_depth": 2}],
            "report": {"formats": ["html"]}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    _, evidence = audit(tmp_path / "p.yaml")
    s = evidence.subjects[0]
    assert {d.values["c"] is None for d in s.decisions} == {True, False}  # both states are explained
    for d in s.decisions:
        weights = d.explanations["lime"].weights
        assert max(weights, key=lambda f: abs(weights[f])) == "c", (d.id, weights)
        if d.values["c"] is None:
            assert d.explanations["lime"].conditions["c"] == "c is missing"
            assert weights["c"] > 0  # being missing pushes towards 'yes'
    assert s.methods[0].parameters["missing_rates"] == {"c": pytest.approx(float(gone[:400].mean()))}
    rules = s.global_explanations["rules"]
    assert rules.fidelity == 1.0
    assert {c.text for r in rules.rules for c in r.conditions} == {"c is missing", "c is recorded"}
    from auditor.explainers.rules import rule_matches

    for d in s.decisions:  # each decision's rule is the one its values (None: missing) satisfy
        rule = next(r for r in rules.rules if r.id == rules.decision_rules[str(d.id)])
        assert rule_matches(rule, d.values)


def test_lime_missing_state_draws_at_the_background_rate(records):
    """The batched engine's perturbations are missing at the reference data's rate, the first row is the decision."""
    from lime.lime_tabular import LimeTabularExplainer

    from auditor.explainers.lime_sampling import with_missing
    from auditor.explainers.lime_tabular import _observed_fill

    background = pd.read_csv(records / "background.csv")
    X = background[["income", "debt_ratio", "months_employed", "bureau_score"]].to_numpy(dtype=float)
    rates = np.isnan(X).mean(axis=0)
    explainer = LimeTabularExplainer(_observed_fill(X), discretize_continuous=True, random_state=0)
    row = X[np.flatnonzero(np.isnan(X[:, 2]))[0]]
    data, inverse = explainer._LimeTabularExplainer__data_inverse(np.where(np.isnan(row), 1.0, row), 20000)
    with_missing(data, inverse, row, rates, np.random.default_rng(0))
    assert np.isnan(inverse[0, 2]) and data[0, 2] == 1
    np.testing.assert_allclose(np.isnan(inverse[1:]).mean(axis=0), rates, atol=0.01)
    assert np.array_equal(data[:, 2] == 1, np.isnan(inverse[:, 2]))  # the decision's state is "missing"
    present = ~np.isnan(inverse[:, 1])  # debt_ratio: never missing in the background
    assert present.all()


def test_integrated_gradients_is_skipped_on_data_with_missing_values_and_the_rest_run(records, tmp_path):
    explanations = [{"type": "integrated_gradients", "n_steps": 8}, {"type": "lime", "num_samples": 500},
                    {"type": "shapley", "background_rows": 30, "n_samples": 4},
                    {"type": "permutation_importance", "n_repeats": 2}]
    _, evidence = audit(write_policy(records, tmp_path, models=("net",), explanations=explanations))
    s = evidence.subjects[0]
    assert [m.name for m in s.skipped] == ["integrated_gradients"]
    reason = s.skipped[0].reason
    assert "needs every input value" in reason and "'months_employed'" in reason and "does not invent" in reason
    assert [m.name for m in s.methods] == ["lime", "shapley", "permutation_importance"]
    assert all("integrated_gradients" not in d.explanations for d in s.decisions)
    assert s.methods[1].summary.max_efficiency_gap < 0.05  # Shapley's substitutions include missing values


def test_principal_reasons_word_a_missing_value_plainly(records, tmp_path):
    reasons = {"adverse_class": "bad", "max_reasons": 4, "missing_texts": {"bureau_score": "No credit file found"}}
    path = write_policy(records, tmp_path, models=("hgb",), principal_reasons=reasons,
                        explanations=[{"type": "lime", "num_samples": 800}, {"type": "counterfactuals"}],
                        sample={"size": 24, "strategy": "random", "seed": 2})
    _, evidence = audit(path)
    texts = {}
    for d in evidence.subjects[0].decisions:
        for r in (d.principal_reasons.reasons if d.principal_reasons else []):
            assert r.missing == (d.values[r.feature] is None)
            texts[r.feature, r.missing] = r.text
    assert texts[("months_employed", True)] == "No record of: months_employed"
    assert texts.get(("bureau_score", True), "No credit file found") == "No credit file found"
    assert texts.get(("months_employed", False), "months_employed") == "months_employed"


def test_evidence_is_byte_identical_across_reruns_with_missing_values(records, tmp_path):
    explanations = [{"type": "lime", "num_samples": 500, "repeats": 2}, {"type": "shapley", "background_rows": 30},
                    {"type": "rules"}, {"type": "counterfactuals"}, {"type": "permutation_importance", "n_repeats": 2}]
    path = write_policy(records, tmp_path, explanations=explanations)
    first = audit(path)[1].to_json()
    assert first == audit(path)[1].to_json()
    assert '"months_employed": null' in first


# --- data checks ------------------------------------------------------------------------------------------------


def test_psi_is_zero_for_identical_data_and_matches_a_hand_computation():
    assert psi([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]) == 0.0
    hand = (0.5 - 0.4) * np.log(0.5 / 0.4) + (0.3 - 0.4) * np.log(0.3 / 0.4) + 0.0
    assert psi([0.5, 0.3, 0.2], [0.4, 0.4, 0.2]) == pytest.approx(hand, abs=1e-12)
    assert hand == pytest.approx(0.0511, abs=1e-4)
    # Binned at the background's quantiles (2 bins: its median), missing values as a bin of their own:
    background = np.array([1.0, 2.0, 3.0, 4.0, np.nan])  # median 2.5: bins (≤ 2.5], (> 2.5], missing
    audited = np.array([1.0, 1.0, 1.0, 4.0])
    spec = DataChecksSpec(psi_bins=2)
    s = score_stability(audited, background, spec)
    assert [b.label for b in s.bins] == ["≤ 2.5", "> 2.5", "missing"]
    a, b = [0.75, 0.25, 1e-4], [0.4, 0.4, 0.2]  # the empty bin counts as a share of 1e-4
    expected = sum((x - y) * np.log(x / y) for x, y in zip(a, b))
    assert s.psi == pytest.approx(expected, abs=1e-12) and s.band == "major shift"
    same = score_stability(background, background, spec)
    assert same.psi == 0.0 and same.band == "stable"


def test_data_checks_find_a_planted_overlap_and_list_it(records, tmp_path):
    audited = pd.read_csv(records / "audited.csv")
    background = pd.read_csv(records / "background.csv")
    planted = background.iloc[[3, 17, 40, 41, 77, 90, 120, 150, 200, 299]].copy()
    planted["application"] = [f"copy-{i}" for i in range(10)]  # other ids, the same feature values
    pd.concat([audited, planted]).to_csv(tmp_path / "overlap.csv", index=False)
    path = write_policy(records, tmp_path, models=("hgb",), audited="overlap.csv",
                        thresholds=[{"metric": "data.overlap_share", "max": 0.0},
                                    {"metric": "data.missing_rate", "by": "months_employed", "max": 0.5},
                                    {"metric": "stability.psi", "by": "score", "max": 0.5},
                                    {"metric": "stability.psi", "max": 0.5}])
    _, evidence = audit(path)
    check = evidence.data_checks[0]
    assert check.overlap_rows == 10 and check.overlap_ids == [f"copy-{i}" for i in range(10)]
    assert check.overlap_share == pytest.approx(10 / 170)
    overlap = next(o for o in check.observations if o.code == "data.overlap")
    assert overlap.decisions == check.overlap_ids and overlap.setting == "data_checks.warn_overlap_share"
    findings = {f.metric + (" by" if "by" in f.id else ""): f for f in evidence.findings}
    assert findings["data.overlap_share"].status == "fail" and findings["data.overlap_share"].value == pytest.approx(10 / 170)
    assert findings["data.overlap_share"].model is None  # about the data, not a model
    assert findings["stability.psi by"].model == "hgb"  # the model's score
    document = json.loads(evidence.to_json())
    for f in evidence.findings:  # every finding names the path its value rests on
        assert locate(document, f.evidence) == pytest.approx(f.value)
    employed = next(c for c in check.features if c.name == "months_employed")
    assert employed.missing == int(pd.concat([audited, planted]).months_employed.isna().sum())
    assert employed.stability.bins[-1].label == "missing"

    from auditor.report import render_html

    html = render_html(evidence)
    section = html[html.index("Data checks: audited against background"):]
    for i in range(10):
        assert f">copy-{i}</span>" in section


def test_data_checks_flag_constant_duplicates_unseen_and_out_of_range(records, tmp_path):
    audited = pd.read_csv(records / "audited.csv")
    audited["contact"] = "phone"  # constant in the audited data
    audited.loc[[0, 1], "income"] = [500.0, -90.0]  # outside the background's range
    audited.loc[2, "housing"] = "free"
    twin = audited.iloc[[5]].assign(application="twin")
    pd.concat([audited, twin]).to_csv(tmp_path / "odd.csv", index=False)
    background = pd.read_csv(records / "background.csv")
    background.loc[background.housing == "free", "housing"] = "rent"  # 'free' never appears in the background
    background.to_csv(tmp_path / "bg.csv", index=False)
    policy = load_policy(write_policy(records, tmp_path, models=("hgb",), audited="odd.csv"))
    prepared = prepare(policy)[0]
    bg = prepared.background
    bg_path = tmp_path / "bg.csv"
    from auditor.datasets import load_dataset

    bg = load_dataset(policy.dataset("background").model_copy(update={"path": bg_path}), policy,
                      space=prepared.dataset.space)
    check = check_data(prepared.dataset, bg, DataChecksSpec(warn_duplicate_share=0.0))
    by = {f.name: f for f in check.features}
    assert by["contact"].constant and by["contact"].near_constant and by["contact"].top_share == 1.0
    income = pd.concat([audited, twin]).income
    outside = int(((income < background.income.min()) | (income > background.income.max())).sum())
    assert outside >= 2 and by["income"].out_of_range == outside and by["income"].low == float(background.income.min())
    assert by["housing"].unseen_categories == ["free"] and by["housing"].unseen_rows == int(
        (pd.concat([audited, twin]).housing == "free").sum())
    assert check.duplicate_rows == 1 and check.duplicate_ids == ["twin"]
    assert {o.code for o in check.observations} >= {"data.near_constant", "data.outside_background", "data.duplicates"}
    assert sum(c.share for c in check.classes) == pytest.approx(1.0)


def test_unknown_data_metric_and_by_are_refused(records, tmp_path):
    path = write_policy(records, tmp_path, thresholds=[{"metric": "data.missingness", "max": 0.1},
                                                       {"metric": "stability.psi", "by": "nope", "max": 0.1}])
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    text = str(info.value)
    assert "data.missing_rate" in text and "unknown feature 'nope'" in text and "'score'" in text


# --- the sample audit with real missing values --------------------------------------------------------------


def test_liver_sample_shows_missing_states_in_lime_rules_and_reasons(tmp_path):
    if not (REPO / "sample_audits/liver/models/.built").exists():
        pytest.skip("the liver sample is built by make (sample_audits/liver/build.py)")
    policy = load_policy(REPO / "policies/liver_missing_medical.yaml")
    prepared = prepare(policy)
    evidence = run_audit(plan_run(policy), prepared)
    assert {p.model.id: bool(p.model.missing_features) for p in prepared} == {"hgb": True, "logit": True}
    assert not any(s.skipped for s in evidence.subjects)
    conditions = [c for s in evidence.subjects for d in s.decisions for c in d.explanations["lime"].conditions.values()]
    assert any(c.endswith(" is missing") for c in conditions)
    rules = [c.text for s in evidence.subjects for r in s.global_explanations["rules"].rules for c in r.conditions]
    assert any("missing" in t for t in rules)
    reasons = [r.text for s in evidence.subjects for d in s.decisions if d.principal_reasons
               for r in d.principal_reasons.reasons if r.missing]
    assert reasons and all(t.startswith("No ") for t in reasons)
    assert evidence.data_checks[0].max_missing_rate > 0.2

    from auditor.report import render_html

    html = render_html(evidence)
    for text in ("is missing", "or missing", reasons[0], "Data checks: test against train"):
        assert text in html


def test_history_diff_reports_missingness_and_psi_changes(records, tmp_path):
    from auditor.diff import diff_audits
    from auditor.diff_text import diff_text

    audited = pd.read_csv(records / "audited.csv")
    worse = audited.copy()
    worse.loc[worse.index[:60], "bureau_score"] = np.nan  # the bureau stopped answering for many applicants
    worse.to_csv(tmp_path / "worse.csv", index=False)
    explanations = [{"type": "rules"}]
    _, a = audit(write_policy(records, tmp_path, models=("hgb",), explanations=explanations))
    _, again = audit(write_policy(records, tmp_path, models=("hgb",), explanations=explanations))
    _, b = audit(write_policy(records, tmp_path, models=("hgb",), explanations=explanations, audited="worse.csv"))
    same = diff_audits(a, None, again, None)
    assert not same.changed and [d.changed for d in same.data] == [False]
    diff = diff_audits(a, None, b, None)
    (data,) = diff.data
    assert data.changed
    drift = {f.feature: f for f in data.features}
    assert drift["bureau_score"].missing_rate.a == pytest.approx(audited.bureau_score.isna().mean())
    assert drift["bureau_score"].missing_rate.b == pytest.approx(worse.bureau_score.isna().mean())
    assert drift["bureau_score"].psi.b > drift["bureau_score"].psi.a
    assert "income" not in drift  # unchanged features are not listed
    assert diff.subjects[0].score_psi is not None
    text = diff_text(diff)
    assert "Data audited against background:" in text and "bureau_score: missing" in text and "PSI" in text


def test_dask_workers_give_the_same_evidence_with_missing_values(records, tmp_path, monkeypatch):
    from auditor import executors

    explanations = [{"type": "lime", "num_samples": 500}, {"type": "shapley", "background_rows": 30},
                    {"type": "counterfactuals", "fillable": ["months_employed"]}]
    policy = load_policy(write_policy(records, tmp_path, models=("hgb",), explanations=explanations))
    prepared = prepare(policy)
    monkeypatch.setattr(executors, "CHUNK_DECISIONS", 3)
    local = run_audit(plan_run(policy), prepared).to_json()
    with executors.DaskExecutor(workers=2) as dask:
        assert run_audit(plan_run(policy), prepared, executor=dask).to_json() == local
