"""Evidence: the typed, versioned record of an audit, written as ``evidence.json``.

Everything the report shows comes from here, and nothing here depends on when or where the audit
ran: no timestamps, no absolute paths. The same policy, inputs and seed give byte-identical evidence.
``evidence_json_schema()`` is the JSON Schema it validates against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field

from .explainers.attention import AttentionResult
from .explainers.counterfactuals import CounterfactualsResult
from .explainers.image_maps import ImageMapResult
from .explainers.text_attribution import TokenAttributionResult
from .explainers.integrated_gradients import IntegratedGradientsResult
from .explainers.lime_tabular import LimeResult
from .explainers.permutation import PermutationImportanceResult
from .explainers.rules import RulesResult
from .findings import Finding
from .performance import GroupStats, Performance
from .reasons import PrincipalReasons

__all__ = [
    "EVIDENCE_VERSION",
    "Agreement",
    "DatasetInfo",
    "Decision",
    "Evidence",
    "MethodRecord",
    "ModelInfo",
    "SampleInfo",
    "Subject",
    "evidence_json_schema",
    "read_evidence",
]

EVIDENCE_VERSION = "1.0"

LocalResult = Annotated[Union[IntegratedGradientsResult, LimeResult, CounterfactualsResult, ImageMapResult,
                              TokenAttributionResult, AttentionResult], Field(discriminator="method")]
GlobalResult = Annotated[Union[PermutationImportanceResult, RulesResult], Field(discriminator="method")]
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


class SkippedMethod(BaseModel):
    name: str
    reason: str


class Agreement(BaseModel):
    methods: list[str]
    top_k: int
    top_features: dict[str, list[str]] = Field(description="Each method's top-k features by |attribution|.")
    shared: int = Field(description="Features in every method's top k.")
    rank_correlation: float | None = Field(description="Spearman correlation of attributions over all features.")
    agree: bool = Field(description="At least 60% of the top k are shared and the correlation is positive.")


class Decision(BaseModel):
    id: Label = Field(description="Stable id: the id column's value, or the row number in the dataset file.")
    row: int
    values: dict[str, float | str] = Field(description="Feature values as in the data (categories by name).")
    image_png: str | None = Field(default=None, description="Image data: the input image, PNG, base64.")
    image_file: str | None = Field(default=None, description="Image data: the file, relative to the dataset CSV.")
    mask_png: str | None = Field(default=None, description="Image data: the ground-truth mask, PNG, base64.")
    text: str | None = Field(default=None, description="Text data: the input text.")
    true_label: Label
    predicted_label: Label
    probabilities: dict[str, float] = Field(description="Per class label (as text).")
    correct: bool
    explanations: dict[str, LocalResult] = Field(description="Per explanation name.")
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
    performance: Performance
    methods: list[MethodRecord]
    skipped: list[SkippedMethod] = Field(default_factory=list)
    global_explanations: dict[str, GlobalResult] = Field(default_factory=dict)
    subgroups: dict[str, list[GroupStats]] | None = Field(
        default=None, description="Per feature named by a threshold's 'by': performance of each group."
    )
    used_features: list[str] | None = Field(
        default=None, description="Features whose values change the model's output (for principal reasons)."
    )
    decisions: list[Decision]


class Evidence(BaseModel):
    evidence_version: Literal["1.0"] = EVIDENCE_VERSION
    auditor_version: str
    policy_sha256: str
    audit: dict[str, Any]
    policy: dict[str, Any] = Field(description="The policy as loaded, defaults filled in.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Command-line values that replaced the policy's.")
    subjects: list[Subject]
    findings: list[Finding] = Field(default_factory=list, description="The policy's thresholds, evaluated.")
    warnings: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        """Canonical text: sorted keys off (field order is meaningful), 2-space indent, trailing newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def evidence_json_schema() -> dict[str, Any]:
    schema = Evidence.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"auditor evidence, version {EVIDENCE_VERSION}"
    return schema


def read_evidence(path: str | Path) -> Evidence:
    return Evidence.model_validate_json(Path(path).read_text(encoding="utf-8"))
