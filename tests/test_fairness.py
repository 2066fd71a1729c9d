"""auditor.fairness and the protected features: group rates, adverse impact ratio, error rates, proxies, and
principal reasons that never name a protected characteristic.

Real audits of scikit-learn pipelines on synthetic applicant data: a model that uses a protected feature
directly (trained on labels that depend on it) and a fair one (its pipeline drops the protected feature and its
proxy, and the labels do not depend on them). The figures are held to a hand count on the same rows, the
intervals to scipy's, the association to scipy's Cramér's V.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from auditor.audit import prepare, run_audit
from auditor.errors import PolicyError
from auditor.explainers import EXPLAINERS
from auditor.explainers.lime_tabular import LimeResult
from auditor.fairness import FairnessSpec, ProtectedSpec, _proportion, cramers_v, decision_outcome
from auditor.plan import plan_run
from auditor.policy import DecisionSpec, load_policy
from auditor.reasons import derive_reasons

GROUPS = ["a", "b"]
AREAS = ["north", "south"]
COLOURS = ["blue", "green", "red"]
FEATURES = ["income", "group", "area", "colour", "debt_ratio", "age"]
CATEGORIES = {"group": GROUPS, "area": AREAS, "colour": COLOURS}
BASIS = {"group": "national origin (ECOA)", "age": "age (ECOA)"}
AGE_BINS = [30, 50]


def make_people(n: int, seed: int, *, biased: bool) -> pd.DataFrame:
    """Applicants: ``area`` is ``group`` 85% of the time (a planted proxy), ``colour`` is independent of both.
    ``biased``: the outcome depends on the group directly."""
    rng = np.random.default_rng(seed)
    group = rng.choice(GROUPS, n, p=[0.6, 0.4])
    area = np.where(rng.random(n) < 0.85, np.where(group == "a", "north", "south"), rng.choice(AREAS, n))
    frame = pd.DataFrame({
        "income": np.round(rng.normal(50, 15, n), 2), "group": group, "area": area,
        "colour": rng.choice(COLOURS, n), "debt_ratio": np.round(rng.random(n), 3),
        "age": rng.integers(18, 80, n),
    })
    logit = 1.0 + 0.08 * (frame["income"] - 50) - 3.0 * (frame["debt_ratio"] - 0.5)
    if biased:
        logit = logit - 3.5 * (frame["group"] == "b")
    frame["outcome"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "good", "bad")
    frame.insert(0, "person", [f"P{seed}-{i:04d}" for i in range(n)])
    return frame


def fit(frame: pd.DataFrame, columns: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [c for c in columns if c in CATEGORIES]
    numeric = [c for c in columns if c not in CATEGORIES]
    return Pipeline([
        ("encode", ColumnTransformer([("cat", OneHotEncoder(categories=[CATEGORIES[c] for c in categorical]),
                                       categorical), ("num", StandardScaler(), numeric)])),
        ("classify", LogisticRegression(C=10.0, max_iter=1000)),
    ]).fit(frame[FEATURES], frame["outcome"])


def policy_tree(folder: Path, policy_dir: Path, model: str, **extra) -> dict:
    def rel(p: Path) -> str:
        return os.path.relpath(p, policy_dir)

    features = [{"name": n} | ({"type": "categorical", "categories": list(CATEGORIES[n])} if n in CATEGORIES else {})
                for n in FEATURES]
    tree = {
        "version": 1,
        "audit": {"id": "fair-audit", "title": "Fairness audit for tests", "audience": "finance", "owner": "Tests",
                  "intended_use": "Exercising the fairness checks."},
        "models": [{"id": model, "path": rel(folder / f"{model}.skops"), "format": "skops", "positive_class": "bad"}],
        "datasets": [
            {"id": "people", "path": rel(folder / f"{model}_audited.csv"), "target": "outcome", "id_column": "person",
             "features": copy.deepcopy(features)},
            {"id": "history", "path": rel(folder / f"{model}_history.csv"), "target": "outcome",
             "id_column": "person", "features": copy.deepcopy(features)},
        ],
        "audited": [{"model": model, "dataset": "people", "background": "history"}],
        "sample": {"size": 16, "strategy": "stratified", "seed": 4},
        "explanations": [{"type": "lime", "num_samples": 600}],
        "principal_reasons": {"adverse_class": "bad"},
        "protected": [{"feature": "group", "basis": BASIS["group"]},
                      {"feature": "age", "basis": BASIS["age"], "bins": AGE_BINS}],
        "thresholds": [{"metric": "fairness.adverse_impact_ratio", "min": 0.8},
                       {"metric": "fairness.tpr_gap", "by": "group", "max": 1.0},
                       {"metric": "fairness.fpr_gap", "max": 1.0},
                       {"metric": "principal_reasons.protected_share", "max": 0}],
        "report": {"formats": ["html"], "top_features": 6},
    }
    tree.update(extra)
    return tree


def write(tree: dict, policy_dir: Path, name: str = "policy.yaml") -> Path:
    path = policy_dir / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Two audits: 'biased' (uses the protected group) and 'fair' (its pipeline sees income and debt only)."""
    import skops.io as sio

    folder = tmp_path_factory.mktemp("people")
    out = {}
    for name, biased, columns in (("biased", True, FEATURES), ("fair", False, ["income", "debt_ratio"])):
        history, audited = make_people(600, 31, biased=biased), make_people(400, 32, biased=biased)
        history.to_csv(folder / f"{name}_history.csv", index=False)
        audited.to_csv(folder / f"{name}_audited.csv", index=False)
        pipeline = fit(history, columns)
        sio.dump(pipeline, folder / f"{name}.skops")
        path = write(policy_tree(folder, folder, name), folder, f"{name}.yaml")
        policy = load_policy(path)
        evidence = run_audit(plan_run(policy), prepare(policy))
        out[name] = SimpleNamespace(evidence=evidence, frame=audited, pipeline=pipeline, policy=policy,
                                    folder=folder, path=path)
    return out


