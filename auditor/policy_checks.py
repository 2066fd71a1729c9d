"""The checks of a policy that need the whole of it: ids and references, files, formats, the applicability
of each explanation to the models it names, threshold metrics and their groups, principal reasons.

:func:`auditor.policy.load_policy` runs them after the schema has validated, and reports every problem at
once; each names the field (by :func:`field_path`) and its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Problem
from .explainers import EXPLAINERS
from .formats import FORMATS
from .yaml_lines import line_of

if TYPE_CHECKING:
    from .policy import Policy

__all__ = ["field_path", "not_a_file", "reference_problems"]


def field_path(loc: tuple, data: Any) -> str:
    """Dotted field path like ``models[0].format``, without pydantic's union tags."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(node, dict) or node is None:
            if node is not None and part not in node and out.endswith("]") and part in EXPLAINERS:
                continue  # the discriminator tag pydantic inserts for tagged unions
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def not_a_file(path: Path, *, folder_ok: bool = False) -> str | None:
    """Why ``path`` is not an existing file (or folder, with ``folder_ok``); None when it is."""
    try:
        if path.is_file() or (folder_ok and path.is_dir()):
            return None
    except OSError as exc:  # a name the file system refuses (too long), a folder it may not enter
        shown = str(path) if len(str(path)) <= 200 else f"{str(path)[:200]}... ({len(str(path))} characters)"
        return f"cannot check the path: {exc.strerror or exc}: {shown}"
    return f"file not found: {path}"


