"""Kinds of data, one module each behind one interface (:class:`base.Modality`).

``MODALITIES`` maps a dataset's ``kind`` in the policy to its modality; :func:`modality_of` is the one
place that reads ``kind``.
"""

from .base import Modality
from .images import Images
from .tabular import Tabular
from .texts import Texts

__all__ = ["MODALITIES", "Modality", "modality_of"]

MODALITIES: dict[str, Modality] = {m.name: m for m in (Tabular(), Images(), Texts())}


def modality_of(spec) -> Modality:
    """The modality of a dataset spec (its ``kind``)."""
    return MODALITIES[spec.kind]
