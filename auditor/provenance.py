"""The provenance manifest: what went into an audit and what came out, with hashes.

``manifest.json`` lists the SHA-256 of every output file and of every input (policy, model files,
dataset files or the identity and version of a bundled dataset), the auditor's version and git
commit when known, Python, platform and the versions of every package that computed evidence, the
seeds, the start and end time (UTC) and the signer. It is the only place with timestamps, so the
evidence itself is byte-identical across reruns. ``manifest.sig`` is its Ed25519 signature; with a
timestamp authority, ``manifest.tsr`` is that authority's token over it (:mod:`auditor.timestamps`), and
``signer.timestamp_authority`` records the authority's URL.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .models import file_sha256

__all__ = ["MANIFEST", "SIGNATURE", "MANIFEST_VERSION", "Written", "build_manifest", "canonical_bytes", "environment",
           "git_commit", "sha256_bytes"]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MANIFEST_VERSION = "1"
# Packages whose code computed or rendered evidence.
PACKAGES = ["auditor", "numpy", "pandas", "scikit-learn", "scipy", "torch", "captum", "lime", "dice-ml",
            "skops", "pyarrow", "matplotlib", "jinja2", "weasyprint", "pydyf", "pyhanko", "cryptography", "pydantic"]


class Written:
    """An output file already written (streamed) to the output folder, known by its SHA-256: it stands for the
    file's bytes where only their digest is needed (the manifest, the model card, the attestation), so that a
    large file (evidence.json) is not read back into memory."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256


def sha256_bytes(data: "bytes | Written") -> str:
    return data.sha256 if isinstance(data, Written) else hashlib.sha256(data).hexdigest()


def canonical_bytes(manifest: dict) -> bytes:
    """The exact bytes that are signed and written: sorted keys, 2-space indent, UTF-8, newline."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def git_commit() -> str | None:
    """The auditor's own git commit when it runs from a checkout (None when installed from a wheel)."""
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+modified" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
    }


def build_manifest(*, plan, prepared, outputs: dict[str, bytes], run_id: str, started: str,
                   finished: str, signer: dict | None) -> dict[str, Any]:
    """The manifest for one run of ``plan``. ``outputs`` maps file name -> bytes as written."""
    policy = plan.policy
    models, datasets, seen = [], [], set()
    for p in prepared:
        if p.model.id not in seen:
            seen.add(p.model.id)
            models.append({"id": p.model.id, "path": str(policy.resolve(p.model.spec.path).resolve()),
                           "format": p.model.spec.format, "sha256": p.model.sha256})
        for d in (p.dataset, p.background):
            if any(x["id"] == d.spec.id for x in datasets):
                continue
            if d.file is not None:
                datasets.append({"id": d.spec.id, "path": str(d.file.resolve()), "sha256": file_sha256(d.file)})
            else:
                import sklearn

                datasets.append({"id": d.spec.id, "source": d.source, "version": f"scikit-learn {sklearn.__version__}"})
    return {
        "manifest_version": MANIFEST_VERSION,
        "audit_id": policy.audit.id,
        "run_id": run_id,
        "started_utc": started,
        "finished_utc": finished,
        "auditor": {"version": __version__, "git_commit": git_commit()},
        "inputs": {
            "policy": {"path": str(policy.file), "sha256": policy.sha256},
            "models": models,
            "datasets": datasets,
            "seed": plan.seed,
            "sample_size": plan.sample_size,
            "overrides": dict(plan.overrides),
        },
        "environment": environment(),
        "outputs": {name: sha256_bytes(data) for name, data in sorted(outputs.items())},
        "signer": signer,
    }

