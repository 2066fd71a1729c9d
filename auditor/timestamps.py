"""Trusted time from an RFC 3161 timestamp authority: PAdES B-T on the PDF, and a token over the manifest.

A signing time the signer writes is only the signer's claim. When the policy's ``signing.timestamp_url``
(or ``auditor run --timestamp-url``) names a timestamp authority (TSA), the run asks it twice:

- for the PDF: pyHanko's signer embeds a signature timestamp token over the PAdES signature
  (PAdES baseline B-T);
- for the manifest: ``manifest.tsr``, the authority's DER ``TimeStampResp`` over the SHA-256 of
  ``manifest.json``. It cannot be inside the manifest it stamps, so it sits beside it, like
  ``manifest.sig``; ``openssl ts -verify -in manifest.tsr -data manifest.json -CAfile tsa.pem`` checks it.

The manifest's ``signer.timestamp_authority`` records the URL, so a folder whose token was removed fails
verification. Verification trusts the authority's own certificate embedded in each token: it proves the
token is intact, was issued over these bytes at that time by that certificate, and that the certificate
is a timestamping one; *which* authorities to believe is the reader's decision (the subject is printed).
Nothing here contacts the network except the URL the user names.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from .signing import SigningError, timestamp_failure, timestamper

__all__ = ["MANIFEST_TOKEN", "TimestampStatus", "check_url", "is_http_url", "manifest_timestamp", "pdf_timestamp",
           "pdf_validation_context", "request_token", "resolve_timestamp_url", "tsa_validation_context",
           "verify_token"]

MANIFEST_TOKEN = "manifest.tsr"
HASH = "sha256"


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host (what an RFC 3161 authority over HTTP needs)."""
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def check_url(url: str, *, source: str = "--timestamp-url") -> str:
    """``url`` if it is an http(s) URL with a host; else SigningError naming ``source``."""
    if not is_http_url(url):
        raise SigningError(f"{source} {url!r}: expected the http:// or https:// URL of an RFC 3161 timestamp "
                           "authority", hint="give the authority's URL, e.g. https://freetsa.org/tsr")
    return url


def resolve_timestamp_url(cli_url: str | None, policy, identity) -> str | None:
    """The timestamp authority to use: ``--timestamp-url``, else the policy's ``signing.timestamp_url``.

    A timestamp is taken over a signature, so naming one without a signing identity is an error."""
    source = "--timestamp-url" if cli_url else "signing.timestamp_url"
    url = cli_url or (policy.signing.timestamp_url if policy.signing else None)
    if url is None:
        return None
    check_url(url, source=source)
    if identity is None:
        raise SigningError(f"{source} names a timestamp authority, but the run has no signing identity: "
                           "a timestamp is taken over a signature",
                           hint="pass --identity DIR (or set signing.identity), or drop the timestamp URL")
    return url


def request_token(url: str, data: bytes) -> bytes:
    """The authority's DER ``TimeStampResp`` over the SHA-256 of ``data``, checked before it is returned."""
    from pyhanko.sign.timestamps.common_utils import handle_tsp_response

    client = timestamper(url)

    async def ask():
        nonce, request = client.request_cms(hashlib.sha256(data).digest(), HASH)
        response = await client.async_request_tsa_response(request)
        handle_tsp_response(response, nonce)  # refused, or a replayed nonce: raises
        return response.dump()

    try:
        der = asyncio.run(ask())
    except Exception as exc:  # the HTTP client and the ASN.1 parser raise many types
        raise timestamp_failure(url, exc) from None
    status = verify_token(data, der, name="the token")
    if not status.ok:
        raise SigningError(f"timestamp authority {url} returned an unusable token: {status.detail}",
                           hint="check that the URL is an RFC 3161 timestamp authority")
    return der


@dataclass(frozen=True)
class TimestampStatus:
    """One timestamp token's check, shaped like pyHanko's statuses.

    ``intact``: the token's message imprint is the digest of the stamped bytes and its signed content is
    unchanged; ``valid``: its CMS signature verifies with the authority's certificate, which is a
    timestamping one. ``ok`` is the verdict: both. ``time`` (UTC) and ``authority`` (the certificate's
    subject) are what the authority vouches for."""

    intact: bool
    valid: bool
    detail: str
    time: datetime | None = None
    authority: str | None = None

    @property
    def ok(self) -> bool:
        return self.intact and self.valid


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _token(der: bytes):
    """The ``TimeStampToken`` (a CMS ContentInfo) in a DER ``TimeStampResp``, or a bare token."""
    from asn1crypto import cms, tsp

    try:
        response = tsp.TimeStampResp.load(der, strict=True)
        status = response["status"]["status"].native
    except (ValueError, TypeError, KeyError):  # not a response: a bare token
        token = cms.ContentInfo.load(der, strict=True)
    else:
        if status not in ("granted", "granted_with_mods"):
            raise ValueError(f"the authority's status is {status!r}, not 'granted'")
        token = response["time_stamp_token"]
    if token["content_type"].native != "signed_data":
        raise ValueError("not a CMS SignedData")
    token["content"].native  # parse fully: a damaged token raises here, not half-way through validation
    return token["content"]


