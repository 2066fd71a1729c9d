"""What every image explanation shares: contrastive targets, the typed map result, ground-truth scores.

Image methods explain one or more *targets* per decision: ``predicted`` (the model's decision),
``other`` (the runner-up class) or a class label. Two targets side by side answer "why A and not B"
(contrastive explanation). Each map is scored against the dataset's ground-truth mask, when there
is one, for the class the mask marks (the model's positive class):

- pointing game (Zhang et al., 2018, "Top-down Neural Attention by Excitation Backprop"): does the
  map's maximum fall inside the mask (within ``POINTING_TOLERANCE`` pixels)?
- mass inside the mask: share of the map's positive attribution that lies inside the mask.
"""

from __future__ import annotations

import statistics
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from ..numbers import pct
from .base import ExplainerSpec, MethodSummary, Observation

__all__ = ["ImageMapResult", "MapSpec", "MapSummary", "TargetMap", "TargetedSpec", "resolve_targets", "score_map",
           "summarize_maps", "POINTING_TOLERANCE", "MAP_FIGURES"]

POINTING_TOLERANCE = 3  # pixels; ~5% of a 64-pixel image, as the 15 px of 224 in the original protocol


class TargetedSpec(ExplainerSpec):
    targets: list[str] = Field(
        default_factory=lambda: ["predicted"],
        description="Classes to explain: 'predicted', 'other' (the runner-up class) or class labels. Two targets "
        "give a contrastive explanation: why the first and not the second.",
    )

    def check_targets(self, classes: list) -> list[tuple[str, str, str]]:
        names = {str(c) for c in classes}
        return [(f"targets[{j}]", f"unknown target {t!r}", f"use predicted, other, or one of: {', '.join(sorted(names))}")
                for j, t in enumerate(self.targets) if t not in ("predicted", "other") and t not in names]


class MapSpec(TargetedSpec):
    """Common fields of image methods, whose maps are scored against ground-truth masks."""

    warn_pointing: float = Field(
        default=0.5, ge=0, le=1,
        description="Images with ground-truth masks: below this share of pointing-game hits the report says the "
        "method does not locate the finding.",
    )


class TargetMap(BaseModel):
    target: int | str
    probability: float = Field(description="Model probability of the target class.")
    attribution: list[list[float]] = Field(description="H x W map (channels summed), in the method's units.")
    pointing_hit: bool | None = Field(default=None, description="Map maximum inside the ground-truth mask.")
    mass_in_mask: float | None = Field(default=None, description="Share of positive attribution inside the mask.")
    convergence_delta: float | None = Field(default=None, description="Integrated Gradients' completeness gap.")
    relevance_gap: float | None = Field(default=None, description="LRP: sum of relevance minus the explained output.")
    local_fit: float | None = Field(default=None, description="LIME: R² of the local model.")


MAP_FIGURES = {
    "pointing_game": "share of ground-truth images where the map's maximum is inside the mask",
    "mass_in_mask": "mean share of positive attribution inside the mask",
}


class ImageMapResult(BaseModel):
    method: Literal["image_map"] = "image_map"
    technique: Literal["integrated_gradients", "gradcam", "lrp", "lime_image"]
    maps: list[TargetMap]
    segments: list[list[int]] | None = Field(default=None, description="LIME: the segmentation (segment id per pixel).")
    positive_segments: list[int] | None = Field(default=None, description="LIME: segments supporting the first target.")
    negative_segments: list[int] | None = Field(default=None, description="LIME: segments against the first target.")


def resolve_targets(spec: TargetedSpec, model, proba: np.ndarray) -> list[list[int]]:
    """Per decision, the class indices to explain, in the spec's order, without repeats."""
    out = []
    for p in proba:
        order = np.argsort(-p, kind="stable")
        chosen: list[int] = []
        for t in spec.targets:
            if t == "predicted":
                k = int(order[0])
            elif t == "other":
                k = int(order[1])
            else:
                k = next(i for i, c in enumerate(model.classes) if str(c) == t)
            if k not in chosen:
                chosen.append(k)
        out.append(chosen)
    return out


def compact(values: np.ndarray) -> list[list[float]]:
    """A map as nested lists with 5 significant digits: the evidence stays readable and deterministic."""
    return [[float(f"{v:.5g}") for v in row] for row in np.asarray(values, dtype=np.float64)]


def score_map(values: np.ndarray, mask: np.ndarray | None, scored: bool) -> tuple[bool | None, float | None]:
    """(pointing hit, mass inside mask) for one map; (None, None) when there is nothing to score."""
    if mask is None or not scored or not mask.any():
        return None, None
    from scipy.ndimage import binary_dilation

    tolerant = binary_dilation(mask, iterations=POINTING_TOLERANCE)
    peak = np.unravel_index(int(np.argmax(values)), values.shape)
    positive = np.clip(values, 0, None)
    total = positive.sum()
    mass = float(positive[mask].sum() / total) if total > 0 else 0.0
    return bool(tolerant[peak]), mass


class MapSummary(MethodSummary):
    """What an image method's maps show over the sampled images, against ground truth where there is some."""

    kind: Literal["image_maps"] = "image_maps"
    decisions: int
    scored: int = Field(description="Maps of the class the masks mark, on images with a ground-truth mask.")
    pointing_hits: int
    pointing_game: float | None = Field(description="pointing_hits / scored.")
    mass_in_mask: float | None = Field(description="Mean share of positive attribution inside the mask.")
    warn_pointing: float
    max_delta: float | None = Field(default=None, description="Integrated Gradients: largest |convergence delta|.")
    max_relevance_gap: float | None = Field(default=None, description="LRP: largest |relevance - explained logit|.")


def summarize_maps(name: str, model_id: str, title: str, results: list[ImageMapResult], decision_ids: list,
                   warn_pointing: float) -> tuple[MapSummary, list[Observation]]:
    """The summary shared by every image method: pointing game and mass in mask, numerical gaps."""
    scored = [m for r in results for m in r.maps if m.pointing_hit is not None]
    hits = sum(bool(m.pointing_hit) for m in scored)
    deltas = [abs(m.convergence_delta) for r in results for m in r.maps if m.convergence_delta is not None]
    gaps = [abs(m.relevance_gap) for r in results for m in r.maps if m.relevance_gap is not None]
    summary = MapSummary(
        decisions=len(results), scored=len(scored), pointing_hits=hits,
        pointing_game=hits / len(scored) if scored else None,
        mass_in_mask=statistics.fmean(m.mass_in_mask for m in scored) if scored else None,
        warn_pointing=warn_pointing, max_delta=max(deltas) if deltas else None,
        max_relevance_gap=max(gaps) if gaps else None,
    )
    observations = []
    if scored and hits < warn_pointing * len(scored):
        missed = [i for i, r in zip(decision_ids, results) if any(m.pointing_hit is False for m in r.maps)]
        observations.append(Observation(
            level="warn", code="image_maps.pointing", method=name, decisions=missed, threshold=warn_pointing,
            setting=f"explanations[{name}].warn_pointing",
            message=f"{model_id}: {title} points outside the lesion on {pct(1 - hits / len(scored), 0)} of images "
                    f"({hits} of {len(scored)} hits): it does not locate the finding."))
    return summary, observations
