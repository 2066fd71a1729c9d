"""The in-toto attestation of a signed audit, on a real signed output folder and real keys.

Checked independently of the auditor where it matters: the DSSE signature with ``cryptography`` over PAE bytes
built here, and with openssl through the README's own recipe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from auditor.attestation import ATTESTATION, PAYLOAD_TYPE, PREDICATE_TYPE, statement, verify_attestation
from auditor.cli import cli
from auditor.signing import init_identity
from auditor.verify import _load_public_key, verify_folder

README = Path(__file__).resolve().parents[1] / "README.md"
THRESHOLDS = [  # one finding of each status per model: accuracy passes, balanced accuracy warns, AUC fails
    {"metric": "performance.accuracy", "min": 0.1},
    {"metric": "performance.balanced_accuracy", "min": 0.1, "warn_min": 0.999},
    {"metric": "performance.roc_auc", "min": 0.999},
]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity")
    init_identity(folder, "Attestation Signer")
    return folder


@pytest.fixture(scope="module")
def policy(tmp_path_factory, artifacts):
    from conftest import base_policy

    folder = tmp_path_factory.mktemp("attested")
    tree = base_policy(artifacts, folder)
    tree["report"]["formats"] = ["html", "pdf"]
    tree["sample"]["size"] = 2
    tree["thresholds"] = THRESHOLDS
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def signed(policy, identity):
    """A signed output folder of the tiny audit (HTML and PDF); exit 1: a finding failed, as intended."""
    out = policy.parent / "out"
    result = invoke("run", policy, "--out", out, "--identity", identity, "-q")
    assert result.exit_code == 1, result.output
    return out


@pytest.fixture
def copy(signed, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(signed, target)
    return target


def envelope_of(folder: Path) -> dict:
    return json.loads((folder / ATTESTATION).read_bytes())


def statement_of(folder: Path) -> dict:
    return json.loads(base64.b64decode(envelope_of(folder)["payload"]))


def label(finding: dict) -> str:
    return f"{finding['id']} ({finding['model']})" if finding["model"] else finding["id"]


def test_envelope_is_dsse_with_one_signature_by_the_manifest_key(signed):
    envelope = envelope_of(signed)
    manifest = json.loads((signed / "manifest.json").read_bytes())
    assert list(envelope) == ["payloadType", "payload", "signatures"]
    assert envelope["payloadType"] == PAYLOAD_TYPE == "application/vnd.in-toto+json"
    assert len(envelope["signatures"]) == 1
    signature = envelope["signatures"][0]
    assert set(signature) == {"keyid", "sig"}
    assert signature["keyid"] == manifest["signer"]["manifest_public_key_sha256"]
    assert len(base64.b64decode(signature["sig"], validate=True)) == 64  # Ed25519


def test_statement_is_in_toto_v1_with_a_test_result_predicate(signed):
    stmt = statement_of(signed)
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == PREDICATE_TYPE == "https://in-toto.io/attestation/test-result/v0.1"
    assert set(stmt["predicate"]) == {"result", "configuration", "passedTests", "warnedTests", "failedTests"}
    assert stmt["predicate"]["result"] in ("PASSED", "WARNED", "FAILED")


def test_subjects_are_every_other_file_with_its_sha256(signed):
    subjects = statement_of(signed)["subject"]
    files = sorted(p.name for p in signed.iterdir() if p.name != ATTESTATION)
    assert [s["name"] for s in subjects] == files
    assert {"manifest.json", "manifest.sig", "report.pdf", "report.html", "evidence.json"} <= set(files)
    for subject in subjects:
        assert set(subject) == {"name", "digest"} and set(subject["digest"]) == {"sha256"}
        assert subject["digest"]["sha256"] == hashlib.sha256((signed / subject["name"]).read_bytes()).hexdigest()


def test_result_and_tests_are_the_evidence_findings(signed):
    findings = json.loads((signed / "evidence.json").read_bytes())["findings"]
    predicate = statement_of(signed)["predicate"]
    by_status = {s: [label(f) for f in findings if f["status"] == s] for s in ("pass", "warn", "fail")}
    assert all(by_status.values()), by_status  # the policy makes one of each, per model
    assert predicate["passedTests"] == by_status["pass"]
    assert predicate["warnedTests"] == by_status["warn"]
    assert predicate["failedTests"] == by_status["fail"]
    assert "performance.roc_auc (logreg)" in predicate["failedTests"]
    assert predicate["result"] == "FAILED"


@pytest.mark.parametrize("statuses, result", [((), "PASSED"), (("pass",), "PASSED"), (("pass", "warn"), "WARNED"),
                                              (("warn", "fail", "pass"), "FAILED")])
def test_result_is_the_worst_status(statuses, result):
    findings = [SimpleNamespace(status=s, label=f"m{i}") for i, s in enumerate(statuses)]
    manifest = {"inputs": {"policy": {"path": "/p.yaml", "sha256": "0" * 64}, "models": [], "datasets": []}}
    assert statement({}, manifest, SimpleNamespace(findings=findings))["predicate"]["result"] == result


def test_configuration_is_the_manifest_inputs_with_their_digests(signed):
    inputs = json.loads((signed / "manifest.json").read_bytes())["inputs"]
    configuration = statement_of(signed)["predicate"]["configuration"]
    recorded = [("policy", inputs["policy"])] + [("model", m) for m in inputs["models"]] + \
               [("dataset", d) for d in inputs["datasets"]]
    assert len(configuration) == len(recorded) == 1 + 2 + 2
    for descriptor, (role, item) in zip(configuration, recorded):
        assert descriptor["name"] == item["path"]
        assert descriptor["digest"] == {"sha256": item["sha256"]}
        assert descriptor["annotations"]["role"] == role
        assert descriptor["annotations"].get("id") == item.get("id")
        assert hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest() == item["sha256"]


def test_a_bundled_dataset_is_named_by_its_source_and_release():
    manifest = {"inputs": {"policy": {"path": "/p.yaml", "sha256": "0" * 64}, "models": [], "datasets": [
        {"id": "bc", "source": "sklearn:breast_cancer", "version": "scikit-learn 1.8.0"}]}}
    descriptor = statement({}, manifest, SimpleNamespace(findings=[]))["predicate"]["configuration"][1]
    assert descriptor["name"] == "sklearn:breast_cancer" and descriptor["uri"] == "pkg:pypi/scikit-learn@1.8.0"
    assert descriptor["annotations"] == {"role": "dataset", "id": "bc", "source": "sklearn:breast_cancer",
                                         "version": "scikit-learn 1.8.0"}


def test_signature_verifies_with_cryptography_over_pae(signed, identity):
    envelope = envelope_of(signed)
    body = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    signed_bytes = b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" " + str(len(body)).encode() + b" " + body
    key = _load_public_key(identity / "manifest.pub.pem")
    key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), signed_bytes)  # raises InvalidSignature


def test_the_folder_verifies_with_the_attestation_checked(signed, identity):
    result = verify_folder(signed, public_key=identity / "manifest.pub.pem", cert=identity / "signer.cert.pem")
    assert result.ok, [c.detail for c in result.checks if not c.ok]
    check = next(c for c in result.checks if c.name == "attestation")
    assert "verifies with the pinned public key" in check.detail and "FAILED" in check.detail
    status = verify_attestation(signed, _load_public_key(identity / "manifest.pub.pem"), pinned=True)
    assert status.ok and status.valid and status.intact and status.files == ()


def readme_recipe() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- verify-attestation:begin -->\s*```[a-z]*\n(.*?)```\s*<!-- verify-attestation:end -->",
                      text, re.S)
    assert found, "README.md: the attestation recipe between its verify-attestation markers is gone"
    return textwrap.dedent(found.group(1))


def run_recipe(folder: Path, identity: Path) -> subprocess.CompletedProcess:
    shutil.copy(identity / "manifest.pub.pem", folder / "manifest.pub.pem")  # "with manifest.pub.pem there too"
    return subprocess.run(["bash", "-c", readme_recipe()], cwd=folder, capture_output=True, text=True, timeout=60)


def test_readme_recipe_verifies_an_untouched_attestation(copy, identity):
    proc = run_recipe(copy, identity)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Signature Verified Successfully" in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0] == "FAILED"
    assert sum(line.startswith("ok   ") for line in lines) == len(statement_of(copy)["subject"])
    assert not any(line.startswith("FAIL ") for line in lines)


def test_readme_recipe_fails_on_a_changed_attestation(copy, identity):
    envelope = envelope_of(copy)
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    stmt["predicate"]["result"] = "PASSED"  # the claim one would like to make
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    (copy / ATTESTATION).write_text(json.dumps(envelope, indent=2) + "\n")
    proc = run_recipe(copy, identity)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Signature Verified Successfully" not in proc.stdout
    assert "Signature Verification Failure" in proc.stdout + proc.stderr


def test_readme_recipe_names_a_changed_subject(copy, identity):
    (copy / "report.html").write_bytes((copy / "report.html").read_bytes() + b"\n")
    proc = run_recipe(copy, identity)
    assert "FAIL report.html" in proc.stdout and "Signature Verified Successfully" in proc.stdout


def _position(raw: bytes, where: str) -> int:
    """The middle byte of the file, or of one of the envelope's values."""
    if where == "middle":
        return len(raw) // 2
    envelope = json.loads(raw)
    value = envelope["signatures"][0][where] if where in ("keyid", "sig") else envelope[where]
    return raw.index(value.encode()) + len(value) // 2


