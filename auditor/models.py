"""Models: give every explainer the same view of a tabular model, whatever its file format.

A :class:`ModelAdapter` is bound to one dataset's :class:`~auditor.datasets.FeatureSpace`: it takes
feature-space matrices (float64, categorical features as codes) and returns its outputs
(:meth:`ModelAdapter.outputs`): class probabilities in the order of ``classes``, or, for a regression model,
the score as one column (its one "class" is :data:`SCORE`). scikit-learn models get the original values (their pipeline encodes them);
PyTorch, ONNX and booster models the encoded matrix (categories one-hot or as codes, in category order).
PyTorch adapters also expose a differentiable path for gradient methods. Files are read by
:mod:`auditor.formats`.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import Dataset, FeatureSpace, python_label
from .errors import ModelError, first_line
from .formats import caught, load_tabular
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .policy import ModelSpec, Policy

__all__ = ["SCORE", "ClassifierView", "ModelAdapter", "load_model", "file_sha256", "path_sha256"]

SCORE = "score"
"""The one output of a regression model: explanations of it have this as their ``target``."""

PREDICT_BATCH = 65_536  # rows scored per model call; bounds memory for LIME's perturbations etc.
TORCH_ROWS = 512
"""A tabular network scores rows in blocks of exactly this many (the last one padded). In float32 a row's
output depends, in its last bits, on the shape of the matrix product it is part of; fixed blocks make every
row's score independent of how many other rows share the call, so a decision's explanation is the same
whatever the sample size or the executor's chunks."""


def path_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a model folder: every file's relative name and digest, in sorted order."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + file_sha256(f).encode() + b"\n")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plain_torchscript():
    """Run TorchScript modules without the JIT's profiling optimisations.

    TorchScript re-optimises a module's graph after its first calls, and the optimised graph rounds
    float32 differently in the last bits: a decision's explanation then depended on how often the module
    had run before in the process (a Dask worker's fresh copy gave other last digits than the main
    process). Unoptimised execution gives the same numbers on every call."""
    import torch

    return torch.jit.optimized_execution(False)


class ClassifierView:
    """What every model adapter (tabular, image, text) says about its classes; needs ``spec`` and ``classes``."""

    adverse = None
    """The model's adverse outcome (an :class:`~auditor.explainers.base.Adverse`), set by the audit from the policy:
    principal_reasons.adverse_class, or a regression model's decision cut-off; None when the policy names none."""

    ships_to_workers = True
    """Whether the model survives pickling to a Dask worker intact (see auditor.executors)."""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names) if self.spec.class_names else [str(c) for c in self.classes]

    @property
    def task(self) -> str:
        return getattr(self.spec, "task", "classification")

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def outputs(self, X):
        """What explanations explain, one column per class (regression: the score, one column)."""
        return self.predict_proba(X)

    @property
    def positive_index(self) -> int:
        if self.spec.positive_class is None:
            return len(self.classes) - 1
        return self.classes.index(python_label(self.spec.positive_class))

    # Pickling (for Dask workers): TorchScript modules cannot be pickled, so they travel as their saved bytes.

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for key, value in state.items():
            if type(value).__name__ == "RecursiveScriptModule":
                import io

                import torch

                buffer = io.BytesIO()
                torch.jit.save(value, buffer)
                state[key] = _TorchScriptBytes(buffer.getvalue())
        return state

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            if isinstance(value, _TorchScriptBytes):
                import io

                import torch

                module = torch.jit.load(io.BytesIO(value.data), map_location="cpu")
                module.eval()
                state[key] = module
        self.__dict__.update(state)


@dataclass(frozen=True)
class _TorchScriptBytes:
    data: bytes


