"""Explanation families, one module each, behind one interface (:class:`base.Explainer`).

``EXPLAINERS`` maps the policy's ``type`` to the explainer class. Adding a family is one module,
one spec class, one entry here and one template partial.
"""

from .base import Batch, Explainer, ExplainerSpec, decision_seed
from .counterfactuals import Counterfactuals
from .integrated_gradients import IntegratedGradients
from .lime_tabular import Lime
from .permutation import PermutationImportance
from .rules import Rules

__all__ = ["EXPLAINERS", "SPECS", "Batch", "Explainer", "ExplainerSpec", "decision_seed"]

EXPLAINERS: dict[str, type[Explainer]] = {
    "integrated_gradients": IntegratedGradients,
    "lime": Lime,
    "permutation_importance": PermutationImportance,
    "rules": Rules,
    "counterfactuals": Counterfactuals,
}

SPECS = {name: cls.Spec for name, cls in EXPLAINERS.items()}
