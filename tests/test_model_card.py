"""auditor.model_card: the CycloneDX 1.6 ML-BOM of a real, signed audit of the credit sample.

The card is validated against the CycloneDX 1.6 JSON schema that cyclonedx-python-lib ships (its SPDX and JSF
schemas resolved from the package, no network), and every figure in it is held to the evidence it was read from.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from auditor.cli import cli
from auditor.model_card import MODEL_CARD, SERIAL_NAMESPACE, build_model_card
from auditor.models import path_sha256
from auditor.numbers import num
from auditor.signing import init_identity
from auditor.verify import verify_folder

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "credit_finance.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "evidence"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def schema_errors(card: bytes | dict) -> list[str]:
    """Every error of ``card`` against the CycloneDX 1.6 JSON schema shipped with cyclonedx-python-lib."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonValidator

    text = card.decode("utf-8") if isinstance(card, bytes) else json.dumps(card)
    errors = JsonValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
    return [str(e) for e in errors or []]


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    """A signed audit of both credit models (HTML and PDF), fast explanations, 2 decisions per model."""
    folder = tmp_path_factory.mktemp("model_card")
    policy = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    for entry in policy["models"] + policy["datasets"]:
        entry["path"] = str((POLICY.parent / entry["path"]).resolve())
    policy["sample"]["size"] = 2
    policy["explanations"] = [{"type": "lime", "num_samples": 300}, {"type": "permutation_importance", "n_repeats": 2}]
    policy["principal_reasons"]["methods"] = ["lime"]
    policy["thresholds"] = [t for t in policy["thresholds"]
                            if t["metric"].partition(".")[0] in ("performance", "fairness", "principal_reasons")]
    policy["report"] = {"formats": ["html", "pdf"], "top_features": 8}
    path = folder / "credit.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True), encoding="utf-8")
    identity = folder / "identity"
    init_identity(identity, "Card Signer")
    out = folder / "out"
    result = invoke("run", path, "--out", out, "--identity", identity, "-q")
    assert result.exit_code in (0, 1), result.output  # 1: a finding failed; the audit completed
    return {"out": out, "identity": identity, "card": json.loads((out / MODEL_CARD).read_bytes()),
            "evidence": json.loads((out / "evidence.json").read_bytes()),
            "manifest": json.loads((out / "manifest.json").read_bytes())}


def _components(credit) -> dict[str, dict]:
    return {c["name"]: c for c in credit["card"]["components"]}


def test_the_card_validates_against_the_cyclonedx_schema(credit):
    assert schema_errors((credit["out"] / MODEL_CARD).read_bytes()) == []
    assert credit["card"]["specVersion"] == "1.6" and credit["card"]["bomFormat"] == "CycloneDX"


