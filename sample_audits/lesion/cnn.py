"""The lesion sample audit's image classifier: a small CNN that Captum's LRP, Grad-CAM and IG can all explain.

Self-contained (imports only torch, and captum lazily for LRP) so that the auditor can load it as an
architecture file: ``LesionCNN()`` then ``load_state_dict(torch.load("models/cnn_state_dict.pt"))``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LesionCNN", "Normalize", "CLASSES"]

CLASSES = ["normal", "lesion"]
"""Order of the model's outputs (logits): index 0 = normal, index 1 = lesion."""


class Normalize(nn.Module):
    """Per-channel standardisation ``(x - mean) / std`` as a module of its own, with an LRP identity rule.

    Captum's LRP walks every leaf module and refuses one it has no rule for; and if the same arithmetic
    sits in ``forward`` outside any module, LRP runs but its input relevances come out divided by ``std``
    (autograd's chain rule through the division), so they no longer sum to the output and channels are
    weighted by ``1/std``. Here the module carries captum's ``IdentityRule``: relevance of a normalised
    pixel passes unchanged to the raw pixel. Captum deletes ``module.rule`` after every ``attribute``
    call, so the rule is a property whose deleter keeps it (a second LRP call on the same model works).
    Gradients (IG, saliency, Grad-CAM) are not affected: the rule only acts inside LRP.
    """

    __jit_unused_properties__ = ["rule"]

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        # Placeholders; the training set's statistics come with the state_dict.
        self.register_buffer("mean", torch.full((1, channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, channels, 1, 1), 0.25))

    @property
    def rule(self):
        rule = self.__dict__.get("_lrp_rule")
        if rule is None:
            from captum.attr._utils.lrp_rules import IdentityRule

            rule = self.__dict__["_lrp_rule"] = IdentityRule()
        return rule

    @rule.setter
    def rule(self, value) -> None:
        self.__dict__["_lrp_rule"] = value

    @rule.deleter
    def rule(self) -> None:  # captum's LRP deletes rules when it is done; keep ours
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LesionCNN(nn.Module):
    """Three-conv CNN classifying 64x64 RGB images as ``normal`` / ``lesion``.

    Input: float tensor (N, 3, 64, 64), RGB in [0, 1] (PNG pixels / 255) — no normalisation needed
    outside: the first module, ``normalize``, standardises each channel with the training set's mean
    and std (buffers ``normalize.mean`` / ``normalize.std``, shape (1, 3, 1, 1), saved in the
    state_dict). Output: logits (N, n_classes) in class order ``[normal, lesion]``.

    Layers (all distinct module instances, each used once, no in-place ops, so Captum's LRP handles
    them with its default rules; the normaliser uses an identity rule, see :class:`Normalize`)::

        normalize   Normalize                   (x - mean) / std
        features.0  Conv2d(3, 8, 3, padding=1)  64x64
        features.1  ReLU
        features.2  MaxPool2d(2)                -> 32x32
        features.3  Conv2d(8, 16, 3, padding=1)
        features.4  ReLU
        features.5  MaxPool2d(2)                -> 16x16
        features.6  Conv2d(16, 32, 3, padding=1)   <- Grad-CAM layer
        features.7  ReLU
        pool        AdaptiveAvgPool2d(1)
        (torch.flatten(x, 1) in forward: nn.Flatten has no LRP rule)
        classifier  Linear(32, n_classes)

    ``captum.attr.LRP(model).attribute(x, target=1)`` runs on the eager model (not on the TorchScript
    copy: LRP needs module hooks); ``LayerGradCam(model, model.features[6])`` gives a 16x16 map.
    """

    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.normalize = Normalize(3)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, n_classes)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics (3 values each) of [0, 1] training images."""
        with torch.no_grad():
            self.normalize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
            self.normalize.std.copy_(torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
