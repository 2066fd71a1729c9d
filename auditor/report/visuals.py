"""Charts and shaded text drawn from evidence paths, for the templates.

Every chart reads its values from ``evidence.json`` by path, like a printed figure: a template asks
for ``bars(path_to_attributions, ...)`` and gets the SVG. Ordering and choosing the largest values to
show are the only things done to them.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Callable

import numpy as np

from . import charts
from .html import Figures

__all__ = ["chart_globals"]

SPECIAL_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>"}


def _png(data: str | None) -> np.ndarray | None:
    if not data:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return np.asarray(im)


def _shade(value: float, scale: float) -> str:
    alpha = 0.0 if scale == 0 else min(1.0, abs(value) / scale) * 0.75
    rgb = "178,24,43" if value > 0 else "33,102,172"
    return f"rgba({rgb},{alpha:.2f})"


def _shaded(tokens: list[str], values: list[float], inside: list[bool] | None,
            ignore_special: bool = False) -> list[dict[str, Any]]:
    """Tokens with a background shade scaled to the largest |value| (optionally over non-special tokens)."""
    scale = max((abs(v) for t, v in zip(tokens, values) if not (ignore_special and t in SPECIAL_TOKENS)), default=0.0)
    out = []
    for i, (t, v) in enumerate(zip(tokens, values)):
        join = t.startswith("##")
        out.append({"text": t[2:] if join else t, "join": join, "colour": _shade(v, scale),
                    "title": f"{t}: {v:+.3g}", "rationale": bool(inside and inside[i])})
    return out


def chart_globals(figures: Figures) -> dict[str, Callable]:
    """The drawing functions templates call, bound to one evidence document."""
    value = figures.value

    def bars(where: str, labels: dict[str, str], top_n: int, xlabel: str):
        """Diverging bars of the ``top_n`` largest |values| of the mapping at ``where``."""
        ranked = sorted(value(where).items(), key=lambda kv: -abs(kv[1]))[:top_n]
        return charts.attribution_chart([(labels.get(f, f), v) for f, v in ranked], xlabel=xlabel)

    def importance(where: str, labels: dict[str, str], top_n: int, xlabel: str):
        """Mean ± std bars of the ``top_n`` most important features of the importances at ``where``."""
        ranked = sorted(value(where).items(), key=lambda kv: -kv[1]["mean"])[:top_n]
        return charts.importance_chart([(labels.get(f, f), v["mean"], v["std"]) for f, v in ranked], xlabel=xlabel)

    def calibration(where: str, positive: str):
        bins = value(where)
        if not bins:
            return None
        return charts.calibration_chart([(b["mean_predicted"], b["observed"], b["count"]) for b in bins],
                                        positive=positive, intervals=[
                                            None if b.get("observed_ci") is None else
                                            (b["observed_ci"]["lower"], b["observed_ci"]["upper"]) for b in bins])

    def deciles(where: str, target: str):
        """Mean observed against mean predicted score per decile of the prediction (regression)."""
        bins = value(where)
        if not bins:
            return None
        return charts.decile_chart([(b["mean_predicted"], b["mean_observed"], b["count"]) for b in bins], target=target)

    def image_maps(decision: str, result: str, signed: bool, class_name: Callable, gradcam_words: bool = False):
        """One image method's maps for one decision: the input with its ground truth, a panel per target."""
        r = value(result)
        mask = _png(value(decision + ".mask_png"))
        panels = [(f"{'evidence for' if gradcam_words else 'towards'} {class_name(m['target'])} "
                   f"(P {m['probability']:.2f})", np.asarray(m["attribution"]), "signed" if signed else "positive")
                  for m in r["maps"]]
        return charts.image_row(_png(value(decision + ".image_png")), panels,
                                mask=None if mask is None else mask > 127,
                                segments=None if r.get("segments") is None else np.asarray(r["segments"]),
                                positive=r.get("positive_segments"), negative=r.get("negative_segments"))

    def shaded_tokens(result: str, target: int):
        r = value(result)
        return _shaded(r["tokens"], r["targets"][target]["values"], r.get("in_rationale"))

    def token_bars(result: str, target: int, xlabel: str, top_n: int = 10):
        r = value(result)
        ranked = sorted(zip(r["tokens"], r["targets"][target]["values"]), key=lambda kv: -abs(kv[1]))[:top_n]
        return charts.token_chart(ranked, xlabel=xlabel)

    def attention(result: str):
        r = value(result)
        return charts.attention_chart(r["tokens"], r["cls_attention"])

    def rollout(result: str):
        r = value(result)
        return _shaded(r["tokens"], r["rollout"], None, ignore_special=True)

    return {"bars": bars, "importance": importance, "calibration": calibration, "deciles": deciles, "image_maps": image_maps,
            "shaded_tokens": shaded_tokens, "token_bars": token_bars, "attention": attention, "rollout": rollout}
