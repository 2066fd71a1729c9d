"""Run an audit: load and check every input, sample decisions, explain them, collect evidence.

``prepare`` loads datasets and models and checks they fit together, collecting every problem;
``run_audit`` computes the evidence for a :class:`~auditor.plan.RunPlan`. Neither renders nor writes
files. What differs between kinds of data is asked of the subject's modality; what differs between
explanation families is asked of the family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import __version__
from .agreement import decision_agreement, summarize_agreement
from .data_checks import check_data, score_observations, score_stability
from .datasets import Dataset, python_label
from .errors import AuditorError, DataError, ModelError, PolicyError, Problem
from .evidence import DatasetInfo, Evidence, FeatureInfo, ModelInfo, SampleInfo, SkippedMethod, evidence_types
from .executors import Executor, LocalExecutor
from .explainers import EXPLAINERS, Adverse, Batch, Observation
from .fairness import assess_fairness
from .findings import evaluate
from .formats import caught
from .modalities import Modality, modality_of
from .models import ModelAdapter, file_sha256
from .performance import measure_groups, measure_performance, measure_regression, measure_regression_groups
from .plan import RunPlan
from .policy import AuditedPair, Policy, canonical_json
from .reasons import PrincipalReasons, derive_reasons, summarize_reasons, used_features
from .numbers import listed
from .sampling import draw_sample
from .spill import Spilled
from .yaml_lines import line_of, policy_lines

__all__ = ["Prepared", "ProgressFactory", "prepare", "run_audit"]

ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""Starts a progress task (description, total) and returns its ``advance(n)`` callable."""

@dataclass
class Prepared:
    """One audited (model, dataset) pair, loaded and checked."""

    pair: AuditedPair
    model: ModelAdapter
    dataset: Dataset
    background: Dataset
    modality: Modality


def prepare(policy: Policy) -> list[Prepared]:
    """Load every dataset and model the policy audits and check they fit; report every problem at once.
    Library warnings raised while reading the data go into the warnings of the models audited on it."""
    with caught() as seen:
        prepared = _prepare(policy)
    for p in prepared:
        p.model.warnings.extend(t for t in (f"Reading the data: {w}" for w in seen.texts) if t not in p.model.warnings)
    return prepared


def _prepare(policy: Policy) -> list[Prepared]:
    lines = policy_lines(policy.file)
    file = str(policy.file)
    problems: list[Problem] = []

    def problem(kind: str, item_id: str, exc: AuditorError) -> None:
        index = next(i for i, x in enumerate(getattr(policy, kind)) if x.id == item_id)
        problems.append(Problem(file, f"{kind}[{index}]", exc.message, exc.hint, lines.get((kind, index))))

    numeric = {d for p in policy.audited if policy.model(p.model).task == "regression"
               for d in (p.dataset, p.background) if d}  # the policy's checks keep these apart from classifiers'
    datasets: dict[str, Dataset] = {}
    for pair in policy.audited:
        if pair.dataset not in datasets:
            try:
                datasets[pair.dataset] = _load_dataset(policy.dataset(pair.dataset), policy,
                                                       numeric_target=pair.dataset in numeric)
            except DataError as exc:
                problem("datasets", pair.dataset, exc)
                datasets[pair.dataset] = None  # type: ignore[assignment]
    backgrounds: dict[tuple[str, str], Dataset] = {}
    prepared: list[Prepared] = []
    for pair in policy.audited:
        dataset = datasets[pair.dataset]
        if dataset is None:
            continue
        bg_id = pair.background or pair.dataset
        key = (bg_id, pair.dataset)
        if bg_id == pair.dataset:
            backgrounds[key] = dataset
        elif key not in backgrounds:
            try:
                backgrounds[key] = _load_dataset(policy.dataset(bg_id), policy, like=dataset,
                                                 numeric_target=bg_id in numeric)
            except DataError as exc:
                problem("datasets", bg_id, exc)
                backgrounds[key] = None  # type: ignore[assignment]
        try:  # checked even when the background failed, so every problem is reported at once
            model = modality_of(dataset.spec).load_model(policy.model(pair.model), policy, dataset,
                                                         background=backgrounds[key])
        except ModelError as exc:
            problem("models", pair.model, exc)
            continue
        model.adverse = adverse_outcome(model, policy)
        for i, spec in enumerate(policy.explanations):
            cls = EXPLAINERS[spec.type]
            if spec.models is not None and pair.model in spec.models and cls.not_applicable(model):
                problems.append(Problem(file, f"explanations[{i}].models", cls.not_applicable(model),
                                        "remove the model from this explanation", line_of(("explanations", i, "models"), lines)))
            elif (spec.models is None or pair.model in spec.models) and cls.applies_to(model):
                for field, message, fix in cls.check(spec, model):
                    loc = ("explanations", i, *field.replace("[", ".").replace("]", "").split("."))
                    problems.append(Problem(file, f"explanations[{i}].{field}", message, fix,
                                            line_of(loc, lines)))
        if backgrounds[key] is not None:
            prepared.append(Prepared(pair, model, dataset, backgrounds[key], modality_of(dataset.spec)))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise PolicyError(unique)
    return prepared