def _feature(evidence, name):
    return next(f for f in evidence.subjects[0].fairness.features if f.feature == name)


def _finding(evidence, metric):
    return next(f for f in evidence.findings if f.metric == metric)


# --- a model that uses a protected feature directly ------------------------------------------------------------


def test_a_protected_reason_is_withheld_and_raised(people):
    evidence = people["biased"].evidence
    s = evidence.subjects[0]
    adverse = [d for d in s.decisions if d.principal_reasons is not None]
    affected = [d for d in adverse if d.principal_reasons.withheld]
    assert affected, "the biased model's adverse decisions should rank the group among their reasons"
    for d in adverse:
        reasons = d.principal_reasons.reasons
        assert not {r.feature for r in reasons} & set(BASIS), (d.id, [r.feature for r in reasons])
        assert [r.rank for r in reasons] == list(range(1, len(reasons) + 1))
        assert all(set(BASIS).isdisjoint(top) for top in d.principal_reasons.by_method.values())
    for d in affected:
        (w,) = [w for w in d.principal_reasons.withheld if w.feature == "group"]
        assert w.basis == BASIS["group"] and 1 <= w.rank <= 4
        assert d.values["group"] == "b"  # being in group b is what pushes towards the adverse class
    obs = [o for o in s.observations if o.code == "reasons.protected"]
    assert len(obs) == 1 and obs[0].level == "warn" and obs[0].decisions == [d.id for d in affected]
    assert "group" in obs[0].message and BASIS["group"] in obs[0].message
    assert s.reasons.protected == [d.id for d in affected]
    assert s.reasons.protected_share == pytest.approx(len(affected) / len(adverse))
    finding = _finding(evidence, "principal_reasons.protected_share")
    assert finding.status == "fail" and finding.value == s.reasons.protected_share
    assert finding.evidence == "subjects[0].reasons.protected_share"


