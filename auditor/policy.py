"""The policy file: what to audit, on which data, with which explanations.

A policy is YAML with ``version: 1``. :func:`load_policy` parses it, validates it into typed objects
and checks cross-references (ids, files, applicability of each explanation), collecting *every*
problem before raising one :class:`~auditor.errors.PolicyError`. Each problem names the file, the
line where known, the field path and the fix.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator,
                      model_validator)

from .data_checks import DataChecksSpec
from .fairness import FairnessSpec, ProtectedSpec
from .performance import PerformanceSpec
from .errors import PolicyError, Problem
from .policy_checks import field_path as _field_path
from .policy_checks import not_a_file as _not_a_file
from .policy_checks import reference_problems
from .formats import FORMATS, TRUSTED_LIBRARIES
from .explainers import EXPLAINERS, registry_key
from .modalities import modality_of
from .modalities.dicom import DicomKeyword, DicomWindow
from .yaml_lines import line_of, read_yaml

__all__ = [
    "AgreementSpec",
    "AuditInfo",
    "AuditedPair",
    "CutOff",
    "DecisionSpec",
    "DatasetSpec",
    "FeatureSpec",
    "ModelSpec",
    "Policy",
    "PrincipalReasonsSpec",
    "ReportSpec",
    "SampleSpec",
    "load_policy",
    "policy_json_schema",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Label = Union[int, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuditInfo(_Strict):
    """Who audits what, for whom, and for which use."""

    id: str = Field(pattern=ID_PATTERN, description="Stable audit id; runs of the same audit share it.")
    title: str
    audience: Literal["finance", "medical"]
    owner: str = Field(description="Person or team accountable for the model.")
    reviewers: list[str] = Field(default_factory=list)
    intended_use: str
    population: str | None = Field(
        default=None, description="Who the model's decisions are about (patients, applicants)."
    )
    out_of_scope: list[str] = Field(default_factory=list, description="Uses the model must not be put to.")
    limitations: list[str] = Field(default_factory=list, description="Known limitations, in plain words.")
    risk_tier: str | None = Field(default=None, description="Model risk tier in the inventory (finance).")


class ArchitectureSpec(_Strict):
    file: Path = Field(description="Python file defining the model class (relative to the policy). Runs as code.")
    class_name: str = Field(alias="class", description="The nn.Module subclass to instantiate.")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class CutOff(_Strict):
    """Which side of a score is the adverse decision."""

    below: float | None = Field(default=None, description="Scores below this are adverse (e.g. a credit score).")
    above: float | None = Field(default=None, description="Scores above this are adverse (e.g. a risk score).")

    @model_validator(mode="after")
    def _one_side(self):
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of 'below' or 'above'")
        return self

    @property
    def value(self) -> float:
        return self.below if self.below is not None else self.above  # type: ignore[return-value]

    @property
    def side(self) -> str:
        return "below" if self.below is not None else "above"

    def adverse(self, scores):
        """Whether each score is on the adverse side (a score equal to the cut-off is not adverse)."""
        import numpy as np

        scores = np.asarray(scores, dtype=np.float64)
        return scores < self.value if self.side == "below" else scores > self.value


class DecisionSpec(_Strict):
    """How a regression model's score becomes a decision: a cut-off and the names of its two outcomes."""

    adverse_if: CutOff = Field(description="e.g. {below: 600}: a score under 600 is an adverse decision.")
    adverse: str = Field(default="adverse", min_length=1, description="Name of the adverse decision, e.g. decline.")
    favourable: str = Field(default="favourable", min_length=1, description="Name of the other, e.g. approve.")

    @model_validator(mode="after")
    def _distinct(self):
        if self.adverse == self.favourable:
            raise ValueError("'adverse' and 'favourable' must differ")
        return self

    def labels(self, scores) -> list[str]:
        return [self.adverse if a else self.favourable for a in self.adverse_if.adverse(scores)]


