"""The audit's in-toto attestation: a signed statement of what was tested, on what, and with which result.

``attestation.intoto.json`` is a DSSE envelope (https://github.com/secure-systems-lab/dsse, ``envelope.md``)
around an in-toto Statement v1 whose predicate is a test result
(https://github.com/in-toto/attestation/blob/main/spec/predicates/test-result.md):

- ``subject``: every other file of the output folder, ``manifest.json`` and ``manifest.sig`` included, by
  name and SHA-256;
- ``predicate.result``: ``FAILED`` when a finding failed, ``WARNED`` when one warned, else ``PASSED`` (so
  ``PASSED`` and ``WARNED`` are the runs ``auditor run`` exits 0 on); ``passedTests``, ``warnedTests`` and
  ``failedTests`` name the findings by their label, the finding's id and, for a finding about one model,
  the model in parentheses (the same id is evaluated once per model);
- ``predicate.configuration``: the policy, model and dataset files the manifest records as inputs, as
  ResourceDescriptors with their SHA-256 (a bundled dataset: its source and the scikit-learn release).

The envelope is signed with the manifest's Ed25519 key over DSSE's pre-authentication encoding,
``PAE = "DSSEv1" SP len(type) SP type SP len(payload) SP payload``; its ``keyid`` is the SHA-256 of the raw
public key (the manifest's ``signer.manifest_public_key_sha256``). It is written last, over the complete
folder, and only for a signed audit: an unsigned one has no key to sign it with. README.md shows how to
check it with openssl alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .provenance import sha256_bytes

if TYPE_CHECKING:
    from .evidence import Evidence
    from .signing import Identity

__all__ = ["ATTESTATION", "PAYLOAD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "AttestationStatus",
           "build_attestation", "key_id", "pae", "statement", "verify_attestation"]

ATTESTATION = "attestation.intoto.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
FOLDER_DIGEST = ("SHA-256 over the folder's files: for each, in sorted order, its relative name, NUL, "
                 "its SHA-256 in hex, newline")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the bytes that are signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key) -> str:
    """The ``keyid`` of an Ed25519 public key: the SHA-256 of its 32 raw bytes, in hex."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _descriptor(kind: str, item: dict) -> dict:
    """One recorded input (the manifest's ``inputs``) as an in-toto ResourceDescriptor."""
    annotations = {"role": kind, **({"id": item["id"]} if "id" in item else {})}
    if "format" in item:
        annotations["format"] = item["format"]
    if "sha256" not in item:  # a dataset bundled with scikit-learn: named by its source and release
        version = item.get("version") or ""  # "scikit-learn 1.8.0"
        annotations.update(source=item["source"], version=version)
        release = f"@{version.split()[-1]}" if version.split() else ""
        return {"name": item["source"], "uri": f"pkg:pypi/scikit-learn{release}", "annotations": annotations}
    if Path(item["path"]).is_dir():
        annotations["digestOf"] = FOLDER_DIGEST
    return {"name": item["path"], "digest": {"sha256": item["sha256"]}, "annotations": annotations}


def statement(files: dict[str, bytes], manifest: dict, evidence: Evidence) -> dict:
    """The in-toto Statement over ``files`` (name -> bytes, or a written file's digest; the attestation itself not
    among them)."""
    findings = evidence.findings
    tests = {status: [f.label for f in findings if f.status == status] for status in ("pass", "warn", "fail")}
    result = "FAILED" if tests["fail"] else "WARNED" if tests["warn"] else "PASSED"
    inputs = manifest["inputs"]
    configuration = [_descriptor("policy", inputs["policy"])]
    configuration += [_descriptor("model", m) for m in inputs["models"]]
    configuration += [_descriptor("dataset", d) for d in inputs["datasets"]]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha256_bytes(data)}} for name, data in sorted(files.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": result,
            "configuration": configuration,
            "passedTests": tests["pass"],
            "warnedTests": tests["warn"],
            "failedTests": tests["fail"],
        },
    }


