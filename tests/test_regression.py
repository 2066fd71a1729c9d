"""Regression models (``task: regression``): a score measured against a numeric target, and a decision cut-off
under which the score's adverse decisions get principal reasons and counterfactuals like a classifier's.

The models are trained here on small synthetic credit-score data; the audit runs end to end, and every figure
is checked against scikit-learn (or the library that scores the file) on the same rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from auditor.audit import prepare, run_audit
from auditor.errors import PolicyError
from auditor.plan import plan_run
from auditor.policy import load_policy
from auditor.sampling import draw_sample

NUMERIC = ["income", "debt_ratio", "months_employed"]
PURPOSE = ["car", "home", "other"]
CUT = 600.0


def make_scores(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"applicant": [f"A{seed}-{i:04d}" for i in range(n)],
                          "income": rng.normal(50, 15, n).round(1), "debt_ratio": rng.random(n).round(3),
                          "months_employed": rng.integers(0, 240, n).astype(float),
                          "purpose": rng.choice(PURPOSE, n).astype(object)})
    frame["score"] = (600 + 2.0 * (frame.income - 50) - 120 * (frame.debt_ratio - 0.5)
                      + 0.25 * (frame.months_employed - 120) + frame.purpose.map({"car": 5, "home": 15, "other": -20})
                      + rng.normal(0, 12, n)).round(1)
    return frame


def train_model(frame: pd.DataFrame) -> Pipeline:
    encode = ColumnTransformer([("cat", OneHotEncoder(categories=[PURPOSE]), ["purpose"])], remainder="passthrough")
    model = Pipeline([("encode", encode), ("gbr", GradientBoostingRegressor(n_estimators=60, max_depth=2,
                                                                              random_state=0))])
    return model.fit(frame[NUMERIC + ["purpose"]], frame["score"])


def write_policy(folder: Path, **changes) -> Path:
    features = [{"name": n} for n in NUMERIC] + [{"name": "purpose", "type": "categorical", "categories": PURPOSE}]
    tree = {
        "version": 1,
        "audit": {"id": "score-audit", "title": "Credit score", "audience": "finance", "owner": "Model risk",
                  "intended_use": "Scores loan applications; below 600 the application is declined."},
        "models": [{"id": "score", "path": "score.skops", "format": "skops", "task": "regression",
                    "trusted_types": sorted(sio.get_untrusted_types(file=folder / "score.skops")),
                    "decision": {"adverse_if": {"below": CUT}, "adverse": "decline", "favourable": "approve"}}],
        "datasets": [{"id": "applicants", "path": "audit.csv", "target": "score", "id_column": "applicant",
                      "features": features},
                     {"id": "training", "path": "train.csv", "target": "score", "id_column": "applicant",
                      "features": features}],
        "audited": [{"model": "score", "dataset": "applicants", "background": "training"}],
        "sample": {"size": 10, "strategy": "boundary", "seed": 3},
        "explanations": [{"type": "lime", "num_samples": 500}, {"type": "shapley", "background_rows": 40,
                                                                  "n_samples": 5},
                         {"type": "rules", "max_depth": 3}, {"type": "permutation_importance", "n_repeats": 3},
                         {"type": "counterfactuals", "count": 2, "immutable": ["purpose"]}],
        "principal_reasons": {"texts": {"debt_ratio": "Debt too high relative to income"}},
        "thresholds": [{"metric": "performance.rmse", "max": 40}, {"metric": "performance.r2", "min": 0.99},
                       {"metric": "performance.accuracy", "min": 0.9},  # a classifier's figure: not this model's
                       {"metric": "performance.mae", "max": 40, "by": "purpose"}],
        "report": {"formats": ["html"]},
    }
    for key, value in changes.items():
        node = tree
        *parents, last = key.split(".")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is None:
            node.pop(int(last) if last.isdigit() else last)
        else:
            node[int(last) if last.isdigit() else last] = value
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regression")
    train, test = make_scores(400, 0), make_scores(120, 1)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "audit.csv", index=False)
    model = train_model(train)
    sio.dump(model, folder / "score.skops")
    policy = write_policy(folder)
    loaded = load_policy(policy)
    evidence = run_audit(plan_run(loaded), prepare(loaded))
    return folder, model, test, policy, evidence


def test_performance_equals_scikit_learn_on_the_same_rows(scored):
    _, model, test, _, evidence = scored
    s = evidence.subjects[0]
    pred = model.predict(test[NUMERIC + ["purpose"]])
    y = test["score"].to_numpy()
    assert s.model.task == "regression" and s.model.classes == ["score"]
    assert s.performance.rmse == pytest.approx(np.sqrt(metrics.mean_squared_error(y, pred)), rel=1e-12)
    assert s.performance.mae == pytest.approx(metrics.mean_absolute_error(y, pred), rel=1e-12)
    assert s.performance.r2 == pytest.approx(metrics.r2_score(y, pred), rel=1e-12)
    deciles = s.performance.residual_deciles
    assert len(deciles) == 10 and sum(b.count for b in deciles) == len(test)
    assert [b.mean_predicted for b in deciles] == sorted(b.mean_predicted for b in deciles)
    cut = s.performance.decision
    assert cut.adverse_rate == pytest.approx(float((pred < CUT).mean()))
    assert cut.observed_adverse_rate == pytest.approx(float((y < CUT).mean()))
    assert np.sum(cut.confusion_matrix) == len(test)
    groups = {g.group: g for g in s.subgroups["purpose"]}
    for purpose in PURPOSE:
        rows = (test.purpose == purpose).to_numpy()
        assert groups[purpose].mae == pytest.approx(metrics.mean_absolute_error(y[rows], pred[rows]))
        assert groups[purpose].positive_rate == pytest.approx(float((pred[rows] < CUT).mean()))


def test_decisions_carry_the_score_and_the_cut_off_decision(scored):
    _, model, test, _, evidence = scored
    s = evidence.subjects[0]
    pred = dict(zip(test.applicant, model.predict(test[NUMERIC + ["purpose"]])))
    truth = dict(zip(test.applicant, test.score))
    for d in s.decisions:
        assert d.prediction == pytest.approx(pred[d.id], rel=1e-12)
        assert d.true_label == truth[d.id] and d.probabilities == {}
        assert d.predicted_label == ("decline" if pred[d.id] < CUT else "approve")
        assert d.correct == ((pred[d.id] < CUT) == (truth[d.id] < CUT))
        assert (d.principal_reasons is not None) == (d.predicted_label == "decline")
    # boundary: the ten scores nearest the cut-off
    distance = sorted(abs(v - CUT) for v in pred.values())
    assert max(abs(d.prediction - CUT) for d in s.decisions) == pytest.approx(distance[9])


def test_principal_reasons_name_what_pushes_the_score_below_the_cut_off(scored):
    *_, evidence = scored
    s = evidence.subjects[0]
    declined = [d for d in s.decisions if d.predicted_label == "decline"]
    assert declined, "the boundary sample holds declined applications"
    for d in declined:
        pr = d.principal_reasons
        assert pr.adverse_class == "decline" and pr.reasons
        lime = d.explanations["lime"].weights
        for r in pr.reasons:
            if pr.by_method.get("lime") and r.feature in pr.by_method["lime"]:
                assert lime[r.feature] < 0  # a reason pulls the score down, towards a decline
        texts = {r.feature: r.text for r in pr.reasons}
        if "debt_ratio" in texts:
            assert texts["debt_ratio"] == "Debt too high relative to income"
    assert s.reasons is not None and s.reasons.adverse == len(declined)


def test_explanations_explain_the_score(scored):
    _, model, test, _, evidence = scored
    s = evidence.subjects[0]
    names = [m.name for m in s.methods]
    assert names == ["lime", "shapley", "rules", "permutation_importance", "counterfactuals"]
    for d in s.decisions:
        shap = d.explanations["shapley"]
        assert shap.target == "score" and shap.output == pytest.approx(d.prediction, rel=1e-9)
        assert shap.attribution_sum + shap.expected_value == pytest.approx(d.prediction, abs=shap.efficiency_gap + 1e-6)
        assert d.explanations["lime"].target == "score"
    rules = s.global_explanations["rules"]
    assert rules.fidelity_kind == "r2" and 0.5 < rules.fidelity <= 1.0
    assert all(isinstance(r.prediction, float) and r.precision is None for r in rules.rules)
    assert all("THEN score" in r.text for r in rules.rules)
    importance = s.global_explanations["permutation_importance"]
    assert importance.scoring == "r2"
    X = test[NUMERIC + ["purpose"]]
    assert importance.baseline_score == pytest.approx(metrics.r2_score(test.score, model.predict(X)))
    top = max(importance.importances, key=lambda f: importance.importances[f].mean)
    assert top in ("income", "debt_ratio", "months_employed")


def test_counterfactuals_bring_declined_scores_over_the_cut_off(scored):
    _, model, test, _, evidence = scored
    s = evidence.subjects[0]
    rows = test.set_index("applicant")[NUMERIC + ["purpose"]]
    found = 0
    for d in s.decisions:
        result = d.explanations["counterfactuals"]
        if d.predicted_label == "approve":
            assert result.asked == 0 and not result.counterfactuals
            continue
        assert result.asked == 2 and result.target_range == [CUT, None]
        for cf in result.counterfactuals:
            row = rows.loc[[d.id]].copy()
            for feature, change in cf.changes.items():
                row[feature] = change.after
            assert model.predict(row)[0] >= CUT  # re-scored by the model itself
            assert cf.probability == pytest.approx(model.predict(row)[0], rel=1e-9)
            assert cf.predicted_label == "approve" and "purpose" not in cf.changes  # immutable
            found += 1
    assert found


def test_findings_use_the_regression_figures(scored):
    *_, evidence = scored
    by_id = {f.id: f for f in evidence.findings}
    assert by_id["performance.rmse"].status == "pass"
    assert by_id["performance.r2"].status == "fail"  # 0.99 is out of reach on noisy scores
    assert "performance.accuracy" not in by_id  # a classifier's figure: no finding for a score model
    assert {f.id for f in evidence.findings if f.metric == "performance.mae"} == {
        f"performance.mae by purpose [purpose = {p}]" for p in PURPOSE}


def test_the_report_prints_scores_not_probabilities(scored, tmp_path):
    folder, *_ = scored
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "auditor.cli", "run", str(folder / "policy.yaml"), "--out",
                           str(out), "--json"], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr  # the r2 finding fails
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "RMSE" in html and "Residuals by decile of the prediction" in html
    assert "P(score)" not in html and "P(Score)" not in html
    assert "decline</span></strong> when the score is below" in html
    evidence = json.loads((out / "evidence.json").read_text(encoding="utf-8"))
    assert evidence["subjects"][0]["model"]["decision"]["adverse_if"] == {"below": CUT, "above": None}


@pytest.mark.parametrize("change, expected", [
    ({"models.0.classes": [0, 1]}, "'classes' is for classifiers"),
    ({"models.0.task": None}, "a decision cut-off is for regression models"),
    ({"models.0.decision": None, "sample.strategy": "boundary"}, "needs a decision cut-off"),
    ({"models.0.decision": {"adverse_if": {"below": 1, "above": 2}}}, "exactly one of 'below' or 'above'"),
    ({"explanations": [{"type": "lime"}, {"type": "permutation_importance", "scoring": "roc_auc"}]},
     "scores a classifier"),
])
def test_a_policy_a_score_model_cannot_meet_is_refused_before_running(scored, tmp_path, change, expected):
    folder, *_ = scored
    for name in ("train.csv", "audit.csv", "score.skops"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    policy = write_policy(tmp_path, **change)
    with pytest.raises(PolicyError) as info:
        prepare(load_policy(policy))
    assert expected in str(info.value)


def test_a_classifier_marked_as_regression_and_a_text_target_are_refused(scored, tmp_path):
    folder, *_ = scored
    for name in ("train.csv", "score.skops"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    frame = pd.read_csv(folder / "audit.csv")
    frame["score"] = frame["score"].astype(object)
    frame.loc[3, "score"] = "pending"
    frame.to_csv(tmp_path / "audit.csv", index=False)
    with pytest.raises(PolicyError) as info:
        prepare(load_policy(write_policy(tmp_path)))
    assert "not a finite number" in str(info.value) and "row 4" in str(info.value)

    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit(pd.read_csv(folder / "train.csv")[NUMERIC], pd.read_csv(folder / "train.csv").score > CUT)
    sio.dump(clf, tmp_path / "score.skops")
    (tmp_path / "audit.csv").write_bytes((folder / "audit.csv").read_bytes())
    features = [{"name": n} for n in NUMERIC]
    policy = write_policy(tmp_path, **{"datasets.0.features": features, "datasets.1.features": features,
                                       "models.0.trusted_types": [], "explanations": [{"type": "lime"}],
                                       "thresholds": [], "principal_reasons": None})
    with pytest.raises(PolicyError) as info:
        prepare(load_policy(policy))
    assert "is a classifier, and the policy says task: regression" in str(info.value)


def test_score_sampling_strategies():
    rng = np.random.default_rng(0)
    score = rng.normal(600, 50, 500)
    truth = score + rng.normal(0, 20, 500)
    ids = np.arange(500).astype(object)
    from auditor.policy import DecisionSpec

    decision = DecisionSpec(adverse_if={"below": 600})
    kw = dict(y_true=truth, proba=score[:, None], classes=["score"], ids=ids, regression=True, decision=decision)
    deciles = np.searchsorted(np.quantile(score, np.linspace(0, 1, 11)[1:-1]), score, side="right")
    strat = draw_sample("stratified", 50, 1, **kw)
    assert np.bincount(deciles[strat.rows], minlength=10).tolist() == [5] * 10
    near = draw_sample("boundary", 20, 1, **kw)
    assert np.abs(score[near.rows] - 600).max() <= np.sort(np.abs(score - 600))[19]
    wrong = draw_sample("misclassified", 500, 1, **kw)
    assert wrong.available == int(((score < 600) != (truth < 600)).sum()) == len(wrong.rows)
    assert draw_sample("random", 30, 1, **kw).rows.tolist() == draw_sample("random", 30, 1, **kw).rows.tolist()


def test_audit_of_an_in_memory_regressor_gives_the_evidence_auditor_run_gives(tmp_path):
    import auditor

    train, test = make_scores(300, 0), make_scores(60, 1)
    model = train_model(train)
    result = auditor.audit(model, test.drop(columns="applicant"), target="score",
                           background=train.drop(columns="applicant"), explanations=["lime", "rules"], sample=5,
                           seed=2, workdir=tmp_path / "work")
    tree = yaml.safe_load(result.policy_yaml())
    assert tree["models"][0]["task"] == "regression"  # a scikit-learn regressor, audited as a score model
    s = result.evidence.subjects[0]
    assert s.performance.rmse == pytest.approx(np.sqrt(metrics.mean_squared_error(
        test.score, model.predict(test[NUMERIC + ["purpose"]]))))
    run = subprocess.run([sys.executable, "-m", "auditor.cli", "run", str(tmp_path / "work" / "policy.yaml"),
                          "--out", str(tmp_path / "cli"), "-q"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "cli" / "evidence.json").read_bytes() == result.evidence.to_json().encode("utf-8")


def _onehot(frame: pd.DataFrame) -> np.ndarray:
    """The encoded matrix the auditor hands PyTorch, ONNX and booster models: numbers, then purpose one-hot."""
    return np.column_stack([frame[NUMERIC].to_numpy(dtype=float)]
                           + [(frame.purpose == p).to_numpy(dtype=float) for p in PURPOSE])


def _score_model(kind: str, folder: Path, train: pd.DataFrame):
    """A score model in the format ``kind`` saved to ``folder``; returns (policy model entry, its own predict)."""
    X, y = _onehot(train), train.score.to_numpy()
    if kind == "onnx":
        from skl2onnx import to_onnx
        from sklearn.linear_model import Ridge

        ridge = Ridge().fit(X.astype(np.float32), y)
        (folder / "m.onnx").write_bytes(to_onnx(ridge, X.astype(np.float32)[:1]).SerializeToString())
        return {"path": "m.onnx", "format": "onnx"}, lambda Z: ridge.predict(Z.astype(np.float32))
    if kind == "xgboost":
        import xgboost

        reg = xgboost.XGBRegressor(n_estimators=30, max_depth=3, random_state=0).fit(X, y)
        reg.get_booster().save_model(str(folder / "m.ubj"))
        return {"path": "m.ubj", "format": "xgboost"}, reg.predict
    if kind == "lightgbm":
        import lightgbm

        reg = lightgbm.LGBMRegressor(n_estimators=30, num_leaves=7, random_state=0, verbose=-1).fit(X, y)
        reg.booster_.save_model(str(folder / "m.txt"))
        return {"path": "m.txt", "format": "lightgbm"}, reg.predict
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).eval()
    program = torch.export.export(net, (torch.zeros(4, 6),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "m.pt2"))

    def own(Z):
        with torch.no_grad():
            return net(torch.as_tensor(Z, dtype=torch.float32)).double().numpy().ravel()
    return {"path": "m.pt2", "format": "torch_export"}, own


@pytest.mark.parametrize("kind", ["torch_export", "onnx", "xgboost", "lightgbm"])
def test_every_format_s_scores_equal_its_own_prediction(tmp_path, kind):
    train, test = make_scores(200, 0), make_scores(40, 1)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "audit.csv", index=False)
    sio.dump(  # write_policy reads the types of its default skops entry, which this test then replaces
        GradientBoostingRegressor(n_estimators=2).fit(train[NUMERIC], train.score), tmp_path / "score.skops")
    entry, own = _score_model(kind, tmp_path, train)
    explanations = [{"type": "lime", "num_samples": 200}, {"type": "rules"}]
    if kind == "torch_export":
        explanations.append({"type": "integrated_gradients", "n_steps": 8})
    policy = write_policy(tmp_path, **{"models.0.path": entry["path"], "models.0.format": entry["format"],
                                       "models.0.trusted_types": None, "sample.size": 4, "thresholds": [],
                                       "explanations": explanations, "principal_reasons": None})
    loaded = load_policy(policy)
    prepared = prepare(loaded)[0]
    np.testing.assert_allclose(prepared.model.predict(prepared.dataset.X), own(_onehot(test)), rtol=1e-6, atol=1e-4)
    s = run_audit(plan_run(loaded), [prepared]).subjects[0]
    assert [m.name for m in s.methods] == [e["type"] for e in explanations]
    for d in s.decisions:
        assert d.predicted_label == ("decline" if d.prediction < CUT else "approve")