@dataclass
class ModelAdapter(ClassifierView):
    """One tabular model as every explainer sees it."""

    spec: ModelSpec
    framework: str  # "sklearn" | "torch" | "array" (see auditor.formats)
    estimator: object
    classes: list
    space: FeatureSpace
    sha256: str
    warnings: list[str] = field(default_factory=list)
    input_groups: list[list[int]] = field(default_factory=list)  # torch: input columns per feature
    modality: str = "tabular"
    missing_features: tuple[str, ...] = ()
    """Features with missing values in the audited or reference data, which the model was probed to take."""
    description: str = ""
    """What the file holds, for the report (formats other than scikit-learn)."""

    @property
    def kind(self) -> str:
        est = self.estimator
        if self.framework != "sklearn":
            return self.description
        name = type(est).__name__
        if name == "Pipeline":
            name = "Pipeline(" + " → ".join(type(s).__name__ for _, s in est.steps) + ")"
        return f"scikit-learn {name}"

    # --- scoring -----------------------------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        if self.regression:
            return ["Score"]
        return super().class_names

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities for a feature-space batch, shape (n, len(classes)); classifiers only."""
        if self.regression:
            raise TypeError(f"model {self.id!r} is a regression model: it gives scores (use outputs), not probabilities")
        return self.outputs(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A regression model's scores for a feature-space batch, shape (n,)."""
        return self.outputs(X)[:, 0]

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """The model's outputs for a feature-space batch, shape (n, len(classes)), in chunks: class probabilities,
        or a regression model's score as one column."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        parts = [self._predict_chunk(X[i : i + PREDICT_BATCH]) for i in range(0, len(X), PREDICT_BATCH)]
        return np.concatenate(parts, axis=0) if parts else np.empty((0, len(self.classes)))

    def _predict_chunk(self, X: np.ndarray) -> np.ndarray:
        if self.framework == "torch":
            import torch

            n = len(X)
            inputs = self.encoded(X, np.float32, pad_to=TORCH_ROWS)
            with torch.no_grad(), _one_thread(torch):
                proba = torch.cat([self.torch_forward(block) for block in torch.from_numpy(inputs).split(TORCH_ROWS)])
            proba = proba[:n].double().numpy()
            if self.regression:
                return proba
            return proba / proba.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only within ~1e-7
        if self.framework == "array":
            return self.estimator(self.encoded(X))
        if self.regression:
            return np.asarray(self.estimator.predict(self.sklearn_input(X)), dtype=np.float64).reshape(len(X), -1)
        return np.asarray(self.estimator.predict_proba(self.sklearn_input(X)), dtype=np.float64)

    def sklearn_input(self, X: np.ndarray):
        """The original values a scikit-learn model takes (``space.decode``): a DataFrame in its training columns'
        order when it was fitted on one, else a matrix (object, categories by name, when there are categorical
        features)."""
        names = getattr(self.estimator, "feature_names_in_", None)
        if names is None and not self.space.categorical_indices:
            return X
        import pandas as pd

        if names is None:
            out = np.empty(X.shape, dtype=object)
            for i in range(X.shape[1]):
                out[:, i] = _original(pd, self.space, X, i, frame=False)
            return out
        index = {name: i for i, name in enumerate(self.space.names)}
        return pd.DataFrame({name: _original(pd, self.space, X, index[str(name)]) for name in names}, copy=False)

    # --- torch: differentiable path ----------------------------------------------------------------

    def to_tensor(self, X: np.ndarray):
        """Feature space -> model input tensor (one-hot or ordinal categories, float32)."""
        import torch

        return torch.from_numpy(self.encoded(X, np.float32))

    def encoded(self, X: np.ndarray, dtype=np.float64, pad_to: int = 1) -> np.ndarray:
        """Feature space -> the encoded matrix a PyTorch, ONNX or booster model takes (float64, or ``dtype``),
        written in one pass into one array; with ``pad_to``, the last row repeated up to a multiple of that many
        rows."""
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        rows = n + (-n % pad_to if n else 0)
        cats = self.space.categorical_indices
        if not (self.spec.categorical_encoding == "onehot" and cats):
            out = np.empty((rows, X.shape[1]), dtype=dtype)
            out[:n] = X
        else:
            widths = np.array([len(c) if i in cats else 1 for i, c in enumerate(self.space.categories)])
            first = np.concatenate([[0], np.cumsum(widths)[:-1]])  # each feature's first input column
            numbers = [i for i in range(X.shape[1]) if i not in cats]
            out = np.zeros((rows, int(widths.sum())), dtype=dtype)
            out[:n, first[numbers]] = X[:, numbers]
            codes = X[:, cats]
            gone = np.isnan(codes)
            codes = np.clip(np.rint(np.where(gone, 0, codes)).astype(np.int64), 0, widths[cats] - 1)
            # one cell set per row and category: row offset + the feature's first column + the category's code
            out.reshape(-1)[(np.arange(n) * out.shape[1])[:, None] + first[cats] + codes] = 1
            for j in np.flatnonzero(gone.any(axis=0)):  # a missing category reaches the network as missing
                i = cats[j]
                out[np.flatnonzero(gone[:, j]), first[i] : first[i] + widths[i]] = np.nan
        if rows > n:
            out[n:] = out[n - 1]
        return out

    def torch_forward(self, inputs):
        """Probabilities from model inputs, differentiable (softmax over logits if needed); a regression model's
        score as one column."""
        with plain_torchscript():
            out = self.estimator(inputs)
        if self.regression:
            return out.reshape(len(inputs), -1)
        if self.spec.logits:
            out = out.softmax(dim=-1)
        return out


def _original(pd, space: FeatureSpace, X: np.ndarray, i: int, frame: bool = True):
    """Feature ``i`` of ``X`` in original values, as ``space.decode`` gives it: a number as it is, a category by its
    value, missing as NaN. For a DataFrame (``frame``) a categorical column is taken from its values in the dtype
    pandas gives them (its string dtype, for text), in one vectorised take: pandas would otherwise convert every
    row's Python string, which costs about as much as the model's own encoding."""
    if space.features[i].type != "categorical":
        return X[:, i]
    cats, codes = space.category_codes(X, i)
    if frame:
        values = pd.Series(cats).array
        if values.dtype != object:  # pandas' own type for these values (str): take from it
            return values.take(codes)
    return cats[codes]


@contextmanager
def _one_thread(torch):
    """Score blocks on this thread alone: a block of TORCH_ROWS rows is too small to share between threads, and
    handing each operation to a thread pool costs more than the operation (far more on a busy machine). The
    results do not depend on the number of threads; LIME's engine scores its chunks on threads of its own."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_model(spec: ModelSpec, policy: Policy, dataset: Dataset, background: Dataset | None = None) -> ModelAdapter:
    """Load a model and check that it fits ``dataset``: features, classes and output shape, and that it takes
    the missing values of ``dataset`` and its ``background`` (reference data) as they are. Library warnings
    raised while checking are kept in the adapter's ``warnings`` (and the evidence), not printed."""
    with caught() as seen:
        adapter = _load_model(spec, policy, dataset, background)
    adapter.warnings.extend(f"Checking model {spec.id!r}: {t}" for t in seen.texts
                            if f"Checking model {spec.id!r}: {t}" not in adapter.warnings)
    return adapter


