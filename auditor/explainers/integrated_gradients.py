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

from .base import Batch, Explainer, ExplainerSpec, Progress, attribution_targets

__all__ = ["IntegratedGradients", "IntegratedGradientsSpec", "IntegratedGradientsResult"]

DECISION_CHUNK = 256  # decisions per Captum call; each call scores n_steps x chunk rows


class IntegratedGradientsSpec(ExplainerSpec):
    type: Literal["integrated_gradients"]
    n_steps: int = Field(default=64, ge=2, le=4096, description="Points on the path from baseline to input.")
    method: Literal["gausslegendre", "riemann_trapezoid", "riemann_middle"] = "gausslegendre"
    baseline: Literal["mean", "median", "zeros"] = Field(
        default="mean", description="Reference input: mean or median of the background data, or all zeros."
    )
    internal_batch_size: int = Field(
        default=4096, ge=1, description="Rows per forward pass inside Captum; bounds memory."
    )


class IntegratedGradientsResult(BaseModel):
    method: Literal["integrated_gradients"] = "integrated_gradients"
    target: int | str = Field(description="Class whose probability is attributed.")
    attributions: dict[str, float] = Field(description="Per feature, in probability units.")
    output: float = Field(description="Model probability of the target class at the input.")
    baseline_output: float = Field(description="Model probability of the target class at the baseline.")
    convergence_delta: float = Field(description="sum(attributions) - (output - baseline_output).")


class IntegratedGradients(Explainer):
    """Integrated Gradients on the model's class probability, one batched Captum call per chunk."""

    scope = "local"
    requires = "torch"
    title = "Integrated Gradients"
    Spec = IntegratedGradientsSpec
    Result = IntegratedGradientsResult

    def baseline_inputs(self, model, background: np.ndarray):
        import torch

        inputs = model.to_tensor(background)
        if self.spec.baseline == "zeros":
            return torch.zeros_like(inputs[:1])
        if self.spec.baseline == "median":
            return inputs.quantile(0.5, dim=0, keepdim=True)  # averages the middle pair, like numpy
        return inputs.mean(dim=0, keepdim=True)

    def explain(self, model, batch, *, background, seed, progress: Progress | None = None):
        import torch
        from captum.attr import IntegratedGradients as CaptumIG

        decisions = batch.X
        torch.manual_seed(seed)
        ig = CaptumIG(model.torch_forward)
        base = self.baseline_inputs(model, background)
        proba = model.predict_proba(decisions)
        targets = attribution_targets(model, proba)
        base_proba = model.torch_forward(base).detach().double().numpy()[0]
        results = []
        for start in range(0, len(decisions), DECISION_CHUNK):
            stop = min(start + DECISION_CHUNK, len(decisions))
            inputs = model.to_tensor(decisions[start:stop])
            target = torch.as_tensor(targets[start:stop], dtype=torch.long)
            attr, delta = ig.attribute(
                inputs,
                baselines=base.expand_as(inputs),
                target=target,
                n_steps=self.spec.n_steps,
                method=self.spec.method,
                internal_batch_size=self.spec.internal_batch_size,
                return_convergence_delta=True,
            )
            attr = attr.detach().double().numpy()
            per_feature = np.stack([attr[:, g].sum(axis=1) for g in model.input_groups], axis=1)
            for k in range(stop - start):
                t = int(targets[start + k])
                results.append(
                    IntegratedGradientsResult(
                        target=model.classes[t],
                        attributions=dict(zip(model.space.names, per_feature[k].tolist())),
                        output=float(proba[start + k, t]),
                        baseline_output=float(base_proba[t]),
                        convergence_delta=float(delta[k]),
                    )
                )
            if progress:
                progress(stop - start)
        parameters = {
            "baseline_values": dict(zip(model.space.names, _feature_baseline(model, base))),
        }
        return results, parameters


def _feature_baseline(model, base) -> list[float]:
    values = base.detach().double().numpy()[0]
    return [float(values[g].sum()) if len(g) == 1 else float(values[g].argmax()) for g in model.input_groups]