def _load_dataset(spec, policy, like=None, numeric_target: bool = False):
    """A dataset of any kind; a background must be of the same kind as the data it serves. ``numeric_target``:
    a regression model is audited on it (tabular only, by the policy's checks)."""
    modality = modality_of(spec)
    if like is not None and modality is not modality_of(like.spec):
        raise DataError(f"datasets[{spec.id}]: a {modality.name} dataset cannot be the background of a "
                        f"{modality_of(like.spec).name} one", hint="use a dataset of the same kind")
    if numeric_target:
        return modality.load_dataset(spec, policy, like=like, numeric_target=True)
    return modality.load_dataset(spec, policy, like=like)


def run_audit(plan: RunPlan, prepared: list[Prepared], *, progress: ProgressFactory | None = None,
              executor: Executor | None = None) -> Evidence:
    """Compute the evidence for every audited pair. Deterministic for the same plan and inputs, whichever
    ``executor`` runs the explainers (default: this process)."""
    policy = plan.policy
    executor = executor or LocalExecutor()
    checks = {}
    for p in prepared:  # one check per audited dataset and background, before any explanation
        key = (p.dataset.spec.id, p.background.spec.id)
        if p.modality.checks_data and key not in checks:
            checks[key] = check_data(p.dataset, p.background, policy.data_checks)
    with caught() as seen:  # library warnings are recorded in the evidence, never printed
        subjects = [_audit_subject(plan, p, progress, executor) for p in prepared]
    raised = sorted(set(seen.texts) | set(executor.warnings))  # the same list whichever executor explained
    policy_dump = canonical_json(policy)
    evidence = evidence_types().Evidence(
        auditor_version=__version__,
        policy_sha256=policy.sha256,
        audit=policy_dump["audit"],
        policy=policy_dump,
        overrides=dict(plan.overrides),
        data_checks=list(checks.values()),
        subjects=subjects,
        warnings=[w for p in prepared for w in p.model.warnings] + [
            f"A library warned while the audit ran (recorded here once, not shown on the terminal): {t}" for t in raised],
    )
    evidence.findings = evaluate(policy, evidence)
    evidence.finding_counts = {k: sum(f.status == k for f in evidence.findings) for k in ("pass", "warn", "fail")}
    return evidence