def test_the_report_notes_a_withheld_reason(people):
    from auditor.report import render_html

    evidence = people["biased"].evidence
    html = render_html(evidence)
    d = next(d for d in evidence.subjects[0].decisions if d.principal_reasons and d.principal_reasons.withheld)
    assert "a protected characteristic, <strong>group</strong> (" in html.lower()
    assert f"Decision {d.id}: a protected characteristic" in html
    assert 'id="fairness"' in html and 'href="#fairness"' in html


def test_a_fair_model_raises_no_protected_reason(people):
    s = people["fair"].evidence.subjects[0]
    assert "group" not in s.used_features
    assert all(not d.principal_reasons.withheld for d in s.decisions if d.principal_reasons is not None)
    assert not [o for o in s.observations if o.code == "reasons.protected"]
    assert s.reasons.protected == [] and s.reasons.protected_share == 0
    assert _finding(people["fair"].evidence, "principal_reasons.protected_share").status == "pass"


def test_derive_reasons_withholds_only_a_protected_feature_among_the_top():
    names = ["age", "income", "debt", "x", "y", "z"]
    labels = {n: n.title() for n in names}
    lime = EXPLAINERS["lime"]

    def derive(order: list[str]):
        weights = {f: -float(len(order) - i) for i, f in enumerate(order)}  # all push towards 'bad', in order
        result = LimeResult(target="good", weights=weights, conditions={f: f for f in order}, intercept=0.0,
                            local_prediction=0.5, model_prediction=0.5, score=0.9)
        return derive_reasons({"lime": result}, {"lime": lime}, adverse="bad", methods=["lime"], used=names,
                              names=names, labels=labels, texts={}, max_reasons=4, protected={"age": "age (ECOA)"})

    top = derive(["income", "age", "debt", "x", "y", "z"])
    assert [r.feature for r in top.reasons] == ["income", "debt", "x", "y"]
    assert [(w.feature, w.rank, w.basis) for w in top.withheld] == [("age", 2, "age (ECOA)")]
    assert top.withheld[0].method_ranks == {"lime": 2}
    assert top.by_method == {"lime": ["income", "debt", "x", "y"]}
    low = derive(["income", "debt", "x", "y", "z", "age"])  # ranked 6th: not among the top four
    assert [r.feature for r in low.reasons] == ["income", "debt", "x", "y"] and low.withheld == []


# --- disparity ----------------------------------------------------------------------------------------------


def test_four_fifths_fires_on_a_planted_disparity(people):
    evidence = people["biased"].evidence
    group = _feature(evidence, "group")
    assert group.min_impact_ratio < 0.8 and group.min_impact_group == "b" and group.highest_group == "a"
    obs = [o for o in evidence.subjects[0].observations if o.code == "fairness.four_fifths"]
    assert any("Group" in o.message or "group" in o.message for o in obs)
    assert all(o.threshold == 0.8 and o.setting == "fairness.min_impact_ratio" for o in obs)
    finding = _finding(evidence, "fairness.adverse_impact_ratio")  # no 'by': the worst protected feature
    features = evidence.subjects[0].fairness.features
    worst = min(features, key=lambda f: f.min_impact_ratio)
    assert finding.status == "fail" and finding.value == worst.min_impact_ratio <= group.min_impact_ratio
    assert finding.evidence == f"subjects[0].fairness.features[{features.index(worst)}].min_impact_ratio"
    assert f"worst: {worst.feature}" in finding.message


def test_four_fifths_stays_quiet_on_a_fair_model(people):
    evidence = people["fair"].evidence
    group = _feature(evidence, "group")
    assert group.min_impact_ratio >= 0.9
    assert not [o for o in evidence.subjects[0].observations
                if o.code == "fairness.four_fifths" and "by group" in o.message]