@pytest.mark.parametrize("where", ["middle", "payload", "payloadType", "keyid", "sig"])
def test_one_flipped_byte_in_the_attestation_fails_verify(copy, where):
    path = copy / ATTESTATION
    data = bytearray(path.read_bytes())
    data[_position(bytes(data), where)] ^= 0x01
    path.write_bytes(bytes(data))
    result = invoke("verify", copy)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert ATTESTATION in result.output.splitlines()[-1], result.output  # "Error: verification failed: <file>"
    assert any(line.startswith("FAIL") and ATTESTATION in line for line in result.output.splitlines())


def test_a_reformatted_attestation_fails_verify(copy):
    """Same JSON, other bytes: the attestation is checked byte for byte, as every other signed file."""
    (copy / ATTESTATION).write_text(json.dumps(envelope_of(copy), indent=4) + "\n")
    result = invoke("verify", copy)
    assert result.exit_code == 3 and ATTESTATION in result.output.splitlines()[-1], result.output


def test_a_flipped_byte_in_a_subject_fails_the_attestation_too(copy, identity):
    path = copy / "evidence.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    status = verify_attestation(copy, _load_public_key(identity / "manifest.pub.pem"))
    assert status.valid and not status.intact and not status.ok
    assert status.files == ("evidence.json",) and "evidence.json changed" in status.detail
    result = invoke("verify", copy)
    assert result.exit_code == 3
    assert any(line.startswith("FAIL") and "evidence.json changed" in line and ATTESTATION in line
               for line in result.output.splitlines()), result.output


