"""The one interface every explanation family implements, and the typed records families share.

A family is one class in one module. It owns everything the auditor knows about the method:

- ``Spec``: its entry under ``explanations:`` in the policy (a pydantic model tagged by ``type``);
- ``Results``: the typed result(s) it puts in the evidence, tagged by ``method``;
- ``title`` and ``notes``: its name in the report and its methods-appendix text (what it computes,
  how to read it, its known limits, the paper);
- ``Summaries``, ``figures`` and :meth:`Explainer.summarize`: its per-subject summary, the quality figures
  it offers to thresholds (fields of the summary) and the observations it raises, each with the
  threshold that raised it;
- ``partial``: the template that lays out its results in the report;
- how its results feed method agreement and principal reasons (``attribution_field``,
  :meth:`reason_ranking`) and how two runs' global results compare (:meth:`comparable`).

One verb runs it: ``explain(model, batch, *, background, seed, progress)`` takes the whole batch of
sampled decisions and returns (results, parameters): one result per decision for local methods, one
for the model for global methods. Explainers never render and never write files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np

    from ..models import ModelAdapter

__all__ = [
    "Adverse",
    "Batch",
    "Explainer",
    "ExplainerSpec",
    "MethodSummary",
    "Notes",
    "Observation",
    "Progress",
    "Ranking",
    "RuleSet",
    "attribution_targets",
    "decision_seed",
    "named_features",
    "towards",
]

Label = Union[int, str]
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


@dataclass(frozen=True)
class Notes:
    """A family's text in the report's methods appendix."""

    computes: str
    """What the method computes, and with which library."""
    reading: str
    """How to read its output and its quality figure."""
    limits: str
    """Its known limits, in plain words."""
    cite: str
    """The paper(s)."""


class MethodSummary(BaseModel):
    """Base of a family's per-subject summary (a field of the evidence); ``kind`` tags the subclass."""

    kind: str


class Observation(BaseModel):
    """A point for the reviewer: raised by a family's summary or by the audit, with what raised it."""

    level: Literal["info", "warn"] = Field(description="warn: check before relying on it; info: for the record.")
    code: str = Field(description="Stable identifier of the kind of observation, e.g. lime.poor_fit.")
    method: str | None = Field(default=None, description="The explanation it is about (its name in the policy).")
    message: str
    decisions: list[Label] = Field(default_factory=list, description="The decisions it concerns.")
    threshold: float | None = Field(default=None, description="The bound that raised it.")
    setting: str | None = Field(
        default=None, description="The policy setting that bound comes from (its default when the policy is silent).")


@dataclass(frozen=True)
class Adverse:
    """The adverse outcome principal reasons explain: a classifier's adverse class, or the adverse side of a
    regression model's cut-off (``high``: high scores are adverse; None for a class)."""

    label: Label
    high: bool | None = None

    def signed_towards(self, target) -> bool:
        """Whether attributions towards ``target`` (a result's class, or the score) push towards this outcome."""
        return self.high if self.high is not None else target == self.label


@dataclass(frozen=True)
class Ranking:
    """A global result as a ranking of features (importance by a score), for comparing two runs."""

    scores: dict[str, float]
    scoring: str


@dataclass(frozen=True)
class RuleSet:
    """A global result as readable rules and how faithful they are, for comparing two runs."""

    rules: list[str]
    fidelity: float


