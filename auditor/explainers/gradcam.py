"""Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization") via Captum's LayerGradCam, for PyTorch image models.

The gradients of the target class's output with respect to a convolutional layer's activations,
averaged per channel, weight those activations; the positive part of the weighted sum, upsampled to
the image, is the map. The layer is named in the policy; it must be an eager model's module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Batch, Explainer, Progress
from .image_maps import ImageMapResult, TargetedSpec, TargetMap, compact, resolve_targets, score_map

__all__ = ["GradCam", "GradCamSpec"]


class GradCamSpec(TargetedSpec):
    type: Literal["gradcam"]
    layer: str = Field(description="Name of the convolutional layer (as in model.named_modules()), e.g. features.6.")


class GradCam(Explainer):
    scope = "local"
    requires = "torch"
    modalities = frozenset({"image"})
    needs_eager = True
    title = "Grad-CAM"
    Spec = GradCamSpec
    Result = ImageMapResult

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
        proba = model.predict_proba(batch.X)
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
