"""Run an audit: load and check every input, sample decisions, explain them, collect evidence.

``prepare`` loads datasets and models and checks they fit together, collecting every problem;
``run_audit`` computes the evidence. Neither renders nor writes files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import __version__
from .datasets import Dataset, load_dataset, python_label
from .errors import AuditorError, DataError, ModelError, PolicyError, Problem
from .evidence import (
    Agreement,
    DatasetInfo,
    Decision,
    Evidence,
    FeatureInfo,
    MethodRecord,
    ModelInfo,
    SampleInfo,
    SkippedMethod,
    Subject,
)
from .executors import Executor, LocalExecutor
from .explainers import EXPLAINERS, Batch
from .models import ModelAdapter, file_sha256, load_model
from .performance import measure_performance
from .policy import AuditedPair, Policy, canonical_json, policy_lines
from .findings import evaluate
from .performance import measure_groups
from .reasons import derive_reasons, used_features
from .sampling import draw_sample

__all__ = ["Prepared", "ProgressFactory", "prepare", "run_audit"]

ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""Starts a progress task (description, total) and returns its ``advance(n)`` callable."""

AGREEMENT_TOP_K = 5


@dataclass
class Prepared:
    """One audited (model, dataset) pair, loaded and checked."""

    pair: AuditedPair
    model: ModelAdapter
    dataset: Dataset
    background: Dataset


def prepare(policy: Policy) -> list[Prepared]:
    """Load every dataset and model the policy audits and check they fit; report every problem at once."""
    lines = policy_lines(policy.file)
    file = str(policy.file)
    problems: list[Problem] = []

    def problem(kind: str, item_id: str, exc: AuditorError) -> None:
        index = next(i for i, x in enumerate(getattr(policy, kind)) if x.id == item_id)
        problems.append(Problem(file, f"{kind}[{index}]", exc.message, exc.hint, lines.get((kind, index))))

    datasets: dict[str, Dataset] = {}
    for pair in policy.audited:
        if pair.dataset not in datasets:
            try:
                datasets[pair.dataset] = _load_any_dataset(policy.dataset(pair.dataset), policy)
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
                backgrounds[key] = _load_any_dataset(policy.dataset(bg_id), policy, like=dataset)
            except DataError as exc:
                problem("datasets", bg_id, exc)
                backgrounds[key] = None  # type: ignore[assignment]
        try:  # checked even when the background failed, so every problem is reported at once
            model = _load_any_model(policy.model(pair.model), policy, dataset)
        except ModelError as exc:
            problem("models", pair.model, exc)
            continue
        for i, spec in enumerate(policy.explanations):
            cls = EXPLAINERS[spec.type]
            if spec.models is not None and pair.model in spec.models and cls.not_applicable(model):
                problems.append(Problem(file, f"explanations[{i}].models", cls.not_applicable(model),
                                        "remove the model from this explanation", _line(lines, ("explanations", i, "models"))))
            elif (spec.models is None or pair.model in spec.models) and cls.applies_to(model):
                for field, message, fix in cls.check(spec, model):
                    loc = ("explanations", i, *field.replace("[", ".").replace("]", "").split("."))
                    problems.append(Problem(file, f"explanations[{i}].{field}", message, fix,
                                            _line(lines, loc)))
        if backgrounds[key] is not None:
            prepared.append(Prepared(pair, model, dataset, backgrounds[key]))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise PolicyError(unique)
    return prepared


def _load_any_dataset(spec, policy, like=None):
    """A tabular, image or text dataset; a background must be of the same kind as the data it serves."""
    if like is not None and spec.kind != like.kind:
        raise DataError(f"datasets[{spec.id}]: a {spec.kind} dataset cannot be the background of a {like.kind} one",
                        hint="use a dataset of the same kind")
    if spec.kind == "image":
        from .images import load_image_dataset

        return load_image_dataset(spec, policy)
    if spec.kind == "text":
        from .texts import load_text_dataset

        return load_text_dataset(spec, policy)
    return load_dataset(spec, policy, space=like.space if like is not None else None)