def test_an_added_file_is_not_a_subject(copy, identity):
    (copy / "notes.txt").write_text("added later")
    status = verify_attestation(copy, _load_public_key(identity / "manifest.pub.pem"))
    assert not status.intact and status.files == ("notes.txt",) and "not a subject" in status.detail


def test_a_removed_attestation_fails_verify(copy):
    (copy / ATTESTATION).unlink()
    result = invoke("verify", copy)
    assert result.exit_code == 3 and f"{ATTESTATION} is missing" in result.output


def test_another_pinned_key_does_not_verify_the_attestation(signed, tmp_path):
    init_identity(tmp_path / "other", "Someone Else")
    status = verify_attestation(signed, _load_public_key(tmp_path / "other" / "manifest.pub.pem"), pinned=True)
    assert not status.valid and not status.ok and "not signed by the pinned public key" in status.detail


def test_an_unsigned_run_has_no_attestation(policy, tmp_path):
    tree = yaml.safe_load(policy.read_text(encoding="utf-8"))
    tree["report"]["formats"] = ["html"]
    unsigned_policy = policy.parent / "unsigned.yaml"
    unsigned_policy.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    out = tmp_path / "unsigned"
    assert invoke("run", unsigned_policy, "--out", out, "-q").exit_code == 1
    assert (out / "manifest.json").is_file() and not (out / "manifest.sig").exists()
    assert not (out / ATTESTATION).exists()
    check = invoke("verify", out)
    assert check.exit_code == 3 and "unsigned" in check.output and f"no {ATTESTATION}" in check.output
