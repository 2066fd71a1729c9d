"""Thresholds -> findings, exit codes for schedulers, the JSON summary line, LIME stability."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from auditor.audit import run_audit

from auditor.plan import plan_run
from auditor.cli import cli
from auditor.findings import evaluate
from auditor.signing import init_identity
from auditor.verify import verify_folder


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_unmeetable_threshold_exits_1_writes_signed_report_and_names_the_finding(tmp_path, write_policy):
    identity = tmp_path / "identity"
    init_identity(identity, "Scheduler")
    policy = write_policy(tmp_path, thresholds=[{"metric": "performance.roc_auc", "min": 0.999, "id": "auc-floor"},
                                                {"metric": "performance.accuracy", "min": 0.1}],
                          report={"formats": ["html", "pdf"], "top_features": 4}, sample={"size": 2, "seed": 1})
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(policy), "--out", str(out), "--identity", str(identity), "--json", "-q"])
    assert result.exit_code == 1, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["exit_code"] == 1 and line["findings"]["fail"] == 2 and line["findings"]["pass"] == 2
    assert line["failed"] == ["auc-floor (logreg)", "auc-floor (mlp)"]
    assert line["out"] == str(out) and line["signed"] is True and line["run_id"]
    assert (out / "report.pdf").exists() and verify_folder(out).ok
    evidence = json.loads((out / "evidence.json").read_text())
    statuses = {(f["id"], f["model"]): f["status"] for f in evidence["findings"]}
    assert statuses[("auc-floor", "logreg")] == "fail" and statuses[("performance.accuracy", "mlp")] == "pass"
    assert "auc-floor" in (out / "report.html").read_text()


def test_passing_thresholds_exit_0_and_warnings_are_allowed(tmp_path, write_policy):
    policy = write_policy(tmp_path, thresholds=[{"metric": "performance.accuracy", "min": 0.1, "warn_min": 0.999}],
                          sample={"size": 2, "seed": 1})
    result = CliRunner().invoke(cli, ["run", str(policy), "--out", str(tmp_path / "o"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip())
    assert line["findings"] == {"pass": 0, "warn": 2, "fail": 0} and line["exit_code"] == 0


@pytest.mark.parametrize("threshold, needle", [
    ({"metric": "performance.f2", "min": 0.5}, "thresholds[0].metric"),
    ({"metric": "nope.fidelity", "min": 0.5}, "not an explanation in this policy"),
    ({"metric": "lime.fidelity", "min": 0.5}, "lime.median_score"),
    ({"metric": "performance.roc_auc"}, "give 'min' or 'max'"),
    ({"metric": "fairness.positive_rate_gap", "max": 0.1}, "give 'by'"),
    ({"metric": "performance.roc_auc", "min": 0.5, "by": "f9"}, "unknown feature 'f9'"),
    ({"metric": "performance.roc_auc", "min": 0.5, "by": "f0"}, "need bin edges"),
])
def test_bad_thresholds_are_exit_2(tmp_path, write_policy, threshold, needle):
    result = invoke("validate", write_policy(tmp_path, thresholds=[threshold]))
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output


def test_subgroup_and_fairness_findings(tiny):
    policy = tiny["policy"].model_copy(deep=True)
    policy._file = tiny["policy"].file
    from auditor.policy import ThresholdSpec

    policy.thresholds = [
        ThresholdSpec(metric="performance.accuracy", min=0.0, by="f0", bins=[0.0]),
        ThresholdSpec(metric="fairness.positive_rate_gap", by="f0", bins=[0.0], max=0.05),
    ]
    evidence = run_audit(plan_run(policy, sample_size=2), [tiny["logreg"]])
    subject = evidence.subjects[0]
    groups = subject.subgroups["f0"]
    assert [g.group for g in groups] == ["< 0", ">= 0"] and sum(g.rows for g in groups) == 120
    by_group = [f for f in evidence.findings if f.metric == "performance.accuracy"]
    assert {f.subgroup for f in by_group} == {"f0 = < 0", "f0 = >= 0"}
    gap = next(f for f in evidence.findings if f.metric == "fairness.positive_rate_gap")
    rates = [g.positive_rate for g in groups]
    assert gap.value == pytest.approx(max(rates) - min(rates))
    assert gap.status == ("fail" if gap.value > 0.05 else "pass")  # f0 drives the outcome: rates differ a lot
    assert gap.status == "fail"


def test_lime_repeats_record_stability_and_a_threshold_can_fail_on_it(tiny):
    policy = tiny["policy"].model_copy(deep=True)
    policy._file = tiny["policy"].file
    from auditor.explainers.lime_tabular import LimeSpec
    from auditor.policy import ThresholdSpec

    policy.explanations = [LimeSpec(type="lime", num_samples=200, repeats=3)]
    policy.thresholds = [ThresholdSpec(metric="lime.stability", min=1.01)]
    evidence = run_audit(plan_run(policy, sample_size=3), [tiny["logreg"]])
    results = [d.explanations["lime"] for d in evidence.subjects[0].decisions]
    assert all(r.stability is not None and 0 <= r.stability <= 1 for r in results)
    finding = evidence.findings[0]
    assert finding.status == "fail" and finding.value == pytest.approx(sum(r.stability for r in results) / 3)
    # the shown explanation is the first run: identical to a run without repeats
    policy.explanations = [LimeSpec(type="lime", num_samples=200, repeats=1)]
    single = run_audit(plan_run(policy, sample_size=3), [tiny["logreg"]])
    assert [d.explanations["lime"].weights for d in single.subjects[0].decisions] == [r.weights for r in results]


def test_findings_are_deterministic_and_in_the_evidence(tiny):
    policy = tiny["policy"].model_copy(deep=True)
    policy._file = tiny["policy"].file
    from auditor.policy import ThresholdSpec

    policy.thresholds = [ThresholdSpec(metric="integrated_gradients.max_delta", max=1e-12)]
    evidence = run_audit(plan_run(policy, sample_size=2), [tiny["mlp"]])
    assert evidence.findings == evaluate(policy, evidence)
    assert [f.model for f in evidence.findings] == ["mlp"]
