"""auditor.policy: loading, validation with field paths and line numbers, JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from auditor.errors import PolicyError
from auditor.explainers import EXPLAINERS
from auditor.policy import Policy, load_policy, policy_json_schema

from conftest import DELETE, SAMPLE_POLICY, line_of


def problems_of(path) -> list:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value.problems


def only_problem(path, field: str):
    problems = problems_of(path)
    assert [p.field for p in problems] == [field], [str(p) for p in problems]
    problem = problems[0]
    assert problem.file == str(path)
    return problem


# --- valid policies ----------------------------------------------------------------------------------


def test_valid_policy_loads_with_defaults_and_resolved_paths(write_policy, tmp_path, artifacts):
    path = write_policy(tmp_path, report=DELETE)
    policy = load_policy(path)
    assert isinstance(policy, Policy)
    assert [m.id for m in policy.models] == ["logreg", "mlp"]
    assert policy.file == path.resolve()
    assert len(policy.sha256) == 64
    # relative paths resolve from the policy file's folder, not the working directory
    assert policy.resolve(policy.model("logreg").path).resolve() == artifacts.logreg.resolve()
    assert policy.resolve(policy.dataset("data").path).resolve() == artifacts.data.resolve()
    # defaults filled in
    assert policy.report.formats == ["html", "pdf"]
    assert [e.type for e in policy.explanations] == ["integrated_gradients", "lime", "permutation_importance"]
    assert policy.explanations[1].num_samples == 500
    assert policy.explanations[0].baseline == "mean"


def test_sample_policy_loads():
    policy = load_policy(SAMPLE_POLICY)
    assert policy.audit.audience == "medical"
    assert {m.format for m in policy.models} == {"skops", "torch_export"}
    # the YAML anchor gives both datasets the same 30 features
    assert len(policy.dataset("test").features) == 30
    assert [f.name for f in policy.dataset("train").features] == [f.name for f in policy.dataset("test").features]


def test_policy_sha256_changes_with_content(write_policy, tmp_path):
    a = load_policy(write_policy(tmp_path, name="a.yaml"))
    b = load_policy(write_policy(tmp_path, name="b.yaml", sample__seed=4))
    assert a.sha256 != b.sha256


# --- one problem, with its field and line --------------------------------------------------------------


def test_missing_model_file(write_policy, tmp_path):
    path = write_policy(tmp_path, models__0__path="models/nowhere.skops")
    problem = only_problem(path, "models[0].path")
    assert "file not found" in problem.message
    assert "nowhere.skops" in problem.message
    assert problem.line == line_of(path, "path: models/nowhere.skops")
    assert f"{path}:{problem.line}: models[0].path" in str(problem)


def test_unknown_explanation_type(write_policy, tmp_path):
    path = write_policy(tmp_path, explanations__0={"type": "shapley_magic", "n_steps": 10})
    problem = only_problem(path, "explanations[0]")
    assert "shapley_magic" in problem.message
    for name in EXPLAINERS:
        assert name in problem.fix
    assert problem.line == line_of(path, "type: shapley_magic")


def test_explanation_without_type(write_policy, tmp_path):
    path = write_policy(tmp_path, explanations__1={"num_samples": 10})
    problem = only_problem(path, "explanations[1]")
    assert "type" in problem.fix and "lime" in problem.fix


def test_out_of_range_value(write_policy, tmp_path):
    path = write_policy(tmp_path, sample__size=-3)
    problem = only_problem(path, "sample.size")
    assert "greater than or equal to 1" in problem.message
    assert problem.line == line_of(path, "size: -3")


def test_bad_option_inside_an_explanation(write_policy, tmp_path):
    path = write_policy(tmp_path, explanations__1__num_samples=5)
    problem = only_problem(path, "explanations[1].num_samples")
    assert problem.line == line_of(path, "num_samples: 5")


def test_unknown_key_is_forbidden(write_policy, tmp_path):
    path = write_policy(tmp_path, sample__colour="red")
    problem = only_problem(path, "sample.colour")
    assert "extra" in problem.message.lower()
    assert "spelling" in problem.fix
    assert problem.line == line_of(path, "colour: red")


def test_missing_required_field(write_policy, tmp_path):
    path = write_policy(tmp_path, audit__owner=DELETE)
    problem = only_problem(path, "audit.owner")
    assert "required" in problem.message.lower()
    assert "owner" in problem.fix
    assert problem.line == line_of(path, "audit:")  # the nearest line that exists: the mapping holding it


def test_pickle_without_trust(write_policy, tmp_path, artifacts):
    path = write_policy(tmp_path, models__0__format="pickle", models__0__path=str(artifacts.pickle))
    problem = only_problem(path, "models[0].format")
    assert "pickle" in problem.message and "refused" in problem.message
    assert "trust: pickle" in problem.fix
    assert problem.line == line_of(path, "format: pickle")


def test_pickle_with_trust_loads(write_policy, tmp_path, artifacts):
    path = write_policy(tmp_path, models__0__format="pickle", models__0__path=str(artifacts.pickle),
                        models__0__trust="pickle")
    assert load_policy(path).model("logreg").trust == "pickle"


def test_unknown_model_id_under_audited(write_policy, tmp_path):
    path = write_policy(tmp_path, audited__0__model="forest")
    problem = only_problem(path, "audited[0].model")
    assert "'forest'" in problem.message
    assert "logreg" in problem.fix and "mlp" in problem.fix
    assert problem.line == line_of(path, "model: forest")


def test_unknown_dataset_id_under_audited(write_policy, tmp_path):
    path = write_policy(tmp_path, audited__1__background="training")
    problem = only_problem(path, "audited[1].background")
    assert "'training'" in problem.message
    assert problem.line == line_of(path, "background: training")


def test_torchscript_needs_classes(write_policy, tmp_path):
    path = write_policy(tmp_path, models__1__classes=DELETE, models__1__positive_class=DELETE)
    problem = only_problem(path, "models[1].format")
    assert "classes" in problem.message


def test_gradient_method_restricted_to_a_sklearn_model(write_policy, tmp_path):
    path = write_policy(tmp_path, explanations__0__models=["logreg"])
    problem = only_problem(path, "explanations[0].models[0]")
    assert "PyTorch" in problem.message


def test_duplicate_explanation_names(write_policy, tmp_path):
    path = write_policy(tmp_path, explanations__2={"type": "lime", "num_samples": 100})
    problem = only_problem(path, "explanations")
    assert "unique" in problem.message and "lime" in problem.message


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\naudit:\n  id: x\n  title: [unclosed\n", encoding="utf-8")
    problems = problems_of(path)
    assert len(problems) == 1 and problems[0].field == "(file)"
    assert "YAML" in problems[0].message
    assert problems[0].line is not None and problems[0].line >= 4


def test_wrong_version(write_policy, tmp_path):
    path = write_policy(tmp_path, version=2)
    problem = only_problem(path, "version")
    assert problem.line == line_of(path, "version: 2")


def test_missing_policy_file(tmp_path):
    problems = problems_of(tmp_path / "absent.yaml")
    assert [p.field for p in problems] == ["(file)"]


# --- every problem at once -------------------------------------------------------------------------------


def test_three_schema_problems_are_reported_together(write_policy, tmp_path):
    path = write_policy(tmp_path, sample__size=-3, sample__strategy="worst", report__top_feature=3)
    problems = problems_of(path)
    assert len(problems) == 3, [str(p) for p in problems]
    assert {p.field: p.line for p in problems} == {
        "sample.size": line_of(path, "size: -3"),
        "sample.strategy": line_of(path, "strategy: worst"),
        "report.top_feature": line_of(path, "top_feature: 3"),
    }
    message = str(PolicyError(problems))
    assert message.startswith("3 problems in policy")


def test_three_reference_problems_are_reported_together(write_policy, tmp_path, artifacts):
    path = write_policy(
        tmp_path,
        models__0__path="gone.skops",
        models__1__format="pickle",
        models__1__path=str(artifacts.pickle),
        audited__0__model="forest",
        explanations__0=DELETE,  # no torch model left for integrated gradients
    )
    problems = problems_of(path)
    assert sorted(p.field for p in problems) == ["audited[0].model", "models[0].path", "models[1].format"]
    assert all(p.line is not None for p in problems)


def test_missing_files_reported_with_schema_problems_in_line_order(write_policy, tmp_path):
    path = write_policy(tmp_path, models__0__path="gone.skops", datasets__1__path="gone.csv", sample__size=0)
    problems = problems_of(path)
    assert [p.field for p in problems] == ["models[0].path", "datasets[1].path", "sample.size"]
    assert [p.line for p in problems] == [line_of(path, "gone.skops"), line_of(path, "gone.csv"),
                                          line_of(path, "size: 0")]


# --- JSON Schema -------------------------------------------------------------------------------------------


def test_policy_json_schema_is_valid_json_schema():
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_sample_policy_validates_against_schema():
    data = yaml.safe_load(SAMPLE_POLICY.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(policy_json_schema())
    assert [e.message for e in validator.iter_errors(data)] == []


def test_schema_rejects_what_load_policy_rejects(write_policy, tmp_path):
    validator = jsonschema.Draft202012Validator(policy_json_schema())
    good = yaml.safe_load(write_policy(tmp_path, name="good.yaml").read_text())
    assert list(validator.iter_errors(good)) == []
    for overrides in ({"sample__size": -3}, {"sample__colour": "red"}, {"explanations__0__type": "shap"},
                      {"models__0__format": "tensorflow"}):
        bad = yaml.safe_load(write_policy(tmp_path, name="bad.yaml", **overrides).read_text())
        assert list(validator.iter_errors(bad)), overrides
