"""Signing, verification and re-runs, on real keys, real WeasyPrint PDFs and real signatures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.signing import init_identity, load_identity
from auditor.verify import verify_folder, verify_pdf

PASSPHRASE = "correct horse battery staple 7"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity")
    init_identity(folder, "Test Signer", passphrase=PASSPHRASE.encode())
    return folder


@pytest.fixture(scope="module")
def other_identity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("other_identity")
    init_identity(folder, "Someone Else")
    return folder


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory, identity, artifacts):
    """One signed audit of the tiny policy, with HTML and PDF (the policy asks for both)."""
    import yaml

    from conftest import base_policy

    folder = tmp_path_factory.mktemp("signed")
    tree = base_policy(artifacts, folder)
    tree["report"]["formats"] = ["html", "pdf"]
    tree["sample"]["size"] = 2
    policy = folder / "policy.yaml"
    policy.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    out = folder / "out"
    result = invoke("run", policy, "--out", out, "--identity", identity, "-q",
                    env={"AUDITOR_SIGNING_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output
    return {"policy": policy, "out": out}


def copy_of(run, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run["out"], target)
    return target


def test_signed_output_verifies(signed_run, identity):
    out = signed_run["out"]
    assert {"manifest.json", "manifest.sig", "report.pdf", "report.html", "evidence.json"} <= {p.name for p in out.iterdir()}
    result = verify_folder(out, public_key=identity / "manifest.pub.pem", cert=identity / "signer.cert.pem")
    assert result.ok, [c.detail for c in result.checks if not c.ok]
    cli_result = invoke("verify", out, "--public-key", identity / "manifest.pub.pem", "--cert", identity / "signer.cert.pem")
    assert cli_result.exit_code == 0, cli_result.output
    assert "report.pdf matches" in cli_result.output and "PAdES signature intact and valid" in cli_result.output


def test_manifest_records_inputs_and_environment(signed_run):
    manifest = json.loads((signed_run["out"] / "manifest.json").read_text())
    from auditor.models import file_sha256

    assert manifest["inputs"]["policy"]["sha256"] == file_sha256(signed_run["policy"])
    assert {m["id"] for m in manifest["inputs"]["models"]} == {"logreg", "mlp"}
    for item in manifest["inputs"]["models"] + manifest["inputs"]["datasets"]:
        assert item["sha256"] == file_sha256(Path(item["path"]))
    assert manifest["inputs"]["seed"] == 3
    assert manifest["environment"]["packages"]["torch"].startswith("2.13.0")
    assert manifest["started_utc"] <= manifest["finished_utc"]
    assert manifest["signer"]["name"] == "Test Signer" and manifest["signer"]["development"] is True
    for name, digest in manifest["outputs"].items():
        from auditor.provenance import sha256_bytes

        assert sha256_bytes((signed_run["out"] / name).read_bytes()) == digest
    assert "started_utc" not in (signed_run["out"] / "evidence.json").read_text()


@pytest.mark.parametrize("name", ["report.pdf", "report.html", "evidence.json", "evidence.schema.json",
                                  "policy.yaml", "manifest.json", "manifest.sig"])
def test_one_flipped_byte_in_any_file_fails_naming_it(signed_run, tmp_path, name):
    out = copy_of(signed_run, tmp_path)
    path = out / name
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x01
    path.write_bytes(bytes(data))
    result = invoke("verify", out)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert name in result.output.splitlines()[-1], result.output  # "Error: verification failed: <file>"
    failing = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert failing and any(name in line for line in failing)


def test_tampered_pdf_alone_fails(signed_run, tmp_path):
    out = copy_of(signed_run, tmp_path)
    pdf = out / "report.pdf"
    data = bytearray(pdf.read_bytes())
    data[len(data) // 3] ^= 0xFF
    pdf.write_bytes(bytes(data))
    assert not verify_pdf(pdf).ok
    assert invoke("verify", pdf).exit_code == 3


def test_appended_pdf_content_is_caught(signed_run, tmp_path):
    out = copy_of(signed_run, tmp_path)
    pdf = out / "report.pdf"
    pdf.write_bytes(pdf.read_bytes() + b"\n% appended after signing\n")
    result = verify_pdf(pdf)
    assert not result.ok


def test_added_file_is_caught(signed_run, tmp_path):
    out = copy_of(signed_run, tmp_path)
    (out / "notes.txt").write_text("added later")
    result = invoke("verify", out)
    assert result.exit_code == 3 and "notes.txt" in result.output


def test_wrong_pinned_key_or_cert_fails(signed_run, other_identity):
    out = signed_run["out"]
    wrong_key = invoke("verify", out, "--public-key", other_identity / "manifest.pub.pem")
    assert wrong_key.exit_code == 3 and "pinned public key" in wrong_key.output
    wrong_cert = invoke("verify", out, "--cert", other_identity / "signer.cert.pem")
    assert wrong_cert.exit_code == 3 and "pinned certificate" in wrong_cert.output
    assert invoke("verify", out / "report.pdf", "--cert", other_identity / "signer.cert.pem").exit_code == 3


def test_pdf_signature_validates_with_pyhanko(signed_run, identity):
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    with open(signed_run["out"] / "report.pdf", "rb") as fh:
        reader = PdfFileReader(fh)
        status = validate_pdf_signature(
            reader.embedded_signatures[0],
            ValidationContext(trust_roots=[load_cert_from_pemder(str(identity / "signer.cert.pem"))]),
        )
        assert status.bottom_line and status.intact and status.valid
        assert status.coverage.name == "ENTIRE_FILE"


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="poppler-utils not installed (make test installs it)")
def test_pdf_signature_validates_with_pdfsig(signed_run):
    out = subprocess.run(["pdfsig", str(signed_run["out"] / "report.pdf")], capture_output=True, text=True).stdout
    assert "Signature Validation: Signature is Valid." in out
    assert "Test Signer" in out
    assert "Total document signed" in out


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_development_identity_is_marked_on_the_cover(signed_run):
    cover = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(signed_run["out"] / "report.pdf"), "-"],
                           capture_output=True, text=True).stdout
    assert "NOT FOR SUBMISSION" in cover
    assert "Test Signer" in cover


def test_private_keys_and_passphrase_appear_in_no_output(signed_run, identity):
    from cryptography.hazmat.primitives import serialization

    loaded = load_identity(identity)  # passphrase from the environment; none set here
    secrets = [PASSPHRASE.encode(), (identity / "signer.key.pem").read_bytes(),
               (identity / "manifest.key.pem").read_bytes()]
    secrets += [line.encode() for line in (identity / "signer.key.pem").read_text().splitlines() if len(line) > 40]
    raw_ed25519 = loaded.manifest_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                   serialization.NoEncryption())
    secrets.append(raw_ed25519)
    for path in signed_run["out"].iterdir():
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"secret material found in {path.name}"


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch):
    monkeypatch.setenv("AUDITOR_SIGNING_PASSPHRASE", PASSPHRASE)


def test_wrong_passphrase_is_a_clear_user_error(signed_run, identity, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_SIGNING_PASSPHRASE", "wrong")
    result = invoke("run", signed_run["policy"], "--out", tmp_path / "o", "--identity", identity, "-q")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "AUDITOR_SIGNING_PASSPHRASE" in result.output
    assert not (tmp_path / "o").exists()


def test_missing_identity_folder_is_a_user_error(signed_run, tmp_path):
    result = invoke("run", signed_run["policy"], "--out", tmp_path / "o", "--identity", tmp_path / "nope", "-q")
    assert result.exit_code == 2 and "keys init" in result.output


def test_unsigned_output_does_not_verify(signed_run, tmp_path):
    result = invoke("run", signed_run["policy"], "--out", tmp_path / "o", "-q")
    assert result.exit_code == 0
    check = invoke("verify", tmp_path / "o")
    assert check.exit_code == 3 and "unsigned" in check.output


def test_keys_init_refuses_to_overwrite(identity):
    result = invoke("keys", "init", identity)
    assert result.exit_code == 2 and "already exists" in result.output


def test_rerun_is_identical_then_detects_a_changed_input(signed_run, tmp_path, artifacts):
    same = invoke("rerun", signed_run["out"], "-q")
    assert same.exit_code == 0, same.output
    assert "byte-identical" in same.output

    # The recorded run names its inputs by absolute path: copy them, re-point a copy of the run, change one.
    import yaml

    from conftest import base_policy

    work = tmp_path / "work"
    shutil.copytree(artifacts.folder, work / "artifacts")
    tree = base_policy(artifacts, work)
    for item in tree["models"] + tree["datasets"]:
        item["path"] = str(work / "artifacts" / Path(item["path"]).name)
    tree["sample"]["size"] = 2
    policy = work / "policy.yaml"
    policy.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    out = work / "out"
    assert invoke("run", policy, "--out", out, "-q").exit_code == 0
    import pandas as pd

    frame = pd.read_csv(work / "artifacts" / "data.csv")
    frame.loc[0, "f0"] += 1.0
    frame.to_csv(work / "artifacts" / "data.csv", index=False)
    changed = invoke("rerun", out, "-q")
    assert changed.exit_code == 3, changed.output
    assert "input changed since the audit: data" in changed.output


def _kill_run_after(delay: float, policy: Path, out: Path, identity: Path) -> None:
    env = {**os.environ, "AUDITOR_SIGNING_PASSPHRASE": PASSPHRASE}
    proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", "run", str(policy), "--out", str(out),
                             "--identity", str(identity), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("delay", [1.0, 4.0])
def test_kill_9_leaves_nothing_signed_and_partial(signed_run, identity, tmp_path, delay):
    out = tmp_path / "killed"
    _kill_run_after(delay, signed_run["policy"], out, identity)
    if out.exists():  # the run finished before the kill: then it must be complete and valid
        assert verify_folder(out).ok
    for partial in tmp_path.glob(".killed.partial-*"):
        assert not verify_folder(partial).ok
        assert invoke("verify", partial).exit_code == 3


def test_killed_while_writing_leaves_an_unsigned_partial_folder(signed_run, identity, tmp_path):
    """SIGKILL at the last moment (writing manifest.sig): no output folder, and a partial one verify rejects."""
    out = tmp_path / "crashed"
    script = f"""