def tsa_validation_context(signed_data):
    """A validation context trusting the certificates of the signers of a token's ``SignedData``."""
    from pyhanko_certvalidator import ValidationContext

    wanted = set()
    for info in signed_data["signer_infos"]:
        sid = info["sid"]
        wanted.add((sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native)
                   if sid.name == "issuer_and_serial_number" else sid.chosen.native)
    certs = [c.chosen for c in signed_data["certificates"] or () if c.name == "certificate"
             and ((c.chosen.issuer.dump(), c.chosen.serial_number) in wanted or c.chosen.key_identifier in wanted)]
    return ValidationContext(trust_roots=certs, allow_fetching=False) if certs else None


def _status_of(tst) -> tuple[bool, bool, datetime | None, str | None]:
    """intact, valid, time and authority of a pyHanko ``TimestampSignatureStatus``. The certificate is the
    trust anchor here, and a trust anchor's extended key usage is not checked by path validation: RFC 3161
    (section 2.3) requires timeStamping, so it is checked here."""
    cert = tst.signing_cert
    if cert is None:
        return tst.intact, False, tst.timestamp, None
    usage = cert.extended_key_usage_value
    timestamping = usage is not None and "time_stamping" in usage.native
    return (tst.intact, tst.valid and tst.trust_problem_indic is None and timestamping, tst.timestamp,
            cert.subject.human_friendly)


def verify_token(data: bytes, der: bytes, *, name: str = MANIFEST_TOKEN, stamped: str = "the data") -> TimestampStatus:
    """Check a DER timestamp token (or response) over ``data``: its imprint, signature and certificate."""
    import logging

    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
    from pyhanko.sign.validation.status import TimestampSignatureStatus

    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)  # it logs an imprint mismatch; the status says it
    try:
        signed_data = _token(der)
        context = tsa_validation_context(signed_data)
        if context is None:
            raise ValueError("it carries no certificate of its signer")
        kwargs = asyncio.run(validate_tst_signed_data(
            signed_data, context, lambda algorithm: hashlib.new(algorithm, data).digest()))
        intact, valid, moment, subject = _status_of(TimestampSignatureStatus(**kwargs))
    except Exception as exc:  # asn1crypto and pyHanko raise many types for a damaged token
        return TimestampStatus(False, False, f"{name} is not a readable RFC 3161 timestamp token "
                               f"({type(exc).__name__}: {exc})")
    if not intact:
        return TimestampStatus(False, valid, f"{name} does not stamp {stamped}: its message imprint differs "
                               "(the stamped file changed, or the token is another one)", moment, subject)
    if not valid:
        return TimestampStatus(True, False, f"{name}: the authority's signature or certificate does not verify "
                               "(a timestamping certificate is required)", moment, subject)
    return TimestampStatus(True, True, f"timestamp: {_utc(moment)} by {subject} ({name}, over the SHA-256 of "
                           f"{stamped}; checked against the authority's certificate in the token, not pinned)",
                           moment, subject)


def manifest_timestamp(folder: Path, manifest: dict) -> TimestampStatus | None:
    """Check ``manifest.tsr`` against ``manifest.json``; None when the run took no timestamp and has none."""
    from .provenance import MANIFEST

    path = Path(folder) / MANIFEST_TOKEN
    url = (manifest.get("signer") or {}).get("timestamp_authority")
    if not path.is_file():
        if url:
            return TimestampStatus(False, False, f"{MANIFEST_TOKEN} is missing: the manifest records a timestamp "
                                   f"from {url} (the token was removed)")
        return None
    return verify_token((Path(folder) / MANIFEST).read_bytes(), path.read_bytes(), stamped=MANIFEST)


def pdf_timestamp(status, name: str) -> TimestampStatus | None:
    """The signature timestamp of a validated PDF signature (pyHanko's ``PdfSignatureStatus``); None without."""
    tst = status.timestamp_validity
    if tst is None:
        return None
    intact, valid, moment, subject = _status_of(tst)
    if not intact:
        return TimestampStatus(False, valid, f"{name}: the signature timestamp does not stamp the signature",
                               moment, subject)
    if not valid:
        return TimestampStatus(True, False, f"{name}: the signature timestamp's signature or certificate does "
                               "not verify (a timestamping certificate is required)", moment, subject)
    return TimestampStatus(True, True, f"timestamp: {_utc(moment)} by {subject} ({name}, on its PAdES signature; "
                           "checked against the authority's certificate in the token, not pinned)", moment, subject)


def _signature_tokens(embedded_sig) -> list:
    """The ``SignedData`` of each signature timestamp token on a pyHanko ``EmbeddedPdfSignature``."""
    from pyhanko.sign.validation.generic_cms import extract_tst_data_iter

    return list(extract_tst_data_iter(embedded_sig.signer_info, signed=False))


def pdf_validation_context(embedded_sig):
    """The timestamp validation context for a PDF signature (None when it carries no timestamp)."""
    tokens = _signature_tokens(embedded_sig)
    return tsa_validation_context(tokens[0]) if tokens else None
