"""One audit run end to end, and its re-run: the order of steps, in one place.

policy -> prepare -> evidence -> HTML -> PDF (signed) -> manifest (signed) -> atomic output folder.
Signing happens last, on complete content; the folder appears under its name only when every file,
the manifest signature included, is written.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .attestation import ATTESTATION, build_attestation
from .audit import ProgressFactory, prepare, run_audit
from .executors import open_executor
from .errors import AuditorError, VerificationError
from .evidence import Evidence, evidence_json_schema
from .model_card import MODEL_CARD, build_model_card
from .output import PartialFolder, check_destination, staged
from .plan import RunPlan, plan_run
from .policy import load_policy
from .provenance import MANIFEST, SIGNATURE, Written, build_manifest, canonical_bytes, environment
from .report import render_html, render_pdf
from .signing import Identity, load_identity
from .timestamps import MANIFEST_TOKEN, request_token, resolve_timestamp_url

__all__ = ["RunOutcome", "RerunOutcome", "execute", "exit_code", "package", "rerun", "resolve_identity"]


@dataclass
class RunOutcome:
    out: Path
    evidence: Evidence
    manifest: dict
    signed: bool
    files: list[str]


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_identity(cli_identity: Path | None, policy) -> Identity | None:
    """The identity from --identity, else the policy's ``signing.identity``; None if neither."""
    signing = policy.signing
    folder = cli_identity or (policy.resolve(signing.identity) if signing and signing.identity else None)
    if folder is None:
        return None
    return load_identity(folder, signing.passphrase_env if signing else "AUDITOR_SIGNING_PASSPHRASE")


def _previous_run(compare_to: str, history, audit_id: str, run_id: str):
    """Evidence and manifest of the run to compare with: 'last' (the latest completed run of this audit),
    a run id from the history, or an output folder."""
    from .diff import load_run

    if compare_to == "last":
        record = history.last_completed(audit_id, exclude=run_id) if history is not None else None
        return None if record is None else load_run(Path(record.out))
    if Path(compare_to).is_dir():
        return load_run(Path(compare_to))
    record = history.get(compare_to) if history is not None else None
    if record is None or not record.out:
        where = history.url if history is not None else "no history"
        raise AuditorError(f"--compare-to {compare_to}: no such run in the history ({where}) and no such folder",
                           hint="give 'last', a run id from `auditor history`, or an output folder")
    return load_run(Path(record.out))


def execute(policy_path: Path, *, out: Path, sample_size: int | None = None, seed: int | None = None,
            force: bool = False, identity_dir: Path | None = None, progress: ProgressFactory | None = None,
            say=lambda *a: None, history=None, compare_to: str | None = None,
            executor: str | None = None, timestamp_url: str | None = None) -> RunOutcome:
    """Run one audit into ``out``, recording it in ``history`` (a History) from start to end.

    ``executor``: where the explainers' per-decision work runs (see :func:`auditor.executors.open_executor`).
    ``timestamp_url``: the RFC 3161 authority to timestamp the signatures (None: the policy's, if any)."""
    started = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex
    policy = load_policy(policy_path)
    plan = plan_run(policy, sample_size=sample_size, seed=seed, executor=executor)
    check_destination(out, force=force)
    identity = resolve_identity(identity_dir, policy)
    timestamp_url = resolve_timestamp_url(timestamp_url, policy, identity)
    if compare_to and compare_to != "last":
        _previous_run(compare_to, history, policy.audit.id, run_id)  # an unknown run or folder: refused here
    # Every user error found so far left nothing behind; from here on the run is recorded, whatever happens.
    if history is not None:
        history.start(run_id=run_id, audit_id=policy.audit.id, policy_path=str(policy.file),
                      policy_sha256=policy.sha256, out=str(Path(out).resolve()),
                      signer=identity.name if identity else None)
    try:
        with open_executor(plan.executor) as runner:
            outcome = _execute(plan, identity, run_id, started, out=out, force=force, progress=progress, say=say,
                               history=history, compare_to=compare_to, executor=runner, timestamp_url=timestamp_url)
    except AuditorError as exc:
        if history is not None:
            history.finish(run_id, status="failed", exit_code=exc.exit_code, error=exc.message)
        raise
    except BaseException as exc:  # a crash or an interrupt is recorded too; a kill -9 leaves 'running'
        if history is not None:
            history.finish(run_id, status="failed", exit_code=1 if isinstance(exc, Exception) else 130,
                           error=f"{type(exc).__name__}: {exc}")
        raise
    if history is not None:
        findings = outcome.evidence.findings
        history.finish(run_id, status="completed", exit_code=exit_code(outcome.evidence),
                       findings={"pass": sum(f.status == "pass" for f in findings),
                                 "warn": sum(f.status == "warn" for f in findings),
                                 "fail": sum(f.status == "fail" for f in findings),
                                 "failed": [f.label for f in findings if f.status == "fail"]},
                       inputs=outcome.manifest["inputs"])
    return outcome


