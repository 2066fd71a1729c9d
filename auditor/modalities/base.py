"""The one small interface behind which each kind of data (tabular, image, text) sits.

A :class:`Modality` knows how its datasets and models load, what a model is given to score every row,
what a sampled decision hands to the explainers, and what a decision's record shows of its input.
The audit chooses the modality once, from the dataset's ``kind`` in the policy
(:func:`auditor.modalities.modality_of`), and never looks at ``kind`` again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..explainers.base import Batch

if TYPE_CHECKING:
    from ..policy import DatasetSpec, ModelSpec, Policy

__all__ = ["Modality"]


class Modality:
    """How one kind of data is loaded, scored and shown. Subclasses set ``name`` and the loaders."""

    name: ClassVar[str]
    scores: ClassVar[bool] = False
    """Whether a regression model (one score per decision) can be audited on this kind of data."""
    checks_data: ClassVar[bool] = False
    """Whether its datasets are feature matrices the data checks apply to (:mod:`auditor.data_checks`)."""

    def spec_problems(self, spec: "DatasetSpec") -> list[str]:
        """What is wrong with a dataset entry of this kind in the policy (fields it needs or cannot have)."""
        problems = []
        if spec.features:
            problems.append(f"'features' are for tabular data; an {self.name} dataset has none")
        if spec.source is not None:
            problems.append(f"an {self.name} dataset is read from 'path' (a CSV), not a bundled 'source'")
        return problems

    def load_dataset(self, spec: "DatasetSpec", policy: "Policy", *, like=None):
        """The dataset ``spec`` names; ``like`` is the audited dataset when this one is its background."""
        raise NotImplementedError

    def load_model(self, spec: "ModelSpec", policy: "Policy", dataset, background=None):
        """The model ``spec`` names, checked against ``dataset`` and its ``background`` (classes, inputs, output
        shape, missing values)."""
        raise NotImplementedError

    def inputs(self, dataset) -> Any:
        """Every row of ``dataset`` in the form the model's ``predict_proba`` takes."""
        return dataset.X

    def batch(self, dataset, rows: np.ndarray) -> Batch:
        """The sampled decisions ``rows`` as the explainers receive them."""
        return Batch(X=dataset.X[rows], ids=[dataset.ids[r] for r in rows], y=dataset.y[rows])

    def decision_input(self, dataset, row: int) -> dict[str, Any]:
        """What a decision's evidence record shows of its input (feature values, the image, the text)."""
        raise NotImplementedError

    def features(self, dataset) -> list[dict[str, Any]]:
        """The dataset's features for the evidence (name, display name, type, unit, categories); none for media."""
        return []

    def describe(self, dataset) -> str:
        """A few words for progress output, e.g. '30 features' or 'image data'."""
        return f"{self.name} data"

    def groups(self, dataset, feature: str, bins: list[float] | None) -> np.ndarray | None:
        """One group label per row for a ``by`` feature (subgroup performance); None if the data has no such feature."""
        return None