import os, signal, sys
import auditor.output as output
real = output._write
def write(path, data):
    if path.name == "manifest.sig":
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
output._write = write
from auditor.cli import main
sys.argv = ["auditor", "run", {str(signed_run["policy"])!r}, "--out", {str(out)!r}, "--identity", {str(identity)!r}, "-q"]
main()
"""
    env = {**os.environ, "AUDITOR_SIGNING_PASSPHRASE": PASSPHRASE}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    partials = list(tmp_path.glob(".crashed.partial-*"))
    assert len(partials) == 1
    assert (partials[0] / "manifest.json").exists() and not (partials[0] / "manifest.sig").exists()
    result = invoke("verify", partials[0])
    assert result.exit_code == 3 and "unsigned" in result.output


def test_pkcs12_identity_signs_and_verifies(signed_run, identity, tmp_path):
    """An identity given as signer.p12 (passphrase from the environment) instead of PEM key + certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = serialization.load_pem_private_key((identity / "signer.key.pem").read_bytes(), PASSPHRASE.encode())
    cert = x509.load_pem_x509_certificate((identity / "signer.cert.pem").read_bytes())
    p12_folder = tmp_path / "p12-identity"
    p12_folder.mkdir()
    (p12_folder / "signer.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"signer", key, cert, None, serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    shutil.copy(identity / "manifest.key.pem", p12_folder / "manifest.key.pem")
    out = tmp_path / "out"
    result = invoke("run", signed_run["policy"], "--out", out, "--identity", p12_folder, "-q")
    assert result.exit_code == 0, result.output
    check = invoke("verify", out, "--public-key", identity / "manifest.pub.pem", "--cert", identity / "signer.cert.pem")
    assert check.exit_code == 0, check.output
    assert PASSPHRASE.encode() not in b"".join(p.read_bytes() for p in out.iterdir())
