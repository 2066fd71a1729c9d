"""The ``auditor`` command line.

Exit codes: 0 success; 1 a finding failed; 2 bad input (policy, data, model, output folder) with a message
naming the file, the field and the fix, and no traceback; 3 verification failure; 4 an internal error (a bug:
its traceback goes to stderr), so a scheduler never reads a crash as "a finding failed". Progress goes to
stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from . import __version__
from .errors import AuditorError

__all__ = ["main", "cli"]


class _Group(click.Group):
    """Turns the project's own errors into ``Error: ...`` plus a hint and their exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AuditorError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception:  # a bug, not bad input: keep its traceback, and an exit code of its own
            import traceback

            traceback.print_exc()
            click.echo("auditor: internal error (a bug in the auditor, not in your input; the traceback above says "
                       "where). Nothing was written to the output folder. Exit 4.", err=True)
            ctx.exit(4)


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class _Progress:
    """Progress on stderr: on a terminal, a live rich bar per explainer and model with its count, the time
    taken and the time remaining; otherwise one line per finished task (logs of scheduled runs stay readable
    and in order)."""

    def __init__(self, console, enabled: bool) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress = Progress(TextColumn("  {task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
                                 disable=not self.live)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, description: str, total: int):
        if self.live:
            task = self.progress.add_task(description, total=total)
            return lambda n: self.progress.advance(task, n)
        started, done = time.perf_counter(), [0]

        def advance(n: int) -> None:
            done[0] += n
            if self.enabled and done[0] >= total:
                self.console.print(f"  {description}: {total} done in {time.perf_counter() - started:.1f} s")

        return advance


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def cli() -> None:
    """Signed, reproducible explainability audits of machine-learning models.

    \b
    Exit codes:
      0  success (run: every finding passed)
      1  run: the audit completed and at least one finding failed
      2  bad input: policy, data, model, signing identity or output folder
         (the message names the file, the field and the fix)
      3  verification failure (verify, rerun)
      4  internal error: a bug (its traceback is printed); nothing is written
    """