def test_the_figures_equal_a_hand_count(people):
    for name in ("biased", "fair"):
        run = people[name]
        frame = run.frame
        pred_good = run.pipeline.predict(frame[FEATURES]) == "good"
        true_good = (frame["outcome"] == "good").to_numpy()
        p_good = run.pipeline.predict_proba(frame[FEATURES])[:, list(run.pipeline.classes_).index("good")]
        fairness = run.evidence.subjects[0].fairness
        assert (fairness.kind, fairness.outcome, fairness.rows) == ("favourable", "good", len(frame))
        labels = {"group": frame["group"].to_numpy(),
                  "age": np.where(frame["age"] < 30, "< 30", np.where(frame["age"] < 50, "30 to < 50", ">= 50"))}
        for feature, order in (("group", ["a", "b"]), ("age", ["< 30", "30 to < 50", ">= 50"])):
            f = _feature(run.evidence, feature)
            assert [g.group for g in f.groups] == order
            rates = {}
            for g in f.groups:
                m = labels[feature] == g.group
                assert g.rows == m.sum() and g.decided.count == (pred_good & m).sum()
                assert g.decided.rate == pytest.approx((pred_good & m).sum() / m.sum())
                assert (g.tpr.count, g.tpr.n) == ((pred_good & m & true_good).sum(), (m & true_good).sum())
                assert (g.fpr.count, g.fpr.n) == ((pred_good & m & ~true_good).sum(), (m & ~true_good).sum())
                assert g.mean_predicted == pytest.approx(p_good[m].mean())
                assert g.observed == pytest.approx(true_good[m].mean())
                rates[g.group] = g.decided.rate
            top = max(rates.values())
            for g in f.groups:
                assert g.impact_ratio == pytest.approx(rates[g.group] / top)
            assert f.min_impact_ratio == pytest.approx(min(rates.values()) / top)
            least = fairness.settings.min_rate_rows  # rates over fewer rows are shown, not in the gaps
            tprs = [g.tpr.rate for g in f.groups if g.tpr.n >= least]
            fprs = [g.fpr.rate for g in f.groups if g.fpr.n >= least]
            assert f.tpr_gap == pytest.approx(max(tprs) - min(tprs))
            assert f.fpr_gap == pytest.approx(max(fprs) - min(fprs))
        by_group = _finding(run.evidence, "fairness.tpr_gap")
        assert by_group.value == _feature(run.evidence, "group").tpr_gap
        worst = _finding(run.evidence, "fairness.fpr_gap")
        assert worst.value == max(f.fpr_gap for f in fairness.features)


