"""Static SVG charts for the report, drawn with matplotlib's Agg/SVG backend.

Charts are inline SVG so the HTML is self-contained and WeasyPrint can print it. Text stays text
(``svg.fonttype = 'none'``: sharper, searchable and about twice as fast to print as paths), ids are
salted deterministically so the same evidence gives the same HTML, and every label is passed
through :func:`_plain` so a dataset's strings cannot inject mathtext or markup.
"""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from markupsafe import Markup  # noqa: E402

__all__ = ["attribution_chart", "calibration_chart", "importance_chart"]

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


def _to_svg(fig) -> Markup:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    # Scale with the container: drop the fixed pt size, keep the viewBox.
    svg = re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r'<svg\1 class="chart" preserveAspectRatio="xMinYMin meet"', svg, count=1)
    return Markup(svg)  # matplotlib XML-escapes all text it writes


def attribution_chart(items: list[tuple[str, float]], *, xlabel: str, width_in: float = 3.35) -> Markup:
    """Horizontal diverging bars, largest |value| at the top."""
    items = items[::-1]
    height = 0.5 + 0.16 * max(len(items), 1)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, height))
        fig.subplots_adjust(left=0.5, right=0.97, top=1 - 0.12 / height, bottom=0.42 / height)
        values = [v for _, v in items]
        ax.barh(range(len(items)), values, color=[POSITIVE if v > 0 else NEGATIVE for v in values], height=0.7)
        ax.set_yticks(range(len(items)), [_plain(label, 31) for label, _ in items])
        ax.axvline(0, color=NEUTRAL, linewidth=0.6)
        ax.set_xlabel(_plain(xlabel, 60))
        ax.tick_params(axis="y", length=0)
        lim = max((abs(v) for v in values), default=1.0) or 1.0
        ax.set_xlim(-lim * 1.08, lim * 1.08)
        ax.margins(y=0.02)
        return _to_svg(fig)


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


def calibration_chart(bins: list[tuple[float, float, int]], *, positive: str, width_in: float = 3.0) -> Markup:
    """Reliability diagram: mean predicted vs observed share per bin, marker area by count."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, width_in))
        fig.subplots_adjust(left=0.18, right=0.96, top=0.96, bottom=0.16)
        ax.plot([0, 1], [0, 1], color="#999999", linewidth=0.6, linestyle="--", label="perfect calibration")
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
