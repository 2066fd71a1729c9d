"""Display values for image and text decisions: image panels, shaded tokens, quality sentences.

Kept apart from report.py, which handles tabular subjects; both only prepare values for templates.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from . import charts

__all__ = ["media_decision_view", "media_quality"]

TECHNIQUE_TITLES = {
    "integrated_gradients": "Integrated Gradients",
    "gradcam": "Grad-CAM",
    "lrp": "LRP",
    "lime_image": "LIME (image segments)",
    "layer_integrated_gradients": "Layer Integrated Gradients",
    "lime_text": "LIME (words)",
}
SIGNED = {"integrated_gradients", "lrp", "lime_image"}


def _png(data: str | None) -> np.ndarray | None:
    if not data:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return np.asarray(im)


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _name(model, label) -> str:
    return model.class_names[model.classes.index(label)] if label in model.classes else str(label)


def _shade(value: float, scale: float) -> str:
    alpha = 0.0 if scale == 0 else min(1.0, abs(value) / scale) * 0.75
    rgb = "178,24,43" if value > 0 else "33,102,172"
    return f"rgba({rgb},{alpha:.2f})"


SPECIAL_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>"}


def _tokens_view(tokens: list[str], values: list[float], inside: list[bool] | None,
                 ignore_special: bool = False) -> list[dict[str, Any]]:
    """Tokens with a background shade scaled to the largest |value| (optionally over non-special tokens)."""
    scale = max((abs(v) for t, v in zip(tokens, values) if not (ignore_special and t in SPECIAL_TOKENS)), default=0.0)
    out = []
    for i, (t, v) in enumerate(zip(tokens, values)):
        join = t.startswith("##")
        out.append({"text": t[2:] if join else t, "join": join, "colour": _shade(v, scale),
                    "title": f"{t}: {v:+.3g}", "rationale": bool(inside and inside[i])})
    return out


def _figures(x) -> list[str]:
    """The numerical quality figures a map or token target carries, as short phrases."""
    parts = []
    if getattr(x, "convergence_delta", None) is not None:
        parts.append(f"convergence delta {_num(x.convergence_delta, 2)}")
    if getattr(x, "relevance_gap", None) is not None:
        parts.append(f"relevance minus output {_num(x.relevance_gap, 2)}")
    if getattr(x, "local_fit", None) is not None:
        parts.append(f"local fit R² {_num(x.local_fit, 2)}")
    return parts


def media_decision_view(s, d, methods_by_name: dict) -> list[dict[str, Any]]:
    """Per method, what the template shows for one image or text decision."""
    model = s.model
    image = _png(d.image_png)
    mask = _png(d.mask_png)
    mask = None if mask is None else mask > 127
    views = []
    for name, r in d.explanations.items():
        title = methods_by_name[name].title
        if r.method == "image_map":
            panels = [(f"{'towards' if r.technique != 'gradcam' else 'evidence for'} {_name(model, m.target)} "
                       f"(P {m.probability:.2f})", np.asarray(m.attribution), "signed" if r.technique in SIGNED else "positive")
                      for m in r.maps]
            svg = charts.image_row(image, panels, mask=mask,
                                   segments=None if r.segments is None else np.asarray(r.segments),
                                   positive=r.positive_segments, negative=r.negative_segments)
            quality = []
            for m in r.maps:
                parts = []
                if m.pointing_hit is not None:
                    parts.append(f"pointing game {'hit' if m.pointing_hit else 'MISS'}; {_pct(m.mass_in_mask)} of positive "
                                 "attribution inside the lesion")
                parts += _figures(m)
                if parts:
                    quality.append(f"{_name(model, m.target)}: " + "; ".join(parts))
            contrast = len(r.maps) > 1
            views.append({"kind": "image", "title": title, "svg": svg, "quality": quality, "contrast": contrast,
                          "contrast_text": (f"Contrastive: why {_name(model, r.maps[0].target)} and not "
                                            f"{_name(model, r.maps[1].target)}") if contrast else ""})
        elif r.method == "token_attribution":
            attributed = methods_by_name[name].parameters.get("attributed", "probability")
            targets = []
            for t in r.targets:
                ranked = sorted(zip(r.tokens, t.values), key=lambda kv: -abs(kv[1]))[:10]
                parts = _figures(t)
                if t.rationale_mass is not None:
                    parts.append(f"{_pct(t.rationale_mass)} of positive attribution on the ground-truth rationale")
                targets.append({
                    "name": _name(model, t.target), "probability": f"{t.probability:.3f}",
                    "tokens": _tokens_view(r.tokens, t.values, r.in_rationale),
                    "svg": charts.token_chart([(tok, v) for tok, v in ranked],
                                              xlabel=(f"Attribution to the {_name(model, t.target)} logit"
                                                      if attributed == "logit" else
                                                      f"Attribution to P({_name(model, t.target)})")),
                    "quality": "; ".join(parts),
                })
            views.append({"kind": "tokens", "title": title, "targets": targets})
        elif r.method == "attention":
            views.append({"kind": "attention", "title": title,
                          "svg": charts.attention_chart(r.tokens, r.cls_attention),
                          "rollout": _tokens_view(r.tokens, r.rollout, None, ignore_special=True)})
    return views


def media_quality(s) -> tuple[list[str], list[dict[str, str]]]:
    """Roll-ups over a subject's decisions: scores against ground truth, numerical gaps."""
    quality, observations = [], []
    model = s.model
    for m in s.methods:
        results = [d.explanations[m.name] for d in s.decisions if m.name in d.explanations]
        if not results or results[0].method == "attention":
            continue
        if results[0].method == "image_map":
            scored = [t for r in results for t in r.maps if t.pointing_hit is not None]
            if scored:
                hits = sum(t.pointing_hit for t in scored)
                mass = float(np.mean([t.mass_in_mask for t in scored]))
                quality.append(f"{m.title}: pointing game {hits} of {len(scored)} ({_pct(hits / len(scored))}); "
                               f"mean {_pct(mass)} of positive attribution inside the ground-truth mask")
                if hits < 0.5 * len(scored):
                    observations.append({"level": "warn", "text": f"{model.id}: {m.title} points outside the lesion on "
                                         f"most images ({hits} of {len(scored)} hits): it does not locate the finding."})
            deltas = [abs(t.convergence_delta) for r in results for t in r.maps if t.convergence_delta is not None]
            if deltas:
                quality.append(f"{m.title}: largest convergence delta {_num(max(deltas), 2)}")
            gaps = [abs(t.relevance_gap) for r in results for t in r.maps if t.relevance_gap is not None]
            if gaps:
                quality.append(f"{m.title}: relevance differs from the explained logit by up to {_num(max(gaps), 2)} "
                               "(biases absorb relevance)")
        else:
            deltas = [abs(t.convergence_delta) for r in results for t in r.targets if t.convergence_delta is not None]
            masses = [t.rationale_mass for r in results for t in r.targets[:1] if t.rationale_mass is not None]
            line = f"{m.title}:"
            if deltas:
                line += f" largest convergence delta {_num(max(deltas), 2)};"
            if masses:
                line += f" mean {_pct(float(np.mean(masses)))} of positive attribution on the ground-truth rationale"
            quality.append(line.rstrip(";"))
    return quality, observations
