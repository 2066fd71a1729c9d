"""Integrated Gradients (Sundararajan, Taly & Yan, 2017, "Axiomatic Attribution for Deep Networks")
via Captum, for PyTorch models.

IG integrates the gradient of the model's probability for the target class along the straight path
from a baseline to the input. Its *completeness* axiom says the attributions sum to
f(input) - f(baseline); Captum's convergence delta is how far the numerical integral is from that,
and is recorded for every decision as the quality figure of this method.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from ..numbers import listed, pct
from .base import Batch, Explainer, MethodSummary, Notes, Observation, Progress, attribution_targets
from .image_maps import (ImageMapResult, MapSpec, MapSummary, TargetMap, compact, resolve_targets, score_map,
                         summarize_maps)

__all__ = ["IntegratedGradients", "IntegratedGradientsResult", "IntegratedGradientsSpec", "IntegratedGradientsSummary"]

DECISION_CHUNK = 256  # decisions per Captum call; each call scores n_steps x chunk rows


class IntegratedGradientsSpec(MapSpec):
    type: Literal["integrated_gradients"]
    n_steps: int = Field(default=64, ge=2, le=4096, description="Points on the path from baseline to input.")
    method: Literal["gausslegendre", "riemann_trapezoid", "riemann_middle"] = "gausslegendre"
    baseline: Literal["mean", "median", "zeros", "black", "blurred"] = Field(
        default="mean",
        description="Reference input. Tabular: mean or median of the background data, or zeros. Images: black, "
        "blurred (the image itself, Gaussian-blurred), or mean (the background images' mean image).",
    )
    internal_batch_size: int = Field(
        default=4096, ge=1, description="Rows per forward pass inside Captum; bounds memory."
    )
    warn_relative_delta: float = Field(
        default=0.05, gt=0,
        description="Tabular: a decision whose |convergence delta| exceeds this share of the explained probability "
        "change is flagged for the reviewer (increase n_steps).",
    )


class IntegratedGradientsResult(BaseModel):
    method: Literal["integrated_gradients"] = "integrated_gradients"
    target: int | str = Field(description="Class whose probability is attributed ('score': a regression model's).")
    attributions: dict[str, float] = Field(description="Per feature, in probability units (regression: score units).")
    output: float = Field(description="Model probability of the target class (regression: the score) at the input.")
    baseline_output: float = Field(description="Model probability of the target class (regression: the score) at "
                                   "the baseline.")
    convergence_delta: float = Field(description="sum(attributions) - (output - baseline_output).")
    attribution_sum: float | None = Field(default=None, description="sum(attributions).")


class IntegratedGradientsSummary(MethodSummary):
    kind: Literal["integrated_gradients"] = "integrated_gradients"
    decisions: int
    max_delta: float = Field(description="Largest |convergence delta| over the decisions.")
    max_relative_delta: float = Field(
        description="Largest |convergence delta| / |output - baseline_output| over the decisions.")
    warn_relative_delta: float = Field(description="The policy's bound above which a decision is flagged.")
    flagged: list[int | str] = Field(description="Decisions whose relative delta exceeds the bound.")


class IntegratedGradients(Explainer):
    """Integrated Gradients on the model's class probability, one batched Captum call per chunk."""

    scope = "local"
    requires = "torch"
    finite_inputs = True
    modalities = frozenset({"tabular", "image"})
    title = "Integrated Gradients"
    notes = Notes(
        computes="Integrates the gradient of the model's probability for the attributed class along a straight path "
                 "from a baseline input to the decision (Captum; a regression model's score, for a regression model). "
                 "Attributions are in probability (or score) units and, by the "
                 "completeness axiom, sum to the difference between the decision's probability and the baseline's. "
                 "On images the path runs from a black, blurred or mean image and each pixel's attribution is summed "
                 "over the colour channels.",
        reading="A positive attribution pushes the decision towards the attributed class. The quality figure is the "
                "convergence delta: how far the numerical integral misses completeness. Small relative to the "
                "probability difference means the attributions are numerically trustworthy.",
        limits="The attributions depend on the chosen baseline (stated below): they explain the difference from that "
               "reference input, not the decision in absolute terms. Features the model treats jointly share credit "
               "in ways the path decides.",
        cite="M. Sundararajan, A. Taly, Q. Yan. Axiomatic Attribution for Deep Networks. ICML 2017.",
    )
    Spec = IntegratedGradientsSpec
    Results = (IntegratedGradientsResult, ImageMapResult)
    Summaries = (IntegratedGradientsSummary, MapSummary)
    figures = {
        "max_delta": "largest |convergence delta| over decisions",
        "pointing_game": "images: share of ground-truth images where the map's maximum is inside the mask",
        "mass_in_mask": "images: mean share of positive attribution inside the mask",
    }
    partial = "partials/methods/integrated_gradients.html.j2"
    attribution_field = "attributions"

    @classmethod
    def check(cls, spec, model) -> list[tuple[str, str, str]]:
        if model.modality == "image":
            problems = spec.check_targets(model.classes)
            if spec.baseline in ("median", "zeros"):
                problems.append(("baseline", f"baseline {spec.baseline!r} is for tabular data",
                                 "for images use black, blurred or mean"))
            return problems
        problems = []
        if spec.baseline in ("black", "blurred"):
            problems.append(("baseline", f"baseline {spec.baseline!r} is for images", "use mean, median or zeros"))
        if spec.targets != ["predicted"]:
            problems.append(("targets", "contrastive targets apply to image models; tabular attributions are "
                             "signed towards the positive class", "remove targets"))
        return problems

    def baseline_inputs(self, model, background: np.ndarray):
        import torch

        inputs = model.to_tensor(background)
        if self.spec.baseline == "zeros":
            return torch.zeros_like(inputs[:1])
        if self.spec.baseline == "median":
            return inputs.quantile(0.5, dim=0, keepdim=True)  # averages the middle pair, like numpy
        return inputs.mean(dim=0, keepdim=True)

    def explain(self, model, batch, *, background, seed, progress: Progress | None = None):
        engine = {"tabular": self._explain_table, "image": self._explain_images}[model.modality]
        return engine(model, batch, background=background, seed=seed, progress=progress)

    def summarize(self, name, model_id, results, decision_ids, parameters):
        if results and isinstance(results[0], ImageMapResult):
            return summarize_maps(name, model_id, self.title, results, decision_ids, self.spec.warn_pointing)
        if not results:
            return None, []
        deltas = [abs(r.convergence_delta) for r in results]
        relative = [abs(r.convergence_delta) / max(abs(r.output - r.baseline_output), 1e-12) for r in results]
        bound = self.spec.warn_relative_delta
        flagged = [i for i, rel in zip(decision_ids, relative) if rel > bound]
        summary = IntegratedGradientsSummary(decisions=len(results), max_delta=max(deltas),
                                             max_relative_delta=max(relative), warn_relative_delta=bound,
                                             flagged=flagged)
        observations = []
        if flagged:
            observations.append(Observation(
                level="warn", code="integrated_gradients.convergence", method=name, decisions=flagged,
                threshold=bound, setting=f"explanations[{name}].warn_relative_delta",
                message=f"{model_id}: Integrated Gradients' convergence delta exceeds {pct(bound, 0)} of the explained "
                        f"change for {len(flagged)} decision(s) ({listed(flagged)}); increase n_steps."))
        return summary, observations

    def _explain_table(self, model, batch, *, background, seed, progress: Progress | None = None):
        import torch
        from captum.attr import IntegratedGradients as CaptumIG

        decisions = batch.X
        torch.manual_seed(seed)
        ig = CaptumIG(model.torch_forward)
        base = self.baseline_inputs(model, background)
        proba = model.outputs(decisions)
        targets = attribution_targets(model, proba)
        base_proba = model.torch_forward(base).detach().double().numpy()[0]
        results = []
        for start in range(0, len(decisions), DECISION_CHUNK):
            stop = min(start + DECISION_CHUNK, len(decisions))
            inputs = model.to_tensor(decisions[start:stop])
            target = torch.as_tensor(targets[start:stop], dtype=torch.long)
            attr = ig.attribute(
                inputs,
                baselines=base.expand_as(inputs),
                target=target,
                n_steps=self.spec.n_steps,
                method=self.spec.method,
                internal_batch_size=self.spec.internal_batch_size,
            )
            attr = attr.detach().double().numpy()
            per_feature = np.stack([attr[:, g].sum(axis=1) for g in model.input_groups], axis=1)
            for k in range(stop - start):
                t = int(targets[start + k])
                # Captum's convergence delta (sum of attributions - (f(x) - f(baseline))), with f(x) and
                # f(baseline) the outputs this result reports: f(x) from the model's fixed-size scoring
                # blocks, so the delta does not depend in its last bits on how many decisions share a batch.
                delta = attr[k].sum() - (proba[start + k, t] - base_proba[t])
                results.append(
                    IntegratedGradientsResult(
                        target=model.classes[t],
                        attributions=dict(zip(model.space.names, per_feature[k].tolist())),
                        output=float(proba[start + k, t]),
                        baseline_output=float(base_proba[t]),
                        convergence_delta=float(delta),
                        attribution_sum=float(attr[k].sum()),
                    )
                )
            if progress:
                progress(stop - start)
        parameters = {
            "baseline_values": dict(zip(model.space.names, _feature_baseline(model, base))),
        }
        return results, parameters


    def _explain_images(self, model, batch: Batch, *, background, seed, progress):
        import torch
        from captum.attr import IntegratedGradients as CaptumIG

        torch.manual_seed(seed)
        ig = CaptumIG(model.forward)
        proba = model.outputs(batch.X)
        targets = resolve_targets(self.spec, model, proba)
        if self.spec.baseline == "blurred":
            bases = blurred(batch.X)
        elif self.spec.baseline == "mean":
            bases = np.broadcast_to(background.mean(axis=0, dtype=np.float64).astype(np.float32), batch.X.shape)
        else:
            bases = np.zeros_like(batch.X)
        results = []
        for k in range(len(batch)):
            x = torch.as_tensor(batch.X[k:k + 1])
            b = torch.as_tensor(np.ascontiguousarray(bases[k:k + 1]))
            n = len(targets[k])
            attr, delta = ig.attribute(x.expand(n, -1, -1, -1), baselines=b.expand(n, -1, -1, -1),
                                       target=torch.as_tensor(targets[k]), n_steps=self.spec.n_steps,
                                       method=self.spec.method, internal_batch_size=self.spec.internal_batch_size,
                                       return_convergence_delta=True)
            maps = []
            for j, t in enumerate(targets[k]):
                values = attr[j].detach().double().numpy().sum(axis=0)
                hit, mass = score_map(values, None if batch.masks is None else batch.masks[k], t == model.positive_index)
                maps.append(TargetMap(target=model.classes[t], probability=float(proba[k, t]),
                                      attribution=compact(values), pointing_hit=hit, mass_in_mask=mass,
                                      convergence_delta=float(delta[j])))
            results.append(ImageMapResult(technique="integrated_gradients", maps=maps))
            if progress:
                progress(1)
        return results, {"baseline": self.spec.baseline}


def blurred(X: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Each image blurred (Gaussian, per channel): the 'blurred' baseline keeps colour, drops structure."""
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(x, sigma=(0, sigma, sigma)) for x in X]).astype(np.float32)


def _feature_baseline(model, base) -> list[float]:
    values = base.detach().double().numpy()[0]
    return [float(values[g].sum()) if len(g) == 1 else float(values[g].argmax()) for g in model.input_groups]