def _audit_subject(plan: RunPlan, prep: Prepared, progress: ProgressFactory | None, executor: Executor):
    """One audited (model, dataset) pair: performance, the sample, every explanation, the decisions."""
    model, data, modality = prep.model, prep.dataset, prep.modality
    proba = model.outputs(modality.inputs(data))  # class probabilities, or a regression model's score
    if model.regression:
        performance = measure_regression(proba[:, 0], data.y, model.spec.decision, spec=plan.policy.performance,
                                         seed=plan.seed)
    else:
        performance = measure_performance(proba, data.y, model.classes, model.class_names, model.positive_index,
                                          spec=plan.policy.performance, seed=plan.seed)
    sample = draw_sample(plan.strategy, plan.sample_size, plan.seed, y_true=data.y, proba=proba,
                         classes=model.classes, ids=data.ids, regression=model.regression,
                         decision=getattr(model.spec, "decision", None))
    rows = sample.rows
    batch = modality.batch(data, rows)
    local, global_results, methods, explainers, skipped = _run_explainers(plan, prep, batch, progress, executor)
    families = {m.name: EXPLAINERS[m.type] for m in methods}
    decisions, used, reason_methods = _decisions(plan, prep, rows, proba, local, families, skipped)
    _rerun_reasons(plan, prep, rows, decisions, families, explainers, reason_methods, used, executor)
    ids = [d.id for d in decisions]
    observations: list[Observation] = []
    for m in methods:  # each family's summary and observations, in the policy's order
        results = local[m.name] if m.scope == "local" else global_results[m.name]
        m.summary, raised = explainers[m.name].summarize(m.name, model.id, results, ids, m.parameters)
        observations.extend(raised)
        if m.scope == "local":
            m.groups = _method_groups(plan.policy, explainers[m.name], m.name, results, data, modality, rows)
    reasons = None
    if plan.policy.principal_reasons is not None:
        reasons, raised = summarize_reasons(model.id, decisions, reason_methods,
                                            min_overlap=plan.policy.principal_reasons.min_overlap,
                                            repeats=plan.policy.principal_reasons.stability_repeats)
        observations.extend(raised)
    agreement, raised = summarize_agreement(model.id, decisions, min_shared=plan.policy.agreement.min_shared)
    observations.extend(raised)
    observations.extend(_sample_observations(model.id, decisions, sample.note, skipped))
    stability = None
    if modality.checks_data and prep.background is not data:
        background_proba = model.outputs(modality.inputs(prep.background))
        stability = score_stability(proba[:, model.positive_index], background_proba[:, model.positive_index],
                                    plan.policy.data_checks)
        observations.extend(score_observations(model.id, data.spec.id, prep.background.spec.id, stability,
                                               plan.policy.data_checks))
    fairness = None
    if modality.checks_data and plan.policy.protected:
        pr = plan.policy.principal_reasons
        fairness, raised = assess_fairness(
            model, data, prep.background, proba, plan.policy.protected, plan.policy.fairness, groups=modality.groups,
            adverse_class=None if pr is None or pr.adverse_class is None else python_label(pr.adverse_class),
            used=used if used is not None else used_features(model, data.X, plan.seed))
        observations.extend(raised)
    sample_info = SampleInfo(strategy=sample.strategy, seed=plan.seed, requested=sample.requested,
                             available=sample.available, size=len(rows), note=sample.note)
    subject = evidence_types().Subject(
        model=_model_info(model),
        dataset=_dataset_info(data, modality),
        background=prep.background.spec.id,
        sample=sample_info,
        performance=performance,
        methods=methods,
        skipped=skipped,
        global_explanations=global_results,
        subgroups=_subgroups(plan.policy, model, data, modality, proba, plan.seed),
        used_features=used,
        agreement=agreement,
        reasons=reasons,
        score_stability=stability,
        fairness=fairness,
        observations=observations,
        decisions=[],
    )
    subject.decisions = decisions  # on disk (a Spilled): validating the field would read them all into a list
    return subject


def _run_explainers(plan: RunPlan, prep: Prepared, batch: Batch, progress: ProgressFactory | None,
                    executor: Executor):
    """Every explanation the policy asks for that applies to this model; the others listed as skipped."""
    model, data = prep.model, prep.dataset
    local: dict[str, list] = {}
    global_results: dict = {}
    methods = []
    explainers: dict = {}
    skipped: list[SkippedMethod] = []
    for spec in plan.policy.explanations:
        cls = EXPLAINERS[spec.type]
        if spec.models is not None and model.id not in spec.models:
            continue
        reason = cls.not_applicable(model)
        if reason:
            skipped.append(SkippedMethod(name=spec.name, reason=reason))
            continue
        explainer = explainers[spec.name] = cls(spec)
        advance = progress(f"{spec.name} · {model.id}", len(batch) if cls.scope == "local" else 1) if progress else None
        if cls.scope == "local":
            results, parameters = executor.explain(explainer, model, batch, background=prep.background.X,
                                                   seed=plan.seed, progress=advance)
            local[spec.name] = results
        else:
            results, parameters = explainer.explain(model, Batch(X=data.X, ids=list(data.ids), y=data.y),
                                                    background=prep.background.X, seed=plan.seed, progress=advance,
                                                    sample=batch)
            global_results[spec.name] = results
        methods.append(evidence_types().MethodRecord(name=spec.name, type=spec.type, title=cls.title, scope=cls.scope,
                                    spec=spec.model_dump(mode="json"), parameters=parameters))
    return local, global_results, methods, explainers, skipped


