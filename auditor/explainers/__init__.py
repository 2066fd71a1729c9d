"""Explanation families, one module each, behind one interface (:class:`base.Explainer`).

``EXPLAINERS`` maps the policy's ``type`` to the explainer class. Adding a family is one module,
one spec class, one entry here and one template partial.
"""

from .base import Batch, Explainer, ExplainerSpec, decision_seed
from .attention import Attention
from .counterfactuals import Counterfactuals
from .gradcam import GradCam
from .integrated_gradients import IntegratedGradients
from .lime_image import LimeImage
from .lime_tabular import Lime
from .lrp import Lrp
from .permutation import PermutationImportance
from .rules import Rules
from .text_attribution import LayerIntegratedGradients, LimeText

__all__ = ["EXPLAINERS", "SPECS", "Batch", "Explainer", "ExplainerSpec", "decision_seed"]

EXPLAINERS: dict[str, type[Explainer]] = {
    "integrated_gradients": IntegratedGradients,
    "lime": Lime,
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

SPECS = {name: cls.Spec for name, cls in EXPLAINERS.items()}
