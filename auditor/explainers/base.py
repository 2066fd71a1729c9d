"""The one small interface every explanation family implements.

An explainer is configured by its policy spec (a pydantic model tagged by ``type``) and has one verb,
``explain(model, batch, *, background, seed, progress)``, which takes the whole batch of sampled
decisions and returns typed results: one per decision for local methods, one for the model for global
methods. Explainers never render and never write files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np

    from ..models import ModelAdapter

__all__ = ["Batch", "ExplainerSpec", "Explainer", "Progress", "attribution_targets", "decision_seed"]

Progress = Callable[[int], None]
"""Called with the number of decisions just finished, so the CLI can advance a progress bar."""


@dataclass(frozen=True)
class Batch:
    """Decisions handed to an explainer: feature-space rows, their stable ids, their true labels."""

    X: "np.ndarray"
    ids: list
    y: "np.ndarray | None" = None
    masks: "np.ndarray | None" = None  # images: ground-truth masks (N, H, W)
    rationales: "list[tuple[int, int]] | None" = None  # text: ground-truth character spans

    def __len__(self) -> int:
        return len(self.X)


class ExplainerSpec(BaseModel):
    """Common fields of every entry under ``explanations:`` in a policy."""

    model_config = ConfigDict(extra="forbid")

    type: str
    id: str | None = Field(
        default=None,
        description="Name of this explanation in the report; defaults to the type. Needed when a type is listed twice.",
    )
    models: list[str] | None = Field(
        default=None,
        description="Ids of the models to explain; defaults to every audited model the method applies to.",
    )

    @property
    def name(self) -> str:
        return self.id or self.type


class Explainer:
    """Base class: subclasses set ``scope``, ``requires`` and implement ``explain``."""

    scope: ClassVar[Literal["local", "global"]]
    requires: ClassVar[Literal["any", "torch"]] = "any"
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    needs_eager: ClassVar[bool] = False  # hooks into layers: TorchScript modules cannot be hooked
    title: ClassVar[str]

    def __init__(self, spec: ExplainerSpec) -> None:
        self.spec = spec

    @classmethod
    def not_applicable(cls, model) -> str | None:
        """Why this method cannot explain ``model`` (None if it can): the report lists it as skipped."""
        if model.modality not in cls.modalities:
            return f"{cls.title} explains {' or '.join(sorted(cls.modalities))} models; {model.id!r} is a {model.modality} model."
        if cls.requires == "torch" and model.framework != "torch":
            return f"{cls.title} needs a PyTorch model (gradients); {model.id!r} is {model.kind}."
        if cls.needs_eager and not getattr(model, "eager", True):
            return (f"{cls.title} hooks into the model's layers, which a TorchScript file does not allow; "
                    f"give {model.id!r} as format: state_dict with its architecture.")
        return None

    @classmethod
    def applies_to(cls, model) -> bool:
        return cls.not_applicable(model) is None

    @classmethod
    def check(cls, spec: ExplainerSpec, model) -> list[tuple[str, str, str]]:
        """Problems with ``spec`` for a loaded model (and its data), as (field under the spec, message, fix)."""
        return []

    def explain(
        self,
        model: "ModelAdapter",
        batch: Batch,
        *,
        background: "np.ndarray",
        seed: int,
        progress: Progress | None = None,
    ):
        """Explain every decision in ``batch``; return (results, parameters used).

        Local methods return one result per decision, in batch order. Global methods get the whole
        audited dataset as ``batch`` (and may take ``sample=`` the sampled decisions) and return one result.
        """
        raise NotImplementedError


def decision_seed(seed: int, decision_id: int | str) -> int:
    """A per-decision seed that depends only on the audit seed and the decision's stable id.

    Explaining a decision therefore gives the same result whatever else is in the sample and in
    whatever order, which keeps evidence reproducible when the sample grows or work is split.
    """
    import hashlib

    digest = hashlib.sha256(f"{seed}:{decision_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def attribution_targets(model: "ModelAdapter", proba: "np.ndarray") -> "np.ndarray":
    """The class each decision's attribution explains.

    Binary models: always the positive class, so signs read the same way for every decision
    (positive pushes towards it). Multiclass models: the predicted class.
    """
    import numpy as np

    if len(model.classes) == 2:
        return np.full(len(proba), model.positive_index, dtype=np.int64)
    return proba.argmax(axis=1).astype(np.int64)