def _execute(plan: RunPlan, identity, run_id: str, started: datetime, *, out: Path, force, progress, say, history,
             compare_to, executor, timestamp_url=None) -> RunOutcome:
    policy = plan.policy
    prepared = prepare(policy)
    for p in prepared:
        say(f"  model {p.model.id} ({p.model.kind}) on {p.dataset.spec.id}: {p.dataset.n_rows} rows, "
            f"{p.modality.describe(p.dataset)}")
    if executor.name != "local":
        say(f"  explainers run on {executor.describe()}")
    evidence = run_audit(plan, prepared, progress=progress, executor=executor)
    changes = None
    if compare_to:
        from .diff import diff_audits

        previous = _previous_run(compare_to, history, policy.audit.id, run_id)
        if previous is None:
            say("  no earlier completed run of this audit to compare with")
        else:
            changes = diff_audits(previous[0], previous[1], evidence, None)
    with staged(out, force=force) as folder:  # the evidence is streamed into it; the rest follows
        files, manifest = package(plan, prepared, evidence, identity=identity, run_id=run_id, started=started,
                                  changes=changes, say=say, timestamp_url=timestamp_url, folder=folder)
        for name, data in files.items():
            if name not in folder.sha256:
                folder.write(name, data)
    return RunOutcome(out, evidence, manifest, identity is not None, sorted(files))


def package(plan: RunPlan, prepared, evidence: Evidence, *, identity=None, run_id: str | None = None,
            started: datetime | None = None, changes=None, say=lambda *a: None,
            timestamp_url: str | None = None, folder: PartialFolder | None = None) -> tuple[dict[str, bytes], dict]:
    """Every output file of a computed audit, signed last: the evidence and its schema, the policy, the report
    (HTML, PDF with its signature), the CycloneDX model card, the manifest and the manifest's signature, and the
    in-toto attestation over all of them (signed runs only). With a timestamp authority (``timestamp_url``, else the policy's), the PDF
    signature carries its timestamp and ``manifest.tsr`` its token over the manifest.

    Nothing is written here, except into ``folder`` (a :func:`~auditor.output.staged` output folder) when given:
    ``evidence.json`` is then streamed into it and hashed as it is written, so its text is never held: the model
    card, the manifest and the attestation take its digest (``files["evidence.json"]`` is then a
    :class:`~auditor.provenance.Written`, not bytes)."""
    policy = plan.policy
    run_id = run_id or uuid.uuid4().hex
    started = started or datetime.now(timezone.utc)
    if folder is not None:
        evidence_sha256 = folder.stream("evidence.json", evidence.json_chunks())
    else:
        evidence_bytes = evidence.to_json().encode("utf-8")
        evidence_sha256 = hashlib.sha256(evidence_bytes).hexdigest()
    files: dict[str, bytes] = {
        "evidence.json": b"",  # placeholder: keeps the files' order; set after the PDF
        "evidence.schema.json": (json.dumps(evidence_json_schema(), indent=2) + "\n").encode("utf-8"),
        "policy.yaml": policy.file.read_bytes(),
    }
    if changes is not None:
        files["changes.json"] = (changes.model_dump_json(indent=2) + "\n").encode("utf-8")
    timestamp_url = resolve_timestamp_url(timestamp_url, policy, identity)
    signer = identity.describe(timestamp_url=timestamp_url) if identity else None
    say("  rendering HTML")
    html = render_html(evidence, generated_at=started, signer=signer,
                       evidence_sha256=evidence_sha256, changes=changes)
    if "html" in plan.formats:
        files["report.html"] = html.encode("utf-8")
        if folder is not None:  # written now: the rest needs its digest, not a second copy of the text beside the PDF's
            folder.write("report.html", files["report.html"])
            files["report.html"] = Written(folder.sha256["report.html"])
    if "pdf" in plan.formats:
        say("  rendering PDF")
        pdf = render_pdf(html)
        if identity:
            say(f"  signing PDF as {identity.name}" + (f", timestamped by {timestamp_url}" if timestamp_url else ""))
            pdf = identity.sign_pdf(pdf, reason=f"Explainability audit {policy.audit.id}", timestamp_url=timestamp_url)
        files["report.pdf"] = pdf
    del html
    # written already (streamed into the folder): the rest needs only its digest, not its bytes read back
    files["evidence.json"] = Written(evidence_sha256) if folder is not None else evidence_bytes
    # before the manifest, which lists and signs it; from the evidence without its decisions, not a parse of the file
    summary = evidence.model_dump(mode="json", exclude={"subjects": {"__all__": {"decisions"}}})
    files[MODEL_CARD] = build_model_card(files, started=started, evidence=summary)
    del summary
    manifest = build_manifest(plan=plan, prepared=prepared, outputs=files,
                              run_id=run_id, started=_utc(started),
                              finished=_utc(datetime.now(timezone.utc)), signer=signer)
    files[MANIFEST] = canonical_bytes(manifest)
    if timestamp_url:  # beside the manifest, as it cannot be inside what it stamps
        files[MANIFEST_TOKEN] = request_token(timestamp_url, files[MANIFEST])
    if identity:
        files[SIGNATURE] = identity.sign_manifest(files[MANIFEST])  # last: nothing partial is ever signed
        files[ATTESTATION] = build_attestation(files, manifest, evidence, identity)  # over every file above
    return files, manifest


