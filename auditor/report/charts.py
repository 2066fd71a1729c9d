"""Static SVG charts for the report: matplotlib's Agg/SVG backend, and hand-written SVG for the
per-decision bar charts that appear hundreds of times.

Charts are inline SVG so the HTML is self-contained and WeasyPrint can print it. Text stays text
(``svg.fonttype = 'none'``: sharper, searchable and about twice as fast to print as paths), ids are
salted deterministically so the same evidence gives the same HTML, and every label is passed
through :func:`_plain` so a dataset's strings cannot inject mathtext or markup.
"""

from __future__ import annotations

import io
import itertools
import re

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from markupsafe import Markup, escape  # noqa: E402

__all__ = ["attention_chart", "attribution_chart", "calibration_chart", "decile_chart", "image_row", "importance_chart", "token_chart"]

POSITIVE = "#b2182b"  # pushes towards the class of interest
NEGATIVE = "#2166ac"  # pushes away from it
NEUTRAL = "#4d4d4d"
_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "auditor",
    "font.family": "DejaVu Sans",
    "font.size": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
}


def _plain(text: str, limit: int = 34) -> str:
    """A label as literal text: no mathtext ($), no control characters, shortened with an ellipsis."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("$", r"\$")


_serial = itertools.count(1)


def reset_ids() -> None:
    """Restart chart id prefixes: called once per report so the same evidence gives the same HTML."""
    global _serial
    _serial = itertools.count(1)


def _unique_ids(svg: str) -> str:
    """Prefix every id (and reference to it) with a per-chart serial: matplotlib repeats ids like
    'axes_1' and content-hashed clip paths in every figure, and duplicate ids in one HTML document
    are invalid (WeasyPrint then fails to draw figures that reference them)."""
    prefix = f"c{next(_serial)}-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{prefix}{m.group(1)}"', svg)


def _to_svg(fig, width_mm: float | None = None) -> Markup:
    """The figure as inline SVG that scales with its container (or has a fixed printed width)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = _unique_ids(svg)
    # Scale with the container: drop the fixed pt size, keep the viewBox.
    style = f' style="width: {width_mm:.0f}mm"' if width_mm else ""
    svg = re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"',
                 rf'<svg\1 class="chart"{style} preserveAspectRatio="xMinYMin meet"', svg, count=1)
    return Markup(svg)  # matplotlib XML-escapes all text it writes


def attribution_chart(items: list[tuple[str, float]], *, xlabel: str, width_in: float = 3.35) -> Markup:
    """Horizontal diverging bars, largest |value| at the top: hand-written SVG for the bars, the axis and its
    ticks, with the feature names and the axis title as HTML text laid over and under it.

    This is the chart of every decision and method (hundreds per report), so it is drawn without
    matplotlib: a figure costs ~0.1 s to draw and its SVG several times longer to print than these few
    shapes (LIBRARY-NOTES: 100 decision pages 53 s with matplotlib, 19 s hand-built). WeasyPrint lays out
    SVG text one letter at a time (a Pango layout per character) and HTML text one line at a time, so the
    names, most of a chart's letters, are HTML: each is positioned on its bar's row, in percent of the
    chart's height, so they stay aligned at any printed width. Bars of one colour are one path.
    The look follows the matplotlib charts: same colours, font, axis and tick style.
    """
    from matplotlib.ticker import MaxNLocator

    row, top, bottom = 11.5, 3.0, 14.0  # points
    width = width_in * 72
    height = top + row * max(len(items), 1) + bottom
    left, right = width * 0.5, width - 6.0
    lim = max((abs(v) for _, v in items), default=1.0) or 1.0
    span = lim * 1.08

    def x(v: float) -> float:
        return left + (v + span) / (2 * span) * (right - left)

    font = 'font-family="DejaVu Sans" font-size="7.5" fill="#000"'
    bars: dict[str, list[str]] = {POSITIVE: [], NEGATIVE: []}
    names = []
    for i, (label, v) in enumerate(items):
        y = top + i * row
        x0, x1 = sorted((x(0.0), x(v)))
        bars[POSITIVE if v > 0 else NEGATIVE].append(
            f"M{x0:.2f} {y + row * 0.15:.2f}h{max(x1 - x0, 0.01):.2f}v{row * 0.7:.2f}h{-max(x1 - x0, 0.01):.2f}z")
        names.append(f'<span style="top:{(y + row * 0.5) / height * 100:.2f}%">{escape(_label(label, 31))}</span>')
    axis = top + row * max(len(items), 1)
    ticks = [f"M{x(0.0):.2f} {top:.1f}V{axis:.1f}"]
    labels = []
    for t in MaxNLocator(nbins=4, symmetric=True).tick_values(-lim, lim):
        if abs(t) <= span:
            tx = x(t)
            text = f"{round(float(t), 10):g}".replace("-", "\u2212")
            ticks.append(f"M{tx:.2f} {axis:.1f}V{axis + 3.5:.1f}")
            labels.append(f'<text x="{tx:.2f}" y="{axis + 11.5:.1f}" text-anchor="middle" {font}>{text}</text>')
    parts = [f'<div class="bars"><div class="bar-plot"><svg class="chart" xmlns="http://www.w3.org/2000/svg" '
             f'viewBox="0 0 {width:.1f} {height:.1f}" preserveAspectRatio="xMinYMin meet">']
    parts += [f'<path d="{"".join(d)}" fill="{colour}"/>' for colour, d in bars.items() if d]
    parts.append(f'<path d="{ticks[0]}" stroke="{NEUTRAL}" stroke-width="0.6" fill="none"/>')
    parts.append(f'<path d="M{left:.1f} {axis:.1f}H{right:.1f}{"".join(ticks[1:])}" stroke="#000" '
                 'stroke-width="0.6" fill="none"/>')
    parts += labels
    parts.append(f'</svg><div class="bar-names" style="right:{(width - left + 3) / width * 100:.2f}%">')
    parts += names
    parts.append(f'</div></div><div class="bar-axis" style="margin-left:{left / width * 100:.2f}%;'
                 f'margin-right:{(width - right) / width * 100:.2f}%">{escape(_label(xlabel, 60))}</div></div>')
    return Markup("".join(parts))


