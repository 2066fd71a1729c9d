"""Verify a signed audit: the manifest's signature, every file's hash, and the PDF's signature, with the
RFC 3161 timestamps of both when the run took them (:mod:`auditor.timestamps`).

``verify_folder`` checks an output folder; ``verify_pdf`` a report PDF on its own. Both return a
:class:`Verification` listing each check, so the CLI can print what was checked and, on failure,
exactly which file changed. Without pinned keys the checks prove the files are intact and were
signed by the key recorded in the manifest; pinning (``public_key``, ``cert``) proves *who* signed.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .attestation import ATTESTATION, verify_attestation
from .provenance import MANIFEST, SIGNATURE, sha256_bytes
from .timestamps import MANIFEST_TOKEN, manifest_timestamp, pdf_timestamp, pdf_validation_context

__all__ = ["Check", "Verification", "verify_folder", "verify_pdf"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    file: str | None = None


@dataclass
class Verification:
    target: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed_files(self) -> list[str]:
        return [c.file for c in self.checks if not c.ok and c.file]

    def add(self, name: str, ok: bool, detail: str, file: str | None = None) -> bool:
        self.checks.append(Check(name, ok, detail, file))
        return ok


def _load_public_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def _load_cert(path: Path):
    from cryptography import x509

    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def verify_folder(folder: str | Path, *, public_key: Path | None = None, cert: Path | None = None) -> Verification:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    folder = Path(folder)
    result = Verification(str(folder))
    manifest_path, sig_path = folder / MANIFEST, folder / SIGNATURE
    if not folder.is_dir():
        result.add("folder", False, f"{folder} is not a folder")
        return result
    if not manifest_path.is_file():
        result.add("manifest", False, f"{MANIFEST} is missing: the folder is not a complete, signed audit "
                   "(an interrupted run leaves an unsigned temporary folder)", MANIFEST)
        return result
    if not sig_path.is_file():
        result.add("manifest signature", False, f"{SIGNATURE} is missing: the audit is unsigned "
                   f"(and carries no {ATTESTATION}: there was no key to sign one)", SIGNATURE)
        return result
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
        recorded = base64.b64decode(manifest["signer"]["manifest_public_key_ed25519"])
        embedded = ed25519.Ed25519PublicKey.from_public_bytes(recorded)
    except (ValueError, KeyError, TypeError):
        result.add("manifest", False, f"{MANIFEST} is not a readable auditor manifest (or names no signer)", MANIFEST)
        return result

    key = embedded
    if public_key is not None:
        try:
            key = _load_public_key(public_key)
        except (OSError, ValueError) as exc:
            result.add("pinned public key", False, f"cannot read {public_key}: {exc}")
            return result
    try:
        key.verify(sig_path.read_bytes(), raw)
        who = "the pinned public key" if public_key else "the key recorded in the manifest (not pinned)"
        result.add("manifest signature", True, f"Ed25519 signature over {MANIFEST} verifies with {who}")
    except InvalidSignature:
        reason = ("does not match the pinned public key: signed by someone else, or the manifest changed"
                  if public_key else "does not verify: manifest.json or manifest.sig changed")
        result.add("manifest signature", False, f"signature {reason}", f"{MANIFEST} or {SIGNATURE}")
        return result

    listed = manifest.get("outputs", {})
    for name, digest in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            result.add(f"hash {name}", False, f"{name} is listed in the manifest but missing", name)
        elif sha256_bytes(path.read_bytes()) != digest:
            result.add(f"hash {name}", False, f"{name} changed: its SHA-256 differs from the manifest", name)
        else:
            result.add(f"hash {name}", True, f"{name} matches its SHA-256 in the manifest")
    extra = sorted(p.name for p in folder.iterdir()
                   if p.name not in listed and p.name not in (MANIFEST, SIGNATURE, ATTESTATION, MANIFEST_TOKEN))
    for name in extra:
        result.add(f"unlisted {name}", False, f"{name} is not in the manifest: it was added after signing", name)
    stamped = manifest_timestamp(folder, manifest)
    if stamped is not None:
        result.add("manifest timestamp", stamped.ok, stamped.detail, None if stamped.ok else MANIFEST_TOKEN)
    attested = verify_attestation(folder, key, pinned=public_key is not None)
    result.add("attestation", attested.ok, attested.detail, ", ".join(attested.files) or None)

    if "report.pdf" in listed and (folder / "report.pdf").is_file():
        pinned_cert = cert
        pdf_checks = verify_pdf(folder / "report.pdf", cert=pinned_cert,
                                expected_cert_sha256=manifest["signer"].get("certificate_sha256"))
        result.checks.extend(pdf_checks.checks)
    return result


def verify_pdf(path: str | Path, *, cert: Path | None = None, expected_cert_sha256: str | None = None) -> Verification:
    """Check a report PDF's PAdES signature: intact, valid, covering the whole file, by whom."""
    from cryptography.hazmat.primitives import hashes
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    import logging

    # pyHanko logs a full traceback for a certificate that does not chain to the pinned one; the
    # result below already says so in one line.
    for logger in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    path = Path(path)
    result = Verification(str(path))
    name = path.name
    try:
        data = path.read_bytes()
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except Exception as exc:  # a damaged PDF raises from deep inside the parser
        result.add("pdf signature", False, f"{name} cannot be read as a PDF ({type(exc).__name__})", name)
        return result
    if not signatures:
        result.add("pdf signature", False, f"{name} carries no signature", name)
        return result
    sig = signatures[0]
    signer_cert = sig.signer_cert
    try:
        roots = [load_cert_from_pemder(str(cert))] if cert else [signer_cert]
        status = validate_pdf_signature(sig, ValidationContext(trust_roots=roots, allow_fetching=False),
                                        ts_validation_context=pdf_validation_context(sig))
    except Exception as exc:
        result.add("pdf signature", False, f"{name}: signature cannot be validated ({type(exc).__name__}: {exc})", name)
        return result
    # pyHanko: on a tampered file `intact` is False while `valid` may stay True; decide on bottom_line.
    if not status.intact:
        result.add("pdf signature", False, f"{name} changed after it was signed (digest mismatch)", name)
        return result
    coverage = getattr(status, "coverage", None)
    whole = coverage is not None and coverage.name in ("ENTIRE_FILE",)
    if not whole:
        result.add("pdf coverage", False, f"{name}: the signature does not cover the whole file "
                   f"({coverage.name if coverage else 'unknown'}): content was appended after signing", name)
    else:
        result.add("pdf coverage", True, f"{name}: the signature covers the entire file")
    stamped = pdf_timestamp(status, name)
    if stamped is not None and not result.add("pdf timestamp", stamped.ok, stamped.detail, None if stamped.ok else name):
        return result
    if not status.bottom_line:
        if cert:
            result.add("pdf signer", False, f"{name} was not signed by the pinned certificate {cert}", name)
        else:
            result.add("pdf signature", False, f"{name}: signature not valid ({status.summary()})", name)
        return result
    from cryptography import x509 as cx509

    actual = cx509.load_der_x509_certificate(signer_cert.dump()).fingerprint(hashes.SHA256()).hex()
    subject = signer_cert.subject.human_friendly
    if expected_cert_sha256 and actual != expected_cert_sha256:
        result.add("pdf signer", False, f"{name} was signed by a certificate other than the manifest's signer", name)
        return result
    pinned = "the pinned certificate" if cert else "its own embedded certificate (not pinned: pass --cert)"
    result.add("pdf signature", True, f"{name}: PAdES signature intact and valid, signed by {subject}, "
               f"checked against {pinned}")
    return result
