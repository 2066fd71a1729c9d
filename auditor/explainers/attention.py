"""Attention views for transformer classifiers: per-layer, per-head attention from [CLS] to each
token, and attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers").

Attention is not attribution (Jain & Wallace, 2019, "Attention is not Explanation"; Wiegreffe &
Pinter, 2019): it shows where the model's heads look, not what changed its decision. The report
says so next to every attention view.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from .base import Batch, Explainer, ExplainerSpec, Notes, Observation, Progress

__all__ = ["Attention", "AttentionSpec", "AttentionResult"]


class AttentionSpec(ExplainerSpec):
    type: Literal["attention"]


class AttentionResult(BaseModel):
    method: Literal["attention"] = "attention"
    tokens: list[str]
    cls_attention: list[list[list[float]]] = Field(description="layer x head x token: attention from [CLS].")
    rollout: list[float] = Field(description="Attention rollout from [CLS] to each token (sums to 1).")


class Attention(Explainer):
    scope = "local"
    requires = "torch"
    modalities = frozenset({"text"})
    title = "Attention (not attribution)"
    notes = Notes(
        computes="Shows the attention weights from [CLS] to every token for every head of every layer, and attention "
                 "rollout: head-averaged attention mixed with the residual connection, multiplied through the layers.",
        reading="Darker cells are tokens a head attends to from [CLS]. There is no quality figure: attention describes "
                "where the model looks, not what drives its output.",
        limits="Attention is not attribution: high attention on a token does not mean the token changed the decision.",
        cite="S. Abnar, W. Zuidema. Quantifying Attention Flow in Transformers. ACL 2020; S. Jain, B. C. Wallace. "
             "Attention is not Explanation. NAACL 2019.",
    )
    Spec = AttentionSpec
    Results = (AttentionResult,)
    partial = "partials/methods/attention.html.j2"

    def summarize(self, name, model_id, results, decision_ids, parameters):
        return None, [Observation(
            level="info", code="attention.not_attribution", method=name,
            message=f"{model_id}: attention maps show where the model's heads look, not what changed its decision: "
                    "attention is not attribution.")]

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        import torch

        results = []
        for k in range(len(batch)):
            enc = model.encode([batch.X[k]])
            length = int(enc["attention_mask"][0].sum())
            with torch.no_grad():
                out = model.module(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                   output_attentions=True)
            layers = np.stack([a[0, :, :length, :length].double().numpy() for a in out.attentions])  # L,H,T,T
            rollout = np.eye(length)
            for layer in layers:
                mixed = 0.5 * layer.mean(axis=0) + 0.5 * np.eye(length)  # residual connection
                mixed /= mixed.sum(axis=-1, keepdims=True)
                rollout = mixed @ rollout
            tokens = model.tokenizer.convert_ids_to_tokens(enc["input_ids"][0][:length].tolist())
            results.append(AttentionResult(
                tokens=tokens,
                cls_attention=[[[float(f"{v:.4g}") for v in head[0]] for head in layer] for layer in layers],
                rollout=[float(f"{v:.6g}") for v in rollout[0] / rollout[0].sum()],
            ))
            if progress:
                progress(1)
        return results, {"heads_averaged_in_rollout": True, "residual_weight": 0.5}