def _load_model(spec: ModelSpec, policy: Policy, dataset: Dataset, background: Dataset | None) -> ModelAdapter:
    path = policy.resolve(spec.path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (models[{spec.id}].path)", hint="correct the path")
    loaded = load_tabular(spec, path)
    estimator, framework, warnings = loaded.estimator, loaded.framework, loaded.warnings
    where = f"model {spec.id!r} ({path.name}) on dataset {dataset.spec.id!r}"

    regression = spec.task == "regression"
    if framework == "sklearn" and regression:
        if not hasattr(estimator, "predict"):
            raise ModelError(f"{where}: {type(estimator).__name__} has no predict", hint="audit a fitted regressor")
        if getattr(estimator, "_estimator_type", None) == "classifier" or hasattr(estimator, "classes_"):
            raise ModelError(f"{where}: {type(estimator).__name__} is a classifier, and the policy says task: regression",
                             hint="remove 'task: regression' from this model (or audit a regressor)")
    if framework == "sklearn":
        if not regression and not hasattr(estimator, "predict_proba"):
            hint = ("it predicts scores: set 'task: regression' on this model" if getattr(
                estimator, "_estimator_type", None) == "regressor" else
                "audit a probabilistic classifier (or wrap it in CalibratedClassifierCV)")
            raise ModelError(f"{where}: {type(estimator).__name__} has no predict_proba", hint=hint)
            raise ModelError(f"{where}: {type(estimator).__name__} has no predict_proba",
                             hint="audit a probabilistic classifier (or wrap it in CalibratedClassifierCV)")
        names = getattr(estimator, "feature_names_in_", None)
        if names is not None:
            names = [str(n) for n in names]
            missing = [n for n in names if n not in dataset.space.names]
            extra = [n for n in dataset.space.names if n not in names]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"the model expects {missing[:8]} which the policy does not list")
                if extra:
                    parts.append(f"the policy lists {extra[:8]} which the model was not trained on")
                raise ModelError(f"{where}: feature mismatch: " + "; ".join(parts),
                                 hint="make the dataset's features list match the model's training columns")
        n_in = getattr(estimator, "n_features_in_", None)
        if names is None and n_in is not None and n_in != len(dataset.space.features):
            raise ModelError(f"{where}: feature mismatch: the model takes {n_in} features, the policy lists "
                             f"{len(dataset.space.features)}", hint="list exactly the model's input features")
        classes = [SCORE] if regression else [python_label(c) for c in getattr(estimator, "classes_", [])]
        if spec.classes and [python_label(c) for c in spec.classes] != classes:
            raise ModelError(f"{where}: the policy's classes {spec.classes} differ from the model's {classes}",
                             hint="list classes in the model's order, or leave 'classes' out")
    else:
        classes = [SCORE] if regression else [python_label(c) for c in spec.classes]

    adapter = ModelAdapter(spec, framework, estimator, classes, dataset.space, file_sha256(path), warnings,
                           description=loaded.kind)
    if framework != "sklearn":
        adapter.input_groups = _input_groups(adapter)
        _check_width(adapter, where)
    if spec.class_names and len(spec.class_names) != len(classes):
        raise ModelError(f"{where}: {len(spec.class_names)} class names for {len(classes)} classes",
                         hint="give one name per class")
    if spec.positive_class is not None and python_label(spec.positive_class) not in classes:
        raise ModelError(f"{where}: positive_class {spec.positive_class!r} is not one of the model's classes "
                         f"{classes}", hint="use one of the model's class labels")

    unknown = [] if regression else sorted({v for v in dataset.y.tolist() if v not in classes}, key=str)
    if unknown:
        raise ModelError(f"{where}: the dataset's target {dataset.spec.target!r} has values {unknown[:5]} that are "
                         f"not classes of the model {classes}",
                         hint="check the target column, or the model's 'classes' in the policy")

    complete = dataset.X[~np.isnan(dataset.X).any(axis=1)]
    rows = complete if len(complete) else dataset.X  # missing values are probed apart, feature by feature
    try:
        probe = adapter.outputs(rows[:2])
    except Exception as exc:
        raise ModelError(f"{where}: the model rejected the dataset's features: {first_line(exc)}",
                         hint="check the features list (names, order, types) against what the model was trained on") from None
    if framework == "torch":  # gradient methods call the module on batches of any size
        try:
            import torch

            with torch.no_grad():
                adapter.torch_forward(adapter.to_tensor(rows[:3]))
        except Exception as exc:
            raise ModelError(f"{where}: the model does not take a batch of 3 rows: {first_line(exc)}",
                             hint="export it with a dynamic batch dimension: torch.export.export(model, (x,), "
                                  "dynamic_shapes=({0: torch.export.Dim('batch')},))") from None
    if regression and probe.shape != (min(2, dataset.n_rows), 1):
        raise ModelError(f"{where}: the model returned shape {probe.shape}, expected one score per row",
                         hint="audit a model with a single output (a multi-output regressor is not supported)")
    if probe.shape != (min(2, dataset.n_rows), len(classes)):
        raise ModelError(f"{where}: the model returned shape {probe.shape}, expected (n, {len(classes)}) for classes "
                         f"{classes}", hint="check 'classes' (one label per model output)")
    adapter.missing_features = probe_missing(adapter, [dataset] + ([background] if background is not None else []),
                                             where)
    return adapter