def _load_any_model(spec, policy, dataset):
    if dataset.kind == "image":
        from .images import load_image_model

        return load_image_model(spec, policy, dataset)
    if dataset.kind == "text":
        from .texts import load_text_model

        return load_text_model(spec, policy, dataset)
    if spec.format in ("state_dict", "huggingface"):
        raise ModelError(f"model {spec.id!r}: format {spec.format} is for image or text data, and dataset "
                         f"{dataset.spec.id!r} is tabular", hint="use skops or torchscript for tabular models")
    return load_model(spec, policy, dataset)


def _line(lines: dict, loc: tuple) -> int | None:
    """The line of the deepest part of ``loc`` found in the policy."""
    parts = tuple(int(p) if isinstance(p, str) and p.isdigit() else p for p in loc)
    for n in range(len(parts), 0, -1):
        if parts[:n] in lines:
            return lines[parts[:n]]
    return None


def run_audit(
    policy: Policy,
    prepared: list[Prepared],
    *,
    sample_size: int | None = None,
    seed: int | None = None,
    progress: ProgressFactory | None = None,
    executor: Executor | None = None,
) -> Evidence:
    """Compute the evidence for every audited pair. Deterministic for the same inputs and seed, whichever
    ``executor`` runs the explainers (default: this process)."""
    overrides = {k: v for k, v in (("sample.size", sample_size), ("sample.seed", seed)) if v is not None}
    size = sample_size if sample_size is not None else policy.sample.size
    seed = seed if seed is not None else policy.sample.seed
    if size < 1:
        raise DataError("the sample size must be at least 1", hint="pass --sample N with N >= 1")
    executor = executor or LocalExecutor()
    subjects = [_audit_subject(policy, p, size, seed, progress, executor) for p in prepared]
    warnings = [w for p in prepared for w in p.model.warnings]
    policy_dump = canonical_json(policy)
    evidence = Evidence(
        auditor_version=__version__,
        policy_sha256=policy.sha256,
        audit=policy_dump["audit"],
        policy=policy_dump,
        overrides=overrides,
        subjects=subjects,
        warnings=warnings,
    )
    evidence.findings = evaluate(policy, evidence)
    return evidence


def _audit_subject(policy: Policy, prep: Prepared, size: int, seed: int, progress: ProgressFactory | None,
                   executor: Executor) -> Subject:
    """One audited (model, dataset) pair: performance, the sample, every explanation, the decisions."""
    model, data = prep.model, prep.dataset
    proba = model.predict_proba(list(data.X) if data.kind == "text" else data.X)
    performance = measure_performance(proba, data.y, model.classes, model.class_names, model.positive_index)
    sample = draw_sample(policy.sample.strategy, size, seed, y_true=data.y, proba=proba,
                         classes=model.classes, ids=data.ids)
    rows = sample.rows
    batch = _rows(data, rows)
    local, global_results, methods, skipped = _run_explainers(policy, prep, batch, seed, progress, executor)
    used = None
    if data.kind == "tabular":
        decisions, used = _tabular_decisions(policy, prep, rows, proba, local, skipped, seed)
    else:
        decisions = _media_decisions(prep, rows, proba, local)
    return Subject(
        model=_model_info(model),
        dataset=_dataset_info(data),
        background=prep.background.spec.id,
        sample=SampleInfo(strategy=sample.strategy, seed=seed, requested=sample.requested,
                          available=sample.available, size=len(rows), note=sample.note),
        performance=performance,
        methods=methods,
        skipped=skipped,
        global_explanations=global_results,
        subgroups=_subgroups(policy, model, data, proba) if data.kind == "tabular" else None,
        used_features=used,
        decisions=decisions,
    )


def _rows(data, rows) -> Batch:
    """The sampled decisions of any kind of dataset, with masks or rationales where the data has them."""
    masks = getattr(data, "masks", None)
    rationales = getattr(data, "rationales", None)
    return Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows],
                 masks=None if masks is None else masks[rows],
                 rationales=None if rationales is None else [rationales[r] for r in rows])