def exit_code(evidence: Evidence) -> int:
    """0: every finding passed (warnings allowed); 1: the audit completed and at least one finding failed."""
    return 1 if any(f.status == "fail" for f in evidence.findings) else 0


@dataclass
class RerunOutcome:
    identical: bool
    changed_inputs: list[str]
    environment_differences: list[str]
    first_difference: str | None


def _first_difference(a, b, path: str = "") -> str | None:
    if type(a) is not type(b):
        return path or "(top level)"
    if isinstance(a, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip(".")
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found.lstrip(".")
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else (path.lstrip(".") or "(value)")


def rerun(folder: Path, *, progress: ProgressFactory | None = None, say=lambda *a: None) -> RerunOutcome:
    """Re-run the audit recorded in ``folder`` and compare the evidence byte for byte."""
    from .models import file_sha256, path_sha256

    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
        recorded_evidence = (folder / "evidence.json").read_bytes()
    except (OSError, ValueError):
        raise AuditorError(f"{folder}: no readable {MANIFEST} and evidence.json",
                           hint="point to the output folder of an `auditor run`") from None
    inputs = manifest["inputs"]
    policy_path = Path(inputs["policy"]["path"])
    changed = []
    if not policy_path.is_file():
        raise AuditorError(f"{policy_path}: the recorded policy file is gone", hint="restore it to re-run the audit")
    if file_sha256(policy_path) != inputs["policy"]["sha256"]:
        changed.append(f"policy {policy_path}")
    for item in inputs["models"] + inputs["datasets"]:
        if "path" in item:
            path = Path(item["path"])
            if not path.exists():
                changed.append(f"{item['id']}: {path} is missing")
            elif path_sha256(path) != item["sha256"]:
                changed.append(f"{item['id']}: {path}")
    now = environment()
    env_diff = [f"{k}: {v} (recorded) vs {now['packages'].get(k)} (now)"
                for k, v in manifest["environment"]["packages"].items() if now["packages"].get(k) != v]
    if now["python"] != manifest["environment"]["python"]:
        env_diff.append(f"python: {manifest['environment']['python']} (recorded) vs {now['python']} (now)")
    if any(c.startswith("policy ") or "missing" in c for c in changed):
        return RerunOutcome(False, changed, env_diff, None)
    policy = load_policy(policy_path)
    prepared = prepare(policy)
    overrides = inputs.get("overrides", {})
    plan = plan_run(policy, sample_size=overrides.get("sample.size"), seed=overrides.get("sample.seed"))
    evidence = run_audit(plan, prepared, progress=progress)
    fresh = evidence.to_json().encode("utf-8")
    if fresh == recorded_evidence:
        return RerunOutcome(True, changed, env_diff, None)
    try:
        first = _first_difference(json.loads(recorded_evidence), json.loads(fresh))
    except ValueError:
        first = "evidence.json is not valid JSON"
    return RerunOutcome(False, changed, env_diff, first)


def raise_if_invalid(verification) -> None:
    if not verification.ok:
        files = ", ".join(dict.fromkeys(verification.failed_files)) or verification.target
        raise VerificationError(f"verification failed: {files}")
