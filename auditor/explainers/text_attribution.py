"""Token attributions for text classifiers: Layer Integrated Gradients via Captum, and LIME text.

``layer_integrated_gradients`` (Sundararajan et al., 2017, applied to the embedding layer): the
path runs from a baseline text, in which every token between [CLS] and [SEP] is replaced by
[PAD] (the attention mask is unchanged), to the text, through the output of the model's embedding
layer; each token's attribution is summed over the embedding dimensions. The convergence delta is
the completeness gap, recorded per decision.

``lime_text`` (Ribeiro et al., 2016): words are removed at random, the texts rescored, and a
weighted linear model fitted over word presence.

When the dataset gives a ground-truth rationale span, each explanation's share of positive
attribution on the rationale's tokens is recorded.
"""

from __future__ import annotations

import contextlib
import io
import re
import statistics
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from .base import Batch, Explainer, MethodSummary, Notes, Progress, decision_seed
from .image_maps import TargetedSpec, resolve_targets

__all__ = ["LayerIGSpec", "LayerIntegratedGradients", "LimeText", "LimeTextSpec", "TokenAttributionResult",
           "TokenSummary"]


class TokenTarget(BaseModel):
    target: int | str
    probability: float
    values: list[float] = Field(description="One attribution per token, in token order.")
    convergence_delta: float | None = None
    local_fit: float | None = None
    rationale_mass: float | None = Field(default=None, description="Share of positive attribution on rationale tokens.")


class TokenAttributionResult(BaseModel):
    method: Literal["token_attribution"] = "token_attribution"
    technique: Literal["layer_integrated_gradients", "lime_text"]
    tokens: list[str]
    in_rationale: list[bool] | None = None
    targets: list[TokenTarget]


class TokenSummary(MethodSummary):
    kind: Literal["tokens"] = "tokens"
    decisions: int
    max_delta: float | None = Field(default=None, description="Layer IG: largest |convergence delta|.")
    rationale_mass: float | None = Field(
        default=None, description="Mean share of positive attribution on the ground-truth rationale (first target).")


def summarize_tokens(results: list[TokenAttributionResult]) -> TokenSummary:
    deltas = [abs(t.convergence_delta) for r in results for t in r.targets if t.convergence_delta is not None]
    masses = [t.rationale_mass for r in results for t in r.targets[:1] if t.rationale_mass is not None]
    return TokenSummary(decisions=len(results), max_delta=max(deltas) if deltas else None,
                        rationale_mass=statistics.fmean(masses) if masses else None)


TOKEN_FIGURES = {"rationale_mass": "mean share of positive attribution on the ground-truth rationale"}


def rationale_mass(values: np.ndarray, inside: list[bool] | None) -> float | None:
    if inside is None or not any(inside):
        return None
    positive = np.clip(values, 0, None)
    total = positive.sum()
    return float(positive[np.asarray(inside)].sum() / total) if total > 0 else 0.0


class LayerIGSpec(TargetedSpec):
    type: Literal["layer_integrated_gradients"]
    n_steps: int = Field(default=50, ge=2, le=2000)
    internal_batch_size: int = Field(default=64, ge=1, description="Interpolated texts per forward pass.")
    output: Literal["logit", "probability"] = Field(
        default="logit",
        description="What is attributed. The logit by default: the all-[PAD] baseline is itself often classified "
        "with near certainty, and a saturated probability leaves almost nothing to attribute.",
    )