def probe_missing(adapter: ModelAdapter, datasets: list[Dataset], where: str) -> tuple[str, ...]:
    """The features with missing values in ``datasets``, after checking that the model takes them.

    The probe is one row of the data per such feature, complete except for that feature: a model that
    raises on it, or returns no probability (NaN), cannot take the feature's missing values, and the error
    names the feature. The auditor never imputes: an audit explains the model as it runs, imputer included.
    """
    space = adapter.space
    X = np.concatenate([d.X for d in datasets])
    gone = np.flatnonzero(np.isnan(X).any(axis=0))
    if not len(gone):
        return ()
    filled = np.array([X[~np.isnan(X[:, i]), i][0] if (~np.isnan(X[:, i])).any() else 0.0
                       for i in range(X.shape[1])])
    base = np.where(np.isnan(X[0]), filled, X[0])
    rows = np.repeat(base[None, :], len(gone), axis=0)
    rows[np.arange(len(gone)), gone] = np.nan

    def refuse(i: int, why: str) -> ModelError:
        name = space.names[i]
        counts = ", ".join(f"{int(np.isnan(d.X[:, i]).sum())} in dataset {d.spec.id!r}" for d in datasets
                           if np.isnan(d.X[:, i]).any())
        return ModelError(f"{where}: the model cannot take missing values: feature {name!r} has missing values "
                          f"({counts}), and the model {why}",
                          hint="put an imputer inside the model's pipeline (e.g. scikit-learn's SimpleImputer before "
                               "the estimator) and save the pipeline; the auditor does not impute, because the audit "
                               "must explain the model as it runs")

    try:
        proba = adapter.outputs(rows)
    except Exception:
        for k, i in enumerate(gone):  # find the first feature the model refuses
            try:
                adapter.outputs(rows[k : k + 1])
            except Exception as exc:
                raise refuse(int(i), f"rejected a row holding one: {first_line(exc)}") from None
        raise
    bad = np.flatnonzero(~np.isfinite(proba).all(axis=1))
    if len(bad):
        raise refuse(int(gone[bad[0]]), "returned no " + ("score" if adapter.regression else "probability")
                     + " (NaN) for a row holding one")
    return tuple(space.names[i] for i in gone)