@cli.command()
@click.argument("policy", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: out/<policy file name>). Written atomically.")
@click.option("--sample", "sample_size", type=click.IntRange(min=1), default=None,
              help="Number of decisions to explain (overrides the policy).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=None, help="Seed (overrides the policy).")
@click.option("--identity", type=click.Path(path_type=Path), default=None, envvar="AUDITOR_IDENTITY",
              help="Signing identity folder (overrides the policy's signing.identity; env AUDITOR_IDENTITY). "
                   "Without one the output is unsigned.")
@click.option("--timestamp-url", default=None, metavar="URL",
              help="RFC 3161 timestamp authority (overrides the policy's signing.timestamp_url): the PDF signature "
                   "carries its timestamp (PAdES B-T) and manifest.tsr its token over manifest.json. Without one, "
                   "the signing time is the signer's own claim.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists and is not empty.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one machine-readable summary line on stdout (progress stays on stderr).")
@click.option("--history", "history_url_option", default=None, metavar="URL",
              help="Audit history: an SQLAlchemy URL or a SQLite file (default: audit-history.sqlite in the "
                   "output folder's parent; env AUDITOR_HISTORY).")
@click.option("--compare-to", default=None, metavar="last|RUN|DIR",
              help="Add a 'changes since' section: the last completed run of this audit, a run id, or a folder.")
@click.option("--executor", default="local", show_default=True, metavar="local|dask|dask://HOST:PORT",
              help="Where the explainers' per-decision work runs: this process, a Dask cluster started on this "
                   "machine (2 worker processes), or the Dask scheduler at HOST:PORT. Same evidence either way.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(policy: Path, out: Path | None, sample_size: int | None, seed: int | None, identity: Path | None,
        force: bool, as_json: bool, history_url_option: str | None, compare_to: str | None, executor: str,
        quiet: bool, timestamp_url: str | None) -> None:
    """Run the audit POLICY describes.

    Writes report.html, report.pdf, evidence.json, the policy, and manifest.json (SHA-256 of every
    input and output), signed (manifest.sig, PDF signature) when a signing identity is given, and
    timestamped (PDF signature timestamp, manifest.tsr) when a timestamp authority is named.

    \b
    Exit codes (for schedulers):
      0  the audit completed and every finding passed (warnings allowed)
      1  the audit completed, the report was written (and signed), and at least one finding failed
      2  bad input: nothing was written
    With --json, one line on stdout:
      {"audit_id": ..., "run_id": ..., "out": ..., "findings": {"pass": n, "warn": n, "fail": n},
       "failed": [finding ids], "signed": true|false, "exit_code": 0|1}
    """
    from .history import History, history_url
    from .pipeline import execute, exit_code

    console = _console()
    say = (lambda *a: None) if quiet else console.print
    started = time.perf_counter()
    out = out or Path("out") / policy.stem
    say(f"[bold]auditor[/bold] {__version__}: {policy}")
    history = History(history_url(history_url_option, Path(out).resolve().parent))
    with _Progress(console, enabled=not quiet) as progress:
        outcome = execute(policy, out=out, sample_size=sample_size, seed=seed, force=force, identity_dir=identity,
                          progress=progress, say=say, history=history, compare_to=compare_to, executor=executor,
                          timestamp_url=timestamp_url)
    authority = (outcome.manifest.get("signer") or {}).get("timestamp_authority")
    state = ("signed" + (f", timestamped by {authority}" if authority else "") if outcome.signed
             else "[yellow]unsigned[/yellow] (no --identity)")
    say(f"[green]Wrote[/green] {out}/ ({', '.join(outcome.files)}), {state}, in {time.perf_counter() - started:.1f} s")
    findings = outcome.evidence.findings
    failed = [f.label for f in findings if f.status == "fail"]
    for f in findings:
        if f.status != "pass":
            say(f"  [{'red' if f.status == 'fail' else 'yellow'}]{f.status.upper()}[/] {f.message}")
    code = exit_code(outcome.evidence)
    if as_json:
        click.echo(json.dumps({
            "audit_id": outcome.manifest["audit_id"], "run_id": outcome.manifest["run_id"], "out": str(out),
            "findings": {k: sum(f.status == k for f in findings) for k in ("pass", "warn", "fail")},
            "failed": failed, "signed": outcome.signed, "exit_code": code,
        }, sort_keys=False))
    if code:
        click.get_current_context().exit(code)


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Expected Ed25519 public key of the manifest signer (PEM).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Expected certificate of the PDF signer (PEM).")
def verify(target: Path, public_key: Path | None, cert: Path | None) -> None:
    """Check a signed audit (an output folder, or a report PDF): signatures and every file's hash.

    Exit 0 when everything verifies, 3 when anything does not (the changed file is named).
    """
    from .pipeline import raise_if_invalid
    from .verify import verify_folder, verify_pdf

    if target.is_dir():
        result = verify_folder(target, public_key=public_key, cert=cert)
    elif target.is_file():
        result = verify_pdf(target, cert=cert)
    else:
        from .errors import AuditorError

        raise AuditorError(f"{target}: no such folder or file", hint="give an output folder or a report PDF")
    for check in result.checks:
        mark = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red", bold=True)
        click.echo(f"{mark} {check.detail}")
    raise_if_invalid(result)
    click.echo(f"{target}: verified ({len(result.checks)} checks).")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def rerun(folder: Path, quiet: bool) -> None:
    """Re-run the audit recorded in FOLDER and report whether the evidence is byte-identical.

    Exit 0 identical; 3 different (with the first differing field and what changed since).
    """
    from .errors import VerificationError
    from .pipeline import rerun as do_rerun

    console = _console()
    with _Progress(console, enabled=not quiet) as progress:
        outcome = do_rerun(folder, progress=progress)
    for line in outcome.changed_inputs:
        click.echo(f"input changed since the audit: {line}")
    for line in outcome.environment_differences:
        click.echo(f"environment differs: {line}")
    if not outcome.identical:
        where = f" (first difference at {outcome.first_difference})" if outcome.first_difference else ""
        raise VerificationError(f"{folder}: re-run evidence differs from the recorded evidence.json{where}")
    click.echo(f"{folder}: re-run evidence is byte-identical to the recorded evidence.json.")


@cli.command("history")
@click.argument("audit_id", required=False)
@click.option("--history", "history_url_option", default=None, metavar="URL",
              help="History database (default: out/audit-history.sqlite; env AUDITOR_HISTORY).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def history_command(audit_id: str | None, history_url_option: str | None, as_json: bool) -> None:
    """List recorded runs (of AUDIT_ID, or all), oldest first: status, findings, output folder."""
    from .history import History, history_url

    runs = History(history_url(history_url_option, Path("out"))).list(audit_id)
    if as_json:
        for r in runs:
            click.echo(json.dumps(r.as_dict(), sort_keys=True))
        return
    if not runs:
        click.echo("No runs recorded" + (f" for audit {audit_id!r}." if audit_id else "."))
        return
    click.echo(f"{'run':<12} {'audit':<22} {'status':<10} {'started (UTC)':<20} {'findings':<18} output")
    for r in runs:
        f = r.findings
        counts = f"{f.get('pass', 0)} pass {f.get('warn', 0)} warn {f.get('fail', 0)} fail" if f else "-"
        click.echo(f"{r.run_id[:12]:<12} {r.audit_id[:22]:<22} {r.status:<10} {r.started_utc[:19] + 'Z':<20} {counts:<18} {r.out}")
        if r.error:
            click.echo(f"{'':<12} error: {r.error}")


@cli.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--history", "history_url_option", default=None, metavar="URL",
              help="History database to look run ids up in (default: out/audit-history.sqlite).")
@click.option("--json", "as_json", is_flag=True, help="The diff as JSON.")
def diff_command(run_a: str, run_b: str, history_url_option: str | None, as_json: bool) -> None:
    """What changed between two audits of the same policy (RUN_A earlier, RUN_B later).

    Each run is a run id (or its first characters) from the history, or an output folder.
    """
    from .diff import diff_audits, load_run
    from .diff_text import diff_text
    from .errors import AuditorError
    from .history import History, history_url

    def locate(ref: str):
        if Path(ref).is_dir():
            return load_run(Path(ref))
        record = History(history_url(history_url_option, Path("out"))).get(ref)
        if record is None or not record.out:
            raise AuditorError(f"{ref}: neither an output folder nor a run id in the history",
                               hint="list runs with `auditor history`")
        return load_run(Path(record.out))

    a, b = locate(run_a), locate(run_b)
    diff = diff_audits(a[0], a[1], b[0], b[1])
    click.echo(diff.model_dump_json(indent=2) if as_json else diff_text(diff))


@cli.group()
def keys() -> None:
    """Manage signing identities."""


@keys.command("init")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--name", default="auditor development signer", show_default=True, help="Signer name (certificate CN).")
def keys_init(folder: Path, name: str) -> None:
    """Create a self-signed DEVELOPMENT identity in FOLDER (reports signed with it say: not for submission).

    Keys are encrypted when AUDITOR_SIGNING_PASSPHRASE is set. Give manifest.pub.pem and signer.cert.pem
    to whoever verifies; keep the .key.pem files private.
    """
    import os

    from .signing import PASSPHRASE_ENV, init_identity

    passphrase = os.environ.get(PASSPHRASE_ENV)
    written = init_identity(folder, name, passphrase=passphrase.encode() if passphrase else None)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo("Development identity: reports signed with it are marked NOT FOR SUBMISSION.")


@cli.command()
@click.argument("policy", type=click.Path(path_type=Path))
def validate(policy: Path) -> None:
    """Check POLICY: fields, references, files, and that each model fits its data. Reports every problem."""
    from .audit import prepare
    from .policy import load_policy

    loaded = load_policy(policy)
    prepared = prepare(loaded)
    click.echo(f"{policy}: valid. Audit {loaded.audit.id!r}: "
               + "; ".join(f"{p.model.id} on {p.dataset.spec.id} ({p.dataset.n_rows} rows)" for p in prepared)
               + f"; explanations: {', '.join(e.name for e in loaded.explanations)}.")


@cli.command()
@click.option("--model", "model", required=True, type=click.Path(path_type=Path),
              help="The model file (.skops, .pt2, .pt, .onnx, .ubj/.json, .txt) or a transformers folder.")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="The data to audit on (CSV).")
