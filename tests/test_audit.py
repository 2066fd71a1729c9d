"""auditor.audit: prepare + run_audit end to end, on the sample policy and on the tiny policy."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from auditor.audit import prepare, run_audit

from auditor.plan import plan_run
from auditor.errors import DataError, PolicyError
from auditor.evidence import evidence_json_schema, evidence_model, read_evidence
from auditor.explainers import EXPLAINERS
from auditor.policy import load_policy

from conftest import FEATURES, SAMPLE_POLICY, line_of


@pytest.fixture(scope="module")
def sample_audit():
    """The breast-cancer sample policy, prepared once and audited twice with the same seed."""
    if not (SAMPLE_POLICY.parent.parent / "sample_audits/breast_cancer/models/gbm.skops").is_file():
        pytest.fail("sample models missing: run .venv/bin/python sample_audits/breast_cancer/build.py")
    policy = load_policy(SAMPLE_POLICY)
    prepared = prepare(policy)
    first = run_audit(plan_run(policy, sample_size=3), prepared)
    second = run_audit(plan_run(policy, sample_size=3), prepare(load_policy(SAMPLE_POLICY)))
    return {"policy": policy, "prepared": prepared, "evidence": first, "again": second}


def test_evidence_validates_against_its_schema(sample_audit):
    schema = evidence_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(sample_audit["evidence"].to_json())
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(document)]
    assert errors == []


def test_same_seed_gives_identical_evidence(sample_audit):
    text = sample_audit["evidence"].to_json()
    assert text == sample_audit["again"].to_json()
    assert sample_audit["evidence"].overrides == {"sample.size": 3}
    assert text.endswith("\n")
    assert evidence_model().model_validate_json(text) == sample_audit["evidence"]


def test_evidence_round_trips_through_a_file(sample_audit, tmp_path):
    path = tmp_path / "evidence.json"
    path.write_text(sample_audit["evidence"].to_json(), encoding="utf-8")
    assert read_evidence(path).to_json() == sample_audit["evidence"].to_json()


def test_evidence_has_no_absolute_paths(sample_audit):
    text = sample_audit["evidence"].to_json()
    assert str(SAMPLE_POLICY.parent.parent) not in text


def test_subjects_and_sample(sample_audit):
    evidence = sample_audit["evidence"]
    assert [s.model.id for s in evidence.subjects] == ["gbm", "mlp"]
    assert evidence.policy_sha256 == sample_audit["policy"].sha256
    for subject in evidence.subjects:
        assert subject.dataset.id == "test" and subject.background == "train"
        assert subject.dataset.rows == 171 and subject.dataset.sha256
        assert subject.sample.size == len(subject.decisions) == 3
        assert subject.sample.strategy == "stratified" and subject.sample.seed == 7
        assert subject.model.positive_class == "malignant"
        assert 0.9 < subject.performance.accuracy <= 1


def test_decision_ids_are_dataset_ids_in_order(sample_audit):
    prepared = {p.model.id: p for p in sample_audit["prepared"]}
    for subject in sample_audit["evidence"].subjects:
        data = prepared[subject.model.id].dataset
        ids = [d.id for d in subject.decisions]
        assert ids == sorted(ids)
        for decision in subject.decisions:
            assert decision.id == data.ids[decision.row]
            assert decision.true_label == data.y[decision.row]
            assert decision.values == dict(zip(data.space.names, data.X[decision.row].tolist()))
        # stratified: both diagnoses among three decisions
        assert {d.true_label for d in subject.decisions} == {"benign", "malignant"}


def test_decision_probabilities_match_the_model(sample_audit):
    prepared = {p.model.id: p for p in sample_audit["prepared"]}
    for subject in sample_audit["evidence"].subjects:
        model, data = prepared[subject.model.id].model, prepared[subject.model.id].dataset
        for decision in subject.decisions:
            proba = model.predict_proba(data.X[decision.row])[0]  # float32 network: batch size moves ~1e-8
            assert [decision.probabilities[str(c)] for c in model.classes] == pytest.approx(proba.tolist(), abs=1e-6)
            assert decision.predicted_label == model.classes[int(proba.argmax())]
            assert decision.correct == (decision.predicted_label == decision.true_label)


def test_every_local_explanation_has_its_quality_figure(sample_audit):
    subjects = {s.model.id: s for s in sample_audit["evidence"].subjects}
    # integrated gradients only on the PyTorch model, and the skip is recorded for the other
    assert [m.name for m in subjects["mlp"].methods] == ["integrated_gradients", "lime", "shapley",
                                                         "permutation_importance"]
    assert [m.name for m in subjects["gbm"].methods] == ["lime", "shapley", "permutation_importance"]
    assert [s.name for s in subjects["gbm"].skipped] == ["integrated_gradients"]
    for subject in subjects.values():
        for decision in subject.decisions:
            lime = decision.explanations["lime"]
            assert lime.method == "lime" and -1 <= lime.score <= 1
            assert len(lime.weights) == 30
        lime_record = next(m for m in subject.methods if m.name == "lime")
        assert lime_record.parameters["kernel_width"] == pytest.approx(0.75 * np.sqrt(30))
    for decision in subjects["mlp"].decisions:
        ig = decision.explanations["integrated_gradients"]
        assert ig.method == "integrated_gradients"
        assert np.isfinite(ig.convergence_delta) and abs(ig.convergence_delta) < 0.05
        total = sum(ig.attributions.values())
        assert total == pytest.approx(ig.output - ig.baseline_output + ig.convergence_delta, abs=1e-5)
        assert decision.agreement is not None
        assert decision.agreement.methods == ["integrated_gradients", "lime", "shapley"]
    for decision in subjects["gbm"].decisions:
        assert "integrated_gradients" not in decision.explanations
        assert decision.agreement.methods == ["lime", "shapley"]  # the attribution methods that ran
    for subject in subjects.values():  # every method's quality figures are in its summary
        for m in subject.methods:
            family = EXPLAINERS[m.type]
            for figure in family.figures:  # every figure is a field of one of the family's summaries
                assert any(figure in t.model_fields for t in family.Summaries), (m.name, figure)
            assert type(m.summary) in family.Summaries or (m.summary is None and not family.Summaries)
        shapley = next(m for m in subject.methods if m.name == "shapley").summary
        assert shapley.background_rows == 100 and shapley.reference_rows == 398
        assert shapley.max_efficiency_gap == max(d.explanations["shapley"].efficiency_gap for d in subject.decisions)


def test_permutation_importance_for_each_subject(sample_audit):
    for subject in sample_audit["evidence"].subjects:
        result = subject.global_explanations["permutation_importance"]
        assert result.method == "permutation_importance"
        assert result.rows_used == 171 and result.scoring == "roc_auc"
        assert len(result.importances) == 30
        assert max(v.mean for v in result.importances.values()) > 0


# --- the tiny policy ---------------------------------------------------------------------------------------


def test_tiny_audit_sample_size_and_seed_from_policy(tiny):
    policy = tiny["policy"]
    evidence = run_audit(plan_run(policy), [tiny["logreg"], tiny["mlp"]])
    for subject in evidence.subjects:
        assert subject.sample.size == policy.sample.size == 6
        assert subject.sample.seed == 3
        ids = [d.id for d in subject.decisions]
        assert ids == sorted(ids) and all(isinstance(i, str) and i.startswith("c") for i in ids)
    other = run_audit(plan_run(policy, seed=4), [tiny["logreg"], tiny["mlp"]])
    assert [d.id for d in other.subjects[0].decisions] != [d.id for d in evidence.subjects[0].decisions]


def test_misclassified_sample_capped_with_note(write_policy, tmp_path):
    path = write_policy(tmp_path, sample__strategy="misclassified", audited=[{"model": "logreg", "dataset": "data"}],
                        explanations=[{"type": "lime", "num_samples": 100}])
    policy = load_policy(path)
    (prep,) = prepare(policy)
    wrong = int(np.sum(prep.model.predict_proba(prep.dataset.X).argmax(1) != np.array(
        [prep.model.classes.index(v) for v in prep.dataset.y])))
    assert 0 < wrong < 60
    (subject,) = run_audit(plan_run(policy, sample_size=60), [prep]).subjects
    assert subject.sample.size == subject.sample.available == wrong == len(subject.decisions)
    assert subject.sample.requested == 60 and "misclassified" in subject.sample.note
    assert not any(d.correct for d in subject.decisions)


def test_progress_is_reported_per_task(tiny):
    tasks: dict[str, list] = {}

    def factory(description: str, total: int):
        tasks[description] = [total, 0]

        def advance(n: int) -> None:
            tasks[description][1] += n

        return advance

    run_audit(plan_run(tiny["policy"], sample_size=2), [tiny["mlp"]], progress=factory)
    assert tasks == {
        "integrated_gradients · mlp": [2, 2],
        "lime · mlp": [2, 2],
        "permutation_importance · mlp": [1, 1],
    }


def test_trusted_pickle_warning_reaches_the_evidence(write_policy, tmp_path, artifacts):
    path = write_policy(tmp_path, models__0__format="pickle", models__0__path=str(artifacts.pickle),
                        models__0__trust="pickle", audited=[{"model": "logreg", "dataset": "data"}],
                        explanations=[{"type": "lime", "num_samples": 100}])
    policy = load_policy(path)
    evidence = run_audit(plan_run(policy, sample_size=1), prepare(policy))
    assert len(evidence.warnings) == 1 and "arbitrary code" in evidence.warnings[0]
    assert evidence.subjects[0].model.warnings == evidence.warnings


def test_sample_size_must_be_positive(tiny):
    with pytest.raises(DataError):
        run_audit(plan_run(tiny["policy"], sample_size=0), [tiny["logreg"]])


def test_prepare_reports_every_problem(write_policy, tmp_path):
    (tmp_path / "broken.csv").write_text("f0,f1,f2,f3,label\n1,2,3,4,yes\n5,6,7,8,yes\n", encoding="utf-8")
    broken = {"id": "broken", "path": "broken.csv", "target": "label", "features": [{"name": n} for n in FEATURES]}
    path = write_policy(
        tmp_path,
        datasets__2=broken,
        audited__2={"model": "logreg", "dataset": "broken"},
        models__0__classes=["yes", "no"],  # the estimator's classes_ are ['no', 'yes']
        models__1__classes=["no", "yes", "maybe"],  # the network has two outputs
        models__1__positive_class="maybe",
    )
    policy = load_policy(path)
    with pytest.raises(PolicyError) as info:
        prepare(policy)
    problems = {p.field: p for p in info.value.problems}
    assert len(info.value.problems) == 3
    assert set(problems) == {"datasets[2]", "models[0]", "models[1]"}
    assert "single class" in problems["datasets[2]"].message
    assert "classes" in problems["models[0]"].message
    assert "returned shape" in problems["models[1]"].message
    for field, needle in (("datasets[2]", "id: broken"), ("models[0]", "id: logreg"), ("models[1]", "id: mlp")):
        assert problems[field].line == line_of(path, needle)


def test_prepare_checks_models_even_when_the_background_fails(write_policy, tmp_path):
    (tmp_path / "broken.csv").write_text("f0,f1,f2,f3,label\n1,2,3,4,yes\n5,6,7,8,yes\n", encoding="utf-8")
    path = write_policy(tmp_path, datasets__1__path="broken.csv", models__1__classes=["no", "yes", "maybe"],
                        models__1__positive_class="maybe")
    with pytest.raises(PolicyError) as info:
        prepare(load_policy(path))
    assert {p.field for p in info.value.problems} == {"datasets[1]", "models[1]"}
