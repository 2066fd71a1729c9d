"""Image data and image models: PNG or DICOM files listed in a CSV, PyTorch classifiers over them.

An image dataset is a CSV with one row per image: the image file's path (relative to the CSV), the true
label, optionally a ground-truth mask PNG (white where the finding is) and an id. Images load as
float32 RGB in [0, 1], shape (N, 3, H, W); all images of a dataset must have the same size. Masks
load as boolean (N, H, W) and let the audit score every image explanation against ground truth.
A DICOM file (:mod:`.dicom`) gives the model the same input as a PNG of its displayed pixels; of its
tags, only those the policy names (``dicom_tags``) reach the evidence.

Image models are PyTorch classifiers taking that tensor and returning logits (or probabilities):
TorchScript files, or a state_dict plus the Python class it belongs to (needed for methods that
hook into layers: Grad-CAM, LRP).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets import LabelledRows, python_label
from ..errors import DataError, ModelError, first_line
from ..formats import ExportedModule, load_torchscript
from ..explainers.base import Batch
from ..models import ClassifierView
from .base import Modality
from .dicom import is_dicom, read_dicom

__all__ = ["ImageDataset", "ImageModel", "Images", "load_image_dataset", "load_image_model", "png_base64", "read_png"]


def read_png(path: Path, *, mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


@dataclass
class ImageDataset(LabelledRows):
    spec: object
    source: str
    file: Path
    X: np.ndarray  # (N, 3, H, W) float32 in [0, 1]
    y: np.ndarray  # labels (object)
    ids: np.ndarray
    files: list[Path]
    masks: np.ndarray | None  # (N, H, W) bool
    kind: str = "image"
    unused_columns: list[str] = field(default_factory=list)
    tags: list[dict | None] | None = None  # per row: the kept DICOM tags (None for a PNG); None: no dicom_tags


def read_table(spec, policy) -> tuple[pd.DataFrame, Path]:
    path = policy.resolve(spec.path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (datasets[{spec.id}].path)", hint="correct the path") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}", hint="check that the file is valid CSV") from None
    if len(frame) == 0:
        raise DataError(f"{path}: the dataset has no rows", hint="point the policy at a file with data")
    return frame, path


def require_columns(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: column(s) named in the policy are not in the data: {missing}",
                        hint=f"the data has columns: {', '.join(map(str, frame.columns))}")


def labels_and_ids(frame: pd.DataFrame, spec, where: str) -> tuple[np.ndarray, np.ndarray]:
    target = frame[spec.target]
    if target.isna().any():
        raise DataError(f"{where}: target column {spec.target!r} has missing values",
                        hint="drop or label these rows before the audit")
    y = np.array([python_label(v) for v in target], dtype=object)
    if len(set(y.tolist())) < 2:
        raise DataError(f"{where}: target column {spec.target!r} has a single class ({y[0]!r})",
                        hint="an audit of a classifier needs examples of at least two classes")
    if spec.id_column:
        ids = np.array([python_label(v) for v in frame[spec.id_column]], dtype=object)
        if len(set(ids.tolist())) != len(ids):
            raise DataError(f"{where}: id column {spec.id_column!r} has duplicate ids", hint="ids must be unique")
    else:
        ids = np.arange(len(frame)).astype(object)
    return y, ids


def load_image_dataset(spec, policy) -> ImageDataset:
    frame, path = read_table(spec, policy)
    where = f"{spec.path} (datasets[{spec.id}])"
    wanted = [spec.image_column, spec.target] + [c for c in (spec.mask_column, spec.id_column) if c]
    require_columns(frame, wanted, where)
    y, ids = labels_and_ids(frame, spec, where)
    files = [path.parent / str(f) for f in frame[spec.image_column]]
    images, masks, tags = [], [], []
    shape = None
    for k, f in enumerate(files):
        try:
            if is_dicom(f):
                pixels, kept = read_dicom(f, where=f"{where}: row {ids[k]}", window=spec.dicom_window,
                                          tags=spec.dicom_tags)
            else:
                pixels, kept = read_png(f), None
        except DataError:
            raise  # read_dicom's, naming the file and the DICOM attribute
        except (OSError, ValueError):
            raise DataError(f"{where}: row {ids[k]}: cannot read image {f}",
                            hint=f"check the paths in column {spec.image_column!r} (relative to the CSV)") from None
        tags.append(kept)
        if shape is None:
            shape = pixels.shape
        elif pixels.shape != shape:
            raise DataError(f"{where}: image {f.name} is {pixels.shape[1]}x{pixels.shape[0]}, others are "
                            f"{shape[1]}x{shape[0]}", hint="resize every image to the size the model expects")
        images.append(pixels)
        if spec.mask_column:
            mask_file = path.parent / str(frame[spec.mask_column].iloc[k])
            try:
                mask = read_png(mask_file, mode="L") > 127
            except (OSError, ValueError):
                raise DataError(f"{where}: row {ids[k]}: cannot read mask {mask_file}",
                                hint=f"check column {spec.mask_column!r}") from None
            if mask.shape != shape[:2]:
                raise DataError(f"{where}: mask {mask_file.name} does not match its image's size")
            masks.append(mask)
    X = np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    used = set(wanted)
    return ImageDataset(spec=spec, source=str(spec.path), file=path, X=X, y=y, ids=ids, files=files,
                        masks=np.stack(masks) if masks else None,
                        unused_columns=[c for c in frame.columns if c not in used],
                        tags=tags if spec.dicom_tags else None)


@dataclass
class ImageModel(ClassifierView):
    """An image classifier as every image explainer sees it."""

    spec: object
    module: object  # torch.nn.Module (eager or TorchScript)
    classes: list
    sha256: str
    eager: bool
    warnings: list[str] = field(default_factory=list)
    framework: str = "torch"
    modality: str = "image"

    @property
    def kind(self) -> str:
        name = type(self.module).__name__ if self.eager else (
            "exported program" if type(self.module).__name__ == "ExportedModule" else "TorchScript module")
        return f"PyTorch image classifier ({name})"

    def forward(self, inputs):
        from ..models import plain_torchscript

        with plain_torchscript():
            out = self.module(inputs)
        return out.softmax(dim=-1) if self.spec.logits else out

    def predict_proba(self, X: np.ndarray, batch: int = 256) -> np.ndarray:
        import torch

        parts = []
        with torch.no_grad():
            for i in range(0, len(X), batch):
                parts.append(self.forward(torch.as_tensor(np.asarray(X[i:i + batch], dtype=np.float32))).double().numpy())
        proba = np.concatenate(parts) if parts else np.empty((0, len(self.classes)))
        return proba / proba.sum(axis=1, keepdims=True)

    def layer(self, name: str):
        """A named submodule (for Grad-CAM); ModelError listing the names if absent."""
        modules = dict(self.module.named_modules())
        if name not in modules or name == "":
            raise ModelError(f"model {self.id!r} has no layer {name!r}",
                             hint=f"available layers: {', '.join(n for n in modules if n)}")
        return modules[name]


def _load_architecture(spec, policy):
    arch = spec.architecture
    file = policy.resolve(arch.file)
    module_name = f"auditor_architecture_{spec.id}"
    loader = importlib.util.spec_from_file_location(module_name, file)
    if loader is None or loader.loader is None:
        raise ModelError(f"{file}: cannot import the architecture file (models[{spec.id}].architecture.file)")
    module = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(module)
    except Exception as exc:
        raise ModelError(f"{file}: importing the architecture failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, arch.class_name, None)
    if cls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type)]
        raise ModelError(f"{file}: no class {arch.class_name!r} (models[{spec.id}].architecture.class)",
                         hint=f"classes in the file: {', '.join(names)}")
    try:
        return cls(**arch.kwargs)
    except TypeError as exc:
        raise ModelError(f"{file}: {arch.class_name}(**kwargs) failed: {exc}",
                         hint="check models[].architecture.kwargs") from None


def load_image_model(spec, policy, dataset: ImageDataset) -> ImageModel:
    import torch

    from ..models import file_sha256

    path = policy.resolve(spec.path)
    where = f"model {spec.id!r} ({path.name}) on dataset {dataset.spec.id!r}"
    if spec.format == "torchscript":
        module = load_torchscript(path)
        eager = False
    elif spec.format == "torch_export":
        module = ExportedModule(path)  # callable like the model; its layers cannot be hooked
        eager = False
    elif spec.format == "state_dict":
        module = _load_architecture(spec, policy)
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)  # tensors only: no code runs
            module.load_state_dict(state)
        except Exception as exc:
            raise ModelError(f"{where}: the state_dict does not fit {spec.architecture.class_name}: "
                             f"{str(exc).splitlines()[0]}", hint="check the architecture class and kwargs") from None
        eager = True
    else:
        raise ModelError(f"{where}: format {spec.format!r} cannot classify images",
                         hint="use torch_export (or torchscript), or state_dict with architecture for Grad-CAM and LRP")
    if hasattr(module, "eval"):
        module.eval()
    classes = [python_label(c) for c in spec.classes]
    model = ImageModel(spec, module, classes, file_sha256(path), eager)
    unknown = sorted({v for v in dataset.y.tolist() if v not in classes}, key=str)
    if unknown:
        raise ModelError(f"{where}: the dataset's labels {unknown[:5]} are not classes of the model {classes}",
                         hint="check the target column, or the model's 'classes'")
    try:
        probe = model.predict_proba(dataset.X[:2])
    except Exception as exc:
        raise ModelError(f"{where}: the model rejected images of shape {tuple(dataset.X.shape[1:])}: "
                         f"{first_line(exc)}",
                         hint="check the image size and channels the model expects") from None
    if probe.shape[1] != len(classes):
        raise ModelError(f"{where}: the model returns {probe.shape[1]} outputs for {len(classes)} classes",
                         hint="list one label per model output under classes")
    return model


def png_base64(pixels: np.ndarray) -> str:
    """An image (H x W or H x W x 3, uint8) as base64 PNG text, for the evidence."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode()


class Images(Modality):
    """PNG or DICOM images listed in a CSV, optional ground-truth masks; PyTorch classifiers."""

    name = "image"

    def load_dataset(self, spec, policy, *, like=None):
        return load_image_dataset(spec, policy)

    def load_model(self, spec, policy, dataset, background=None):
        return load_image_model(spec, policy, dataset)

    def batch(self, dataset, rows) -> Batch:
        return Batch(X=dataset.X[rows], ids=[dataset.ids[r] for r in rows], y=dataset.y[rows],
                     masks=None if dataset.masks is None else dataset.masks[rows])

    def decision_input(self, dataset, row: int) -> dict:
        out = {"image_png": png_base64((dataset.X[row].transpose(1, 2, 0) * 255).round().astype(np.uint8)),
               "image_file": str(dataset.files[row].relative_to(dataset.file.parent))}
        if dataset.masks is not None:
            out["mask_png"] = png_base64(dataset.masks[row].astype(np.uint8) * 255)
        if dataset.tags is not None and dataset.tags[row] is not None:
            out["dicom_tags"] = dataset.tags[row]
        return out
