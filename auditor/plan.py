"""The run plan: a policy and the command line's overrides, resolved once.

Everything that decides how an audit runs (how many decisions, which seed and strategy, which
formats, which executor) is read from the :class:`RunPlan`, never re-derived from the policy and the
overrides in two places. ``overrides`` records what the command line changed, for the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    from .policy import Policy

__all__ = ["RunPlan", "plan_run"]


@dataclass(frozen=True)
class RunPlan:
    policy: "Policy"
    sample_size: int
    seed: int
    strategy: str
    formats: tuple[str, ...]
    executor: str = "local"
    overrides: dict[str, Any] = field(default_factory=dict)
    """Command-line values that replaced the policy's, by policy field (``sample.size``, ``sample.seed``)."""


def plan_run(policy: "Policy", *, sample_size: int | None = None, seed: int | None = None,
             executor: str | None = None) -> RunPlan:
    """The plan for running ``policy`` with these overrides (None: the policy's value)."""
    overrides = {k: v for k, v in (("sample.size", sample_size), ("sample.seed", seed)) if v is not None}
    size = sample_size if sample_size is not None else policy.sample.size
    if size < 1:
        raise DataError("the sample size must be at least 1", hint="pass --sample N with N >= 1")
    return RunPlan(
        policy=policy,
        sample_size=size,
        seed=seed if seed is not None else policy.sample.seed,
        strategy=policy.sample.strategy,
        formats=tuple(policy.report.formats),
        executor=executor or "local",
        overrides=overrides,
    )
