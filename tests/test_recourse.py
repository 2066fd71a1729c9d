"""Recourse: counterfactuals for adverse decisions, 'no recourse found' when no actionable change reverses one,
the recourse rate overall and by group, and validity measured on what the search returned.

The model is trained here so that group B's applicants are declined whatever their income: their only
flipping change is the group itself, which is immutable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from auditor.audit import prepare, run_audit
from auditor.errors import PolicyError
from auditor.plan import plan_run
from auditor.policy import load_policy


def applicants(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"applicant": [f"R{seed}-{i:03d}" for i in range(n)],
                          "income": rng.uniform(20, 100, n).round(1), "tenure": rng.integers(0, 30, n).astype(float),
                          "group": rng.choice(["A", "B"], n).astype(object)})
    frame["outcome"] = np.where((frame.group == "B") | (frame.income < 45), "bad", "good")
    return frame


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recourse")
    train, test = applicants(400, 0), applicants(120, 1)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "audit.csv", index=False)
    encode = ColumnTransformer([("cat", OneHotEncoder(categories=[["A", "B"]]), ["group"])], remainder="passthrough")
    model = Pipeline([("encode", encode), ("gbm", GradientBoostingClassifier(n_estimators=40, max_depth=2,
                                                                             random_state=0))])
    model.fit(train[["income", "tenure", "group"]], train.outcome)
    sio.dump(model, folder / "m.skops")
    features = [{"name": "income"}, {"name": "tenure"},
                {"name": "group", "type": "categorical", "categories": ["A", "B"]}]

    def policy(**changes):
        tree = {
            "version": 1,
            "audit": {"id": "recourse", "title": "Recourse", "audience": "finance", "owner": "t", "intended_use": "u"},
            "models": [{"id": "m", "path": "m.skops", "format": "skops",
                        "trusted_types": sorted(sio.get_untrusted_types(file=folder / "m.skops"))}],
            "datasets": [{"id": "a", "path": "audit.csv", "target": "outcome", "id_column": "applicant",
                          "features": features},
                         {"id": "bg", "path": "train.csv", "target": "outcome", "id_column": "applicant",
                          "features": features}],
            "audited": [{"model": "m", "dataset": "a", "background": "bg"}],
            "sample": {"size": 40, "strategy": "random", "seed": 5},
            "explanations": [{"type": "lime", "num_samples": 300},
                             {"type": "counterfactuals", "count": 2, "immutable": ["group"],
                              "permitted_range": {"income": [20, 100]}}],
            "principal_reasons": {"adverse_class": "bad"},
            "thresholds": [{"metric": "counterfactuals.recourse_rate", "min": 0.5, "by": "group"},
                           {"metric": "counterfactuals.validity", "min": 0.9}],
            "report": {"formats": ["html"]},
        } | changes
        path = folder / "policy.yaml"
        path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
        return load_policy(path)

    loaded = policy()
    return policy, model, run_audit(plan_run(loaded), prepare(loaded))


def test_only_adverse_decisions_are_searched_and_group_b_has_no_recourse(audited):
    _, model, evidence = audited
    s = evidence.subjects[0]
    for d in s.decisions:
        r = d.explanations["counterfactuals"]
        if d.predicted_label == "good":
            assert r.asked == 0 and r.not_asked == "not adverse" and r.recourse is None
            continue
        assert r.asked == 2 and r.recourse is not None
        if d.values["group"] == "B":  # declined whatever the income: the only flip is the immutable group
            assert r.recourse is False and not r.counterfactuals
        for cf in r.counterfactuals:
            assert "group" not in cf.changes
    summary = next(m for m in s.methods if m.name == "counterfactuals").summary
    adverse = [d for d in s.decisions if d.predicted_label == "bad"]
    stuck = [d.id for d in adverse if not d.explanations["counterfactuals"].recourse]
    assert summary.scope == "adverse" and summary.adverse == len(adverse)
    assert summary.no_recourse == stuck and any(d.values["group"] == "B" for d in adverse)
    assert summary.recourse_rate == pytest.approx((len(adverse) - len(stuck)) / len(adverse))
    assert "holding group fixed" in summary.searched_space
    assert any(o.code == "counterfactuals.no_recourse" and o.decisions == stuck for o in s.observations)
    # validity keeps its meaning: of what the search returned; nothing found for group B does not lower it
    assert summary.validity is not None and summary.validity >= 0.9


def test_the_recourse_rate_by_group_matches_a_hand_count(audited):
    _, _, evidence = audited
    s = evidence.subjects[0]
    groups = {g["group"]: g for g in next(m for m in s.methods if m.name == "counterfactuals").groups["group"]}
    for name in ("A", "B"):
        adverse = [d for d in s.decisions if d.values["group"] == name and d.predicted_label == "bad"]
        helped = [d for d in adverse if d.explanations["counterfactuals"].recourse]
        assert (groups[name]["adverse"], groups[name]["recourse"]) == (len(adverse), len(helped))
    assert groups["B"]["recourse_rate"] == 0.0 and groups["A"]["recourse_rate"] > 0.5
    findings = {f.subgroup: f for f in evidence.findings if f.metric == "counterfactuals.recourse_rate"}
    assert findings["group = B"].status == "fail" and findings["group = A"].status == "pass"
    assert findings["group = B"].evidence.endswith(".recourse_rate") and ".groups" in findings["group = B"].evidence
    assert next(f for f in evidence.findings if f.metric == "counterfactuals.validity").status == "pass"


def test_for_all_searches_every_decision_and_for_adverse_needs_an_adverse_outcome(audited):
    policy, _, _ = audited
    loaded = policy(explanations=[{"type": "counterfactuals", "count": 2, "for": "all", "immutable": ["group"]}],
                    thresholds=[], principal_reasons=None)
    s = run_audit(plan_run(loaded, sample_size=8), prepare(loaded)).subjects[0]
    assert all(d.explanations["counterfactuals"].not_asked != "not adverse" for d in s.decisions)
    with pytest.raises(PolicyError) as info:
        prepare(policy(explanations=[{"type": "counterfactuals", "for": "adverse"}], thresholds=[],
                       principal_reasons=None))
    assert "need the model's adverse outcome" in str(info.value)


def test_the_fairness_section_shows_recourse_per_protected_group(audited):
    from auditor.report import render_html

    policy, _, _ = audited
    loaded = policy(protected=[{"feature": "group", "basis": "a planted group <b>basis</b>"}], thresholds=[])
    evidence = run_audit(plan_run(loaded), prepare(loaded))
    s = evidence.subjects[0]
    groups = {g["group"]: g for g in next(m for m in s.methods if m.name == "counterfactuals").groups["group"]}
    assert groups["B"]["recourse_rate"] == 0.0 and groups["A"]["recourse"] > 0
    html = render_html(evidence)
    assert "Recourse (Counterfactuals (DiCE method), the sampled adverse decisions)" in html
    line = html.split("Recourse (Counterfactuals")[1].split("</p>")[0]
    assert ">0<" in line and f">{groups['B']['adverse']}<" in line and ">0.0%<" in line  # B: 0 of n (0.0%)
    assert "<b>basis</b>" not in html  # the policy's text is escaped