def reference_problems(policy: "Policy", file: str, lines: dict) -> list[Problem]:
    """Checks that need the whole policy: ids, references, files, applicability."""
    problems: list[Problem] = []

    def add(loc: tuple, message: str, fix: str | None = None) -> None:
        problems.append(Problem(file, field_path(loc, None), message, fix, line_of(loc, lines)))

    for kind, items in (("models", policy.models), ("datasets", policy.datasets)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                add((kind, i, "id"), f"duplicate id {item.id!r}", "give every entry its own id")
            seen.add(item.id)
    model_ids = {m.id for m in policy.models}
    dataset_ids = {d.id for d in policy.datasets}

    for i, m in enumerate(policy.models):
        if m.format in ("pickle", "joblib") and m.trust != "pickle":
            add(("models", i, "format"),
                f"{m.format} files can run arbitrary code when loaded and are refused by default",
                "save the model with skops (scikit-learn) or TorchScript (PyTorch), or, if you trust the "
                "file's origin, add 'trust: pickle' to this model")
        if m.format == "state_dict" and m.architecture is None:
            add(("models", i, "format"), "a state_dict needs 'architecture' (the Python class it belongs to)",
                "add architecture: {file: model.py, class: MyNet}")
        why = not_a_file(policy.resolve(m.architecture.file)) if m.architecture is not None else None
        if why:
            add(("models", i, "architecture", "file"), why, "correct the path (relative to the policy file's folder)")
        if m.task == "regression":
            for key in ("classes", "class_names", "positive_class", "outputs"):
                if getattr(m, key) is not None:
                    add(("models", i, key), f"'{key}' is for classifiers; model {m.id!r} is a regression model "
                        "(one score)", f"remove '{key}'")
        elif m.decision is not None:
            add(("models", i, "decision"), "a decision cut-off is for regression models (a classifier decides by "
                "its classes)", "remove 'decision', or set task: regression")
        if FORMATS[m.format].needs_classes and not m.classes and m.task == "classification":
            add(("models", i, "format"), f"a {m.format} model needs 'classes' (labels in output order)",
                "add classes: [<label of output 0>, <label of output 1>, ...]")
        if m.class_names and m.classes and len(m.class_names) != len(m.classes):
            add(("models", i, "class_names"),
                f"{len(m.class_names)} class names for {len(m.classes)} classes", "give one name per class")
        if m.positive_class is not None and m.classes and m.positive_class not in m.classes:
            add(("models", i, "positive_class"), f"{m.positive_class!r} is not one of classes {m.classes}",
                "use one of the labels listed under classes")

    for i, d in enumerate(policy.datasets):
        if (d.path is None) == (d.source is None):
            add(("datasets", i), "give exactly one of 'path' (a CSV/Parquet file) or 'source' (a bundled dataset)",
                "set path: data.csv, or source: sklearn:breast_cancer")
        names = [f.name for f in d.features]
        for j, f in enumerate(d.features):
            if names.count(f.name) > 1:
                add(("datasets", i, "features", j, "name"), f"feature {f.name!r} is listed twice", "list it once")
            if f.categories is not None and f.type != "categorical":
                add(("datasets", i, "features", j, "categories"), "categories are only for categorical features",
                    "set type: categorical or remove categories")
            if f.name == d.target:
                add(("datasets", i, "features", j, "name"), f"the target column {d.target!r} is listed as a feature",
                    "remove it from features")

    for i, pair in enumerate(policy.audited):
        if pair.model not in model_ids:
            add(("audited", i, "model"), f"unknown model id {pair.model!r}", f"use one of: {', '.join(sorted(model_ids))}")
        for key in ("dataset", "background"):
            ref = getattr(pair, key)
            if ref is not None and ref not in dataset_ids:
                add(("audited", i, key), f"unknown dataset id {ref!r}", f"use one of: {', '.join(sorted(dataset_ids))}")

    audited_models = {p.model for p in policy.audited}
    problems.extend(_task_problems(policy, file, lines, model_ids, dataset_ids))
    for i, spec in enumerate(policy.explanations):
        cls = EXPLAINERS[spec.type]
        for j, mid in enumerate(spec.models or []):
            if mid not in model_ids:
                add(("explanations", i, "models", j), f"unknown model id {mid!r}",
                    f"use one of: {', '.join(sorted(model_ids))}")
            elif mid not in audited_models:
                add(("explanations", i, "models", j), f"model {mid!r} is not listed under 'audited'",
                    "audit the model on a dataset, or remove it here")
            elif cls.requires == "torch" and not FORMATS[policy.model(mid).format].gradients:
                add(("explanations", i, "models", j),
                    f"{spec.type} needs a PyTorch model (gradients); {mid!r} is {policy.model(mid).format}",
                    "remove the model from this explanation, or use a model-agnostic method such as lime")
        if spec.models is None and cls.requires == "torch" and not any(
            FORMATS[policy.model(p.model).format].gradients
            for p in policy.audited if p.model in model_ids
        ):
            add(("explanations", i, "type"), f"{spec.type} needs a PyTorch model and none is audited",
                "audit a PyTorch model (torch_export or torchscript), or remove this explanation")
    from .findings import PROTECTED_METRICS, known_metric

    types = {spec.name: spec.type for spec in policy.explanations}
    protected = [p.feature for p in policy.protected]
    for i, t in enumerate(policy.thresholds):
        why = known_metric(t.metric, types)
        if why:
            add(("thresholds", i, "metric"), f"unknown metric {t.metric!r}", why)
        if t.compare != "point" and policy.performance.bootstrap == 0 and t.metric != "performance.accuracy":
            add(("thresholds", i, "compare"), f"{t.metric} has no interval to test with performance.bootstrap: 0 "
                "(only accuracy, a proportion, keeps its Wilson interval)",
                "set performance.bootstrap to 1000 (the default), or remove 'compare'")
        for j, mid in enumerate(t.models or []):
            if mid not in model_ids:
                add(("thresholds", i, "models", j), f"unknown model id {mid!r}", f"use one of: {', '.join(sorted(model_ids))}")
        if t.metric == "principal_reasons.stability":
            if policy.principal_reasons is None or not policy.principal_reasons.stability_repeats:
                add(("thresholds", i, "metric"), f"{t.metric} compares the reasons of re-runs with other seeds, and "
                    "the policy " + ("asks for no principal reasons" if policy.principal_reasons is None else
                                     "sets principal_reasons.stability_repeats: 0"),
                    "add principal_reasons (stability_repeats: 1 or more), or remove this threshold")
            if t.by is not None:
                add(("thresholds", i, "by"), f"{t.metric} is not measured by {t.by!r}", "remove 'by'")
        elif t.metric in PROTECTED_METRICS:  # by: a protected feature, grouped as its protected entry says
            if not protected:
                add(("thresholds", i, "metric"), f"{t.metric} measures the protected features, and the policy "
                    "declares none", "list them under protected: [{feature: ..., basis: ...}]")
            if t.metric.startswith("principal_reasons.") and policy.principal_reasons is None:
                add(("thresholds", i, "metric"), f"{t.metric} measures principal reasons, and the policy asks for "
                    "none", "add principal_reasons: {adverse_class: ...}, or remove this threshold")
            elif t.by is not None and (t.by not in protected or t.metric.startswith("principal_reasons.")):
                add(("thresholds", i, "by"), f"{t.metric} is not measured by {t.by!r}",
                    "remove 'by'" if t.metric.startswith("principal_reasons.") else
                    f"use a protected feature ({', '.join(protected)}), or remove 'by' for the worst of them")
            if t.bins is not None:
                add(("thresholds", i, "bins"), f"{t.metric} groups a protected feature by its entry under "
                    "'protected'", "remove 'bins' here (give them under protected)")
        elif t.by is not None:
            per_feature = t.metric in ("data.missing_rate", "stability.psi")
            head, _, figure = t.metric.partition(".")
            grouped = head in types and figure in EXPLAINERS[types[head]].group_figures
            if not t.metric.startswith(("performance.", "fairness.")) and not per_feature and not grouped:
                add(("thresholds", i, "by"), "'by' applies to performance.*, fairness.*, data.missing_rate, "
                    "stability.psi and group figures of explanations (e.g. counterfactuals.recourse_rate)",
                    "remove 'by'")
            audited_features = {f.name: f for p in policy.audited if p.dataset in dataset_ids
                                for f in policy.dataset(p.dataset).features}
            feature = audited_features.get(t.by)
            if feature is None and not (t.metric == "stability.psi" and t.by == "score"):
                add(("thresholds", i, "by"), f"unknown feature {t.by!r}",
                    "use a feature listed under the audited dataset's features"
                    + (", or 'score' (the model's score)" if t.metric == "stability.psi" else ""))
            elif feature is not None and feature.type == "numeric" and not t.bins and not per_feature:
                add(("thresholds", i, "bins"), f"{t.by!r} is numeric: its groups need bin edges",
                    "add bins: [edge, edge, ...], e.g. [18, 25, 40, 60, 100]")

    if policy.principal_reasons is not None:
        pr = policy.principal_reasons
        classifiers = [p.model for p in policy.audited if p.model in model_ids
                       and policy.model(p.model).task == "classification"]
        if classifiers and pr.adverse_class is None:
            add(("principal_reasons",), f"principal reasons for classifier {classifiers[0]!r} need 'adverse_class'",
                "add adverse_class: <the label of the adverse outcome>")
        local = {s.name for s in policy.explanations if EXPLAINERS[s.type].gives_reasons()}
        givers = ", ".join(t for t, c in EXPLAINERS.items() if c.gives_reasons())
        if not local:
            add(("principal_reasons",), "principal reasons derive from per-decision explanations, and the policy "
                "asks for none", f"add one of these types under explanations: {givers}")
        for j, name in enumerate(pr.methods or []):
            if name not in local:
                add(("principal_reasons", "methods", j), f"{name!r} is not a per-decision explanation in this policy",
                    f"use some of: {', '.join(sorted(local)) or '(add one of these types: ' + givers + ')'}")
        audited_features = {f.name for p in policy.audited if p.dataset in dataset_ids
                            for f in policy.dataset(p.dataset).features}
        for key in ("texts", "missing_texts"):
            for name in getattr(pr, key):
                if name not in audited_features:
                    add(("principal_reasons", key, name), f"unknown feature {name!r}",
                        "use a feature name listed under the audited dataset's features")
    problems.extend(_protected_problems(policy, file, lines, dataset_ids))
    return problems


def _protected_problems(policy: "Policy", file: str, lines: dict, dataset_ids: set) -> list[Problem]:
    """Each protected feature is listed once, is a feature of every audited tabular dataset, and has bins when
    it is numeric there (and only then)."""
    import difflib

    from .modalities import modality_of

    problems: list[Problem] = []

    def add(loc: tuple, message: str, fix: str | None = None) -> None:
        problems.append(Problem(file, field_path(loc, None), message, fix, line_of(loc, lines)))

    tabular = [policy.dataset(d) for d in dict.fromkeys(p.dataset for p in policy.audited) if d in dataset_ids
               and modality_of(policy.dataset(d)).checks_data]
    if policy.protected and not tabular:
        add(("protected",), "protected features are measured on tabular data, and no tabular dataset is audited",
            "remove 'protected', or audit a model on a tabular dataset")
    seen: set[str] = set()
    for i, p in enumerate(policy.protected):
        if p.feature in seen:
            add(("protected", i, "feature"), f"{p.feature!r} is listed twice", "list each protected feature once")
        seen.add(p.feature)
        for d in tabular:
            feature = next((f for f in d.features if f.name == p.feature), None)
            if feature is None:
                close = difflib.get_close_matches(p.feature, [f.name for f in d.features], n=1)
                add(("protected", i, "feature"), f"{p.feature!r} is not a feature of audited dataset {d.id!r}",
                    f"did you mean {close[0]!r}?" if close else
                    f"use a feature listed under its features ({', '.join(f.name for f in d.features[:8])}"
                    f"{', ...' if len(d.features) > 8 else ''})")
                break
            if feature.type == "numeric" and not p.bins:
                add(("protected", i, "bins"), f"{p.feature!r} is numeric: its groups need bin edges",
                    "add bins: [edge, edge, ...], e.g. [25, 40, 60] for age")
                break
            if feature.type == "categorical" and p.bins:
                add(("protected", i, "bins"), f"{p.feature!r} is categorical: its groups are its categories",
                    "remove 'bins'")
                break
    return problems


def _task_problems(policy: "Policy", file: str, lines: dict, model_ids: set, dataset_ids: set) -> list[Problem]:
    """Regression models: the data they are audited on, and what the sample and thresholds ask of a score."""
    from .findings import CLASSIFICATION_ONLY, REGRESSION_ONLY
    from .modalities import modality_of

    problems: list[Problem] = []

    def add(loc: tuple, message: str, fix: str | None = None) -> None:
        problems.append(Problem(file, field_path(loc, None), message, fix, line_of(loc, lines)))

    tasks: dict[str, set[str]] = {}
    for i, pair in enumerate(policy.audited):
        if pair.model not in model_ids or pair.dataset not in dataset_ids:
            continue
        m, d = policy.model(pair.model), policy.dataset(pair.dataset)
        tasks.setdefault(pair.dataset, set()).add(m.task)
        if pair.background in dataset_ids:
            tasks.setdefault(pair.background, set()).add(m.task)
        if m.task == "regression" and not modality_of(d).scores:
            add(("audited", i, "model"), f"regression model {m.id!r} is audited on {modality_of(d).name} dataset "
                f"{d.id!r}; regression models are audited on tabular data", "audit it on a tabular dataset")
    for i, d in enumerate(policy.datasets):
        if len(tasks.get(d.id, ())) > 1:
            add(("datasets", i, "target"), f"dataset {d.id!r} is audited by a classifier and a regression model; "
                f"its target {d.target!r} cannot be both class labels and numbers",
                "give each task its own dataset entry (the same file may be listed twice, with two ids)")
    regressions = [policy.model(p.model) for p in policy.audited if p.model in model_ids
                   and policy.model(p.model).task == "regression"]
    strategy = policy.sample.strategy
    no_cut = [m.id for m in regressions if m.decision is None]
    if strategy in ("boundary", "misclassified") and no_cut:
        add(("sample", "strategy"), f"the '{strategy}' sample of regression model {no_cut[0]!r} needs a decision "
            "cut-off (models[].decision), which it does not have",
            "use strategy: random or stratified (by decile of the prediction), or give the model a decision cut-off")
    audited = {p.model for p in policy.audited}
    for i, t in enumerate(policy.thresholds):
        head, _, figure = t.metric.partition(".")
        applies = [policy.model(m) for m in (t.models or model_ids) if m in model_ids and m in audited]
        if head == "performance" and figure in REGRESSION_ONLY and t.models and not any(
                m.task == "regression" for m in applies):
            add(("thresholds", i, "metric"), f"{t.metric} measures a regression model, and {', '.join(t.models)} "
                "are classifiers", "use a classification metric, or name a regression model under 'models'")
        if head == "performance" and figure in CLASSIFICATION_ONLY and t.models and all(
                m.task == "regression" for m in applies):
            add(("thresholds", i, "metric"), f"{t.metric} measures a classifier, and {', '.join(t.models)} are "
                "regression models", "use performance.rmse, performance.mae or performance.r2")
        if head == "fairness" and t.models and any(m.task == "regression" and m.decision is None
                                                    for m in applies):
            add(("thresholds", i, "metric"), f"{t.metric} compares the groups' shares of adverse decisions, and a "
                "regression model without a decision cut-off makes none", "give the model a decision cut-off")
    return problems
