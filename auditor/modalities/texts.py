"""Text data and text models: a CSV with a text column, a transformers classifier from a local folder.

Nothing is downloaded: models load with ``local_files_only=True`` and the Hugging Face hub is put
offline before transformers is imported. A text dataset may name the character span of a ground-
truth rationale (``rationale_columns: [start, end]``), so token attributions can be scored against it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..datasets import LabelledRows, python_label
from ..errors import DataError, ModelError
from ..explainers.base import Batch
from ..models import ClassifierView, path_sha256
from .base import Modality
from .images import labels_and_ids, read_table, require_columns

__all__ = ["TextDataset", "TextModel", "Texts", "load_text_dataset", "load_text_model"]


@dataclass
class TextDataset(LabelledRows):
    spec: object
    source: str
    file: Path
    X: np.ndarray  # object array of str
    y: np.ndarray
    ids: np.ndarray
    rationales: list[tuple[int, int]] | None
    kind: str = "text"
    unused_columns: list[str] = field(default_factory=list)


def load_text_dataset(spec, policy) -> TextDataset:
    frame, path = read_table(spec, policy)
    where = f"{spec.path} (datasets[{spec.id}])"
    wanted = [spec.text_column, spec.target] + [c for c in (spec.id_column,) if c] + list(spec.rationale_columns or ())
    require_columns(frame, wanted, where)
    texts = frame[spec.text_column]
    if texts.isna().any():
        rows = list(np.flatnonzero(texts.isna().to_numpy())[:5])
        raise DataError(f"{where}: text column {spec.text_column!r} is empty at rows {rows}",
                        hint="drop or fill these rows before the audit")
    y, ids = labels_and_ids(frame, spec, where)
    rationales = None
    if spec.rationale_columns:
        start, end = spec.rationale_columns
        rationales = [(int(a), int(b)) for a, b in zip(frame[start], frame[end])]
    used = set(wanted)
    return TextDataset(spec=spec, source=str(spec.path), file=path, X=texts.astype(str).to_numpy(dtype=object),
                       y=y, ids=ids, rationales=rationales, unused_columns=[c for c in frame.columns if c not in used])


@dataclass
class TextModel(ClassifierView):
    """A transformers sequence classifier with its tokenizer, as every text explainer sees it."""

    spec: object
    module: object
    tokenizer: object
    classes: list
    sha256: str
    warnings: list[str] = field(default_factory=list)
    framework: str = "torch"
    modality: str = "text"
    ships_to_workers = False  # attention outputs come back empty after unpickling; some tokenizers do not pickle

    @property
    def kind(self) -> str:
        return f"transformers {type(self.module).__name__}"

    def encode(self, texts: list[str]):
        return self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.spec.max_length,
                              return_tensors="pt", return_offsets_mapping=True)

    def forward_ids(self, input_ids, attention_mask):
        """Class probabilities from token ids (differentiable through the embeddings)."""
        return self.module(input_ids=input_ids, attention_mask=attention_mask).logits.softmax(dim=-1)

    def predict_proba(self, texts, batch: int = 64) -> np.ndarray:
        import torch

        parts = []
        with torch.no_grad():
            for i in range(0, len(texts), batch):
                enc = self.encode(texts[i:i + batch])
                parts.append(self.forward_ids(enc["input_ids"], enc["attention_mask"]).double().numpy())
        proba = np.concatenate(parts) if parts else np.empty((0, len(self.classes)))
        return proba / proba.sum(axis=1, keepdims=True)

    def embeddings_layer(self):
        return self.module.base_model.embeddings


def load_text_model(spec, policy, dataset: TextDataset) -> TextModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = policy.resolve(spec.path)
    where = f"model {spec.id!r} ({folder.name}) on dataset {dataset.spec.id!r}"
    if spec.format != "huggingface":
        raise ModelError(f"{where}: a text model must be format huggingface (a local transformers folder)")
    if not folder.is_dir():
        raise ModelError(f"{folder}: not a folder (models[{spec.id}].path)",
                         hint="point to the folder written by save_pretrained()")
    try:
        import transformers
    except ImportError:
        raise ModelError("text models need the 'transformers' package", hint="pip install 'auditor[text]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        module = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, attn_implementation="eager")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"{where}: cannot load a transformers classifier from the folder: "
                         f"{str(exc).splitlines()[0]}", hint="save it with save_pretrained() for model and tokenizer") from None
    module.eval()
    if spec.classes:
        classes = [python_label(c) for c in spec.classes]
    else:
        id2label = module.config.id2label
        classes = [python_label(id2label[i]) for i in range(len(id2label))]
    if len(classes) != module.config.num_labels:
        raise ModelError(f"{where}: {len(classes)} classes for {module.config.num_labels} model outputs")
    model = TextModel(spec, module, tokenizer, classes, path_sha256(folder))
    unknown = sorted({v for v in dataset.y.tolist() if v not in classes}, key=str)
    if unknown:
        raise ModelError(f"{where}: the dataset's labels {unknown[:5]} are not classes of the model {classes}",
                         hint="check the target column, or the model's id2label / 'classes'")
    return model


class Texts(Modality):
    """A CSV with a text column (optional ground-truth rationale spans); a local transformers classifier."""

    name = "text"

    def load_dataset(self, spec, policy, *, like=None):
        return load_text_dataset(spec, policy)

    def load_model(self, spec, policy, dataset, background=None):
        return load_text_model(spec, policy, dataset)

    def inputs(self, dataset):
        return list(dataset.X)

    def batch(self, dataset, rows) -> Batch:
        return Batch(X=dataset.X[rows], ids=[dataset.ids[r] for r in rows], y=dataset.y[rows],
                     rationales=None if dataset.rationales is None else [dataset.rationales[r] for r in rows])

    def decision_input(self, dataset, row: int) -> dict:
        return {"text": str(dataset.X[row])}
