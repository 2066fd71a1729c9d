"""Trusted time (PAdES B-T and manifest.tsr), against an RFC 3161 authority served on loopback by this file."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from auditor.cli import cli
from auditor.signing import SigningError, init_identity
from auditor.timestamps import MANIFEST_TOKEN, request_token, verify_token

TSA_NAME = "Loopback Test TSA"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def make_tsa_certificate(name: str = TSA_NAME, *, timestamping: bool = True):
    """A throw-away self-signed RSA certificate for timestamping only (pyHanko's test TSA signs with RSA);
    ``timestamping=False``: one for e-mail instead, which no timestamp may be signed with."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING if timestamping
                                              else ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


class LoopbackTSA:
    """pyHanko's DummyTimeStamper behind http.server on 127.0.0.1: an RFC 3161 authority over HTTP."""

    def __init__(self, *, timestamping: bool = True) -> None:
        from asn1crypto import keys, tsp, x509 as asn1_x509
        from cryptography.hazmat.primitives import serialization
        from pyhanko.sign.timestamps import DummyTimeStamper

        self.certificate, key = make_tsa_certificate(timestamping=timestamping)
        stamper = DummyTimeStamper(
            tsa_cert=asn1_x509.Certificate.load(self.certificate.public_bytes(serialization.Encoding.DER)),
            tsa_key=keys.PrivateKeyInfo.load(key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        )
        self.requests = 0
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415)
                    return
                reply = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
                tsa.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsr"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tsa():
    server = LoopbackTSA()
    yield server
    server.close()


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity")
    init_identity(folder, "Timestamp Signer")
    return folder


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsr"


def write_policy(artifacts, folder: Path, **signing) -> Path:
    from conftest import base_policy

    tree = base_policy(artifacts, folder)
    tree["audited"] = tree["audited"][:1]
    tree["explanations"] = [{"type": "permutation_importance", "n_repeats": 2}]
    tree["report"]["formats"] = ["html", "pdf"]
    tree["sample"]["size"] = 2
    if signing:
        tree["signing"] = signing
    policy = folder / "policy.yaml"
    policy.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return policy


@pytest.fixture(scope="module")
def stamped(tmp_path_factory, artifacts, identity, tsa):
    """A signed run whose policy names the loopback authority (signing.timestamp_url)."""
    folder = tmp_path_factory.mktemp("stamped")
    policy = write_policy(artifacts, folder, timestamp_url=tsa.url)
    out = folder / "out"
    result = invoke("run", policy, "--out", out, "--identity", identity)
    assert result.exit_code == 0, result.output
    assert f"timestamped by {tsa.url}" in result.output
    return {"policy": policy, "out": out, "folder": folder}


@pytest.fixture(scope="module")
def unstamped(tmp_path_factory, artifacts, identity):
    folder = tmp_path_factory.mktemp("unstamped")
    out = folder / "out"
    result = invoke("run", write_policy(artifacts, folder), "--out", out, "--identity", identity, "-q")
    assert result.exit_code == 0, result.output
    return out


def copy_of(out: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    return target


def test_pdf_signature_carries_a_valid_signature_timestamp(stamped, identity, tsa):
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    reader = PdfFileReader(io.BytesIO((stamped["out"] / "report.pdf").read_bytes()))
    signature = reader.embedded_signatures[0]
    tsa_root = asn1_x509.Certificate.load(tsa.certificate.public_bytes(serialization.Encoding.DER))
    status = validate_pdf_signature(
        signature,
        ValidationContext(trust_roots=[load_cert_from_pemder(str(identity / "signer.cert.pem"))], allow_fetching=False),
        ts_validation_context=ValidationContext(trust_roots=[tsa_root], allow_fetching=False),
    )
    stamp = status.timestamp_validity
    assert stamp is not None, "the PDF signature carries no signature timestamp"
    assert stamp.intact and stamp.valid and stamp.trusted
    assert stamp.signing_cert.subject.native["common_name"] == TSA_NAME
    assert abs(stamp.timestamp - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=10)
    assert status.bottom_line


def test_manifest_token_stamps_the_sha256_of_manifest_json(stamped, tsa):
    from asn1crypto import tsp

    out = stamped["out"]
    manifest = (out / "manifest.json").read_bytes()
    assert json.loads(manifest)["signer"]["timestamp_authority"] == tsa.url
    response = tsp.TimeStampResp.load((out / MANIFEST_TOKEN).read_bytes())
    assert response["status"]["status"].native == "granted"
    info = response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert info["message_imprint"]["hashed_message"].native == hashlib.sha256(manifest).digest()
    assert MANIFEST_TOKEN not in json.loads(manifest)["outputs"]  # it cannot be inside what it stamps


def test_verify_prints_the_authoritys_time_for_both(stamped, identity):
    result = invoke("verify", stamped["out"], "--public-key", identity / "manifest.pub.pem",
                    "--cert", identity / "signer.cert.pem")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "timestamp: " in line]
    assert len(lines) == 2, result.output
    assert any("manifest.tsr" in line for line in lines) and any("report.pdf" in line for line in lines)
    for line in lines:
        assert line.startswith("ok ") and f"by Common Name: {TSA_NAME}" in line
        moment = dt.datetime.strptime(line.split("timestamp: ")[1].split()[0], "%Y-%m-%dT%H:%M:%SZ")
        assert abs(moment.replace(tzinfo=dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=10)
    assert "unlisted" not in result.output and "FAIL" not in result.output


def test_verify_pdf_alone_prints_its_timestamp(stamped):
    result = invoke("verify", stamped["out"] / "report.pdf")
    assert result.exit_code == 0, result.output
    assert "timestamp: " in result.output and TSA_NAME in result.output


def test_report_says_which_authority_timestamped_it(stamped, tsa):
    html = (stamped["out"] / "report.html").read_text(encoding="utf-8")
    assert "The PDF signature carries an RFC 3161 timestamp from" in html and tsa.url in html
    assert "signer's own claim" not in html


def test_token_over_other_bytes_fails(stamped, tsa, tmp_path):
    out = copy_of(stamped["out"], tmp_path)
    (out / MANIFEST_TOKEN).write_bytes(request_token(tsa.url, b"another manifest"))
    result = invoke("verify", out)
    assert result.exit_code == 3, result.output
    failing = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert any("manifest.tsr does not stamp manifest.json" in line for line in failing), result.output
    assert MANIFEST_TOKEN in result.output.splitlines()[-1]


def test_a_changed_manifest_fails(stamped, tmp_path):
    out = copy_of(stamped["out"], tmp_path)
    manifest = out / "manifest.json"
    data = bytearray(manifest.read_bytes())
    data[len(data) // 2] ^= 0x01
    manifest.write_bytes(bytes(data))
    assert invoke("verify", out).exit_code == 3
    status = verify_token(bytes(data), (out / MANIFEST_TOKEN).read_bytes())
    assert not status.ok and not status.intact


def test_a_removed_or_damaged_token_fails(stamped, tmp_path):
    out = copy_of(stamped["out"], tmp_path)
    token = out / MANIFEST_TOKEN
    raw = token.read_bytes()
    token.unlink()
    result = invoke("verify", out)
    assert result.exit_code == 3 and "manifest.tsr is missing" in result.output, result.output
    token.write_bytes(raw[: len(raw) // 2])
    result = invoke("verify", out)
    assert result.exit_code == 3 and "not a readable RFC 3161 timestamp token" in result.output, result.output


def test_without_a_url_the_signing_time_is_the_signers_claim(unstamped):
    from pyhanko.pdf_utils.reader import PdfFileReader

    assert not (unstamped / MANIFEST_TOKEN).exists()
    assert json.loads((unstamped / "manifest.json").read_bytes())["signer"]["timestamp_authority"] is None
    html = (unstamped / "report.html").read_text(encoding="utf-8")
    assert "The signing time is the signer's own claim" in html and "RFC 3161 timestamp from" not in html
    signature = PdfFileReader(io.BytesIO((unstamped / "report.pdf").read_bytes())).embedded_signatures[0]
    assert "unsigned_attrs" not in signature.signer_info or not signature.signer_info["unsigned_attrs"].native
    result = invoke("verify", unstamped)
    assert result.exit_code == 0 and "timestamp: " not in result.output, result.output


def test_an_unreachable_authority_is_a_clear_error_and_writes_nothing(stamped, identity, tsa):
    url = closed_port_url()  # overrides the policy's (reachable) authority
    out = stamped["folder"] / "unreachable"
    before = tsa.requests
    result = invoke("run", stamped["policy"], "--out", out, "--identity", identity, "--timestamp-url", url, "-q")
    assert result.exit_code == 2, result.output
    assert f"Error: timestamp authority {url} did not issue a timestamp" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith((".unreachable", "unreachable"))]
    assert tsa.requests == before


def test_a_url_without_an_identity_is_refused(artifacts, tmp_path, tsa):
    out = tmp_path / "out"
    result = invoke("run", write_policy(artifacts, tmp_path), "--out", out, "--timestamp-url", tsa.url, "-q")
    assert result.exit_code == 2, result.output
    assert "no signing identity" in result.output and not out.exists()


@pytest.mark.parametrize("url", ["ftp://tsa.example/tsr", "tsa.example/tsr", "http://"])
def test_a_url_that_is_not_http_is_refused(artifacts, tmp_path, identity, url):
    policy = write_policy(artifacts, tmp_path, timestamp_url=url)
    result = invoke("run", policy, "--out", tmp_path / "out", "--identity", identity, "-q")
    assert result.exit_code == 2, result.output
    assert "signing.timestamp_url" in result.output and "RFC 3161" in result.output
    result = invoke("run", write_policy(artifacts, tmp_path), "--out", tmp_path / "out", "--identity", identity,
                    "--timestamp-url", url, "-q")
    assert result.exit_code == 2 and "--timestamp-url" in result.output, result.output


def test_request_token_checks_what_it_gets(tsa):
    token = request_token(tsa.url, b"data")
    assert verify_token(b"data", token).ok
    with pytest.raises(SigningError, match="did not issue a timestamp"):
        request_token(closed_port_url(), b"data")


def test_openssl_checks_the_manifest_token(stamped, tsa, tmp_path):
    import subprocess

    from cryptography.hazmat.primitives import serialization

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl on this machine")
    ca = tmp_path / "tsa.pem"
    ca.write_bytes(tsa.certificate.public_bytes(serialization.Encoding.PEM))
    out = stamped["out"]
    check = [openssl, "ts", "-verify", "-in", str(out / MANIFEST_TOKEN), "-CAfile", str(ca), "-data"]
    assert subprocess.run(check + [str(out / "manifest.json")], capture_output=True).returncode == 0
    assert subprocess.run(check + [str(out / "evidence.json")], capture_output=True).returncode != 0


def test_a_token_from_a_certificate_not_for_timestamping_is_refused():
    impostor = LoopbackTSA(timestamping=False)
    try:
        with pytest.raises(SigningError, match="returned an unusable token"):
            request_token(impostor.url, b"data")
    finally:
        impostor.close()
