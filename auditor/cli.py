"""The ``auditor`` command line.

Exit codes: 0 success; 2 bad input (policy, data, model, output folder) with a message naming the
file, the field and the fix, and no traceback; 3 verification failure. Progress goes to stderr.
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


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class _Progress:
    """Progress on stderr: a rich bar per explainer and model on a terminal; one line per finished
    task otherwise (logs of scheduled runs stay readable and in order)."""

    def __init__(self, console, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress = Progress(TextColumn("  {task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, disable=not self.live)

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
      0  success
      2  bad input: policy, data, model, signing identity or output folder
         (the message names the file, the field and the fix)
      3  verification failure (verify, rerun)
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
@click.option("--force", is_flag=True, help="Replace the output folder if it exists and is not empty.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(policy: Path, out: Path | None, sample_size: int | None, seed: int | None, identity: Path | None,
        force: bool, quiet: bool) -> None:
    """Run the audit POLICY describes.

    Writes report.html, report.pdf, evidence.json, the policy, and manifest.json (SHA-256 of every
    input and output), signed (manifest.sig, PDF signature) when a signing identity is given.
    """
    from .pipeline import execute

    console = _console()
    say = (lambda *a: None) if quiet else console.print
    started = time.perf_counter()
    out = out or Path("out") / policy.stem
    say(f"[bold]auditor[/bold] {__version__}: {policy}")
    with _Progress(console, enabled=not quiet) as progress:
        outcome = execute(policy, out=out, sample_size=sample_size, seed=seed, force=force, identity_dir=identity,
                          progress=progress, say=say)
    state = "signed" if outcome.signed else "[yellow]unsigned[/yellow] (no --identity)"
    say(f"[green]Wrote[/green] {out}/ ({', '.join(outcome.files)}), {state}, in {time.perf_counter() - started:.1f} s")


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
