"""What changed between two audits of the same policy: inputs, performance, explanations, findings.

``a`` is the earlier (baseline) run, ``b`` the later one. ``diff_audits`` compares two runs'
evidence (and, when both are at hand, their manifests) and returns an ``AuditDiff``: a typed,
JSON-serialisable record of

- identity: both runs' audit id, run id and policy SHA-256, and whether the policy or the
  command-line overrides changed;
- inputs: each model and dataset's SHA-256 in both runs (from the manifests when both runs have
  one, otherwise from the evidence), and those present in only one run;
- per subject (matched by model id and dataset id): performance deltas, the protected features' fairness
  figures (adverse impact ratio, true- and false-positive rate gaps), the permutation-importance
  ranking (Spearman correlation over the common features, each run's top k, the features that
  entered or left the top k), the surrogate rules (fidelity, rules added and removed), decisions
  whose principal reasons changed, and decisions sampled in only one run;
- per audited dataset and background checked in both runs: the missing rate and PSI of every feature
  whose value moved, and the duplicate and overlap shares; per subject, the PSI of the model's score;
- findings whose status changed, and findings present in only one run.

``AuditDiff.changed`` is False exactly when none of these changed: a run compared with itself, or
with a byte-identical re-run, gives False. Run ids, timestamps and the environment are reported
but are not changes. Nothing here writes files or renders HTML; the terminal summary is
:func:`auditor.diff_text.diff_text`. Global explanations are compared in the form their family gives
them (:meth:`~auditor.explainers.base.Explainer.comparable`): a ranking of features, or a set of rules.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Literal, NamedTuple, Union

from pydantic import BaseModel, Field, ValidationError

from .errors import AuditorError
from .evidence import Evidence, Subject, read_evidence
from .explainers import EXPLAINERS
from .explainers.base import Ranking, RuleSet
from .fairness import FIGURES as FAIRNESS_FIGURES

__all__ = [
    "DIFF_VERSION",
    "AuditDiff",
    "DataDiff",
    "FeatureDrift",
    "FindingChange",
    "FindingRef",
    "FindingsDiff",
    "ImportanceDiff",
    "InputChange",
    "InputsDiff",
    "MetricDelta",
    "ReasonChange",
    "RulesDiff",
    "RunIdentity",
    "SubjectDiff",
    "SubjectKey",
    "diff_audits",
    "load_run",
]

DIFF_VERSION = "1"
PERFORMANCE_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "brier_score", "rmse", "mae", "r2")
TOLERANCE = 1e-12
"""Differences in a number at or below this are not changes (floating-point noise)."""

Label = Union[int, str]


# --- the typed diff --------------------------------------------------------------------------------------


class RunIdentity(BaseModel):
    audit_id: str | None
    run_id: str | None = Field(description="From manifest.json; None without one.")
    policy_sha256: str | None
    auditor_version: str | None
    seed: int | None = Field(description="The sampling seed the run used.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Command-line values that replaced the policy's.")
    finished_utc: str | None = Field(default=None, description="From manifest.json; None without one.")


class InputChange(BaseModel):
    """A model or dataset present in both runs."""

    id: str
    sha256_a: str | None
    sha256_b: str | None
    version_a: str | None = Field(default=None, description="Bundled datasets (no file): the package version.")
    version_b: str | None = None
    changed: bool


class InputsDiff(BaseModel):
    source: Literal["manifest", "evidence"] = Field(description="Where the hashes come from.")
    models: list[InputChange]
    datasets: list[InputChange]
    models_added: list[str] = Field(description="Model ids only in B.")
    models_removed: list[str] = Field(description="Model ids only in A.")
    datasets_added: list[str] = Field(description="Dataset ids only in B.")
    datasets_removed: list[str] = Field(description="Dataset ids only in A.")
    changed: bool = Field(description="Any input changed, added or removed.")


class MetricDelta(BaseModel):
    metric: str
    a: float | None
    b: float | None
    delta: float | None = Field(description="b - a; None when either is None.")

    @property
    def changed(self) -> bool:
        if self.a is None or self.b is None:
            return (self.a is None) != (self.b is None)
        return abs(self.b - self.a) > TOLERANCE


class ImportanceDiff(BaseModel):
    """One permutation-importance explanation present in both runs."""

    name: str = Field(description="The explanation's name in the policy.")
    scoring_a: str
    scoring_b: str
    common_features: int
    features_only_a: list[str]
    features_only_b: list[str]
    rank_correlation: float | None = Field(
        description="Spearman correlation of the mean importances over the common features; None if undefined."
    )
    max_abs_change: float | None = Field(description="Largest |B - A| of a common feature's mean importance.")
    top_a: list[str] = Field(description="A's top k features by mean importance, most important first.")
    top_b: list[str]
    entered: list[str] = Field(description="In B's top k, not in A's.")
    left: list[str] = Field(description="In A's top k, not in B's.")
    changed: bool


class RulesDiff(BaseModel):
    """One surrogate-rules explanation present in both runs."""

    name: str
    fidelity: MetricDelta
    rules_a: int
    rules_b: int
    added: list[str] = Field(description="Rule texts only in B.")
    removed: list[str] = Field(description="Rule texts only in A.")
    changed: bool


class ReasonChange(BaseModel):
    """A decision in both runs whose principal reasons (ordered features) differ."""

    id: Label
    predicted_a: Label
    predicted_b: Label
    features_a: list[str]
    features_b: list[str]
    reasons_a: list[str] = Field(description="A's reason texts, in rank order (empty: no reasons).")
    reasons_b: list[str]


class SubjectKey(BaseModel):
    model: str
    dataset: str


class SubjectDiff(BaseModel):
    model: str
    dataset: str
    performance: list[MetricDelta]
    importance: list[ImportanceDiff]
    rules: list[RulesDiff]
    explanations_only_a: list[str] = Field(description="Global explanations only in A.")
    explanations_only_b: list[str]
    reasons_changed: list[ReasonChange]
    decisions_only_a: list[Label]
    decisions_only_b: list[Label]
    score_psi: MetricDelta | None = Field(default=None, description="PSI of the model's score, audited vs background.")
    fairness: list[MetricDelta] = Field(default_factory=list, description="The protected features' figures in both "
                                        "runs, e.g. 'adverse_impact_ratio by age' (see auditor.fairness.FIGURES).")
    changed: bool


class FeatureDrift(BaseModel):
    """A feature whose missing rate or PSI differs between the runs."""

    feature: str
    missing_rate: MetricDelta
    psi: MetricDelta


class DataDiff(BaseModel):
    """One audited dataset and its background, checked in both runs (see auditor.data_checks)."""

    dataset: str
    background: str
    features: list[FeatureDrift] = Field(description="Only the features whose missing rate or PSI moved.")
    duplicate_share: MetricDelta
    overlap_share: MetricDelta
    changed: bool


class FindingRef(BaseModel):
    id: str
    model: str | None
    metric: str | None
    status: str
    value: float | None


class FindingChange(BaseModel):
    id: str
    model: str | None
    metric: str | None
    status_a: str
    status_b: str
    value_a: float | None
    value_b: float | None


class FindingsDiff(BaseModel):
    changed: list[FindingChange] = Field(default_factory=list, description="Findings whose status changed.")
    added: list[FindingRef] = Field(default_factory=list, description="Findings only in B.")
    removed: list[FindingRef] = Field(default_factory=list, description="Findings only in A.")

    @property
    def has_changes(self) -> bool:
        return bool(self.changed or self.added or self.removed)


class AuditDiff(BaseModel):
    diff_version: Literal["1"] = DIFF_VERSION
    top_k: int
    a: RunIdentity = Field(description="The earlier (baseline) run.")
    b: RunIdentity = Field(description="The later run.")
    same_audit: bool = Field(description="Both runs have the same audit id.")
    policy_changed: bool = Field(description="The policy files' SHA-256 differ.")
    overrides_changed: bool = Field(description="The command-line overrides (--sample, --seed) differ.")
    inputs: InputsDiff
    subjects: list[SubjectDiff] = Field(description="(model, dataset) pairs audited in both runs.")
    subjects_added: list[SubjectKey] = Field(description="Pairs audited only in B.")
    subjects_removed: list[SubjectKey] = Field(description="Pairs audited only in A.")
    data: list[DataDiff] = Field(default_factory=list, description="Data checks present in both runs.")
    findings: FindingsDiff
    changed: bool = Field(description="False exactly when nothing above changed.")


# --- loading ---------------------------------------------------------------------------------------------


def load_run(folder: str | Path) -> tuple[Evidence, dict | None]:
    """A run's evidence and, when the folder has one, its manifest."""
    folder = Path(folder)
    hint = "give an output folder written by `auditor run` (it holds evidence.json and manifest.json)"
    if not folder.is_dir():
        raise AuditorError(f"{folder}: no such folder", hint=hint)
    evidence_file = folder / "evidence.json"
    if not evidence_file.is_file():
        raise AuditorError(f"{folder}: no evidence.json, so this is not an audit output folder", hint=hint)
    try:
        evidence = read_evidence(evidence_file)
    except (ValidationError, ValueError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise AuditorError(f"{evidence_file}: not valid evidence ({first})",
                           hint="re-run the audit; evidence.json may be damaged or from another auditor version") from None
    manifest = None
    manifest_file = folder / "manifest.json"
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuditorError(f"{manifest_file}: not valid JSON ({exc})",
                               hint="re-run the audit, or remove manifest.json to compare the evidence alone") from None
        if not isinstance(manifest, dict):
            raise AuditorError(f"{manifest_file}: not a manifest (expected a JSON object)",
                               hint="re-run the audit, or remove manifest.json to compare the evidence alone")
    return evidence, manifest


# --- comparing -------------------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _delta(metric: str, a: Any, b: Any) -> MetricDelta:
    a, b = _num(a), _num(b)
    return MetricDelta(metric=metric, a=a, b=b, delta=None if a is None or b is None else b - a)


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute access that also takes a mapping (findings read from plain JSON)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _identity(evidence: Evidence, manifest: dict | None) -> RunIdentity:
    m = manifest or {}
    inputs = m.get("inputs") or {}
    seed = inputs.get("seed")
    if seed is None and evidence.subjects:
        seed = evidence.subjects[0].sample.seed
    return RunIdentity(
        audit_id=evidence.audit.get("id") or m.get("audit_id"),
        run_id=m.get("run_id"),
        policy_sha256=evidence.policy_sha256 or (inputs.get("policy") or {}).get("sha256"),
        auditor_version=evidence.auditor_version,
        seed=seed,
        overrides=dict(evidence.overrides),
        finished_utc=m.get("finished_utc"),
    )


def _inputs_from_manifest(manifest: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    inputs = manifest.get("inputs") or {}
    models = {str(x["id"]): {"sha256": x.get("sha256")} for x in inputs.get("models") or [] if "id" in x}
    datasets = {str(x["id"]): {"sha256": x.get("sha256"), "version": x.get("version")}
                for x in inputs.get("datasets") or [] if "id" in x}
    return models, datasets


def _inputs_from_evidence(evidence: Evidence) -> tuple[dict[str, dict], dict[str, dict]]:
    models: dict[str, dict] = {}
    datasets: dict[str, dict] = {}
    for s in evidence.subjects:
        models.setdefault(s.model.id, {"sha256": s.model.sha256})
        datasets.setdefault(s.dataset.id, {"sha256": s.dataset.sha256,
                                           "version": None if s.dataset.sha256 else s.dataset.source})
    return models, datasets


def _compare_inputs(a: dict[str, dict], b: dict[str, dict]) -> tuple[list[InputChange], list[str], list[str]]:
    both = [k for k in a if k in b]
    changes = [
        InputChange(id=k, sha256_a=a[k].get("sha256"), sha256_b=b[k].get("sha256"),
                    version_a=a[k].get("version"), version_b=b[k].get("version"),
                    changed=(a[k].get("sha256"), a[k].get("version")) != (b[k].get("sha256"), b[k].get("version")))
        for k in both
    ]
    return changes, [k for k in b if k not in a], [k for k in a if k not in b]


def _diff_inputs(a_ev: Evidence, a_man: dict | None, b_ev: Evidence, b_man: dict | None) -> InputsDiff:
    if a_man is not None and b_man is not None:
        source = "manifest"
        (am, ad), (bm, bd) = _inputs_from_manifest(a_man), _inputs_from_manifest(b_man)
    else:
        source = "evidence"
        (am, ad), (bm, bd) = _inputs_from_evidence(a_ev), _inputs_from_evidence(b_ev)
    models, m_added, m_removed = _compare_inputs(am, bm)
    datasets, d_added, d_removed = _compare_inputs(ad, bd)
    changed = bool(any(m.changed for m in models) or any(d.changed for d in datasets)
                   or m_added or m_removed or d_added or d_removed)
    return InputsDiff(source=source, models=models, datasets=datasets, models_added=m_added,
                      models_removed=m_removed, datasets_added=d_added, datasets_removed=d_removed, changed=changed)


def _top(means: dict[str, float], k: int) -> list[str]:
    order = list(means)
    return sorted(order, key=lambda f: (-means[f], order.index(f)))[:k]


def _spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 2:
        return None
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan
        rho = spearmanr(x, y).statistic
    return _num(rho)


def _diff_importance(name: str, a: Ranking, b: Ranking, top_k: int) -> ImportanceDiff:
    ma, mb = dict(a.scores), dict(b.scores)
    common = [f for f in ma if f in mb]
    only_a = [f for f in ma if f not in mb]
    only_b = [f for f in mb if f not in ma]
    rho = _spearman([ma[f] for f in common], [mb[f] for f in common])
    max_change = max((abs(mb[f] - ma[f]) for f in common), default=None)
    top_a, top_b = _top(ma, top_k), _top(mb, top_k)
    entered = [f for f in top_b if f not in top_a]
    left = [f for f in top_a if f not in top_b]
    changed = bool(only_a or only_b or top_a != top_b or (max_change is not None and max_change > TOLERANCE)
                   or a.scoring != b.scoring)
    return ImportanceDiff(name=name, scoring_a=a.scoring, scoring_b=b.scoring, common_features=len(common),
                          features_only_a=only_a, features_only_b=only_b, rank_correlation=rho,
                          max_abs_change=_num(max_change), top_a=top_a, top_b=top_b, entered=entered, left=left,
                          changed=changed)


def _diff_rules(name: str, a: RuleSet, b: RuleSet) -> RulesDiff:
    texts_a, texts_b = list(a.rules), list(b.rules)
    added = [t for t in dict.fromkeys(texts_b) if t not in set(texts_a)]
    removed = [t for t in dict.fromkeys(texts_a) if t not in set(texts_b)]
    fidelity = _delta("fidelity", a.fidelity, b.fidelity)
    return RulesDiff(name=name, fidelity=fidelity, rules_a=len(a.rules), rules_b=len(b.rules), added=added,
                     removed=removed, changed=bool(fidelity.changed or added or removed))


def _comparable(subject: Subject, name: str, result):
    """A global result in the comparable form its family gives (None for a family not registered here)."""
    family = EXPLAINERS.get(next((m.type for m in subject.methods if m.name == name), ""))
    return None if family is None else family.comparable(result)


class _Brief(NamedTuple):
    """What the diff compares of a decision: an audit's decisions may be on disk, and are read once."""

    id: Any
    predicted_label: Any
    principal_reasons: Any


def _reason_lists(decision) -> tuple[list[str], list[str]]:
    pr = decision.principal_reasons
    if pr is None:
        return [], []
    reasons = sorted(pr.reasons, key=lambda r: r.rank)
    return [r.feature for r in reasons], [r.text for r in reasons]


def _diff_fairness(a: Subject, b: Subject) -> list[MetricDelta]:
    """Each fairness figure of each protected feature either run measures, by feature."""
    fa, fb = getattr(a, "fairness", None), getattr(b, "fairness", None)
    features_a = {f.feature: f for f in (fa.features if fa else [])}
    features_b = {f.feature: f for f in (fb.features if fb else [])}
    return [_delta(f"{name} by {feature}", getattr(features_a.get(feature), field, None),
                   getattr(features_b.get(feature), field, None))
            for feature in list(features_a) + [f for f in features_b if f not in features_a]
            for name, (field, _) in FAIRNESS_FIGURES.items()]


def _diff_subject(a: Subject, b: Subject, top_k: int) -> SubjectDiff:
    performance = [_delta(m, getattr(a.performance, m, None), getattr(b.performance, m, None))
                   for m in PERFORMANCE_METRICS if hasattr(a.performance, m) or hasattr(b.performance, m)]
    fairness = _diff_fairness(a, b)

    importance, rules = [], []
    for name, ra in a.global_explanations.items():
        rb = b.global_explanations.get(name)
        if rb is None:
            continue
        ca, cb = _comparable(a, name, ra), _comparable(b, name, rb)
        if isinstance(ca, Ranking) and isinstance(cb, Ranking):
            importance.append(_diff_importance(name, ca, cb, top_k))
        elif isinstance(ca, RuleSet) and isinstance(cb, RuleSet):
            rules.append(_diff_rules(name, ca, cb))
    only_a = [n for n in a.global_explanations if n not in b.global_explanations]
    only_b = [n for n in b.global_explanations if n not in a.global_explanations]

    da = {str(d.id): _Brief(d.id, d.predicted_label, d.principal_reasons) for d in a.decisions}
    db = {str(d.id): _Brief(d.id, d.predicted_label, d.principal_reasons) for d in b.decisions}
    reasons_changed = []
    for key, dec_a in da.items():
        dec_b = db.get(key)
        if dec_b is None or (dec_a.principal_reasons is None and dec_b.principal_reasons is None):
            continue
        (fa, ta), (fb, tb) = _reason_lists(dec_a), _reason_lists(dec_b)
        if fa != fb or (dec_a.principal_reasons is None) != (dec_b.principal_reasons is None):
            reasons_changed.append(ReasonChange(id=dec_a.id, predicted_a=dec_a.predicted_label,
                                                predicted_b=dec_b.predicted_label, features_a=fa, features_b=fb,
                                                reasons_a=ta, reasons_b=tb))
    decisions_only_a = [d.id for k, d in da.items() if k not in db]
    decisions_only_b = [d.id for k, d in db.items() if k not in da]

    stability_a, stability_b = getattr(a, "score_stability", None), getattr(b, "score_stability", None)
    score_psi = None if stability_a is None and stability_b is None else _delta(
        "score_psi", stability_a.psi if stability_a else None, stability_b.psi if stability_b else None)
    changed = bool(any(p.changed for p in performance + fairness) or any(i.changed for i in importance)
                   or any(r.changed for r in rules) or only_a or only_b or reasons_changed
                   or decisions_only_a or decisions_only_b or (score_psi is not None and score_psi.changed))
    return SubjectDiff(model=a.model.id, dataset=a.dataset.id, performance=performance, importance=importance,
                       rules=rules, explanations_only_a=only_a, explanations_only_b=only_b,
                       reasons_changed=reasons_changed, decisions_only_a=decisions_only_a,
                       decisions_only_b=decisions_only_b, score_psi=score_psi, fairness=fairness, changed=changed)


def _diff_data(a: Evidence, b: Evidence) -> list[DataDiff]:
    """Missingness and population stability of each dataset checked in both runs (evidence 1.2 on)."""
    checks_b = {(c.dataset, c.background): c for c in getattr(b, "data_checks", None) or []}
    out = []
    for ca in getattr(a, "data_checks", None) or []:
        cb = checks_b.get((ca.dataset, ca.background))
        if cb is None:
            continue
        features_b = {f.name: f for f in cb.features}
        drift = []
        for fa in ca.features:
            fb = features_b.get(fa.name)
            if fb is None:
                continue
            item = FeatureDrift(feature=fa.name, missing_rate=_delta("missing_rate", fa.missing_rate, fb.missing_rate),
                                psi=_delta("psi", fa.stability.psi if fa.stability else None,
                                           fb.stability.psi if fb.stability else None))
            if item.missing_rate.changed or item.psi.changed:
                drift.append(item)
        duplicates = _delta("duplicate_share", ca.duplicate_share, cb.duplicate_share)
        overlap = _delta("overlap_share", ca.overlap_share, cb.overlap_share)
        out.append(DataDiff(dataset=ca.dataset, background=ca.background, features=drift, duplicate_share=duplicates,
                            overlap_share=overlap, changed=bool(drift or duplicates.changed or overlap.changed)))
    return out


def _findings(evidence: Evidence) -> dict[tuple[str, str | None, int], Any]:
    """Findings keyed by (id, model, occurrence): one model audited on two datasets repeats an (id, model)."""
    out: dict[tuple[str, str | None, int], Any] = {}
    for f in getattr(evidence, "findings", None) or []:
        key = (str(_attr(f, "id")), _attr(f, "model"))
        n = sum(1 for k in out if k[:2] == key)
        out[(*key, n)] = f
    return out


def _finding_ref(f: Any) -> FindingRef:
    return FindingRef(id=str(_attr(f, "id")), model=_attr(f, "model"), metric=_attr(f, "metric"),
                      status=str(_attr(f, "status")), value=_num(_attr(f, "value")))


def _diff_findings(a: Evidence, b: Evidence) -> FindingsDiff:
    fa, fb = _findings(a), _findings(b)
    changed = []
    for key, x in fa.items():
        y = fb.get(key)
        if y is not None and str(_attr(x, "status")) != str(_attr(y, "status")):
            changed.append(FindingChange(id=key[0], model=key[1], metric=_attr(y, "metric") or _attr(x, "metric"),
                                         status_a=str(_attr(x, "status")), status_b=str(_attr(y, "status")),
                                         value_a=_num(_attr(x, "value")), value_b=_num(_attr(y, "value"))))
    return FindingsDiff(changed=changed,
                        added=[_finding_ref(f) for k, f in fb.items() if k not in fa],
                        removed=[_finding_ref(f) for k, f in fa.items() if k not in fb])


def diff_audits(a_evidence: Evidence, a_manifest: dict | None, b_evidence: Evidence, b_manifest: dict | None,
                *, top_k: int = 5) -> AuditDiff:
    """What changed from run ``a`` (the baseline) to run ``b``."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1 (got {top_k})")
    ida, idb = _identity(a_evidence, a_manifest), _identity(b_evidence, b_manifest)
    same_audit = ida.audit_id == idb.audit_id
    policy_changed = ida.policy_sha256 != idb.policy_sha256
    overrides_changed = ida.overrides != idb.overrides
    inputs = _diff_inputs(a_evidence, a_manifest, b_evidence, b_manifest)

    sa = {(s.model.id, s.dataset.id): s for s in a_evidence.subjects}
    sb = {(s.model.id, s.dataset.id): s for s in b_evidence.subjects}
    subjects = [_diff_subject(s, sb[k], top_k) for k, s in sa.items() if k in sb]
    added = [SubjectKey(model=k[0], dataset=k[1]) for k in sb if k not in sa]
    removed = [SubjectKey(model=k[0], dataset=k[1]) for k in sa if k not in sb]
    findings = _diff_findings(a_evidence, b_evidence)
    data = _diff_data(a_evidence, b_evidence)

    changed = bool(not same_audit or policy_changed or overrides_changed or inputs.changed
                   or any(s.changed for s in subjects) or added or removed or findings.has_changes
                   or any(d.changed for d in data))
    return AuditDiff(top_k=top_k, a=ida, b=idb, same_audit=same_audit, policy_changed=policy_changed,
                     overrides_changed=overrides_changed, inputs=inputs, subjects=subjects, subjects_added=added,
                     subjects_removed=removed, data=data, findings=findings, changed=changed)