def _label(text: str, limit: int) -> str:
    """A label for hand-written SVG: no control characters, shortened with an ellipsis (escaped by the caller)."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def importance_chart(items: list[tuple[str, float, float]], *, xlabel: str, width_in: float = 6.3) -> Markup:
    """Horizontal bars with error bars (mean ± std), largest at the top."""
    items = items[::-1]
    height = 0.6 + 0.2 * max(len(items), 1)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, height))
        fig.subplots_adjust(left=0.32, right=0.97, top=1 - 0.12 / height, bottom=0.45 / height)
        ax.barh(range(len(items)), [m for _, m, _ in items], xerr=[s for _, _, s in items],
                color="#5e3c99", height=0.65, error_kw={"elinewidth": 0.6, "capsize": 1.5, "ecolor": NEUTRAL})
        ax.set_yticks(range(len(items)), [_plain(label, 44) for label, _, _ in items])
        ax.axvline(0, color=NEUTRAL, linewidth=0.6)
        ax.set_xlabel(_plain(xlabel, 80))
        ax.tick_params(axis="y", length=0)
        ax.margins(y=0.02)
        return _to_svg(fig)


def calibration_chart(bins: list[tuple[float, float, int]], *, positive: str, width_in: float = 3.0,
                      intervals: list[tuple[float, float] | None] | None = None) -> Markup:
    """Reliability diagram: mean predicted vs observed share per bin, marker area by count; ``intervals``: each
    bin's confidence interval of the observed share (a vertical bar), None where it has none."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, width_in))
        fig.subplots_adjust(left=0.18, right=0.96, top=0.96, bottom=0.16)
        ax.plot([0, 1], [0, 1], color="#999999", linewidth=0.6, linestyle="--", label="perfect calibration")
        for (x, _, _), ci in zip(bins, intervals or ()):
            if ci is not None:
                ax.plot([x, x], list(ci), color=POSITIVE, linewidth=0.7, alpha=0.6, zorder=2)
        if bins:
            xs, ys, ns = zip(*bins)
            total = sum(ns)
            ax.scatter(xs, ys, s=[8 + 140 * n / total for n in ns], color=POSITIVE, zorder=3, label="model")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(_plain(f"Predicted P({positive})", 50))
        ax.set_ylabel(_plain(f"Observed share {positive}", 50))
        ax.legend(loc="upper left", frameon=False)
        return _to_svg(fig)


