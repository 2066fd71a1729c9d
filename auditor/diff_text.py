"""The terminal summary of an :class:`~auditor.diff.AuditDiff`: a header line, then only what changed."""

from __future__ import annotations

from .diff import AuditDiff, RunIdentity
from .numbers import listed

__all__ = ["diff_text"]


def _f(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _signed(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def _short(sha: str | None) -> str:
    return "none" if not sha else sha[:12]


def _listed(mark: str, texts: list[str], limit: int = 10) -> list[str]:
    out = [f"    {mark} {t}" for t in texts[:limit]]
    return out + ([f"    {mark} ... and {len(texts) - limit} more"] if len(texts) > limit else [])


def _run_name(r: RunIdentity) -> str:
    return f"run {r.run_id[:8]}" if r.run_id else "run (no manifest)"


def _overrides(o: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(o.items())) or "none"


def diff_text(diff: AuditDiff) -> str:
    """A compact, human-readable summary: a header line, then only what changed."""
    a, b = diff.a, diff.b
    audit = a.audit_id if diff.same_audit else f"{a.audit_id} → {b.audit_id}"
    lines = [f"Audit diff {audit}: A {_run_name(a)} → B {_run_name(b)}"
             + (f" (auditor {a.auditor_version} → {b.auditor_version})" if a.auditor_version != b.auditor_version else "")]
    if not diff.changed:
        lines.append("No change.")
        return "\n".join(lines) + "\n"

    if not diff.same_audit:
        lines.append(f"Audit id changed: {a.audit_id} → {b.audit_id}")
    if diff.policy_changed:
        lines.append(f"Policy changed: sha256 {_short(a.policy_sha256)} → {_short(b.policy_sha256)}")
    if diff.overrides_changed:
        lines.append(f"Overrides changed: {_overrides(a.overrides)} → {_overrides(b.overrides)}")

    inp = diff.inputs
    if inp.changed:
        lines.append(f"Inputs (from {inp.source}):")
        for kind, changes, added, removed in (("model", inp.models, inp.models_added, inp.models_removed),
                                              ("dataset", inp.datasets, inp.datasets_added, inp.datasets_removed)):
            for c in changes:
                if c.changed:
                    was = _short(c.sha256_a) if c.sha256_a or not c.version_a else c.version_a
                    now = _short(c.sha256_b) if c.sha256_b or not c.version_b else c.version_b
                    lines.append(f"  {kind} {c.id}: changed ({was} → {now})")
            lines += [f"  {kind} {x}: added (only in B)" for x in added]
            lines += [f"  {kind} {x}: removed (only in A)" for x in removed]

    for d in diff.data:
        if not d.changed:
            continue
        lines.append(f"Data {d.dataset} against {d.background}:")
        for f in d.features:
            parts = []
            if f.missing_rate.changed:
                parts.append(f"missing {_f(f.missing_rate.a, 3)} → {_f(f.missing_rate.b, 3)}")
            if f.psi.changed:
                parts.append(f"PSI {_f(f.psi.a, 3)} → {_f(f.psi.b, 3)}")
            lines.append(f"  {f.feature}: " + "; ".join(parts))
        for m in (d.duplicate_share, d.overlap_share):
            if m.changed:
                lines.append(f"  {m.metric.replace('_', ' ')}: {_f(m.a, 3)} → {_f(m.b, 3)}")

    for s in diff.subjects:
        if not s.changed:
            continue
        lines.append(f"Model {s.model} on {s.dataset}:")
        if s.score_psi is not None and s.score_psi.changed:
            lines.append(f"  score PSI: {_f(s.score_psi.a, 3)} → {_f(s.score_psi.b, 3)}")
        perf = [p for p in s.performance if p.changed]
        if perf:
            lines.append("  performance: " + "; ".join(
                f"{p.metric} {_f(p.a)} → {_f(p.b)} ({_signed(p.delta)})" for p in perf))
        moved = [p for p in s.fairness if p.changed]
        if moved:
            lines.append("  fairness: " + "; ".join(
                f"{p.metric} {_f(p.a)} → {_f(p.b)}" + (f" ({_signed(p.delta)})" if p.delta is not None else "")
                for p in moved))
        for i in s.importance:
            if not i.changed:
                continue
            rho = "undefined" if i.rank_correlation is None else f"{i.rank_correlation:.3f}"
            lines.append(f"  {i.name}: rank correlation {rho} over {i.common_features} features"
                         + (f", largest change {i.max_abs_change:.4f}" if i.max_abs_change else ""))
            if i.top_a != i.top_b:
                lines.append(f"    top {diff.top_k} A: {', '.join(i.top_a)}")
                lines.append(f"    top {diff.top_k} B: {', '.join(i.top_b)}")
            if i.entered:
                lines.append(f"    entered top {diff.top_k}: {', '.join(i.entered)}")
            if i.left:
                lines.append(f"    left top {diff.top_k}: {', '.join(i.left)}")
            if i.features_only_a:
                lines.append(f"    features only in A: {', '.join(i.features_only_a)}")
            if i.features_only_b:
                lines.append(f"    features only in B: {', '.join(i.features_only_b)}")
            if i.scoring_a != i.scoring_b:
                lines.append(f"    scoring: {i.scoring_a} → {i.scoring_b}")
        for r in s.rules:
            if not r.changed:
                continue
            fid = r.fidelity
            lines.append(f"  {r.name}: fidelity {_f(fid.a, 3)} → {_f(fid.b, 3)} ({_signed(fid.delta, 3)}); "
                         f"{r.rules_a} → {r.rules_b} rules, {len(r.added)} added, {len(r.removed)} removed")
            lines += _listed("+", r.added)
            lines += _listed("-", r.removed)
        if s.explanations_only_a:
            lines.append(f"  explanations only in A: {', '.join(s.explanations_only_a)}")
        if s.explanations_only_b:
            lines.append(f"  explanations only in B: {', '.join(s.explanations_only_b)}")
        if s.reasons_changed:
            n = len(s.reasons_changed)
            lines.append(f"  principal reasons changed for {n} decision{'s' if n != 1 else ''}:")
            for c in s.reasons_changed:
                label = f" (predicted {c.predicted_a} → {c.predicted_b})" if c.predicted_a != c.predicted_b else ""
                lines.append(f"    {c.id}{label}: {'; '.join(c.reasons_a) or '(no reasons)'} → "
                             f"{'; '.join(c.reasons_b) or '(no reasons)'}")
        if s.decisions_only_a:
            lines.append(f"  decisions only in A ({len(s.decisions_only_a)}): {listed(s.decisions_only_a, 10)}")
        if s.decisions_only_b:
            lines.append(f"  decisions only in B ({len(s.decisions_only_b)}): {listed(s.decisions_only_b, 10)}")

    for k in diff.subjects_added:
        lines.append(f"Model {k.model} on {k.dataset}: audited only in B")
    for k in diff.subjects_removed:
        lines.append(f"Model {k.model} on {k.dataset}: audited only in A")

    fd = diff.findings
    if fd.has_changes:
        lines.append("Findings:")
        for c in fd.changed:
            who = f" ({c.model})" if c.model else ""
            lines.append(f"  {c.id}{who}: {c.status_a} → {c.status_b} (value {_f(c.value_a)} → {_f(c.value_b)})")
        for f in fd.added:
            who = f" ({f.model})" if f.model else ""
            lines.append(f"  {f.id}{who}: added, {f.status} (value {_f(f.value)})")
        for f in fd.removed:
            who = f" ({f.model})" if f.model else ""
            lines.append(f"  {f.id}{who}: removed, was {f.status} (value {_f(f.value)})")
    return "\n".join(lines) + "\n"