def _run_explainers(policy: Policy, prep: Prepared, batch: Batch, seed: int, progress: ProgressFactory | None,
                    executor: Executor):
    """Every explanation the policy asks for that applies to this model; the others listed as skipped."""
    model, data = prep.model, prep.dataset
    local: dict[str, list] = {}
    global_results: dict = {}
    methods: list[MethodRecord] = []
    skipped: list[SkippedMethod] = []
    for spec in policy.explanations:
        cls = EXPLAINERS[spec.type]
        if spec.models is not None and model.id not in spec.models:
            continue
        reason = cls.not_applicable(model)
        if reason:
            skipped.append(SkippedMethod(name=spec.name, reason=reason))
            continue
        explainer = cls(spec)
        advance = progress(f"{spec.name} · {model.id}", len(batch) if cls.scope == "local" else 1) if progress else None
        if cls.scope == "local":
            results, parameters = executor.explain(explainer, model, batch, background=prep.background.X,
                                                   seed=seed, progress=advance)
            local[spec.name] = results
        else:
            results, parameters = explainer.explain(model, Batch(X=data.X, ids=list(data.ids), y=data.y),
                                                    background=prep.background.X, seed=seed, progress=advance,
                                                    sample=batch)
            global_results[spec.name] = results
        methods.append(MethodRecord(name=spec.name, type=spec.type, title=cls.title, scope=cls.scope,
                                    spec=spec.model_dump(mode="json"), parameters=parameters))
    return local, global_results, methods, skipped


def _tabular_decisions(policy: Policy, prep: Prepared, rows, proba, local: dict, skipped: list, seed: int):
    """Decisions with their values, explanations, method agreement and principal reasons; and the used features."""
    model, data = prep.model, prep.dataset
    reasons_spec = policy.principal_reasons
    used = None
    reason_methods = [m for m in (reasons_spec.methods or list(local)) if m in local] if reasons_spec else []
    if reasons_spec is not None and python_label(reasons_spec.adverse_class) in model.classes:
        used = used_features(model, data.X, seed)
        if not reason_methods:
            skipped.append(SkippedMethod(name="principal_reasons", reason=(
                f"none of the explanations they derive from ({', '.join(reasons_spec.methods or ['per-decision'])}) "
                f"ran for {model.id!r}: no principal reasons can be given for its adverse decisions.")))
    labels = {f.name: f.label for f in data.space.features}
    decisions = []
    for k, r in enumerate(rows):
        explanations = {name: results[k] for name, results in local.items()}
        predicted = model.classes[int(proba[r].argmax())]
        reasons = None
        if used is not None and reason_methods and predicted == python_label(reasons_spec.adverse_class):
            reasons = derive_reasons(explanations, adverse=predicted, methods=reason_methods,
                                     used=used, names=data.space.names, labels=labels, texts=reasons_spec.texts,
                                     max_reasons=reasons_spec.max_reasons)
        decisions.append(Decision(
            id=data.ids[r],
            row=int(r),
            values=dict(zip(data.space.names, (
                data.space.display_value(i, v) if f.type == "categorical" else float(v)
                for i, (f, v) in enumerate(zip(data.space.features, data.X[r]))
            ))),
            true_label=data.y[r],
            predicted_label=predicted,
            probabilities={str(c): float(p) for c, p in zip(model.classes, proba[r])},
            correct=predicted == data.y[r],
            explanations=explanations,
            agreement=_agreement({n: x for n, x in explanations.items() if x.method != "counterfactuals"},
                                 data.space.names),
            principal_reasons=reasons,
        ))
    return decisions, used


