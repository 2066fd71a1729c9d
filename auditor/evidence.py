"""Evidence: the typed, versioned record of an audit, written as ``evidence.json``.

Everything the report shows comes from here, and nothing here depends on when or where the audit
ran: no timestamps, no absolute paths. The same policy, inputs and seed give byte-identical evidence.

The result, summary and explanation types inside it come from the families in the registry
(:data:`auditor.explainers.EXPLAINERS`): :func:`evidence_model` derives the typed model from the
registry as it is when called, so a family added to the registry appears in the evidence schema
(:func:`evidence_json_schema`) and is read back by :func:`read_evidence` with no edit here. The base
classes below leave the per-family fields open; :func:`evidence_types` narrows them.

Figures are addressed by evidence paths (:mod:`auditor.paths`): the report prints every figure with
its path, and findings name the path their value rests on.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Iterator, Literal, Union

from pydantic import BaseModel, Field, create_model, field_serializer

from .agreement import Agreement, AgreementSummary
from .data_checks import DataCheck, Stability
from .explainers import Observation, registry_key
from .fairness import Fairness
from .findings import Finding
from .performance import GroupStats, Performance, RegressionGroupStats, RegressionPerformance
from .reasons import PrincipalReasons, ReasonsSummary

__all__ = [
    "EVIDENCE_VERSION",
    "DatasetInfo",
    "Decision",
    "Evidence",
    "MethodRecord",
    "ModelInfo",
    "SampleInfo",
    "Subject",
    "evidence_json_schema",
    "evidence_model",
    "evidence_types",
    "read_evidence",
]

EVIDENCE_VERSION = "1.5"  # 1.5: intervals of the adverse impact ratio and of the rate gaps (fairness)
READABLE_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
Label = Union[int, str]


class FeatureInfo(BaseModel):
    name: str
    display_name: str
    type: Literal["numeric", "categorical"]
    unit: str | None = None
    categories: list[Label] | None = None


class ModelInfo(BaseModel):
    id: str
    kind: str
    format: str
    task: Literal["classification", "regression"] = Field(
        default="classification", description="regression: one score per decision; its one class is 'score'.")
    decision: dict[str, Any] | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="Regression: the policy's decision cut-off (adverse_if, adverse, favourable); absent without one.")
    path: str = Field(description="As written in the policy (relative to the policy file).")
    sha256: str
    classes: list[Label]
    class_names: list[str]
    positive_class: Label
    version: str | None = None
    description: str | None = None
    warnings: list[str] = Field(default_factory=list)


class DatasetInfo(BaseModel):
    id: str
    kind: Literal["tabular", "image", "text"] = "tabular"
    source: str
    sha256: str | None = Field(description="Of the file; None for a dataset bundled with a package.")
    rows: int
    target: str
    class_counts: dict[str, int]
    features: list[FeatureInfo]
    unused_columns: list[str]
    description: str | None = None


class SampleInfo(BaseModel):
    strategy: str
    seed: int
    requested: int
    available: int
    size: int
    note: str | None = None


class MethodRecord(BaseModel):
    name: str
    type: str
    title: str
    scope: Literal["local", "global"]
    spec: dict[str, Any] = Field(description="The policy entry, with defaults filled in.")
    parameters: dict[str, Any] = Field(description="Values derived while running (kernel width, baseline).")
    summary: Any = Field(default=None, description="The family's summary over this subject's decisions.")
    groups: dict[str, list[dict[str, Any]]] | None = Field(
        default=None,
        description="Per feature a threshold names in 'by': the family's group figures for each group of the "
        "sampled decisions (e.g. the recourse rate per group).")


class SkippedMethod(BaseModel):
    name: str
    reason: str


class Decision(BaseModel):
    id: Label = Field(description="Stable id: the id column's value, or the row number in the dataset file.")
    row: int
    values: dict[str, float | str | None] = Field(
        description="Feature values as in the data (categories by name); null: the value is missing.")
    image_png: str | None = Field(default=None, description="Image data: the input image, PNG, base64.")
    image_file: str | None = Field(default=None, description="Image data: the file, relative to the dataset CSV.")
    mask_png: str | None = Field(default=None, description="Image data: the ground-truth mask, PNG, base64.")
    dicom_tags: dict[str, str | None] | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="DICOM images: the tags the policy keeps (datasets[].dicom_tags), by keyword; null: not in "
        "the file. No other tag of the file is read. Absent for PNG images and other data.")
    text: str | None = Field(default=None, description="Text data: the input text.")
    true_label: Label | float = Field(description="The true class, or a regression model's true value.")
    predicted_label: Label | None = Field(
        description="The predicted class; a regression model's decision under its cut-off (None without one).")
    prediction: float | None = Field(default=None, exclude_if=lambda v: v is None,
                                     description="Regression: the model's score (absent for classifiers).")
    probabilities: dict[str, float] = Field(
        default_factory=dict, description="Per class label (as text); empty for a regression model.")
    correct: bool | None = Field(description="Predicted class = true class; regression: the score and the true value "
                                 "fall on the same side of the cut-off (None without one).")
    explanations: dict[str, Any] = Field(description="Per explanation name: the family's result.")
    agreement: Agreement | None = None
    principal_reasons: PrincipalReasons | None = Field(
        default=None, description="Adverse decisions only, when the policy asks for principal reasons."
    )


class Subject(BaseModel):
    """One audited (model, dataset) pair."""

    model: ModelInfo
    dataset: DatasetInfo
    background: str = Field(description="Id of the dataset used as the explainers' reference distribution.")
    sample: SampleInfo
    performance: Performance | RegressionPerformance
    methods: list[MethodRecord]
    skipped: list[SkippedMethod] = Field(default_factory=list)
    global_explanations: dict[str, Any] = Field(default_factory=dict)
    subgroups: dict[str, list[GroupStats] | list[RegressionGroupStats]] | None = Field(
        default=None, description="Per feature named by a threshold's 'by': performance of each group."
    )
    used_features: list[str] | None = Field(
        default=None, description="Features whose values change the model's output (for principal reasons)."
    )
    agreement: AgreementSummary | None = Field(default=None, description="Method agreement over the decisions.")
    reasons: ReasonsSummary | None = Field(default=None, description="Principal reasons over the decisions.")
    score_stability: Stability | None = Field(
        default=None, description="PSI of the model's score on the audited against the background data.")
    fairness: Fairness | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="Tabular data with protected features (the policy's protected): decision and error rates per "
        "group, adverse impact ratios, calibration per group and possible proxies. Absent without protected features.")
    observations: list[Observation] = Field(
        default_factory=list, description="Points for the reviewer, each with what raised it.")
    decisions: list[Decision]  # an audit's are on disk (auditor.spill.Spilled): dumped as the list they read as

    @field_serializer("decisions", mode="wrap")
    def _decisions(self, decisions, handler):
        return handler(decisions if isinstance(decisions, list) else list(decisions))


class Evidence(BaseModel):
    evidence_version: Literal["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"] = EVIDENCE_VERSION
    auditor_version: str
    policy_sha256: str
    audit: dict[str, Any]
    policy: dict[str, Any] = Field(description="The policy as loaded, defaults filled in.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Command-line values that replaced the policy's.")
    data_checks: list[DataCheck] = Field(
        default_factory=list, description="Per audited tabular dataset and its background: the data checks.")
    subjects: list[Subject]
    findings: list[Finding] = Field(default_factory=list, description="The policy's thresholds, evaluated.")
    finding_counts: dict[str, int] = Field(default_factory=dict, description="Findings by status (pass, warn, fail).")
    warnings: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        """Canonical text: sorted keys off (field order is meaningful), 2-space indent, trailing newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def json_chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The UTF-8 bytes of :meth:`to_json`, in chunks of about ``size`` bytes: for writing the evidence to a
        file without holding its text whole, nor its JSON form: the decisions are dumped one at a time as the
        encoder reaches them (the same encoder and the same dump per decision, so the same bytes)."""
        encoder = json.JSONEncoder(indent=2, ensure_ascii=False, allow_nan=False)
        document = self.model_dump(mode="json", exclude={"subjects": {"__all__": {"decisions"}}})
        for subject, dumped in zip(self.subjects, document["subjects"]):
            dumped["decisions"] = _Dumped(subject.decisions)  # the last field of a subject, as in model_dump
        pieces: list[str] = []
        held = 0
        for piece in encoder.iterencode(document):
            pieces.append(piece)
            held += len(piece)
            if held >= size:
                yield "".join(pieces).encode("utf-8")
                pieces, held = [], 0
        pieces.append("\n")
        yield "".join(pieces).encode("utf-8")


class _Dumped(list):
    """Models as a list that the JSON encoder walks: each dumped (``mode="json"``) as the encoder reaches it, then
    dropped. json's encoder (the pure-Python one, which ``indent`` selects) asks a list for its length, then
    iterates it."""

    def __init__(self, models: list[BaseModel]) -> None:
        super().__init__()
        self._models = models

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[Any]:
        return (m.model_dump(mode="json") for m in self._models)


# --- the typed model, derived from the registry ----------------------------------------------------------


def _union(types: list[type], tag: str):
    unique = list(dict.fromkeys(types))
    if len(unique) == 1:
        return unique[0]
    return Annotated[Union[tuple(unique)], Field(discriminator=tag)]


@functools.lru_cache(maxsize=8)
def _derived(key: tuple) -> SimpleNamespace:
    families = [cls for _, cls in key]
    local = _union([r for c in families if c.scope == "local" for r in c.Results], "method")
    global_ = _union([r for c in families if c.scope == "global" for r in c.Results], "method")
    summaries = [t for c in families for t in c.Summaries]
    summary = _union(summaries, "kind") if summaries else Any
    record = create_model("MethodRecord", __base__=MethodRecord, summary=(summary | None, None))
    decision = create_model("Decision", __base__=Decision, explanations=(dict[str, local], ...))
    subject = create_model("Subject", __base__=Subject, methods=(list[record], ...),
                           global_explanations=(dict[str, global_], {}), decisions=(list[decision], ...))
    evidence = create_model("Evidence", __base__=Evidence, subjects=(list[subject], ...))
    return SimpleNamespace(MethodRecord=record, Decision=decision, Subject=subject, Evidence=evidence)


def evidence_types() -> SimpleNamespace:
    """The typed models (``Evidence``, ``Subject``, ``Decision``, ``MethodRecord``) with every registered
    family's result and summary types: what an audit builds and what ``read_evidence`` returns."""
    return _derived(registry_key())


def evidence_model() -> type[Evidence]:
    """The evidence model with every registered family's result and summary types."""
    return evidence_types().Evidence


def evidence_json_schema() -> dict[str, Any]:
    schema = evidence_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"auditor evidence, version {EVIDENCE_VERSION}"
    return schema


def read_evidence(path: str | Path) -> Evidence:
    return evidence_model().model_validate_json(Path(path).read_text(encoding="utf-8"))
