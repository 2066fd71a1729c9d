"""The ``auditor`` command line.

Exit codes: 0 success; 2 bad input (policy, data, model, output folder) with a message naming the
file, the field and the fix, and no traceback; 3 verification failure. Progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
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
    """A rich progress bar on stderr; one task per explainer and model."""

    def __init__(self, console, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = enabled
        self.progress = Progress(TextColumn("  {task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, disable=not enabled)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, description: str, total: int):
        task = self.progress.add_task(description, total=total)
        return lambda n: self.progress.advance(task, n)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def cli() -> None:
    """Signed, reproducible explainability audits of machine-learning models.

    \b
    Exit codes:
      0  success
      2  bad input: policy, data, model or output folder (message names the field and the fix)
      3  verification failure
    """


@cli.command()
@click.argument("policy", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: out/<policy file name>). Written atomically.")
@click.option("--sample", "sample_size", type=click.IntRange(min=1), default=None,
              help="Number of decisions to explain (overrides the policy).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=None, help="Seed (overrides the policy).")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists and is not empty.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(policy: Path, out: Path | None, sample_size: int | None, seed: int | None, force: bool, quiet: bool) -> None:
    """Run the audit POLICY describes; write report.html, report.pdf and evidence.json."""
    from .audit import prepare, run_audit
    from .evidence import evidence_json_schema
    from .output import check_destination, write_atomically
    from .policy import load_policy
    from .report import render_html, render_pdf

    console = _console()
    say = (lambda *a: None) if quiet else console.print
    started = time.perf_counter()
    loaded = load_policy(policy)
    out = out or Path("out") / policy.stem
    check_destination(out, force=force)
    say(f"[bold]auditor[/bold] {__version__}: audit [bold]{loaded.audit.id}[/bold] from {policy}")
    prepared = prepare(loaded)
    for p in prepared:
        say(f"  model {p.model.id} ({p.model.kind}) on {p.dataset.spec.id}: {p.dataset.n_rows} rows, "
            f"{len(p.dataset.space.features)} features")
    with _Progress(console, enabled=not quiet) as progress:
        evidence = run_audit(loaded, prepared, sample_size=sample_size, seed=seed, progress=progress)
    formats = loaded.report.formats
    files = {"evidence.json": evidence.to_json().encode("utf-8"),
             "evidence.schema.json": (json.dumps(evidence_json_schema(), indent=2) + "\n").encode("utf-8")}
    say("  rendering HTML")
    html = render_html(evidence, generated_at=datetime.now(timezone.utc))
    if "html" in formats:
        files["report.html"] = html.encode("utf-8")
    if "pdf" in formats:
        say("  rendering PDF")
        files["report.pdf"] = render_pdf(html)
    write_atomically(out, files, force=force)
    say(f"[green]Wrote[/green] {out}/ ({', '.join(sorted(files))}) in {time.perf_counter() - started:.1f} s")


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