@pytest.mark.parametrize("breakage", ["component type", "metric value", "spdx license", "serial number"])
def test_a_broken_card_fails_the_schema(credit, breakage):
    card = copy.deepcopy(credit["card"])
    component = card["components"][0]
    if breakage == "component type":
        component["type"] = "ml-model"
    elif breakage == "metric value":
        component["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = 0.5
    elif breakage == "spdx license":  # checked by the SPDX schema next to the BOM schema, resolved locally
        component["licenses"] = [{"license": {"id": "NOT-AN-SPDX-ID"}}]
    else:
        card["serialNumber"] = "not-a-urn"
    assert schema_errors(card)


def test_one_machine_learning_model_component_per_model(credit):
    models = {s["model"]["id"]: s["model"] for s in credit["evidence"]["subjects"]}
    assert [c["name"] for c in credit["card"]["components"]] == list(models) == ["gbm", "mlp"]
    recorded = {m["id"]: m for m in credit["manifest"]["inputs"]["models"]}
    for name, component in _components(credit).items():
        assert component["type"] == "machine-learning-model"
        assert component["hashes"] == [{"alg": "SHA-256", "content": recorded[name]["sha256"]}]
        assert recorded[name]["sha256"] == path_sha256(Path(recorded[name]["path"])) == models[name]["sha256"]
        properties = {p["name"]: p["value"] for p in component["properties"]}
        assert properties["auditor:format"] == models[name]["format"]
        parameters = component["modelCard"]["modelParameters"]
        assert parameters["task"] == "classification"
        assert [o["format"] for o in parameters["outputs"]] == [f"probability of {c}" for c in models[name]["class_names"]]
        features = credit["evidence"]["subjects"][0]["dataset"]["features"]
        assert [i["format"].split(" ")[0].rstrip(":") for i in parameters["inputs"]] == [f["name"] for f in features]
    assert _components(credit)["gbm"]["properties"][0] == {"name": "auditor:format", "value": "skops"}
    assert _components(credit)["mlp"]["properties"][0] == {"name": "auditor:format", "value": "torch_export"}


def _expected_metrics(subject: dict) -> list[tuple]:
    """(type, slice, value, lower, upper) of every figure the card should hold, read from the evidence here."""

    def row(kind, value, ci, slice_=None):
        return (kind, slice_, value, ci["lower"] if ci else None, ci["upper"] if ci else None)

    perf = subject["performance"]
    out = [row(k, perf[k], perf.get(f"{k}_ci"))
           for k in ("accuracy", "balanced_accuracy", "roc_auc", "brier_score", "log_loss")]
    for c in perf["per_class"]:
        out += [row(f"{k} ({c['name']})", c[k], c[f"{k}_ci"]) for k in ("precision", "recall", "f1")]
    point = perf["operating_point"]
    out += [row(f"{k} at P(bad) >= 0.5", point[k], point[f"{k}_ci"])
            for k in ("sensitivity", "specificity", "ppv", "npv")]
    for feature, groups in subject["subgroups"].items():
        for g in groups:
            out += [row(k, g[k], g.get(f"{k}_ci"), f"{feature} = {g['group']}")
                    for k in ("accuracy", "balanced_accuracy", "roc_auc", "brier_score", "positive_rate")
                    if g[k] is not None]
    return out


def test_performance_metrics_are_the_evidence_figures_and_intervals_exactly(credit):
    components = _components(credit)
    for subject in credit["evidence"]["subjects"]:
        metrics = components[subject["model"]["id"]]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
        found = [(m["type"], m.get("slice"), float(m["value"]),
                  float(m["confidenceInterval"]["lowerBound"]) if "confidenceInterval" in m else None,
                  float(m["confidenceInterval"]["upperBound"]) if "confidenceInterval" in m else None)
                 for m in metrics]
        assert found == _expected_metrics(subject)  # the same floats, in evidence order, and nothing else
        assert {"personal_status_sex", "age"} <= {m["slice"].split(" = ")[0] for m in metrics if "slice" in m}


def test_fairness_assessments_for_each_protected_feature(credit):
    declared = [p["feature"] for p in yaml.safe_load(POLICY.read_text(encoding="utf-8"))["protected"]]
    components = _components(credit)
    for subject in credit["evidence"]["subjects"]:
        considerations = components[subject["model"]["id"]]["modelCard"]["considerations"]
        assessments = considerations["fairnessAssessments"]
        features = subject["fairness"]["features"]
        assert [f["feature"] for f in features] == declared and len(assessments) == len(declared)
        for feature, assessment in zip(features, assessments):
            assert set(assessment) == {"groupAtRisk", "benefits", "harms", "mitigationStrategy"}
            assert assessment["groupAtRisk"].startswith(f"{feature['display_name']} = {feature['min_impact_group']}:")
            assert feature["basis"] in assessment["groupAtRisk"]
            assert f"Adverse impact ratio {num(feature['min_impact_ratio'])} " in assessment["harms"]
            assert "No mitigation is recorded" in assessment["mitigationStrategy"]
        audit = credit["evidence"]["audit"]
        assert considerations["useCases"][0] == audit["intended_use"]
        assert set(audit["limitations"]) <= set(considerations["technicalLimitations"])
        assert {f"Out of scope: {x}" for x in audit["out_of_scope"]} <= set(considerations["technicalLimitations"])


def test_references_metadata_and_serial_number(credit):
    out, card = credit["out"], credit["card"]
    references = {r["url"]: r for r in card["externalReferences"]}
    assert set(references) == {"evidence.json", "report.html", "report.pdf", "policy.yaml"}
    for name, reference in references.items():
        assert reference["hashes"] == [{"alg": "SHA-256",
                                        "content": hashlib.sha256((out / name).read_bytes()).hexdigest()}]
    described = sorted(p.name for p in out.iterdir() if p.name not in
                       ("model-card.cdx.json", "manifest.json", "manifest.sig", "attestation.intoto.json"))
    assert described == ["evidence.json", "evidence.schema.json", "policy.yaml", "report.html", "report.pdf"]
    listing = "\n".join(f"{n} {hashlib.sha256((out / n).read_bytes()).hexdigest()}" for n in described)
    assert card["serialNumber"] == f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, listing)}"
    assert card["metadata"]["timestamp"] == credit["manifest"]["started_utc"]
    assert card["metadata"]["tools"]["components"] == [
        {"type": "application", "name": "auditor", "version": credit["evidence"]["auditor_version"]}]


