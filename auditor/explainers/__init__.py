"""Explanation families, one module each, behind one interface (:class:`base.Explainer`).

``EXPLAINERS`` maps the policy's ``type`` to the family: it is the one list of families. The policy
schema, the evidence schema, the metrics thresholds accept, the methods appendix and the report's
layout of each result are all derived from it. Adding a family is one module, one entry here and one
template partial (``templates/partials/methods/<type>.html.j2``).
"""

from .attention import Attention
from .base import Adverse, Batch, Explainer, ExplainerSpec, MethodSummary, Notes, Observation, decision_seed
from .counterfactuals import Counterfactuals
from .gradcam import GradCam
from .integrated_gradients import IntegratedGradients
from .lime_image import LimeImage
from .lime_tabular import Lime
from .lrp import Lrp
from .permutation import PermutationImportance
from .rules import Rules
from .shapley import Shapley
from .text_attribution import LayerIntegratedGradients, LimeText

__all__ = ["EXPLAINERS", "Adverse", "Batch", "Explainer", "ExplainerSpec", "MethodSummary", "Notes", "Observation",
           "decision_seed", "registry_key"]

EXPLAINERS: dict[str, type[Explainer]] = {
    "integrated_gradients": IntegratedGradients,
    "lime": Lime,
    "shapley": Shapley,
    "permutation_importance": PermutationImportance,
    "rules": Rules,
    "counterfactuals": Counterfactuals,
    "gradcam": GradCam,
    "lrp": Lrp,
    "lime_image": LimeImage,
    "layer_integrated_gradients": LayerIntegratedGradients,
    "lime_text": LimeText,
    "attention": Attention,
}


def registry_key() -> tuple:
    """The registry as it is now, hashable: what the policy and evidence models are derived from."""
    return tuple(EXPLAINERS.items())
