"""Who signs an audit, and how: the signing identity, the manifest signature and the PDF signature.

An identity is a folder (``auditor keys init DIR`` makes a development one):

- ``signer.p12`` (PKCS#12), or ``signer.key.pem`` + ``signer.cert.pem``: an X.509 certificate and its
  private key, which sign the PDF (PAdES, via pyHanko). ECDSA P-256 or RSA keys validate everywhere,
  poppler's ``pdfsig`` included (which does not support Ed25519 in PDF signatures).
- ``manifest.key.pem``: an Ed25519 private key that signs ``manifest.json`` (detached ``manifest.sig``,
  raw 64-byte signature: ``openssl pkeyutl -verify -rawin`` checks it). Its public key,
  ``manifest.pub.pem``, is what a regulator pins with ``auditor verify --public-key``.

With a timestamp authority (``signing.timestamp_url``), the PDF signature also carries its RFC 3161
timestamp (PAdES B-T); :mod:`auditor.timestamps` adds the manifest's token and checks both.

Private keys may be encrypted; the passphrase is read from an environment variable
(``AUDITOR_SIGNING_PASSPHRASE`` unless the policy names another) and never written or logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import AuditorError

__all__ = ["DEV_MARKER", "Identity", "SigningError", "init_identity", "load_identity", "PASSPHRASE_ENV",
           "timestamp_failure", "timestamper"]

DEV_MARKER = "auditor development identity - not for submission"
PASSPHRASE_ENV = "AUDITOR_SIGNING_PASSPHRASE"
SIGNATURE_FIELD = "AuditSignature"
TIMESTAMP_TIMEOUT_S = 10
# The visible signature on the cover: the reserved slot at the bottom of the A4 content area
# (16 mm side margins, 20 mm bottom margin, 30 mm high), in PDF points.
COVER_SIGNATURE_BOX = (45, 57, 550, 142)


class SigningError(AuditorError):
    """The signing identity cannot be loaded or used."""


@dataclass(frozen=True)
class Identity:
    folder: Path
    key_file: Path | None
    cert_file: Path | None
    p12_file: Path | None
    passphrase: bytes | None
    certificate: object  # cryptography x509.Certificate
    manifest_key: object  # Ed25519PrivateKey

    @property
    def name(self) -> str:
        from cryptography.x509.oid import NameOID

        cn = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cn[0].value if cn else self.certificate.subject.rfc4514_string()

    @property
    def development(self) -> bool:
        return DEV_MARKER in self.certificate.subject.rfc4514_string()

    @property
    def self_signed(self) -> bool:
        return self.certificate.issuer == self.certificate.subject

    @property
    def certificate_sha256(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self.certificate.fingerprint(hashes.SHA256()).hex()

    @property
    def manifest_public_key(self) -> str:
        """Raw Ed25519 public key, base64."""
        from cryptography.hazmat.primitives import serialization

        raw = self.manifest_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def describe(self, *, timestamp_url: str | None = None) -> dict:
        """What the manifest and the report say about the signer (public facts only). ``timestamp_authority``:
        the RFC 3161 authority whose timestamps the signatures carry; None: the signing time is the signer's
        own claim."""
        from cryptography.hazmat.primitives import serialization

        return {
            "name": self.name,
            "certificate_subject": self.certificate.subject.rfc4514_string(),
            "certificate_issuer": self.certificate.issuer.rfc4514_string(),
            "certificate_sha256": self.certificate_sha256,
            "certificate_pem": self.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "manifest_public_key_ed25519": self.manifest_public_key,
            "manifest_public_key_sha256": hashlib.sha256(base64.b64decode(self.manifest_public_key)).hexdigest(),
            "development": self.development,
            "self_signed": self.self_signed,
            "timestamp_authority": timestamp_url,
        }

    def sign_manifest(self, data: bytes) -> bytes:
        return self.manifest_key.sign(data)

    def sign_pdf(self, pdf: bytes, *, reason: str, timestamp_url: str | None = None) -> bytes:
        """PAdES signature with a visible stamp on the cover page: B-B, or B-T with a signature timestamp
        from the RFC 3161 authority at ``timestamp_url`` (see :mod:`auditor.timestamps`)."""
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers
        from pyhanko.sign.fields import SigSeedSubFilter
        from pyhanko.stamp import TextStampStyle

        try:
            if self.p12_file is not None:
                signer = signers.SimpleSigner.load_pkcs12(str(self.p12_file), passphrase=self.passphrase)
            else:
                signer = signers.SimpleSigner.load(str(self.key_file), str(self.cert_file), key_passphrase=self.passphrase)
        except Exception as exc:  # pyHanko raises several types for bad key material
            raise SigningError(f"{self.folder}: cannot load the PDF signing key ({type(exc).__name__})",
                               hint=f"check the key files and the passphrase in ${PASSPHRASE_ENV}") from None
        if signer is None:
            raise SigningError(f"{self.folder}: cannot load the PDF signing key",
                               hint=f"check the key files and the passphrase in ${PASSPHRASE_ENV}")
        meta = signers.PdfSignatureMetadata(
            field_name=SIGNATURE_FIELD, subfilter=SigSeedSubFilter.PADES, md_algorithm="sha256",
            reason=reason, name=self.name,
        )
        style = TextStampStyle(
            stamp_text="Digitally signed by %(signer)s\nTime: %(ts)s\n" + (
                "DEVELOPMENT IDENTITY - NOT FOR SUBMISSION" if self.development else
                "Verify: auditor verify <output folder>"),
            border_width=1,
        )
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        pdf_signer = signers.PdfSigner(
            meta, signer=signer, stamp_style=style,
            new_field_spec=fields.SigFieldSpec(SIGNATURE_FIELD, on_page=0, box=COVER_SIGNATURE_BOX),
            timestamper=timestamper(timestamp_url) if timestamp_url else None,
        )
        try:
            return pdf_signer.sign_pdf(writer).getvalue()
        except (OSError, ValueError) as exc:  # TimestampRequestError is an OSError; a reply that is not a
            if not timestamp_url:  # TimeStampResp, a ValueError
                raise
            raise timestamp_failure(timestamp_url, exc) from None


def timestamper(url: str):
    """pyHanko's HTTP client for the RFC 3161 authority at ``url`` (``PdfSigner(..., timestamper=...)``)."""
    from pyhanko.sign.timestamps import HTTPTimeStamper

    return HTTPTimeStamper(url, timeout=TIMESTAMP_TIMEOUT_S)


