"""Tabular data: CSV, Parquet or a bundled dataset, one row per decision, a feature space shared by every model.

Loading and the feature space live in :mod:`auditor.datasets`; model adapters in :mod:`auditor.models`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..datasets import MISSING, load_dataset
from ..errors import DataError, ModelError
from ..formats import FORMATS
from ..models import load_model
from .base import Modality

__all__ = ["Tabular"]


class Tabular(Modality):
    name = "tabular"
    checks_data = True
    scores = True

    def spec_problems(self, spec) -> list[str]:
        return [] if spec.features else ["a tabular dataset needs 'features' (its input columns)"]

    def load_dataset(self, spec, policy, *, like=None, numeric_target: bool = False):
        return load_dataset(spec, policy, space=like.space if like is not None else None,
                            numeric_target=numeric_target)

    def load_model(self, spec, policy, dataset, background=None):
        if "tabular" not in FORMATS[spec.format].modalities:
            usable = ", ".join(n for n, f in FORMATS.items() if "tabular" in f.modalities)
            raise ModelError(f"model {spec.id!r}: format {spec.format} is for {' or '.join(sorted(FORMATS[spec.format].modalities))} "
                             f"data, and dataset {dataset.spec.id!r} is tabular", hint=f"use one of: {usable}")
        return load_model(spec, policy, dataset, background)

    def decision_input(self, dataset, row: int) -> dict[str, Any]:
        space = dataset.space
        values = {}
        for i, (f, v) in enumerate(zip(space.features, dataset.X[row])):
            if np.isnan(v):
                values[f.name] = None  # missing: the evidence records no value, the report reads "missing"
            else:
                values[f.name] = space.display_value(i, v) if f.type == "categorical" else float(v)
        return {"values": values}

    def features(self, dataset) -> list[dict[str, Any]]:
        space = dataset.space
        return [{"name": f.name, "display_name": f.label, "type": f.type, "unit": f.unit,
                 "categories": list(space.categories[i]) or None} for i, f in enumerate(space.features)]

    def describe(self, dataset) -> str:
        return f"{len(dataset.space.features)} features"

    def groups(self, dataset, feature: str, bins: list[float] | None) -> np.ndarray | None:
        space = dataset.space
        if feature not in space.names:
            return None
        i = space.names.index(feature)
        column = dataset.X[:, i]
        if space.features[i].type == "categorical":
            return np.asarray([space.display_value(i, v) for v in column], dtype=object)
        if not bins:
            raise DataError(f"feature {feature!r} is numeric: its groups need bin edges", hint="add bins: [...]")
        edges = sorted(bins)
        which = np.digitize(column, edges)
        names = ([f"< {edges[0]:g}"] + [f"{a:g} to < {b:g}" for a, b in zip(edges, edges[1:])]
                 + [f">= {edges[-1]:g}"])
        return np.asarray([MISSING if np.isnan(v) else names[k] for k, v in zip(which, column)], dtype=object)