class Explainer:
    """Base class of a family: subclasses set the class attributes and implement ``explain``."""

    scope: ClassVar[Literal["local", "global"]]
    requires: ClassVar[Literal["any", "torch"]] = "any"
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    needs_eager: ClassVar[bool] = False  # hooks into layers: exported and TorchScript modules cannot be hooked
    finite_inputs: ClassVar[bool] = False
    """Whether the method needs every input value (a gradient path): it is skipped on data with missing values."""
    regression_needs: ClassVar[str | None] = None
    """What a regression model must be given for this family to run with its defaults (e.g. a decision cut-off),
    in words; None when it needs nothing. Drafted policies leave such families out."""
    title: ClassVar[str]
    notes: ClassVar[Notes]
    Spec: ClassVar[type[ExplainerSpec]]
    Results: ClassVar[tuple[type[BaseModel], ...]]
    Summaries: ClassVar[tuple[type[MethodSummary], ...]] = ()
    """The summary type(s) :meth:`summarize` returns (one per kind of result, e.g. tabular and image)."""
    figures: ClassVar[dict[str, str]] = {}
    """Quality figures a threshold can name (``<explanation>.<figure>``): fields of a summary, with what each is.
    A figure a subject's summary does not have (an image figure of a tabular model) cannot be measured there."""
    group_figures: ClassVar[tuple[str, ...]] = ()
    """Figures a threshold may take ``by`` a feature's groups of decisions (see :meth:`by_group`)."""
    partial: ClassVar[str] = "partials/methods/default.html.j2"
    attribution_field: ClassVar[str | None] = None
    """Per-decision results' field holding per-feature attributions (feature -> signed value towards the
    result's ``target``). Families that set it take part in method agreement and principal reasons."""
    annotation: ClassVar[tuple[str, str] | None] = None
    """(field, column title): a per-feature text the values table shows beside the attributions."""

    def __init__(self, spec: ExplainerSpec) -> None:
        self.spec = spec

    # --- applicability -------------------------------------------------------------------------------

    @classmethod
    def not_applicable(cls, model) -> str | None:
        """Why this method cannot explain ``model`` (None if it can): the report lists it as skipped."""
        if model.modality not in cls.modalities:
            return f"{cls.title} explains {' or '.join(sorted(cls.modalities))} models; {model.id!r} is a {model.modality} model."
        if cls.requires == "torch" and model.framework != "torch":
            return f"{cls.title} needs a PyTorch model (gradients); {model.id!r} is {model.kind}."
        missing = getattr(model, "missing_features", ())
        if cls.finite_inputs and missing:
            return (f"{cls.title} needs every input value, and {named_features(missing)} have missing values in the "
                    "audited or reference data: there is no straight path from a baseline through a missing value, "
                    f"and the auditor does not invent one. The model-agnostic methods explain {model.id!r} with its "
                    "missing values as they are.")
        if cls.needs_eager and not getattr(model, "eager", True):
            return (f"{cls.title} hooks into the model's layers, which an exported program or a TorchScript file "
                    f"does not expose; give {model.id!r} as format: state_dict with its architecture.")
        return None

    @classmethod
    def applies_to(cls, model) -> bool:
        return cls.not_applicable(model) is None

    @classmethod
    def check(cls, spec: ExplainerSpec, model) -> list[tuple[str, str, str]]:
        """Problems with ``spec`` for a loaded model (and its data), as (field under the spec, message, fix)."""
        return []

    # --- the verb ----------------------------------------------------------------------------------------

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

    # --- what the evidence says about the results --------------------------------------------------------

    def summarize(self, name: str, model_id: str, results, decision_ids: list, parameters: dict[str, Any]
                  ) -> tuple[MethodSummary | None, list[Observation]]:
        """The per-subject summary of this explanation (named ``name`` in the policy) and its observations.

        ``results`` are the per-decision results in decision order (local) or the one result (global);
        ``decision_ids`` the sampled decisions' ids in the same order.
        """
        return None, []

    def by_group(self, results, groups) -> list[BaseModel] | None:
        """The :attr:`group_figures` for each group of decisions (``groups``: one label per result, in order);
        None for families without group figures."""
        return None

    @classmethod
    def attributions(cls, result) -> dict[str, float] | None:
        """A per-decision result's attributions by feature (None for families or results without them)."""
        return None if cls.attribution_field is None else getattr(result, cls.attribution_field, None)

    @classmethod
    def reason_ranking(cls, result, adverse: "Adverse | Label", names: list[str]) -> list[str] | None:
        """Features that push this decision towards the ``adverse`` outcome (an :class:`Adverse`, or a class
        label), strongest first (None: no reasons)."""
        values = cls.attributions(result)
        if values is None:
            return None
        signed = adverse.signed_towards(result.target) if isinstance(adverse, Adverse) else result.target == adverse
        return towards(values, signed, names)

    @classmethod
    def gives_reasons(cls) -> bool:
        """Whether this family's per-decision results rank features for principal reasons."""
        return cls.scope == "local" and (cls.attribution_field is not None
                                         or cls.reason_ranking.__func__ is not Explainer.reason_ranking.__func__)

    @classmethod
    def comparable(cls, result) -> Ranking | RuleSet | None:
        """A global result in a form two runs can be compared by (``auditor diff``); None if not comparable."""
        return None


def named_features(names, limit: int = 4) -> str:
    """Feature names for a message: the first ``limit`` quoted, then how many more."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def towards(values: dict[str, float], signed_towards: bool, names: list[str]) -> list[str]:
    """Features whose value pushes towards a class, strongest first: positive values when the values are
    signed towards it (``signed_towards``), negative ones otherwise. Ties keep feature order."""
    sign = 1.0 if signed_towards else -1.0
    pushing = {f: sign * v for f, v in values.items() if sign * v > 0}
    return sorted(pushing, key=lambda f: (-pushing[f], names.index(f)))


def decision_seed(seed: int, decision_id: int | str) -> int:
    """A per-decision seed that depends only on the audit seed and the decision's stable id.

    Explaining a decision therefore gives the same result whatever else is in the sample and in
    whatever order, which keeps evidence reproducible when the sample grows or work is split.
    """
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