def _envelope_bytes(payload_type: str, payload: str, signatures: list[tuple[str, str]]) -> bytes:
    """The envelope as written: DSSE's field order, 2-space indent, a final newline."""
    envelope = {"payloadType": payload_type, "payload": payload,
                "signatures": [{"keyid": keyid, "sig": sig} for keyid, sig in signatures]}
    return (json.dumps(envelope, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def build_attestation(files: dict[str, bytes], manifest: dict, evidence: Evidence, identity: Identity) -> bytes:
    """The signed envelope over every file in ``files``; call it last, when nothing else will be added."""
    body = json.dumps(statement(files, manifest, evidence), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    signature = identity.sign_manifest(pae(PAYLOAD_TYPE, body))
    return _envelope_bytes(PAYLOAD_TYPE, base64.b64encode(body).decode("ascii"),
                           [(key_id(identity.manifest_key.public_key()), base64.b64encode(signature).decode("ascii"))])


@dataclass(frozen=True)
class AttestationStatus:
    """What ``verify_attestation`` found.

    ``valid``: the envelope is exactly as written, and its signature verifies with the key (whose ``keyid`` it
    names). ``intact``: every subject's SHA-256 matches its file and every file of the folder is a subject.
    ``ok`` is the verdict: both. ``detail`` says what was checked or what failed; ``files`` names the files
    that failed (the attestation itself when it is missing, unreadable or its signature does not verify).
    """

    valid: bool
    intact: bool
    detail: str
    files: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.valid and self.intact


def _broken(detail: str) -> AttestationStatus:
    return AttestationStatus(False, False, f"{ATTESTATION} {detail}", (ATTESTATION,))


def _b64(text) -> bytes:
    """Strict base64: only the canonical encoding of some bytes is accepted (no other spelling of the same)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    data = base64.b64decode(text.encode("ascii"), validate=True)
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return data


def _read_envelope(raw: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    envelope = json.loads(raw)
    kind, payload, signatures = envelope["payloadType"], envelope["payload"], envelope["signatures"]
    if not isinstance(kind, str) or not isinstance(signatures, list) or not signatures:
        raise ValueError("not a DSSE envelope")
    pairs = [(s["keyid"], s["sig"]) for s in signatures]
    if not all(isinstance(k, str) for k, _ in pairs) or raw != _envelope_bytes(kind, payload, pairs):
        raise ValueError("not as written")
    return kind, _b64(payload), [(k, _b64(sig)) for k, sig in pairs]


def _output_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() != ATTESTATION)


def verify_attestation(folder: str | Path, public_key, *, pinned: bool = False) -> AttestationStatus:
    """Check ``folder``'s attestation against ``public_key`` (an Ed25519 public key; ``pinned``: the caller's
    own, rather than the one the manifest records): the envelope, its signature, and every subject."""
    from cryptography.exceptions import InvalidSignature

    folder = Path(folder)
    path = folder / ATTESTATION
    if not path.is_file():
        return _broken("is missing: every signed audit carries one (it was removed, or the run was interrupted)")
    try:
        kind, body, signatures = _read_envelope(path.read_bytes())
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return _broken("changed: it is not the DSSE envelope the auditor wrote (it does not parse as one, "
                       "or its bytes differ from it)")
    if kind != PAYLOAD_TYPE:
        return _broken(f"has payloadType {kind!r}, expected {PAYLOAD_TYPE!r}")
    expected = key_id(public_key)
    mine = [sig for keyid, sig in signatures if keyid == expected]
    who = "the pinned public key" if pinned else "the key recorded in the manifest (not pinned)"
    if not mine:
        return _broken(f"is not signed by {who}: no signature names its keyid {expected[:16]}…")
    try:
        public_key.verify(mine[0], pae(kind, body))
    except InvalidSignature:
        return _broken(f"changed: its DSSE signature does not verify with {who}")
    try:
        stated = json.loads(body)
        subjects = {s["name"]: s["digest"]["sha256"] for s in stated["subject"]}
        result = stated["predicate"]["result"]
        if stated["_type"] != STATEMENT_TYPE or stated["predicateType"] != PREDICATE_TYPE:
            raise ValueError("another statement or predicate type")
    except (ValueError, KeyError, TypeError, AttributeError):
        return _broken(f"is signed but holds no in-toto {PREDICATE_TYPE} statement")

    present = _output_files(folder)
    problems, files = [], []
    for name, digest in sorted(subjects.items()):
        target = folder / name
        if not target.is_file():
            problems.append(f"{name} is a subject of {ATTESTATION} but missing")
        elif sha256_bytes(target.read_bytes()) != digest:
            problems.append(f"{name} changed: its SHA-256 differs from {ATTESTATION}")
        else:
            continue
        files.append(name)
    for name in present:
        if name not in subjects:
            problems.append(f"{name} is not a subject of {ATTESTATION}: it was added after signing")
            files.append(name)
    if problems:
        return AttestationStatus(True, False, "; ".join(problems), tuple(files))
    return AttestationStatus(True, True, f"{ATTESTATION}: DSSE signature verifies with {who}; in-toto test result "
                             f"{result}, its {len(subjects)} subjects match every file of the folder")