def test_the_same_files_and_start_give_the_same_bytes(credit):
    out = credit["out"]
    after = (MODEL_CARD, "manifest.json", "manifest.sig", "attestation.intoto.json")  # written after the card
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.name not in after}
    started = datetime.strptime(credit["manifest"]["started_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    written = (out / MODEL_CARD).read_bytes()
    assert build_model_card(files, started=started) == build_model_card(dict(files), started=started) == written
    assert written.endswith(b"}\n") and json.dumps(json.loads(written), indent=2, sort_keys=True,
                                                   ensure_ascii=False).encode() + b"\n" == written


def test_the_manifest_lists_the_card_and_verify_passes(credit):
    out = credit["out"]
    digest = hashlib.sha256((out / MODEL_CARD).read_bytes()).hexdigest()
    assert credit["manifest"]["outputs"][MODEL_CARD] == digest
    result = verify_folder(out, public_key=credit["identity"] / "manifest.pub.pem")
    assert result.ok, [c.detail for c in result.checks if not c.ok]


def test_a_flipped_byte_in_the_card_fails_verify(credit, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(credit["out"], out)
    data = bytearray((out / MODEL_CARD).read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / MODEL_CARD).write_bytes(bytes(data))
    result = invoke("verify", out)
    assert result.exit_code == 3, result.output
    assert MODEL_CARD in result.output.splitlines()[-1], result.output


@pytest.mark.parametrize("name", ["finance_tabular", "medical_tabular", "medical_regression", "medical_image",
                                  "medical_text", "medical_missing"])
def test_stored_evidence_of_every_kind_gives_a_valid_card(name):
    evidence_bytes = (FIXTURES / f"{name}.json").read_bytes()
    evidence = json.loads(evidence_bytes)
    card = build_model_card({"evidence.json": evidence_bytes}, started=datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert schema_errors(card) == []
    components = json.loads(card)["components"]
    assert [c["name"] for c in components] == list(dict.fromkeys(s["model"]["id"] for s in evidence["subjects"]))
    for component, subject in zip(components, evidence["subjects"]):
        metrics = {m["type"]: m for m in component["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
                   if "slice" not in m}
        figures = ("rmse", "mae", "r2") if subject["model"]["task"] == "regression" else ("accuracy", "roc_auc")
        for figure in figures:
            assert float(metrics[figure]["value"]) == subject["performance"][figure]
        if subject["dataset"]["kind"] != "tabular":
            assert component["modelCard"]["modelParameters"]["inputs"] == [{"format": subject["dataset"]["kind"]}]