def timestamp_failure(url: str, exc: BaseException) -> SigningError:
    """The error for a timestamp authority that cannot be reached, refused, or replied with no timestamp."""
    cause = exc.__cause__ or exc.__context__
    why = f"{type(exc).__name__}: {exc}" + (f" ({type(cause).__name__}: {cause})" if cause else "")
    return SigningError(f"timestamp authority {url} did not issue a timestamp ({why.strip()})",
                        hint="check signing.timestamp_url / --timestamp-url and that the authority is reachable, "
                             "or run without one (the signing time is then the signer's own claim); nothing "
                             "was written")


def _passphrase(env: str) -> bytes | None:
    value = os.environ.get(env)
    return value.encode() if value else None


def load_identity(folder: str | Path, passphrase_env: str = PASSPHRASE_ENV) -> Identity:
    """Load an identity folder; raise SigningError naming the missing or unreadable file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import pkcs12

    folder = Path(folder)
    try:
        found = folder.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise SigningError(f"{str(folder)[:120]}{'…' if len(str(folder)) > 120 else ''}: cannot open the signing "
                           f"identity folder ({exc.strerror})", hint="give the path of an identity folder") from None
    if not found:
        raise SigningError(f"{folder}: signing identity folder not found",
                           hint="create a development identity with `auditor keys init DIR`, or point to yours")
    passphrase = _passphrase(passphrase_env)
    p12 = folder / "signer.p12"
    key_file, cert_file = folder / "signer.key.pem", folder / "signer.cert.pem"
    try:
        if p12.is_file():
            loaded = pkcs12.load_key_and_certificates(p12.read_bytes(), passphrase)
            certificate = loaded[1]
            if certificate is None:
                raise SigningError(f"{p12}: holds no certificate", hint="export the key with its certificate")
            key_file = cert_file = None
        elif key_file.is_file() and cert_file.is_file():
            serialization.load_pem_private_key(key_file.read_bytes(), passphrase)  # fail early on a bad passphrase
            certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
            p12 = None
        else:
            raise SigningError(f"{folder}: no signer.p12, nor signer.key.pem with signer.cert.pem",
                               hint="create a development identity with `auditor keys init DIR`")
        manifest_file = folder / "manifest.key.pem"
        if not manifest_file.is_file():
            raise SigningError(f"{manifest_file}: missing (the Ed25519 key that signs manifest.json)",
                               hint="create one: openssl genpkey -algorithm ed25519 -out manifest.key.pem")
        manifest_key = serialization.load_pem_private_key(manifest_file.read_bytes(), passphrase)
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "password" in message.lower() or "decrypt" in message.lower():
            raise SigningError(f"{folder}: cannot decrypt the signing keys",
                               hint=f"set the passphrase in the environment variable ${passphrase_env}") from None
        raise SigningError(f"{folder}: cannot read the signing identity ({message})") from None
    if not isinstance(manifest_key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{folder / 'manifest.key.pem'}: not an Ed25519 key",
                           hint="generate one: openssl genpkey -algorithm ed25519 -out manifest.key.pem")
    return Identity(folder, key_file, cert_file, p12, passphrase, certificate, manifest_key)


def init_identity(folder: str | Path, name: str, *, passphrase: bytes | None = None, days: int = 730) -> list[Path]:
    """Create a self-signed development identity: ECDSA P-256 certificate + key, Ed25519 manifest key.

    The certificate's subject carries DEV_MARKER, so every report signed with it says, on its cover,
    that it is not for submission.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    targets = [folder / n for n in ("signer.key.pem", "signer.cert.pem", "manifest.key.pem", "manifest.pub.pem")]
    existing = [t for t in targets if t.exists()]
    if existing:
        raise SigningError(f"{existing[0]}: already exists; refusing to overwrite a signing identity",
                           hint="choose an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, name),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DEV_MARKER),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(key, hashes.SHA256())
    )
    manifest_key = ed25519.Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())

    def write_private(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    write_private(targets[0], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    targets[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(targets[2], manifest_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         encryption))
    targets[3].write_bytes(manifest_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return targets