class ModelSpec(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    path: Path
    format: Literal[tuple(FORMATS)] = Field(  # type: ignore[valid-type]
        description="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()) + "."
    )
    architecture: ArchitectureSpec | None = Field(
        default=None, description="state_dict only: the Python class whose weights the file holds."
    )
    max_length: int = Field(default=64, ge=8, le=512, description="huggingface only: tokens per text.")
    task: Literal["classification", "regression"] = Field(
        default="classification",
        description="classification: the model gives class probabilities; regression: one score per decision "
        "(a loss estimate, a risk score), measured against a numeric target.")
    decision: DecisionSpec | None = Field(
        default=None, description="Regression only: a cut-off that turns the score into a decision, which then gets "
        "principal reasons, recourse and findings like a classifier's.")
    classes: list[Label] | None = Field(
        default=None,
        description="Class labels as they appear in the dataset's target column, in the order of the "
        "model's outputs. Required for formats that do not record them (PyTorch, ONNX, boosters); for scikit-learn "
        "it must match the estimator's classes_.",
    )
    class_names: list[str] | None = Field(
        default=None, description="Display names for the classes, same order as classes."
    )
    positive_class: Label | None = Field(
        default=None,
        description="Label of the class of interest (e.g. malignant, default). Attributions are signed "
        "towards it. Defaults to the last class.",
    )
    trust: Literal["pickle"] | None = Field(
        default=None, description="Set to 'pickle' to allow loading a pickle/joblib file (runs its code)."
    )
    trusted_types: list[str] = Field(
        default_factory=list,
        description="Extra types a skops file may contain beyond scikit-learn's and numpy's.",
    )
    trusted_libraries: list[Literal[tuple(TRUSTED_LIBRARIES)]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="skops: libraries whose scikit-learn estimators the file may hold (their booster types are "
        "then trusted), e.g. [xgboost].",
    )
    outputs: Literal["logits", "probabilities"] | None = Field(
        default=None, description="PyTorch and ONNX: what the model returns (softmax is applied to logits); default "
        "logits for PyTorch, probabilities for ONNX.")
    categorical_encoding: Literal["onehot", "ordinal"] = Field(
        default="onehot",
        description="PyTorch, ONNX and boosters: how categorical features are fed to the model, in category order "
        "(one-hot columns, or the category's index). scikit-learn models get the original values (their pipeline "
        "encodes them).",
    )

    @property
    def logits(self) -> bool:
        """Whether the model returns logits (a softmax gives its probabilities)."""
        if self.task == "regression":
            return False
        return self.outputs == "logits" or (self.outputs is None and FORMATS[self.format].gradients)
    version: str | None = None
    description: str | None = None


class FeatureSpec(_Strict):
    name: str = Field(min_length=1, description="Column name in the dataset.")
    type: Literal["numeric", "categorical"] = "numeric"
    display_name: str | None = None
    unit: str | None = None
    categories: list[Label] | None = Field(
        default=None, description="Categorical only: allowed values, in code order (default: sorted values)."
    )
    description: str | None = None

    @property
    def label(self) -> str:
        return self.display_name or self.name


class DatasetSpec(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    path: Path | None = Field(default=None, description="CSV or Parquet file.")
    source: Literal["sklearn:breast_cancer", "sklearn:digits", "sklearn:iris", "sklearn:wine",
                    "sklearn:diabetes"] | None = Field(
        default=None, description="A dataset scikit-learn ships (instead of path)."
    )
    format: Literal["csv", "parquet"] | None = Field(default=None, description="Default: from the file suffix.")
    target: str = Field(description="Column holding the true outcome.")
    id_column: str | None = Field(
        default=None, description="Column with a stable decision id; default: the row number in the file."
    )
    kind: Literal["tabular", "image", "text"] = Field(
        default="tabular",
        description="tabular: one row per decision; image: a CSV listing PNG or DICOM files; text: a CSV with a text column.",
    )
    features: list[FeatureSpec] = Field(default_factory=list, description="Tabular only: the model's input columns.")
    image_column: str = Field(default="file", description="Image only: column with the image path (relative to the CSV).")
    mask_column: str | None = Field(
        default=None, description="Image only: column with a ground-truth mask PNG (scores image explanations)."
    )
    text_column: str = Field(default="text", description="Text only: column with the text.")
    rationale_columns: tuple[str, str] | None = Field(
        default=None, description="Text only: start and end character of the ground-truth rationale span."
    )
    dicom_tags: list[DicomKeyword] = Field(default_factory=list, description="Image only: DICOM keywords (e.g. "
                                           "Modality) each decision's record keeps; patient identifiers are refused.")
    dicom_window: DicomWindow | None = Field(default=None, description="Image only: window for monochrome DICOM.")
    description: str | None = None

    @model_validator(mode="after")
    def _fits_its_kind(self):
        problems = modality_of(self).spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class AuditedPair(_Strict):
    model: str
    dataset: str
    background: str | None = Field(
        default=None,
        description="Dataset id used as the reference distribution for explainers (e.g. training data); "
        "defaults to the audited dataset.",
    )


class ThresholdSpec(_Strict):
    """A quality figure or performance metric that must hold; it becomes a pass / warn / fail finding."""

    id: str | None = Field(default=None, description="Name of the finding; default: the metric (and subgroup).")
    metric: str = Field(
        description="performance.<accuracy|balanced_accuracy|roc_auc|brier_score> (regression: <rmse|mae|r2>), fairness.positive_rate_gap, "
        "fairness.<adverse_impact_ratio|tpr_gap|fpr_gap> (by a protected feature, else the worst), "
        "principal_reasons.protected_share, principal_reasons.stability, "
        "agreement.rate, data.<missing_rate|duplicate_share|overlap_share>, stability.psi, or "
        "<explanation name>.<figure>, a quality figure of the explanation's type."
    )
    min: float | None = Field(default=None, description="Fail below this.")
    max: float | None = Field(default=None, description="Fail above this.")
    warn_min: float | None = Field(default=None, description="Warn below this (and at or above min).")
    warn_max: float | None = Field(default=None, description="Warn above this (and at or below max).")
    models: list[str] | None = Field(default=None, description="Models it applies to; default: every audited model.")
    by: str | None = Field(default=None, description="performance.* and fairness.positive_rate_gap: a feature whose "
                           "groups are checked one by one (categorical, or numeric with bins); the other fairness.*: "
                           "a protected feature (grouped as under protected), else the worst; data.missing_rate and "
                           "stability.psi: the feature (or, for stability.psi, score) measured, else the worst.")
    bins: list[float] | None = Field(default=None, description="Numeric 'by' feature: bin edges, e.g. [18, 25, 40, 60, 100].")
    compare: Literal["point", "lower", "upper"] = Field(
        default="point", description="performance.* only: what is compared with min/max: the figure itself (point) "
        "or a bound of its confidence interval, e.g. lower: the interval's lower bound must reach min. (Not 'on:', "
        "which YAML 1.1 reads as true.)")

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("give 'min' or 'max' (or both)")
        if self.metric == "fairness.positive_rate_gap" and not self.by:
            raise ValueError("fairness.positive_rate_gap compares groups: give 'by' (a feature)")
        if self.compare != "point" and not self.metric.startswith("performance."):
            raise ValueError(f"'compare: {self.compare}' tests a bound of a confidence interval, which performance.* "
                             "figures have: use it with a performance metric, or remove 'compare'")
        return self

    @property
    def name(self) -> str:
        return self.id or (self.metric + (f" by {self.by}" if self.by else ""))


class SigningSpec(_Strict):
    identity: Path | None = Field(
        default=None, description="Signing identity folder (see `auditor keys init`); --identity overrides it."
    )
    passphrase_env: str = Field(
        default="AUDITOR_SIGNING_PASSPHRASE", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the passphrase of encrypted keys.",
    )
    timestamp_url: str | None = Field(
        default=None, description="URL of an RFC 3161 timestamp authority: the PDF signature carries its timestamp "
        "(PAdES B-T) and manifest.tsr its token over manifest.json; --timestamp-url overrides it. Without one, the "
        "signing time is the signer's own claim.",
    )

    @field_validator("timestamp_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        from .timestamps import is_http_url

        if value is not None and not is_http_url(value):
            raise ValueError(f"expected the http:// or https:// URL of an RFC 3161 timestamp authority, got {value!r}"
                             " (e.g. https://freetsa.org/tsr)")
        return value


class SampleSpec(_Strict):
    size: int = Field(default=20, ge=1, le=1_000_000)
    strategy: Literal["random", "stratified", "boundary", "misclassified"] = Field(
        default="stratified",
        description="random; stratified: by true class (regression: by decile of the prediction); boundary: least "
        "sure (regression: nearest the decision cut-off); misclassified: predicted class wrong (regression: the "
        "cut-off decides the other way than the true value would).")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class ReportSpec(_Strict):
    formats: list[Literal["html", "pdf"]] = Field(default_factory=lambda: ["html", "pdf"], min_length=1)
    top_features: int = Field(default=10, ge=1, le=50, description="Features shown per decision chart.")
    max_decisions: int | None = Field(
        default=25, ge=0,
        description="Detailed per-decision sections per model (misclassified and adverse first, then in sample "
        "order); when the sample is larger, a register lists every sampled decision in one line each, and the "
        "evidence keeps all of them. null: a detailed section for every decision.",
    )


class PrincipalReasonsSpec(_Strict):
    """Adverse-action principal reasons (ECOA / Regulation B 1002.9): up to four, ranked, per adverse decision."""

    adverse_class: Label | None = Field(
        default=None, description="Label of the adverse outcome of a classifier (e.g. bad, decline). A regression "
        "model's adverse decision is its decision's 'adverse' side.")
    max_reasons: int = Field(default=4, ge=1, le=4, description="Reg B commentary: more than four is not likely to help.")
    methods: list[str] | None = Field(
        default=None, description="Explanation names the reasons derive from; default: every per-decision method."
    )
    texts: dict[str, str] = Field(
        default_factory=dict, description="Reason wording per feature, e.g. months_employed: Length of employment."
    )
    missing_texts: dict[str, str] = Field(
        default_factory=dict,
        description="Reason wording per feature when the decision's value is missing (default: 'No record of: "
        "<display name>'), e.g. months_employed: No employment history on file.")
    stability_repeats: int = Field(
        default=1, ge=0, le=10,
        description="Re-runs, with other seeds, of the explanations the reasons derive from, on the adverse decisions: "
        "a decision whose set of reasons changes is listed (principal_reasons.stability); 0: no re-run.")
    min_overlap: float = Field(
        default=0.5, ge=0, le=1,
        description="The methods behind the reasons agree when the mean pairwise overlap (Jaccard) of their top "
        "reasons is at least this; below it the report asks for review before the reasons are used.",
    )


class AgreementSpec(_Strict):
    """When a decision's attribution methods count as agreeing."""

    top_k: int = Field(default=5, ge=1, le=50, description="Top features (by |attribution|) each method is compared on.")
    min_shared: float = Field(
        default=0.6, ge=0, le=1,
        description="Share of the top k that must be in every method's top k (and the rank correlation not negative).",
    )


class Policy(_Strict):
    version: Literal[1]
    audit: AuditInfo
    models: list[ModelSpec] = Field(min_length=1)
    datasets: list[DatasetSpec] = Field(min_length=1)
    audited: list[AuditedPair] = Field(min_length=1, description="Which model is audited on which dataset.")
    sample: SampleSpec = Field(default_factory=SampleSpec)
    explanations: list[Any] = Field(min_length=1, description="The explanations to compute; see their 'type'.")
    principal_reasons: PrincipalReasonsSpec | None = None
    agreement: AgreementSpec = Field(default_factory=AgreementSpec)
    thresholds: list[ThresholdSpec] = Field(default_factory=list, description="Findings a run must pass.")
    data_checks: DataChecksSpec = Field(default_factory=DataChecksSpec,
                                        description="Where the data checks raise observations (the usual bands).")
    protected: list[ProtectedSpec] = Field(
        default_factory=list, description="Features that are protected characteristics (prohibited bases): their "
        "groups' decision rates and error rates are compared, features associated with them are listed as possible "
        "proxies, and principal reasons never name them.")
    fairness: FairnessSpec = Field(default_factory=FairnessSpec,
                                   description="Where the fairness checks of the protected features raise observations.")
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec, description="Confidence intervals of the "
                                         "performance figures, the operating threshold, the smallest group.")
    signing: SigningSpec | None = None
    report: ReportSpec = Field(default_factory=ReportSpec)

    _file: Path = PrivateAttr(default=Path("policy.yaml"))
    _sha256: str = PrivateAttr(default="")

    @field_validator("explanations")
    @classmethod
    def _unique_names(cls, value: list) -> list:
        names = [spec.name for spec in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"explanation names must be unique; give each repeated type an 'id' ({', '.join(dupes)})")
        return value

    @property
    def file(self) -> Path:
        return self._file

    @property
    def sha256(self) -> str:
        return self._sha256

    def resolve(self, path: Path) -> Path:
        """A path from the policy, relative to the policy file's folder."""
        return path if path.is_absolute() else (self._file.parent / path)

    def model(self, model_id: str) -> ModelSpec:
        return next(m for m in self.models if m.id == model_id)

    def dataset(self, dataset_id: str) -> DatasetSpec:
        return next(d for d in self.datasets if d.id == dataset_id)


@functools.lru_cache(maxsize=8)
def _derived(key: tuple) -> type[Policy]:
    specs = [cls.Spec for _, cls in key]
    union = Annotated[Union[tuple(specs)], Field(discriminator="type")] if len(specs) > 1 else specs[0]
    figures = ", ".join(f"<name>.{f}" + f" ({t})" for t, cls in key for f in cls.figures)
    threshold = create_model("ThresholdSpec", __base__=ThresholdSpec, metric=(str, Field(description=(
        "performance.<accuracy|balanced_accuracy|roc_auc|brier_score> (regression: <rmse|mae|r2>), fairness.positive_rate_gap, agreement.rate, "
        "fairness.<adverse_impact_ratio|tpr_gap|fpr_gap> (by a protected feature; default: the worst), "
        "principal_reasons.protected_share, principal_reasons.stability, data.<missing_rate|duplicate_share|overlap_share>, stability.psi (by a feature or score; default: the "
        f"worst feature), or a quality figure of an explanation, by its name in the policy and its type: {figures}."))))
    return create_model("Policy", __base__=Policy,
                        explanations=(list[union], Field(min_length=1, description="The explanations to compute.")),
                        thresholds=(list[threshold], Field(default_factory=list,
                                                           description="Findings a run must pass.")))


def policy_model() -> type[Policy]:
    """The policy model with every registered family's spec under ``explanations``."""
    return _derived(registry_key())


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of the policy file, for editors' autocompletion."""
    schema = policy_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "auditor policy, version 1"
    return schema


# --- loading -------------------------------------------------------------------------------------------


def _fix_for(err: dict, field: str) -> str | None:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"add '{field.rsplit('.', 1)[-1]}' here"
    if kind == "extra_forbidden":
        return "remove this field or check its spelling (run `auditor schema` for the allowed fields)"
    if kind == "union_tag_invalid":
        return f"use one of: {', '.join(sorted(EXPLAINERS))}"
    if kind == "union_tag_not_found":
        return f"add 'type:' with one of: {', '.join(sorted(EXPLAINERS))}"
    if kind == "literal_error":
        return f"use one of: {ctx.get('expected', '')}"
    if kind == "string_pattern_mismatch":
        return "use letters, digits, '.', '_' or '-' (start with a letter or digit, at most 64 characters)"
    if kind.startswith(("int_", "float_", "greater", "less", "too_short", "too_long", "bool_", "string_")):
        return "correct the value's type or range"
    return None


def _schema_problems(exc: ValidationError, data: Any, file: str, lines: dict) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        field = _field_path(loc, data)
        message = err["msg"]
        if err["type"] == "union_tag_invalid":
            message = f"unknown explanation type {err['ctx'].get('tag')!r}"
        problems.append(Problem(file, field, message, _fix_for(err, field), line_of(loc, lines)))
    return problems


def _file_problems(data: dict, base: Path, file: str, lines: dict) -> list[Problem]:
    """Missing model and dataset files, checked on the raw YAML so they are reported even when
    other fields fail validation."""
    problems = []
    for kind in ("models", "datasets"):
        items = data.get(kind)
        for i, item in enumerate(items if isinstance(items, list) else []):
            raw = item.get("path") if isinstance(item, dict) else None
            if not isinstance(raw, str) or not raw:
                continue
            path = Path(raw) if Path(raw).is_absolute() else base / raw
            fmt = item.get("format")  # raw YAML: may be a list or a mapping, which cannot be looked up
            folder = kind == "models" and isinstance(fmt, str) and fmt in FORMATS and FORMATS[fmt].folder
            why = _not_a_file(path, folder_ok=folder)
            if why:
                loc = (kind, i, "path")
                problems.append(Problem(file, f"{kind}[{i}].path", why,
                                        "correct the path (relative paths are resolved from the policy file's folder)",
                                        line_of(loc, lines)))
    return problems


def load_policy(path: str | Path) -> Policy:
    """Read, validate and cross-check a policy file; raise PolicyError listing every problem."""
    path = Path(path)
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError([Problem(file, "(file)", "policy file not found", "check the path")]) from None
    except OSError as exc:
        raise PolicyError([Problem(file, "(file)", f"cannot read policy file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError([Problem(file, "(file)", "policy file is not UTF-8 text", "save it as UTF-8")]) from None
    data, lines = read_yaml(text, file)
    if not isinstance(data, dict):
        raise PolicyError([Problem(file, "(top level)", "expected a mapping with version, audit, models, ...",
                                   "start from one of the files in policies/")])
    if data.get("version") != 1:
        raise PolicyError([Problem(file, "version", f"unsupported policy version {data.get('version')!r}",
                                   "set version: 1", lines.get(("version",)))])
    missing = _file_problems(data, path.resolve().parent, file, lines)
    try:
        policy = policy_model().model_validate(data)
    except ValidationError as exc:
        problems = _schema_problems(exc, data, file, lines) + missing
        raise PolicyError(sorted(problems, key=lambda p: p.line or 0)) from None
    policy._file = path.resolve()
    policy._sha256 = hashlib.sha256(raw).hexdigest()
    problems = missing + reference_problems(policy, file, lines)
    if problems:
        raise PolicyError(sorted(problems, key=lambda p: p.line or 0))
    return policy


def canonical_json(policy: Policy) -> dict[str, Any]:
    """The policy as loaded (defaults filled in), for the evidence."""
    return json.loads(policy.model_dump_json())