def _decisions(plan: RunPlan, prep: Prepared, rows, proba, local: dict, families: dict, skipped: list):
    """Decisions with their input, explanations, method agreement and principal reasons; the used features
    and the explanations the reasons derive from."""
    policy = plan.policy
    model, data, modality = prep.model, prep.dataset, prep.modality
    features = modality.features(data)  # none for images and text: no agreement, no principal reasons
    names = [f["name"] for f in features]
    labels = {f["name"]: f["display_name"] for f in features}
    reasons_spec = policy.principal_reasons
    used = None
    givers = [m for m in local if families[m].gives_reasons()]
    reason_methods = [m for m in (reasons_spec.methods or givers) if m in givers] if reasons_spec else []
    adverse = model.adverse if reasons_spec is not None else None  # set by prepare(), from the policy
    if reasons_spec is not None and model.regression and adverse is None:
        skipped.append(SkippedMethod(name="principal_reasons", reason=(
            f"{model.id!r} is a regression model without a decision cut-off (models[].decision): it makes no adverse "
            "decisions to give reasons for.")))
    if adverse is not None and names:
        used = used_features(model, data.X, plan.seed)
        if not reason_methods:
            skipped.append(SkippedMethod(name="principal_reasons", reason=(
                f"none of the explanations they derive from ({', '.join(reasons_spec.methods or ['per-decision'])}) "
                f"ran for {model.id!r}: no principal reasons can be given for its adverse decisions.")))
    agreement = policy.agreement
    record = evidence_types().Decision
    decisions = Spilled(kind=record)
    for k, r in enumerate(rows):
        explanations = {name: results[k] for name, results in local.items()}
        outcome = _outcome(model, proba[r], data.y[r])
        predicted = outcome["predicted_label"]
        reasons = None
        if used is not None and reason_methods and adverse is not None and predicted == adverse.label:
            reasons = _derive(policy, explanations, families, adverse, reason_methods, used, names, labels, data.X[r])
        fields = {"values": {}} | modality.decision_input(data, int(r))
        decisions.append(record(
            id=data.ids[r],
            row=int(r),
            **fields,
            **outcome,
            explanations=explanations,
            agreement=decision_agreement(explanations, families, names, top_k=agreement.top_k,
                                         min_shared=agreement.min_shared) if names else None,
            principal_reasons=reasons,
        ))
    return decisions, used, reason_methods


def _derive(policy: Policy, explanations: dict, families: dict, adverse: Adverse, methods: list[str], used: list[str],
            names: list[str], labels: dict, x) -> PrincipalReasons:
    """One adverse decision's principal reasons from its explanations (``x``: its feature-space row)."""
    spec = policy.principal_reasons
    return derive_reasons(explanations, families, adverse=adverse, methods=methods, used=used, names=names,
                          labels=labels, texts=spec.texts, max_reasons=spec.max_reasons, min_overlap=spec.min_overlap,
                          missing=frozenset(n for n, v in zip(names, x) if v != v),  # NaN: missing
                          missing_texts=spec.missing_texts, protected={p.feature: p.basis for p in policy.protected})


def _rerun_reasons(plan: RunPlan, prep: Prepared, rows, decisions: list, families: dict, explainers: dict,
                   methods: list[str], used, executor: Executor) -> None:
    """Re-run the explanations behind the principal reasons on the adverse decisions with other seeds (the audit
    seed + 1, + 2, ...), derive the reasons again, and record them and whether their set stayed the same: a
    notice's reasons must not depend on the run."""
    spec = plan.policy.principal_reasons
    adverse = [k for k, d in enumerate(decisions) if d.principal_reasons is not None]
    if spec is None or not spec.stability_repeats or not adverse or not methods:
        return
    model, data, modality = prep.model, prep.dataset, prep.modality
    names = [f["name"] for f in modality.features(data)]
    labels = {f["name"]: f["display_name"] for f in modality.features(data)}
    batch = modality.batch(data, np.asarray([rows[k] for k in adverse]))
    outcome = model.adverse
    again: dict[int, list[list[str]]] = {k: [] for k in adverse}
    for repeat in range(1, spec.stability_repeats + 1):
        results = {m: executor.explain(explainers[m], model, batch, background=prep.background.X,
                                       seed=plan.seed + repeat, progress=None)[0] for m in methods}
        for j, k in enumerate(adverse):
            reasons = _derive(plan.policy, {m: results[m][j] for m in methods}, families, outcome, methods, used,
                              names, labels, data.X[rows[k]])
            again[k].append([r.feature for r in reasons.reasons])
    for k in adverse:
        decision = decisions[k]  # a copy when the decisions are on disk: changed, then put back
        pr = decision.principal_reasons
        pr.reruns = again[k]
        pr.stable = all(set(features) == {r.feature for r in pr.reasons} for features in again[k])
        decisions[k] = decision


