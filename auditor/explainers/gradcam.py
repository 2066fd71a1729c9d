"""Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization") via Captum's LayerGradCam, for PyTorch image models.

The gradients of the target class's output with respect to a convolutional layer's activations,
averaged per channel, weight those activations; the positive part of the weighted sum, upsampled to
the image, is the map. The layer is named in the policy; it must be an eager model's module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Batch, Explainer, Notes, Progress
from .image_maps import (MAP_FIGURES, ImageMapResult, MapSpec, MapSummary, TargetMap, compact, resolve_targets,
                         score_map, summarize_maps)

__all__ = ["GradCam", "GradCamSpec"]


class GradCamSpec(MapSpec):
    type: Literal["gradcam"]
    layer: str = Field(description="Name of the convolutional layer (as in model.named_modules()), e.g. features.6.")


class GradCam(Explainer):
    scope = "local"
    requires = "torch"
    modalities = frozenset({"image"})
    needs_eager = True
    title = "Grad-CAM"
    notes = Notes(
        computes="Weights a convolutional layer's activations by the averaged gradients of the target class and keeps "
                 "the positive part, upsampled to the image (Captum LayerGradCam).",
        reading="Bright regions are evidence for the class; Grad-CAM shows no evidence against it. Scored against "
                "ground-truth masks where the data has them: the pointing game (is the map's maximum inside the "
                "finding, within 3 pixels?) and the share of the map's mass inside the finding.",
        limits="Coarse: its resolution is the chosen layer's. It shows where the layer's features respond, which "
               "need not be what the final decision depends on.",
        cite="R. R. Selvaraju et al. Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
             "Localization. ICCV 2017.",
    )
    Spec = GradCamSpec
    Results = (ImageMapResult,)
    Summaries = (MapSummary,)
    figures = MAP_FIGURES
    partial = "partials/methods/gradcam.html.j2"

    @classmethod
    def check(cls, spec, model) -> list[tuple[str, str, str]]:
        from ..errors import ModelError

        problems = spec.check_targets(model.classes)
        if getattr(model, "eager", False):
            try:
                model.layer(spec.layer)
            except ModelError as exc:
                problems.append(("layer", exc.message, exc.hint))
        return problems

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        import torch
        from captum.attr import LayerAttribution, LayerGradCam

        layer = model.layer(self.spec.layer)
        cam = LayerGradCam(model.forward, layer)
        proba = model.outputs(batch.X)
        targets = resolve_targets(self.spec, model, proba)
        height, width = batch.X.shape[2:]
        results = []
        for k in range(len(batch)):
            x = torch.as_tensor(batch.X[k:k + 1])
            maps = []
            for t in targets[k]:
                attr = cam.attribute(x, target=t, relu_attributions=True)
                up = LayerAttribution.interpolate(attr, (height, width), interpolate_mode="bilinear")
                values = up.detach().double().numpy()[0, 0]
                hit, mass = score_map(values, None if batch.masks is None else batch.masks[k],
                                      t == model.positive_index)
                maps.append(TargetMap(target=model.classes[t], probability=float(proba[k, t]),
                                      attribution=compact(values), pointing_hit=hit, mass_in_mask=mass))
            results.append(ImageMapResult(technique="gradcam", maps=maps))
            if progress:
                progress(1)
        return results, {"layer": self.spec.layer}

    def summarize(self, name, model_id, results, decision_ids, parameters):
        return summarize_maps(name, model_id, self.title, results, decision_ids, self.spec.warn_pointing)