def decile_chart(bins: list[tuple[float, float, int]], *, target: str, width_in: float = 3.0) -> Markup:
    """A regression model's calibration: mean observed against mean predicted score per decile of the prediction,
    with the diagonal where they would be equal; marker area by count."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, width_in))
        fig.subplots_adjust(left=0.2, right=0.96, top=0.96, bottom=0.16)
        xs, ys, ns = zip(*bins)
        lo, hi = min(min(xs), min(ys)), max(max(xs), max(ys))
        pad = (hi - lo) * 0.08 or 1.0
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#999999", linewidth=0.6, linestyle="--",
                label="observed = predicted")
        total = sum(ns)
        ax.scatter(xs, ys, s=[8 + 140 * n / total for n in ns], color=POSITIVE, zorder=3, label="decile mean")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(_plain(f"Predicted {target}", 50))
        ax.set_ylabel(_plain(f"Observed {target}", 50))
        ax.legend(loc="upper left", frameon=False)
        return _to_svg(fig)


def image_row(original: np.ndarray, panels: list[tuple[str, np.ndarray, str]], *, mask=None,
              segments=None, positive=None, negative=None, panel_in: float = 2.2) -> Markup:
    """One method's maps for one image: the original (with the ground-truth outline), then one panel per
    target (map over a grey copy of the image, with a colour bar). ``kind`` per panel: 'signed'
    (diverging colours around 0) or 'positive'. With ``segments`` (LIME) the last panel outlines the
    segments for (green) and against (red) the first target.
    """
    from matplotlib import colormaps
    from matplotlib.ticker import FuncFormatter
    from skimage.segmentation import find_boundaries

    n = 1 + len(panels) + (1 if segments is not None else 0)
    width_in = panel_in * n
    grey = original.mean(axis=2, keepdims=True).repeat(3, axis=2) / 255.0
    outline = None
    if mask is not None and mask.any():  # a raster outline: WeasyPrint cannot draw matplotlib's contour paths
        outline = np.zeros(mask.shape + (4,))
        outline[find_boundaries(mask, mode="outer")] = (0.0, 0.9, 1.0, 1.0)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, n, figsize=(width_in, width_in / n * 1.05 + 0.25), squeeze=False)
        fig.subplots_adjust(left=0.01, right=0.97, top=0.86, bottom=0.02, wspace=0.32)
        axes = axes[0]
        axes[0].imshow(original, interpolation="nearest")
        if outline is not None:
            axes[0].imshow(outline, interpolation="nearest")
        axes[0].set_title("input" + (" + ground truth" if outline is not None else ""), fontsize=7)
        for ax, (title, values, kind) in zip(axes[1:], panels):
            ax.imshow(grey, interpolation="nearest")
            if kind == "signed":
                lim = float(np.abs(values).max()) or 1.0
                im = ax.imshow(values, cmap=colormaps["RdBu_r"], vmin=-lim, vmax=lim, alpha=0.7, interpolation="nearest")
            else:
                im = ax.imshow(values, cmap=colormaps["inferno"], vmin=0, vmax=float(values.max()) or 1.0, alpha=0.65,
                               interpolation="bilinear")
            if outline is not None:
                ax.imshow(outline, interpolation="nearest")
            ax.set_title(_plain(title, 40), fontsize=7)
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            bar.ax.tick_params(labelsize=5.5, length=2)
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        if segments is not None:
            ax = axes[-1]
            shown = original.astype(float) / 255.0
            overlay = shown.copy()
            for ids, colour in ((positive or [], (0.1, 0.75, 0.2)), (negative or [], (0.85, 0.1, 0.1))):
                region = np.isin(segments, ids)
                overlay[region] = 0.55 * overlay[region] + 0.45 * np.array(colour)
            overlay[find_boundaries(segments)] = (1.0, 1.0, 0.0)
            ax.imshow(overlay, interpolation="nearest")
            ax.set_title("segments: for / against", fontsize=7)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        return _to_svg(fig, width_mm=min(178.0, 25.4 * width_in))


def token_chart(items: list[tuple[str, float]], *, xlabel: str, width_in: float = 3.3) -> Markup:
    """Token importance: horizontal diverging bars, largest |value| first."""
    return attribution_chart(items, xlabel=xlabel, width_in=width_in)


def attention_chart(tokens: list[str], cls_attention, *, width_in: float = 6.6) -> Markup:
    """Attention from [CLS] to every token, one row per layer and head (layers separated by lines).

    The colour scale saturates at the largest attention to an ordinary token: [CLS] and [SEP] columns,
    which draw most attention, show as black."""
    import numpy as np

    matrix = np.asarray(cls_attention, dtype=float)  # L x H x T
    layers, heads, n = matrix.shape
    rows = matrix.reshape(layers * heads, n)
    height = min(7.5, 0.9 + 0.055 * layers * heads)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, height))
        fig.subplots_adjust(left=0.08, right=0.9, top=0.97, bottom=max(0.12, 0.75 / height))
        # [CLS] and [SEP] draw most attention; scale to the other tokens so their pattern is visible.
        ordinary = [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]", "<s>", "</s>")] or list(range(n))
        top = float(rows[:, ordinary].max()) or 1.0
        im = ax.imshow(rows, aspect="auto", cmap="Greys", vmin=0, vmax=top, interpolation="nearest")
        for layer in range(1, layers):
            ax.axhline(layer * heads - 0.5, color="#b2182b", linewidth=0.5)
        ax.set_yticks([layer * heads + heads / 2 - 0.5 for layer in range(layers)],
                      [f"layer {layer + 1}" for layer in range(layers)], fontsize=6)
        ax.set_xticks(range(n), [_plain(t, 14) for t in tokens], rotation=70, fontsize=5.5, ha="right")
        ax.tick_params(length=0)
        bar = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
        bar.ax.tick_params(labelsize=5.5)
        return _to_svg(fig)