def test_intervals_are_wilsons():
    from scipy.stats import binomtest

    for count, n in ((8, 10), (0, 7), (13, 13), (232, 287)):
        ci = binomtest(count, n).proportion_ci(confidence_level=0.95, method="wilson")
        rate = _proportion(np.arange(n) < count)  # a group's share, as the fairness section records it
        assert (rate.low, rate.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    empty = _proportion(np.zeros(0, dtype=bool))
    assert (empty.low, empty.high) == (None, None)


# --- proxies ------------------------------------------------------------------------------------------------


def test_a_planted_proxy_is_listed_and_an_independent_feature_is_not(people):
    for name in ("biased", "fair"):
        group = _feature(people[name].evidence, "group")
        assert "area" in group.proxies
        assert "colour" not in group.proxies and "income" not in group.proxies
        v = {a.feature: a for a in group.associations}
        assert v["area"].cramers_v > 0.6 and v["colour"].cramers_v < 0.1
        assert [a.cramers_v for a in group.associations] == sorted((a.cramers_v for a in group.associations),
                                                                   reverse=True)
        assert {a.feature for a in group.associations} == set(FEATURES) - set(BASIS)  # protected ones apart
    for name, used, level in (("biased", True, "warn"), ("fair", False, "info")):
        area = next(a for a in _feature(people[name].evidence, "group").associations if a.feature == "area")
        assert area.used is used  # the fair pipeline drops it: a proxy the model does not use is a note
        obs = [o for o in people[name].evidence.subjects[0].observations if o.code == "fairness.proxy"]
        assert len(obs) == 1 and "area" in obs[0].message and obs[0].setting == "fairness.proxy_cramers_v"
        assert obs[0].level == level and obs[0].threshold == 0.3


def test_cramers_v_is_scipys_and_the_correction_shrinks_noise():
    from scipy.stats.contingency import association, crosstab

    rng = np.random.default_rng(0)
    a = rng.choice(["x", "y", "z"], 300)
    b = np.where(rng.random(300) < 0.5, a, rng.choice(["x", "y", "z"], 300))
    corrected, plain, levels = cramers_v(a, b)
    assert plain == pytest.approx(association(crosstab(a, b).count, method="cramer"))
    assert 0 < corrected < plain and levels == 3
    noise = rng.choice(list("pqrstuvw"), 300)
    corrected, plain, _ = cramers_v(a, noise)
    assert corrected < 0.05 < plain  # independent features: plain V is biased upward, the corrected one is not


def test_proxies_on_the_reference_data_say_so(people, tmp_path):
    run = people["fair"]
    tree = policy_tree(run.folder, tmp_path, "fair", fairness={"proxy_data": "reference", "proxy_cramers_v": 0.95})
    policy = load_policy(write(tree, tmp_path))
    evidence = run_audit(plan_run(policy), prepare(policy))
    fairness = evidence.subjects[0].fairness
    assert (fairness.proxy_data, fairness.proxy_dataset) == ("reference", "history")
    assert _feature(evidence, "group").proxies == []  # area's V is below 0.95
    assert fairness.settings.proxy_cramers_v == 0.95


def test_the_evidence_is_deterministic_and_round_trips(people):
    from auditor.evidence import evidence_model

    run = people["biased"]
    again = run_audit(plan_run(run.policy), prepare(run.policy))
    assert again.to_json() == run.evidence.to_json()
    assert evidence_model().model_validate_json(run.evidence.to_json()).to_json() == run.evidence.to_json()
    assert json.loads(run.evidence.to_json())["subjects"][0]["fairness"]["features"][0]["feature"] == "group"


# --- the outcome counted -----------------------------------------------------------------------------------


def test_the_outcome_is_the_favourable_class_or_the_positive_one():
    model = SimpleNamespace(regression=False, classes=["good", "bad"], class_names=["Good", "Bad"], positive_index=1)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = np.array(["good", "bad", "bad"], dtype=object)
    favourable = decision_outcome(model, proba, y, "bad")
    assert (favourable.kind, favourable.name) == ("favourable", "Good")
    assert favourable.decided.tolist() == [True, False, True] and favourable.truth.tolist() == [True, False, False]
    assert favourable.score.tolist() == pytest.approx([0.9, 0.2, 0.6])
    positive = decision_outcome(model, proba, y, None)
    assert (positive.kind, positive.name) == ("positive", "Bad") and positive.decided.tolist() == [False, True, False]
    score = SimpleNamespace(regression=True, spec=SimpleNamespace(decision=DecisionSpec(
        adverse_if={"above": 200}, adverse="refer", favourable="routine")))
    cut = decision_outcome(score, np.array([[150.0], [250.0], [200.0]]), np.array([210.0, 190.0, 100.0]), None)
    assert (cut.kind, cut.name, cut.score) == ("favourable", "routine", None)
    assert cut.decided.tolist() == [True, False, True] and cut.truth.tolist() == [False, True, True]
    none = SimpleNamespace(regression=True, spec=SimpleNamespace(decision=None))
    assert decision_outcome(none, np.array([[1.0]]), np.array([1.0]), None) is None


# --- the policy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, field, needle", [
    ({"protected": [{"feature": "height", "basis": "x"}]}, "protected[0].feature", "not a feature"),
    ({"protected": [{"feature": "age", "basis": "age"}]}, "protected[0].bins", "need bin edges"),
    ({"protected": [{"feature": "group", "basis": "x", "bins": [1]}]}, "protected[0].bins", "categorical"),
    ({"protected": [{"feature": "group", "basis": "x"}, {"feature": "group", "basis": "y"}]}, "protected[1].feature",
     "listed twice"),
    ({"protected": [{"feature": "age", "basis": "age", "bins": [50, 30]}]}, "protected[0].bins", "must increase"),
    ({"protected": [{"feature": "group"}]}, "protected[0].basis", "Field required"),
    ({"thresholds": [{"metric": "fairness.adverse_impact_ratio", "by": "colour", "min": 0.8}]}, "thresholds[0].by",
     "protected feature"),
    ({"thresholds": [{"metric": "fairness.tpr_gap", "by": "group", "bins": [1], "max": 0.1}]}, "thresholds[0].bins",
     "protected"),
    ({"thresholds": [{"metric": "fairness.impact", "max": 0.1}]}, "thresholds[0].metric", "adverse_impact_ratio"),
    ({"protected": [], "thresholds": [{"metric": "fairness.fpr_gap", "max": 0.1}]}, "thresholds[0].metric",
     "declares none"),
    ({"principal_reasons": None, "thresholds": [{"metric": "principal_reasons.protected_share", "max": 0}]},
     "thresholds[0].metric", "asks for none"),
    ({"fairness": {"min_impact_ratio": 1.5}}, "fairness.min_impact_ratio", "less than or equal"),
])
def test_bad_protected_settings_are_refused(people, tmp_path, change, field, needle):
    tree = policy_tree(people["fair"].folder, tmp_path, "fair", **change)
    if tree.get("principal_reasons") is None:
        tree.pop("principal_reasons")
    with pytest.raises(PolicyError) as err:
        load_policy(write(tree, tmp_path))
    problems = [p for p in err.value.problems if p.field == field]
    assert problems and needle in problems[0].message + (problems[0].fix or ""), err.value.problems


