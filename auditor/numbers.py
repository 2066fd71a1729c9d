"""How numbers read in the auditor's words: the report's figures and the messages of observations.

One set of rules, so a figure printed in a table and the same figure quoted in an observation read alike.
"""

from __future__ import annotations

import math

__all__ = ["listed", "num", "pct", "prob", "signed"]


def num(x: float | None, digits: int = 3) -> str:
    """A number to ``digits`` significant digits: 0.826, 0.0014, 12.3; very small ones in scientific
    notation (3.1e-07), 1,000 and above whole with thousands separators."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    return f"{x:,.0f}" if abs(x) >= 1000 or "e+" in text else text


def pct(x: float | None, decimals: int = 1) -> str:
    """A share as a percentage, e.g. 0.8267 -> 82.7%."""
    return "n/a" if x is None else f"{100 * x:.{decimals}f}%"


def prob(p: float | None, relation: bool = False) -> str:
    """A probability to three decimals, without claiming certainty the model does not have.

    With ``relation`` the text starts with its comparison ("= 0.552", "> 0.999") to follow "P(x) ".
    """
    if p is None:
        return "n/a"
    if p > 0.9995:
        return "> 0.999"
    if p < 0.0005:
        return "< 0.001"
    return f"= {p:.3f}" if relation else f"{p:.3f}"


def signed(x: float | None, digits: int = 3) -> str:
    """A signed number with a true minus sign: +0.12, −0.034."""
    if x is None:
        return "n/a"
    return ("+" if x > 0 else "−" if x < 0 else "") + num(abs(x), digits)


def listed(values, limit: int = 20) -> str:
    """Ids joined by commas, the first ``limit`` of them, then how many more."""
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