def adverse_outcome(model, policy: Policy) -> Adverse | None:
    """The adverse outcome the policy names for ``model``: a regression model's decision cut-off, or a
    classifier's principal_reasons.adverse_class when it is one of its classes; else None."""
    if model.regression:
        decision = getattr(model.spec, "decision", None)
        return None if decision is None else Adverse(decision.adverse, decision.adverse_if.side == "above")
    reasons = policy.principal_reasons
    if reasons is None or reasons.adverse_class is None:
        return None
    label = python_label(reasons.adverse_class)
    return Adverse(label) if label in model.classes else None


def _outcome(model, output, truth) -> dict:
    """A decision's true and predicted outcome for its record: the classes and their probabilities, or a
    regression model's score and, under a cut-off, its decision."""
    if not model.regression:
        predicted = model.classes[int(output.argmax())]
        return {"true_label": truth, "predicted_label": predicted, "correct": predicted == truth,
                "probabilities": {str(c): float(p) for c, p in zip(model.classes, output)}}
    score, decision = float(output[0]), model.spec.decision
    if decision is None:
        return {"true_label": float(truth), "predicted_label": None, "prediction": score, "correct": None}
    said, true = decision.adverse_if.adverse([score, float(truth)])
    return {"true_label": float(truth), "predicted_label": decision.labels([score])[0], "prediction": score,
            "correct": bool(said == true)}


def _sample_observations(model_id: str, decisions: list, note: str | None, skipped: list) -> list[Observation]:
    out = []
    wrong = [d.id for d in decisions if d.correct is False]
    if wrong:
        out.append(Observation(level="info", code="sample.misclassified", decisions=wrong,
                               message=f"{model_id}: {len(wrong)} of {len(decisions)} sampled decisions are "
                                       f"misclassified ({listed(wrong)})."))
    if note:
        out.append(Observation(level="info", code="sample.short", message=f"{model_id}: {note}"))
    for skip in skipped:
        out.append(Observation(level="info", code="method.skipped", method=skip.name,
                               message=f"{model_id}: {skip.name} not run. {skip.reason}"))
    return out


def _subgroups(policy: Policy, model, data, modality: Modality, proba, seed: int) -> dict | None:
    """Group statistics, with their intervals (seeded with ``seed``), for every feature a threshold compares
    groups by."""
    out = {}
    for t in policy.thresholds:
        if not t.by or t.by in out or not (t.metric.startswith("performance.")
                                           or t.metric == "fairness.positive_rate_gap"):
            continue
        groups = modality.groups(data, t.by, t.bins)
        if groups is not None and model.regression:
            out[t.by] = measure_regression_groups(proba[:, 0], data.y, groups, model.spec.decision,
                                                  spec=policy.performance, seed=seed)
        elif groups is not None:
            out[t.by] = measure_groups(proba, data.y, model.classes, model.positive_index, groups,
                                       spec=policy.performance, seed=seed)
    return out or None


def _method_groups(policy: Policy, explainer, name: str, results: list, data, modality: Modality, rows) -> dict | None:
    """A family's group figures over the sampled decisions (``rows`` of ``data``), for every protected feature
    (grouped as its entry says) and every feature a threshold on them names in ``by``."""
    if not type(explainer).group_figures:
        return None
    wanted = [(p.feature, p.bins) for p in policy.protected]
    for t in policy.thresholds:
        head, _, figure = t.metric.partition(".")
        if head == name and t.by and figure in type(explainer).group_figures:
            wanted.append((t.by, t.bins))
    out = {}
    for feature, bins in wanted:
        groups = None if feature in out else modality.groups(data, feature, bins)
        if groups is not None:
            out[feature] = [g.model_dump(mode="json") for g in explainer.by_group(results, groups[rows])]
    return out or None


def _model_info(model) -> ModelInfo:
    spec = model.spec
    decision = getattr(spec, "decision", None)
    return ModelInfo(id=spec.id, kind=model.kind, format=spec.format, task=model.task,
                     decision=decision.model_dump(mode="json") if decision is not None else None,
                     path=str(spec.path), sha256=model.sha256,
                     classes=model.classes, class_names=model.class_names,
                     positive_class=model.classes[model.positive_index], version=spec.version,
                     description=spec.description, warnings=model.warnings)


def _dataset_info(data, modality: Modality) -> DatasetInfo:
    return DatasetInfo(
        id=data.spec.id, kind=modality.name, source=data.source, sha256=file_sha256(data.file) if data.file else None,
        rows=data.n_rows, target=data.spec.target, class_counts={str(k): v for k, v in data.class_counts.items()},
        features=[FeatureInfo(**f) for f in modality.features(data)], unused_columns=data.unused_columns,
        description=data.spec.description,
    )