class LayerIntegratedGradients(Explainer):
    scope = "local"
    requires = "torch"
    modalities = frozenset({"text"})
    title = "Layer Integrated Gradients (embeddings)"
    notes = Notes(
        computes="Integrated Gradients through the embedding layer's output (Captum LayerIntegratedGradients), from a "
                 "baseline text whose tokens between [CLS] and [SEP] are all [PAD]; each token's attribution is "
                 "summed over the embedding dimensions.",
        reading="Tokens shaded red push towards the class, blue against it. Quality: the convergence delta "
                "(completeness gap), and, where the data marks a rationale, the share of positive attribution on "
                "its tokens.",
        limits="The all-[PAD] baseline is itself a text the model classifies; attributions explain the difference "
               "from it. Sub-word tokens share a word's credit.",
        cite="M. Sundararajan, A. Taly, Q. Yan. Axiomatic Attribution for Deep Networks. ICML 2017.",
    )
    Spec = LayerIGSpec
    Results = (TokenAttributionResult,)
    Summaries = (TokenSummary,)
    figures = {"max_delta": "largest |convergence delta| over decisions", **TOKEN_FIGURES}
    partial = "partials/methods/layer_integrated_gradients.html.j2"

    def summarize(self, name, model_id, results, decision_ids, parameters):
        return (summarize_tokens(results) if results else None), []

    @classmethod
    def check(cls, spec, model):
        return spec.check_targets(model.classes)

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        import torch
        from captum.attr import LayerIntegratedGradients as CaptumLIG

        torch.manual_seed(seed)
        tok = model.tokenizer
        proba = model.outputs(list(batch.X))
        targets = resolve_targets(self.spec, model, proba)
        results = []
        for k in range(len(batch)):
            enc = model.encode([batch.X[k]])
            ids, mask = enc["input_ids"], enc["attention_mask"]
            special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
            base = ids.clone()
            keep = torch.tensor([[int(i) in special for i in ids[0]]])
            base[~keep] = tok.pad_token_id
            def forward(input_ids, mask=mask):
                out = model.module(input_ids=input_ids, attention_mask=mask.expand(len(input_ids), -1)).logits
                return out if self.spec.output == "logit" else out.softmax(dim=-1)

            lig = CaptumLIG(forward, model.embeddings_layer())
            length = int(mask[0].sum())
            tokens = tok.convert_ids_to_tokens(ids[0][:length].tolist())
            inside = _inside(enc["offset_mapping"][0][:length].tolist(), batch, k)
            out = []
            for t in targets[k]:
                attr, delta = lig.attribute(ids, baselines=base, target=t, n_steps=self.spec.n_steps,
                                            internal_batch_size=self.spec.internal_batch_size,
                                            return_convergence_delta=True)
                values = attr.sum(dim=-1)[0][:length].detach().double().numpy()
                out.append(TokenTarget(target=model.classes[t], probability=float(proba[k, t]),
                                       values=[float(f"{v:.6g}") for v in values],
                                       convergence_delta=float(delta[0]), rationale_mass=rationale_mass(values, inside)))
            results.append(TokenAttributionResult(technique="layer_integrated_gradients", tokens=tokens,
                                                  in_rationale=inside, targets=out))
            if progress:
                progress(1)
        return results, {"baseline": "[PAD] for every token between [CLS] and [SEP]", "layer": "embeddings",
                         "attributed": self.spec.output}


def _inside(offsets: list[list[int]], batch: Batch, k: int) -> list[bool] | None:
    spans = getattr(batch, "rationales", None)
    if spans is None:
        return None
    start, end = spans[k]
    return [a < end and b > start and b > a for a, b in offsets]


class LimeTextSpec(TargetedSpec):
    type: Literal["lime_text"]
    num_samples: int = Field(default=1000, ge=50, le=100_000)
    num_features: int = Field(default=10, ge=1, le=100, description="Words in each explanation.")


class LimeText(Explainer):
    scope = "local"
    modalities = frozenset({"text"})
    title = "LIME (words)"
    notes = Notes(
        computes="Removes words at random, rescores the texts and fits a weighted linear model over word presence "
                 "(lime package).",
        reading="Words shaded red raise the class's probability when present, blue lower it. Quality: the local fit "
                "R², and the share of positive weight on the ground-truth rationale.",
        limits="Removing words makes texts no clinician would write; the explanation covers only the words the "
               "local model keeps.",
        cite="M. T. Ribeiro, S. Singh, C. Guestrin. \"Why Should I Trust You?\" KDD 2016.",
    )
    Spec = LimeTextSpec
    Results = (TokenAttributionResult,)
    Summaries = (TokenSummary,)
    figures = TOKEN_FIGURES
    partial = "partials/methods/lime_text.html.j2"

    def summarize(self, name, model_id, results, decision_ids, parameters):
        return (summarize_tokens(results) if results else None), []

    @classmethod
    def check(cls, spec, model):
        return spec.check_targets(model.classes)

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None):
        from lime.lime_text import LimeTextExplainer

        proba = model.outputs(list(batch.X))
        targets = resolve_targets(self.spec, model, proba)
        explainer = LimeTextExplainer(class_names=model.class_names, random_state=seed)
        results = []
        for k in range(len(batch)):
            text = str(batch.X[k])
            explainer.random_state = np.random.RandomState(decision_seed(seed, batch.ids[k]))
            explainer.base.random_state = explainer.random_state
            with contextlib.redirect_stdout(io.StringIO()):
                exp = explainer.explain_instance(text, lambda texts: model.outputs(list(texts)),
                                                 labels=tuple(targets[k]), num_features=self.spec.num_features,
                                                 num_samples=self.spec.num_samples)
            words, spans = [], []
            for m in re.finditer(r"\w+", text):
                words.append(m.group())
                spans.append((m.start(), m.end()))
            inside = None
            if getattr(batch, "rationales", None) is not None:
                a, b = batch.rationales[k]
                inside = [s < b and e > a for s, e in spans]
            out = []
            for t in targets[k]:
                weight = dict(exp.as_list(label=t))
                values = np.array([weight.get(w, 0.0) for w in words], dtype=np.float64)
                out.append(TokenTarget(target=model.classes[t], probability=float(proba[k, t]),
                                       values=[float(f"{v:.6g}") for v in values], local_fit=float(exp.score),
                                       rationale_mass=rationale_mass(values, inside)))
            results.append(TokenAttributionResult(technique="lime_text", tokens=words, in_rationale=inside, targets=out))
            if progress:
                progress(1)
        return results, {}
