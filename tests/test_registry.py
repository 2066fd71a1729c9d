"""The registry is the one list of explanation families: a family registered from this test module alone
appears in the policy schema, the evidence schema, the metrics thresholds accept, method agreement, the
methods appendix and the report, with no other module edited.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Literal

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, Field

from auditor.audit import prepare, run_audit
from auditor.evidence import evidence_json_schema, read_evidence
from auditor.explainers import EXPLAINERS, Explainer, ExplainerSpec, MethodSummary, Notes, Observation
from auditor.explainers.base import attribution_targets
from auditor.findings import known_metric, metric_names
from auditor.plan import plan_run
from auditor.policy import load_policy, policy_json_schema
from auditor.report import render_html

from conftest import base_policy
from evidence_trace import trace, visible_text


class OcclusionSpec(ExplainerSpec):
    type: Literal["occlusion"]
    warn_above: float = Field(default=0.5, description="Flag decisions where one feature moves the probability more.")


class OcclusionResult(BaseModel):
    method: Literal["occlusion"] = "occlusion"
    target: int | str
    attributions: dict[str, float]
    output: float


class OcclusionSummary(MethodSummary):
    kind: Literal["occlusion"] = "occlusion"
    decisions: int
    max_abs: float


class Occlusion(Explainer):
    """Each feature set to the reference median, one at a time: how much the probability drops."""

    scope = "local"
    title = "Occlusion (one feature at a time)"
    notes = Notes(computes="Sets each feature in turn to the reference data's median and records the change.",
                  reading="A positive value: the feature's actual value raises the probability.",
                  limits="Ignores interactions between features.", cite="M. D. Zeiler, R. Fergus. ECCV 2014.")
    Spec = OcclusionSpec
    Results = (OcclusionResult,)
    Summaries = (OcclusionSummary,)
    figures = {"max_abs": "largest |attribution| over decisions"}
    attribution_field = "attributions"

    def explain(self, model, batch, *, background, seed, progress=None):
        proba = model.predict_proba(batch.X)
        targets = attribution_targets(model, proba)
        n, d = batch.X.shape
        occluded = np.repeat(batch.X[:, None, :], d, axis=1)
        occluded[:, np.arange(d), np.arange(d)] = np.median(background, axis=0)
        scores = model.predict_proba(occluded.reshape(-1, d)).reshape(n, d, -1)
        results = [OcclusionResult(target=model.classes[t], output=float(proba[k, t]),
                                   attributions=dict(zip(model.space.names, (proba[k, t] - scores[k, :, t]).tolist())))
                   for k, t in enumerate(targets)]
        if progress:
            progress(n)
        return results, {"baseline": "median"}

    def summarize(self, name, model_id, results, decision_ids, parameters):
        largest = max(max(abs(v) for v in r.attributions.values()) for r in results)
        flagged = [i for i, r in zip(decision_ids, results) if max(map(abs, r.attributions.values())) > self.spec.warn_above]
        observations = [Observation(level="warn", code="occlusion.large", method=name, decisions=flagged,
                                    threshold=self.spec.warn_above, setting=f"explanations[{name}].warn_above",
                                    message=f"{model_id}: one feature moves the probability a lot.")] if flagged else []
        return OcclusionSummary(decisions=len(results), max_abs=largest), observations


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(EXPLAINERS, "occlusion", Occlusion)
    yield Occlusion


def test_a_registered_family_is_in_both_schemas_and_the_metrics(registered):
    policy_schema = json.dumps(policy_json_schema())
    assert "OcclusionSpec" in policy_schema and '"occlusion"' in policy_schema and "warn_above" in policy_schema
    assert "<name>.max_abs (occlusion)" in policy_schema  # the thresholds' metric description
    evidence_schema = json.dumps(evidence_json_schema())
    assert "OcclusionResult" in evidence_schema and "OcclusionSummary" in evidence_schema
    assert known_metric("occ.max_abs", {"occ": "occlusion"}) is None
    assert "occ.max_abs" in metric_names({"occ": "occlusion"})
    assert "max_abs" in (known_metric("occ.nothing", {"occ": "occlusion"}) or "")


def test_the_registry_is_read_when_asked(registered, monkeypatch):
    assert "OcclusionSpec" in json.dumps(policy_json_schema())
    monkeypatch.delitem(EXPLAINERS, "occlusion")
    assert "OcclusionSpec" not in json.dumps(policy_json_schema())
    assert "OcclusionResult" not in json.dumps(evidence_json_schema())


def test_a_registered_family_runs_and_is_reported(registered, artifacts, tmp_path):
    tree = base_policy(artifacts, tmp_path)
    tree["explanations"] = [{"type": "occlusion", "warn_above": 0.05}, {"type": "lime", "num_samples": 300}]
    tree["thresholds"] = [{"metric": "occlusion.max_abs", "max": 1.0}]
    tree["sample"]["size"] = 3
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    policy = load_policy(path)
    evidence = run_audit(plan_run(policy), prepare(policy))

    for s in evidence.subjects:
        record = next(m for m in s.methods if m.name == "occlusion")
        assert isinstance(record.summary, OcclusionSummary) and record.title == Occlusion.title
        assert all(isinstance(d.explanations["occlusion"], OcclusionResult) for d in s.decisions)
        assert all(d.agreement.methods == ["occlusion", "lime"] for d in s.decisions)  # it takes part in agreement
        finding = next(f for f in evidence.findings if f.metric == "occlusion.max_abs" and f.model == s.model.id)
        assert finding.value == record.summary.max_abs and finding.status == "pass"
        assert finding.evidence.endswith(".summary.max_abs")
        assert any(o.code == "occlusion.large" for o in s.observations)

    (tmp_path / "evidence.json").write_text(evidence.to_json(), encoding="utf-8")
    assert read_evidence(tmp_path / "evidence.json").to_json() == evidence.to_json()

    html = render_html(evidence, generated_at=datetime(2026, 12, 1, tzinfo=timezone.utc))
    text = visible_text(html)
    appendix = text[text.index("Every figure in this report is a field of the signed"):]
    for part in (Occlusion.title, Occlusion.notes.computes, Occlusion.notes.reading, Occlusion.notes.limits,
                 Occlusion.notes.cite):
        assert part in appendix
    assert f"{Occlusion.title}: decisions 3; max abs" in text  # its summary, laid out by the default partial
    checked, problems = trace(html, json.loads(evidence.to_json()))
    assert not problems, problems[:10]
