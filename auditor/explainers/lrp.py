"""Layer-wise Relevance Propagation (Bach et al., 2015, "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation") via Captum, for PyTorch image models.

LRP redistributes the target's output backwards, layer by layer, by rules that conserve relevance.
Captum has rules for a fixed set of layer types; a model with any other layer gets a clear message
naming those layers before anything runs. With biases, relevance does not sum exactly to the
output: the gap is recorded for every map.
"""

from __future__ import annotations

from typing import Literal


from .base import Batch, Explainer, Notes, Progress
from .image_maps import (MAP_FIGURES, ImageMapResult, MapSpec, MapSummary, TargetMap, compact, resolve_targets,
                         score_map, summarize_maps)

__all__ = ["Lrp", "LrpSpec", "unsupported_layers"]


class LrpSpec(MapSpec):
    type: Literal["lrp"]


def unsupported_layers(module) -> list[str]:
    """Leaf modules Captum's LRP has no rule for, as 'name (Type)' (a module may bring its own ``rule``)."""
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS

    supported = tuple(SUPPORTED_LAYERS_WITH_RULES) + tuple(SUPPORTED_NON_LINEAR_LAYERS)
    return [f"{name} ({type(m).__name__})" for name, m in module.named_modules()
            if name and not list(m.children()) and not isinstance(m, supported) and getattr(m, "rule", None) is None]


class Lrp(Explainer):
    scope = "local"
    requires = "torch"
    modalities = frozenset({"image"})
    needs_eager = True
    title = "LRP"
    notes = Notes(
        computes="Redistributes the target class's logit backwards through the network with relevance-conserving rules "
                 "(Captum LRP, epsilon rule).",
        reading="Red pixels carry relevance for the class, blue against it. Its quality figure is the relevance minus "
                "the explained logit (biases absorb part of it), with the same ground-truth scores as Grad-CAM.",
        limits="Rules exist only for some layer types; the result depends on the rule chosen, and relevance does not "
               "sum exactly to the logit when layers have biases.",
        cite="S. Bach et al. On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance "
             "Propagation. PLoS ONE 2015.",
    )
    Spec = LrpSpec
    Results = (ImageMapResult,)
    Summaries = (MapSummary,)
    figures = MAP_FIGURES
    partial = "partials/methods/lrp.html.j2"

    @classmethod
    def check(cls, spec, model) -> list[tuple[str, str, str]]:
        problems = spec.check_targets(model.classes)
        if getattr(model, "eager", False):
            bad = unsupported_layers(model.module)
            if bad:
                problems.append(("type", f"model {model.id!r} has layers Captum's LRP has no rule for: {', '.join(bad)}",
                                 "replace them (e.g. nn.Flatten by torch.flatten in forward()), or remove lrp for this "
                                 "model with 'models:'"))
        return problems

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        import torch
        from captum.attr import LRP

        from ..errors import ExplanationError

        bad = unsupported_layers(model.module)
        if bad:
            raise ExplanationError(f"LRP: model {model.id!r} has layers Captum's LRP has no rule for: {', '.join(bad)}",
                                   hint="replace them (e.g. nn.Flatten by torch.flatten in forward()), or drop lrp "
                                        "from the policy for this model")
        lrp = LRP(model.module)  # relevance of the model's own output (logits), as LRP defines it
        proba = model.outputs(batch.X)
        targets = resolve_targets(self.spec, model, proba)
        results = []
        for k in range(len(batch)):
            x = torch.as_tensor(batch.X[k:k + 1])
            with torch.no_grad():
                logits = model.module(x).double().numpy()[0]
            maps = []
            for t in targets[k]:
                relevance = lrp.attribute(x.clone().requires_grad_(), target=t).detach().double().numpy()[0]
                values = relevance.sum(axis=0)
                hit, mass = score_map(values, None if batch.masks is None else batch.masks[k], t == model.positive_index)
                maps.append(TargetMap(target=model.classes[t], probability=float(proba[k, t]), attribution=compact(values),
                                      pointing_hit=hit, mass_in_mask=mass,
                                      relevance_gap=float(relevance.sum() - logits[t])))
            results.append(ImageMapResult(technique="lrp", maps=maps))
            if progress:
                progress(1)
        return results, {"explained_output": "logit of the target class"}

    def summarize(self, name, model_id, results, decision_ids, parameters):
        return summarize_maps(name, model_id, self.title, results, decision_ids, self.spec.warn_pointing)
