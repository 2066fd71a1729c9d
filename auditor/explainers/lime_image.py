"""LIME for images (Ribeiro, Singh & Guestrin, 2016) via the ``lime`` package, for image models.

The image is cut into segments (SLIC superpixels, or a regular grid); LIME switches random subsets
of segments off (replaced by their mean colour, or black), scores each perturbed image with the
model, and fits a weighted linear model whose coefficients are the segments' weights. The report
shows the segmentation and the segments for and against each target. LIME's default quickshift
segmentation finds one segment in small images, hence SLIC by default.
"""

from __future__ import annotations

import contextlib
import io
from typing import Literal

import numpy as np
from pydantic import Field

from .base import Batch, Explainer, Notes, Progress, decision_seed
from .image_maps import (MAP_FIGURES, ImageMapResult, MapSpec, MapSummary, TargetMap, compact, resolve_targets,
                         score_map, summarize_maps)

__all__ = ["LimeImage", "LimeImageSpec"]


class LimeImageSpec(MapSpec):
    type: Literal["lime_image"]
    num_samples: int = Field(default=1000, ge=50, le=100_000, description="Perturbed images per decision.")
    segmentation: Literal["slic", "grid"] = "slic"
    n_segments: int = Field(default=40, ge=4, le=1000, description="slic: target number of segments.")
    compactness: float = Field(default=10.0, gt=0, description="slic: higher gives squarer segments.")
    grid_size: int = Field(default=8, ge=2, le=128, description="grid: cells per side.")
    hide: Literal["image_mean", "segment_mean", "black"] = Field(
        default="image_mean",
        description="What a switched-off segment shows: the image's mean colour (removes a dark finding from light "
        "tissue), the segment's own mean colour (LIME's default; keeps a uniform finding visible), or black.",
    )
    num_segments_shown: int = Field(default=5, ge=1, le=50, description="Segments shown for and against a target.")


class LimeImage(Explainer):
    scope = "local"
    requires = "torch"
    modalities = frozenset({"image"})
    title = "LIME (image segments)"
    notes = Notes(
        computes="Cuts the image into superpixels (SLIC) and fits a weighted linear model of the class probability on "
                 "which segments are kept (lime package). Segments for and against the class are outlined.",
        reading="Green segments raise the class's probability when shown, red ones lower it. Quality: the local fit "
                "R², and the ground-truth scores.",
        limits="The explanation is only as fine as the segmentation, and what a hidden segment is replaced by "
               "(the policy's 'hide') changes the answer.",
        cite="M. T. Ribeiro, S. Singh, C. Guestrin. \"Why Should I Trust You?\" KDD 2016.",
    )
    Spec = LimeImageSpec
    Results = (ImageMapResult,)
    Summaries = (MapSummary,)
    figures = MAP_FIGURES
    partial = "partials/methods/lime_image.html.j2"

    @classmethod
    def check(cls, spec, model) -> list[tuple[str, str, str]]:
        return spec.check_targets(model.classes)

    def _segmenter(self, seed: int):
        from lime.wrappers.scikit_image import SegmentationAlgorithm

        if self.spec.segmentation == "slic":
            return SegmentationAlgorithm("slic", n_segments=self.spec.n_segments, compactness=self.spec.compactness,
                                         start_label=0, random_seed=seed)
        g = self.spec.grid_size

        def grid(image: np.ndarray) -> np.ndarray:
            h, w = image.shape[:2]
            rows = np.minimum(np.arange(h) * g // h, g - 1)
            cols = np.minimum(np.arange(w) * g // w, g - 1)
            return rows[:, None] * g + cols[None, :]

        return grid

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        from lime.lime_image import LimeImageExplainer

        def classify(images: np.ndarray) -> np.ndarray:
            return model.outputs(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))

        proba = model.outputs(batch.X)
        targets = resolve_targets(self.spec, model, proba)
        explainer = LimeImageExplainer(random_state=seed)
        results = []
        for k in range(len(batch)):
            image = batch.X[k].transpose(1, 2, 0).astype(np.float64)
            hide = {"black": 0.0, "segment_mean": None}.get(self.spec.hide, tuple(image.reshape(-1, 3).mean(axis=0)))
            s = decision_seed(seed, batch.ids[k])
            maps, segments, pos, neg = [], None, None, None
            for t in targets[k]:
                explainer.random_state = np.random.RandomState(s)  # same perturbations for every target
                explainer.base.random_state = explainer.random_state
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    exp = explainer.explain_instance(image, classify, labels=(t,), top_labels=None, hide_color=hide,
                                                     num_samples=self.spec.num_samples, batch_size=256,
                                                     segmentation_fn=self._segmenter(s), random_seed=s)
                weights = dict(exp.local_exp[t])
                segments = exp.segments
                values = np.vectorize(lambda seg: weights.get(seg, 0.0))(segments).astype(np.float64)
                if pos is None:
                    ranked = sorted(weights.items(), key=lambda kv: -kv[1])
                    n = self.spec.num_segments_shown
                    pos = [int(sg) for sg, w in ranked[:n] if w > 0]
                    neg = [int(sg) for sg, w in ranked[::-1][:n] if w < 0]
                hit, mass = score_map(values, None if batch.masks is None else batch.masks[k], t == model.positive_index)
                maps.append(TargetMap(target=model.classes[t], probability=float(proba[k, t]), attribution=compact(values),
                                      pointing_hit=hit, mass_in_mask=mass, local_fit=float(exp.score)))
            results.append(ImageMapResult(technique="lime_image", maps=maps, segments=segments.astype(int).tolist(),
                                          positive_segments=pos, negative_segments=neg))
            if progress:
                progress(1)
        return results, {}

    def summarize(self, name, model_id, results, decision_ids, parameters):
        return summarize_maps(name, model_id, self.title, results, decision_ids, self.spec.warn_pointing)