@click.option("--target", required=True, help="The column holding the true outcome.")
@click.option("--background", type=click.Path(path_type=Path), default=None,
              help="Reference data (e.g. the training data) the explainers compare with; default: the data itself.")
@click.option("--audience", type=click.Choice(["finance", "medical"]), default="medical", show_default=True)
@click.option("--task", type=click.Choice(["classification", "regression"]), default=None,
              help="What the model predicts; default: what the model file says, else what the target looks like.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), default=Path("policy.yaml"), show_default=True)
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def init(model: Path, data: Path, target: str, background: Path | None, audience: str, task: str | None, out: Path,
         force: bool) -> None:
    """Write a draft policy for a model and its data that validates as written.

    Features, their types and categories come from the data and are checked against the model; TODO marks
    what only a person can say (intended use, population, reviewers). Check it, then `auditor run` it.
    """
    from .drafts import draft_policy

    if out.exists() and not force:
        raise AuditorError(f"{out}: the file exists", hint="choose another -o, or add --force to replace it")
    for name, path in (("--model", model), ("--data", data), ("--background", background)):
        if path is not None and not path.exists():
            raise AuditorError(f"{path}: not found ({name})", hint="correct the path")
    written = draft_policy(model, data, target, out=out, background=background, audience=audience, task=task)
    click.echo(f"Wrote {written}: a draft policy that validates. Replace its TODOs, check the features and "
               f"classes, then: auditor run {written}", err=True)


@cli.command()
@click.option("--evidence", is_flag=True, help="Print the JSON Schema of evidence.json instead of the policy's.")
def schema(evidence: bool) -> None:
    """Print the JSON Schema of the policy file (for editor autocompletion)."""
    if evidence:
        from .evidence import evidence_json_schema as make
    else:
        from .policy import policy_json_schema as make
    click.echo(json.dumps(make(), indent=2))


def main() -> None:
    cli(prog_name="auditor")


if __name__ == "__main__":
    sys.exit(main())