def _check_width(adapter: ModelAdapter, where: str) -> None:
    """An encoded-matrix model must take as many inputs as the policy's features encode to (and, where the file
    names its inputs, by the same names)."""
    width = sum(len(g) for g in adapter.input_groups)
    expected = getattr(adapter.estimator, "width", None)
    encoding = adapter.spec.categorical_encoding if adapter.space.categorical_indices else None
    if expected is not None and expected != width:
        raise ModelError(f"{where}: feature mismatch: the model takes {expected} inputs, the policy's features "
                         f"encode to {width}" + (f" ({encoding} categories)" if encoding else ""),
                         hint="list exactly the model's input features, in its order"
                              + (", and check categorical_encoding" if encoding else ""))
    names = getattr(adapter.estimator, "feature_names", None)
    if names and width == len(adapter.space.names) and names != adapter.space.names:
        raise ModelError(f"{where}: feature mismatch: the model's inputs are {names[:8]}, the policy lists "
                         f"{adapter.space.names[:8]}", hint="list the features in the model's order, by its names")


def _input_groups(adapter: ModelAdapter) -> list[list[int]]:
    groups, col = [], 0
    for i, f in enumerate(adapter.space.features):
        width = len(adapter.space.categories[i]) if (
            f.type == "categorical" and adapter.spec.categorical_encoding == "onehot") else 1
        groups.append(list(range(col, col + width)))
        col += width
    return groups
