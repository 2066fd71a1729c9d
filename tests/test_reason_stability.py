"""Stable reasons: the explanations behind an adverse decision's principal reasons are re-run with other seeds,
and a decision whose set of reasons changes is listed (Regulation B's reasons must not depend on the run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from sklearn.linear_model import LogisticRegression

from auditor.audit import prepare, run_audit
from auditor.errors import PolicyError
from auditor.plan import plan_run

from test_recourse import audited  # noqa: F401  (the fixture: a trained model and its policy)


def run(policy, **changes):
    loaded = policy(**changes)
    return run_audit(plan_run(loaded), prepare(loaded))


def test_reasons_of_a_noisy_lime_change_across_seeds_and_are_listed(tmp_path):
    """Five features of equal weight: which two push a decline most is a near tie that 100 LIME samples break
    differently with each seed."""
    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(5)]
    frame = pd.DataFrame(rng.normal(0, 1, (300, 5)), columns=names).round(3)
    frame["outcome"] = np.where(frame[names].sum(axis=1) + rng.normal(0, 1, 300) > 0, "good", "bad")
    sio.dump(LogisticRegression().fit(frame[names], frame.outcome), tmp_path / "m.skops")
    frame.to_csv(tmp_path / "a.csv", index=False)
    tree = {"version": 1, "audit": {"id": "s", "title": "s", "audience": "finance", "owner": "t", "intended_use": "u"},
            "models": [{"id": "m", "path": "m.skops", "format": "skops"}],
            "datasets": [{"id": "a", "path": "a.csv", "target": "outcome", "features": [{"name": n} for n in names]}],
            "audited": [{"model": "m", "dataset": "a"}], "sample": {"size": 30, "strategy": "random", "seed": 1},
            "explanations": [{"type": "lime", "num_samples": 100}],
            "principal_reasons": {"adverse_class": "bad", "stability_repeats": 2, "max_reasons": 2},
            "thresholds": [{"metric": "principal_reasons.stability", "min": 1.0}], "report": {"formats": ["html"]}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    from auditor.policy import load_policy

    loaded = load_policy(tmp_path / "p.yaml")
    evidence = run_audit(plan_run(loaded), prepare(loaded))
    s = evidence.subjects[0]
    adverse = [d for d in s.decisions if d.principal_reasons is not None]
    assert adverse
    for d in adverse:
        pr = d.principal_reasons
        assert len(pr.reruns) == 2
        assert pr.stable == all(set(run) == {r.feature for r in pr.reasons} for run in pr.reruns)
    unstable = [d.id for d in adverse if not d.principal_reasons.stable]
    assert unstable, "100 LIME samples on five equal features give reasons that change with the seed"
    assert s.reasons.unstable == unstable
    assert s.reasons.stability == pytest.approx(1 - len(unstable) / len(adverse))
    assert any(o.code == "reasons.unstable" and o.decisions == unstable for o in s.observations)
    (finding,) = [f for f in evidence.findings if f.metric == "principal_reasons.stability"]
    assert finding.status == "fail" and finding.evidence.endswith(".reasons.stability")


def test_reasons_of_a_seed_free_method_are_stable(audited):  # noqa: F811
    policy, _, _ = audited
    evidence = run(policy, explanations=[{"type": "shapley", "background_rows": 400, "n_samples": 20}],
                   principal_reasons={"adverse_class": "bad", "stability_repeats": 1}, thresholds=[])
    s = evidence.subjects[0]
    assert s.reasons.stability == 1.0 and s.reasons.unstable == []  # every background row: no seed in the values
    assert all(d.principal_reasons.stable for d in s.decisions if d.principal_reasons is not None)


def test_a_stability_threshold_without_re_runs_is_refused(audited):  # noqa: F811
    policy, _, _ = audited
    with pytest.raises(PolicyError) as info:
        policy(principal_reasons={"adverse_class": "bad", "stability_repeats": 0},
               thresholds=[{"metric": "principal_reasons.stability", "min": 0.9}])
    assert "stability_repeats: 0" in str(info.value)