def test_the_sample_policies_declare_their_protected_features():
    repo = Path(__file__).resolve().parents[1]
    credit = yaml.safe_load((repo / "policies" / "credit_finance.yaml").read_text(encoding="utf-8"))
    assert [p["feature"] for p in credit["protected"]] == ["foreign_worker", "personal_status_sex", "age"]
    assert {"metric": "principal_reasons.protected_share", "max": 0} in credit["thresholds"]
    diabetes = yaml.safe_load((repo / "policies" / "diabetes_progression_medical.yaml").read_text(encoding="utf-8"))
    assert {p["feature"] for p in diabetes["protected"]} == {"sex", "age"}
    spec = ProtectedSpec(**credit["protected"][2])
    assert spec.bins == [25, 40, 60] and FairnessSpec().min_impact_ratio == 0.8


def test_a_hostile_basis_is_escaped(people, tmp_path):
    from auditor.report import render_html

    run = people["fair"]
    tree = policy_tree(run.folder, tmp_path, "fair", protected=[
        {"feature": "group", "basis": "<script>alert(1)</script> & origin"}])
    policy = load_policy(write(tree, tmp_path))
    html = render_html(run_audit(plan_run(policy), prepare(policy)))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; origin" in html


def test_rate_gaps_leave_out_groups_whose_rate_rests_on_a_few_rows():
    from auditor.fairness import GroupFairness, Proportion, _gap

    def group(name, count, n):
        rate = Proportion(count=count, n=n, rate=count / n if n else None, low=None, high=None)
        return GroupFairness.model_construct(group=name, tpr=rate, fpr=rate)

    groups = [group("big", 40, 50), group("other", 30, 50), group("tiny", 0, 2)]
    assert _gap(groups, "tpr")[:2] == (pytest.approx(0.8), ["big", "tiny"])  # every group: the n=2 rate decides
    gap, pair, ci = _gap(groups, "tpr", 10)
    assert (gap, pair) == (pytest.approx(0.2), ["big", "other"])
    assert ci.method == "newcombe" and ci.n == 100 and ci.lower < 0.2 < ci.upper