def _media_decisions(prep: Prepared, rows, proba, local: dict) -> list[Decision]:
    """Image decisions carry the input image (and mask) as PNG; text decisions their text."""
    model, data = prep.model, prep.dataset
    decisions = []
    for k, r in enumerate(rows):
        predicted = model.classes[int(proba[r].argmax())]
        extra = {}
        if data.kind == "image":
            extra["image_png"] = _png_base64((data.X[r].transpose(1, 2, 0) * 255).round().astype(np.uint8))
            extra["image_file"] = str(data.files[r].relative_to(data.file.parent))
            if data.masks is not None:
                extra["mask_png"] = _png_base64(data.masks[r].astype(np.uint8) * 255)
        else:
            extra["text"] = str(data.X[r])
        decisions.append(Decision(
            id=data.ids[r], row=int(r), values={}, true_label=data.y[r], predicted_label=predicted,
            probabilities={str(c): float(p) for c, p in zip(model.classes, proba[r])},
            correct=predicted == data.y[r], explanations={n: res[k] for n, res in local.items()}, **extra,
        ))
    return decisions


def _subgroups(policy: Policy, model: ModelAdapter, data: Dataset, proba: np.ndarray) -> dict | None:
    """Group statistics for every feature a threshold compares groups by."""
    out = {}
    for t in policy.thresholds:
        if not t.by or t.by in out or t.by not in data.space.names:
            continue
        i = data.space.names.index(t.by)
        column = data.X[:, i]
        if data.space.features[i].type == "categorical":
            groups = np.asarray([data.space.display_value(i, v) for v in column], dtype=object)
        else:
            edges = sorted(t.bins)
            which = np.digitize(column, edges)
            names = ([f"< {edges[0]:g}"] + [f"{a:g} to < {b:g}" for a, b in zip(edges, edges[1:])]
                     + [f">= {edges[-1]:g}"])
            groups = np.asarray([names[k] for k in which], dtype=object)
        out[t.by] = measure_groups(proba, data.y, model.classes, model.positive_index, groups)
    return out or None


def _png_base64(pixels: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode()


def attribution_values(result, names: list[str]) -> np.ndarray:
    """A local result's per-feature values in feature order (features LIME left out count as 0)."""
    values = getattr(result, "attributions", None)
    if values is None:
        values = result.weights
    return np.array([values.get(n, 0.0) for n in names], dtype=np.float64)


def _agreement(explanations: dict, names: list[str]) -> Agreement | None:
    if len(explanations) < 2:
        return None
    from scipy.stats import spearmanr

    k = min(AGREEMENT_TOP_K, len(names))
    vectors = {m: attribution_values(r, names) for m, r in explanations.items()}
    tops = {m: [names[i] for i in np.argsort(-np.abs(v), kind="stable")[:k]] for m, v in vectors.items()}
    shared = set.intersection(*(set(t) for t in tops.values()))
    first, second = list(vectors.values())[:2]
    corr = None
    if np.ptp(first) > 0 and np.ptp(second) > 0:
        corr = float(spearmanr(first, second).statistic)
    return Agreement(methods=list(explanations), top_k=k, top_features=tops, shared=len(shared),
                     rank_correlation=corr, agree=len(shared) >= 0.6 * k and (corr is None or corr > 0))


def _model_info(model: ModelAdapter) -> ModelInfo:
    spec = model.spec
    return ModelInfo(id=spec.id, kind=model.kind, format=spec.format, path=str(spec.path), sha256=model.sha256,
                     classes=model.classes, class_names=model.class_names,
                     positive_class=model.classes[model.positive_index], version=spec.version,
                     description=spec.description, warnings=model.warnings)


def _dataset_info(data) -> DatasetInfo:
    if data.kind != "tabular":
        return DatasetInfo(id=data.spec.id, kind=data.kind, source=data.source, sha256=file_sha256(data.file),
                           rows=data.n_rows, target=data.spec.target,
                           class_counts={str(k): v for k, v in data.class_counts.items()}, features=[],
                           unused_columns=data.unused_columns, description=data.spec.description)
    return DatasetInfo(
        id=data.spec.id, source=data.source, sha256=file_sha256(data.file) if data.file else None,
        rows=data.n_rows, target=data.spec.target,
        class_counts={str(k): v for k, v in data.class_counts.items()},
        features=[FeatureInfo(name=f.name, display_name=f.label, type=f.type, unit=f.unit,
                              categories=list(data.space.categories[i]) or None)
                  for i, f in enumerate(data.space.features)],
        unused_columns=data.unused_columns, description=data.spec.description,
    )
