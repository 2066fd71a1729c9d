"""Draft policies from a model and its data: what ``auditor init`` writes and what ``auditor.audit`` runs.

The draft infers what the files say (the model's format from its suffix, each column's type and categories,
an obvious id column, the kind of data: table, image files or text) and marks with ``TODO`` what only a person
can say (intended use, population, reviewers). It always validates as written; :func:`draft_policy` checks that
by loading it and its models before returning.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .errors import AuditorError, DataError
from .formats import FORMATS, load_skops

__all__ = ["SUFFIX_FORMATS", "draft_policy", "draft_tree", "infer_features", "policy_text"]

SUFFIX_FORMATS = {".skops": "skops", ".pt2": "torch_export", ".pt": "torchscript", ".onnx": "onnx",
                  ".ubj": "xgboost", ".json": "xgboost", ".txt": "lightgbm"}
_IMAGE_SUFFIXES = (".png", ".dcm")
TODO = "TODO"


def format_of(model: Path) -> str:
    if model.is_dir():
        return "huggingface"
    fmt = SUFFIX_FORMATS.get(model.suffix.lower())
    if fmt is None:
        raise AuditorError(f"{model}: cannot tell the model's format from its suffix {model.suffix!r}",
                           hint="use " + ", ".join(f"{s} ({f})" for s, f in SUFFIX_FORMATS.items())
                                + ", or a transformers folder")
    return fmt


def _id_column(frame: pd.DataFrame, target: str) -> str | None:
    for column in frame.columns:
        name = str(column).lower()
        idlike = name in ("id", "case", "patient") or name.endswith(("_id", " id", "id_"))
        if column != target and idlike and frame[column].notna().all() and frame[column].is_unique:
            return str(column)
    return None


def infer_features(frame: pd.DataFrame, exclude: set[str], order: list[str] | None = None) -> list[dict[str, Any]]:
    """One entry per column not excluded (in ``order`` when the model names its inputs): numeric when pandas
    reads it as numbers (missing values allowed), else categorical with its values sorted as categories."""
    columns = order or [str(c) for c in frame.columns if str(c) not in exclude]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"the model takes {missing[:5]}, which the data lack",
                        hint="give the data the model was trained on (its column names)")
    out = []
    for name in columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            out.append({"name": name, "display_name": name})
        else:
            values = sorted({v for v in column.dropna().tolist()}, key=lambda v: (str(type(v)), str(v)))
            out.append({"name": name, "display_name": name, "type": "categorical",
                        "categories": [v.item() if isinstance(v, np.generic) else v for v in values]})
    return out


def _width(features: list[dict[str, Any]]) -> int:
    return sum(len(f["categories"]) if f.get("type") == "categorical" else 1 for f in features)


def _takes(model: Path, fmt: str):
    """For a network file: whether it takes an encoded matrix of a given width (None: not a network)."""
    if fmt not in ("torch_export", "torchscript"):
        return None
    import torch

    from .formats import load_exported, load_torchscript

    try:
        module = load_exported(model) if fmt == "torch_export" else load_torchscript(model)
    except AuditorError:
        return None  # the audit's own load reports it

    def takes(width: int) -> bool:
        try:
            with torch.no_grad():
                out = module(torch.zeros(2, width))
            takes.outputs = int(out.shape[1]) if out.ndim == 2 else 1
            return True
        except Exception:
            return False

    takes.outputs = None

    return takes


def _fit_width(model: Path, fmt: str, features: list[dict[str, Any]], frame: pd.DataFrame
               ) -> tuple[list[dict[str, Any]], int | None]:
    """The features, and a network's number of outputs (None: not known). A network takes categories one-hot,
    and a column of a few whole numbers (a code such as sex 1/2) may be one of them: when the network does not
    take the features' width, the fewest such columns, fewest values first, are drafted as categorical until it
    does (the draft marks them for a person to check)."""
    takes = _takes(model, fmt)
    if takes is None:
        return features, None
    if takes(_width(features)):
        return features, takes.outputs
    from itertools import combinations

    def codes(f) -> bool:
        values = frame[f["name"]].dropna()
        return bool(2 <= values.nunique() <= 10 and np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))

    candidates = sorted((i for i, f in enumerate(features) if f.get("type") != "categorical" and codes(f)),
                        key=lambda i: frame[features[i]["name"]].nunique())[:8]
    for k in range(1, min(3, len(candidates)) + 1):
        for combo in combinations(candidates, k):
            trial = [dict(f) for f in features]
            for i in combo:
                values = sorted(frame[trial[i]["name"]].dropna().unique().tolist())
                trial[i] |= {"type": "categorical", "categories": [int(v) for v in values], "coded": True}
            if takes(_width(trial)):
                return trial, takes.outputs
    return features, None


def _kind(frame: pd.DataFrame, fmt: str, target: str) -> tuple[str, dict[str, Any]]:
    """tabular, image (a column of image files) or text (a transformers model's longest text column)."""
    for column in frame.columns:
        values = frame[column].dropna().astype(str)
        if len(values) and values.str.lower().str.endswith(_IMAGE_SUFFIXES).all():
            masks = [c for c in frame.columns if c != column and "mask" in str(c).lower()]
            return "image", {"image_column": str(column)} | ({"mask_column": str(masks[0])} if masks else {})
    if fmt == "huggingface":
        texts = [c for c in frame.columns if c != target and not pd.api.types.is_numeric_dtype(frame[c])]
        if not texts:
            raise DataError("a transformers model needs a text column, and the data have none",
                            hint="give a CSV with one text per row")
        longest = max(texts, key=lambda c: frame[c].astype(str).str.len().mean())
        return "text", {"text_column": str(longest)}
    return "tabular", {}


def _model_inputs(model: Path, fmt: str, trusted_types) -> tuple[list[str] | None, list | None, str | None]:
    """The input column names, class labels and task (classification or regression) a scikit-learn file records
    (None where it does not). The file is loaded as an audit loads it: a type it holds beyond scikit-learn's is
    refused unless trusted."""
    if fmt != "skops":
        return None, None, None
    estimator = load_skops(model, model.stem, trusted_types or ())
    names = getattr(estimator, "feature_names_in_", None)
    classes = getattr(estimator, "classes_", None)
    task = "regression" if not hasattr(estimator, "predict_proba") and hasattr(estimator, "predict") else None
    return ([str(n) for n in names] if names is not None else None,
            [c.item() if isinstance(c, np.generic) else c for c in classes] if classes is not None else None, task)


def _task_of(frame: pd.DataFrame, target: str, recorded: str | None, file_classes) -> str:
    """regression when the file says so (a scikit-learn regressor, a network with one output), or, for a file
    that records no classes, when the target is numbers with more than 20 distinct values; else classification."""
    if recorded or file_classes is not None:
        return recorded or "classification"
    values = frame[target].dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return "regression" if numeric and values.nunique() > 20 else "classification"


def draft_tree(model: Path, data: Path, target: str, *, policy_dir: Path, background: Path | None = None,
               audience: str = "medical", audit_id: str | None = None, title: str | None = None,
               intended_use: str | None = None, owner: str | None = None, sample: int = 20, seed: int = 0,
               trusted_types: list[str] | None = None, trust: str | None = None, classes: list | None = None,
               positive_class=None, explanations: list | None = None, task: str | None = None) -> dict[str, Any]:
    """The policy as a mapping (paths relative to ``policy_dir``). ``task``: classification or regression
    (default: what the model file says, else what the target looks like)."""
    model, data = Path(model), Path(data)
    fmt = "joblib" if trust == "pickle" else format_of(model)
    try:
        frame = pd.read_csv(data)
    except Exception as exc:
        raise DataError(f"{data}: cannot read as CSV: {exc}", hint="give the data as a CSV file") from None
    if target not in frame.columns:
        raise DataError(f"{data}: no column {target!r} (--target)", hint=f"the columns are: {', '.join(map(str, frame.columns))}")
    kind, media = _kind(frame, fmt, target)
    id_column = _id_column(frame, target)
    names, file_classes, recorded = _model_inputs(model, fmt, trusted_types)
    labels = sorted({v.item() if isinstance(v, np.generic) else v for v in frame[target].dropna()}, key=str)
    dataset: dict[str, Any] = {"id": "audited", "path": os.path.relpath(data, policy_dir), "target": target}
    dataset["kind"] = kind
    if id_column:
        dataset["id_column"] = id_column
    dataset |= media
    exclude = {target, id_column} | set(media.values()) | {c for c in frame.columns if "rationale" in str(c)}
    outputs = None
    if not media:  # a table: its columns are the features
        dataset["features"], outputs = _fit_width(model, fmt, infer_features(frame, exclude, order=names), frame)
    task = task or ("regression" if outputs == 1 else _task_of(frame, target, recorded, file_classes))
    entry: dict[str, Any] = {"id": model.stem.replace(" ", "_")[:64] or "model", "path": os.path.relpath(model, policy_dir),
                             "format": fmt}
    if trusted_types:
        entry["trusted_types"] = list(trusted_types)
    if trust:
        entry["trust"] = trust
    if task == "regression":
        entry["task"] = "regression"
    elif classes:  # given by the caller
        entry["classes"] = list(classes)
    elif file_classes is None and FORMATS[fmt].needs_classes:  # the file does not say: the data's labels, sorted
        entry["classes"] = list(labels)
    if positive_class is not None:
        entry["positive_class"] = positive_class
    datasets = [dataset]
    pair = {"model": entry["id"], "dataset": "audited"}
    if background is not None:
        datasets.append(copy.deepcopy({k: v for k, v in dataset.items() if k not in ("id", "path")})
                        | {"id": "reference", "path": os.path.relpath(Path(background), policy_dir)})
        pair["background"] = "reference"
    if explanations is None:
        explanations = _explanations(kind, fmt, missing=bool(frame.drop(columns=[target]).isna().any().any()),
                                     regression=task == "regression")
    return {
        "version": 1,
        "audit": {"id": audit_id or f"{entry['id']}-audit".replace("_", "-")[:64], "audience": audience,
                  "title": title or f"{entry['id']} — explainability audit", "owner": owner or TODO,
                  "reviewers": [], "intended_use": intended_use or TODO, "population": TODO},
        "models": [entry],
        "datasets": datasets,
        "audited": [pair],
        "sample": {"size": sample, "strategy": "stratified", "seed": seed},
        "explanations": explanations,
        "report": {"formats": ["html", "pdf"]},
    }


def _explanations(kind: str, fmt: str, *, missing: bool, regression: bool = False) -> list[dict[str, Any]]:
    """Every registered family that explains this kind of data and this format, with its defaults: gradient
    methods for differentiable models (not on data with missing values), layer methods where layers can be
    hooked, and only families whose defaults need no setting the data cannot give (a layer's name, say, or a
    regression model's target for counterfactuals, which the draft's decision cut-off does not set)."""
    from pydantic import ValidationError

    from .explainers import EXPLAINERS

    chosen = []
    for name, family in EXPLAINERS.items():
        if kind not in family.modalities or (family.requires == "torch" and not FORMATS[fmt].gradients):
            continue
        if (family.needs_eager and not FORMATS[fmt].layers) or (family.finite_inputs and missing):
            continue
        if regression and family.regression_needs:
            continue
        try:
            family.Spec(type=name)
        except ValidationError:
            continue
        chosen.append({"type": name})
    return chosen


_HEADER = """# Draft policy written by `auditor init`. It validates as written; before the audit is relied on,
# replace every TODO and check what the data could not say: display names and units, which features are
# immutable for counterfactuals, the class of interest, and the thresholds the findings must meet.
"""

_REGRESSION = """
# A regression model's score becomes a decision at a cut-off (then its adverse decisions get principal reasons,
# counterfactuals toward the favourable side, and the sample may be drawn near the cut-off), e.g.:
#     decision: {adverse_if: {below: 600}, adverse: decline, favourable: approve}
"""

_PROTECTED_WORDS = ("sex", "gender", "age", "race", "ethnic", "religio", "marital", "national", "foreign", "citizen",
                    "disab", "pregnan", "colou", "color")


def _protected_hint(tree: dict[str, Any]) -> str:
    """A commented protected: block naming the columns whose names suggest a protected characteristic."""
    features = [f for d in tree["datasets"][:1] for f in d.get("features", [])]
    words = lambda name: [w for w in name.lower().replace("-", "_").replace(" ", "_").split("_") if w]  # noqa: E731
    likely = [f for f in features if any(w.startswith(p) for w in words(f["name"]) for p in _PROTECTED_WORDS)]
    lines = ["", "# Protected characteristics (the report then shows a fairness section, and principal reasons never name",
             "# them): list those that are, with the basis the report should show (e.g. sex (ECOA), national origin)."]
    if not likely:
        return "\n".join(lines + ["# protected:", "#   - {feature: <column>, basis: TODO}"]) + "\n"
    lines.append("# protected:  # TODO: columns whose names suggest one; check and uncomment")
    for f in likely:
        bins = "" if f.get("type") == "categorical" else ", bins: [TODO]"
        lines.append(f"#   - {{feature: {f['name']}, basis: TODO{bins}}}")
    return "\n".join(lines) + "\n"


_THRESHOLDS = """
# Findings the audit must pass (examples; uncomment and set the bounds your model-risk policy requires):
# thresholds:
#   - {metric: performance.roc_auc, min: 0.7, warn_min: 0.75}
#   - {metric: data.overlap_share, max: 0}          # the audited rows are not reference rows
#   - {metric: stability.psi, by: score, max: 0.25, warn_max: 0.1}
"""


def _figures(explanations: list[dict[str, Any]]) -> str:
    """The quality figures the drafted explanations offer to thresholds, as comment lines."""
    from .explainers import EXPLAINERS

    lines = [f"#   {e.get('id', e['type'])}.{figure}: {text}" for e in explanations
             for figure, text in EXPLAINERS[e["type"]].figures.items()]
    return ("# and the explanations' quality figures, e.g. {metric: <name>.<figure>, min: ...}:\n"
            + "\n".join(lines) + "\n") if lines else ""


class _Flow(dict):
    """A mapping written on one line: a feature, as the sample policies write them."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data.items(),
                                                                            flow_style=True))


def _flow_features(datasets: list[dict]) -> list[dict]:
    return [d | {"features": [_Flow({k: v for k, v in f.items() if k != "coded"}) for f in d["features"]]}
            if "features" in d else d for d in datasets]


def policy_text(tree: dict[str, Any]) -> str:
    """The draft as YAML with its comments: TODO marks what a person must fill in."""
    parts = [_HEADER]
    for key in tree:
        value = tree[key]
        if key == "datasets":
            value = _flow_features(value)
        elif key in ("explanations", "audited"):
            value = [_Flow(v) for v in value]
        elif key in ("sample", "report"):
            value = _Flow(value)
        block = yaml.dump({key: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
        if key == "audit":
            block = block.replace(f"owner: {TODO}", f"owner: {TODO}  # the person or team accountable for the model")
            block = block.replace("reviewers: []", "reviewers: []  # TODO: who reviews this audit")
            block = block.replace(f"intended_use: {TODO}", f"intended_use: {TODO}  # what the model decides, for whom")
            block = block.replace(f"population: {TODO}", f"population: {TODO}  # who the decisions are about")
        if key == "datasets":
            for f in (f for d in tree["datasets"][:1] for f in d.get("features", []) if f.get("coded")):
                block = block.replace(f"  - {{name: {f['name']},", f"  # TODO: check: {f['name']} is drafted as "
                                      "categorical (codes) because the network takes it one-hot\n"
                                      f"  - {{name: {f['name']},", 1)
        if key == "models" and "classes" in tree["models"][0]:
            block = block.replace("  classes:", "  # TODO: check the classes are in the order of the model's outputs\n"
                                  "  classes:", 1)
        parts.append(block)
    regression = tree["models"][0].get("task") == "regression"
    thresholds = _THRESHOLDS.replace("performance.roc_auc, min: 0.7, warn_min: 0.75",
                                     "performance.r2, min: 0.3, warn_min: 0.5") if regression else _THRESHOLDS
    return ("".join(parts) + (_REGRESSION if regression else "") + _protected_hint(tree) + thresholds
            + _figures(tree["explanations"]))


def draft_policy(model: Path, data: Path, target: str, *, out: Path, **options) -> Path:
    """Write the draft to ``out`` (atomically) after checking that it loads and that its models fit its data."""
    from .audit import prepare
    from .policy import load_policy

    out = Path(out)
    tree = draft_tree(model, data, target, policy_dir=out.resolve().parent, **options)
    text = policy_text(tree)
    temporary = out.with_name(f".{out.name}.draft")
    temporary.write_text(text, encoding="utf-8")
    try:
        prepare(load_policy(temporary))
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, out)
    return out
