"""Model files: one entry per format, the only list of them (:data:`FORMATS`), and their loaders.

A format says what its files hold and what the auditor can do with them: which kinds of data it serves,
whether the model is differentiable (gradient methods), whether it exposes its layers (Grad-CAM, LRP),
whether the policy must list its classes, and whether loading it runs code. The policy's checks and the
explainers' applicability read these properties; nothing else lists formats.

Tabular loaders return a :class:`Loaded`: the estimator and how the adapter scores it (``framework``):

- ``sklearn``: a scikit-learn estimator (skops, or a trusted pickle), given the original values;
- ``torch``: a PyTorch module (TorchScript, or a ``torch.export`` program), given the encoded matrix as a
  float32 tensor; differentiable;
- ``array``: anything else that scores the encoded matrix as numbers (ONNX through onnxruntime, XGBoost and
  LightGBM boosters through their own libraries, without pickle): not differentiable.

Library warnings raised while loading are returned (``Loaded.warnings``), never printed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import ModelError, first_line

__all__ = ["FORMATS", "Loaded", "ModelFormat", "TRUSTED_LIBRARIES", "caught", "load_exported", "load_skops",
           "load_tabular", "load_torchscript"]


@dataclass(frozen=True)
class ModelFormat:
    name: str
    description: str
    modalities: frozenset[str]
    gradients: bool = False
    """The model is differentiable in the auditor's hands (Integrated Gradients)."""
    layers: bool = False
    """The model's layer modules can be hooked (Grad-CAM, LRP)."""
    needs_classes: bool = False
    """The file does not say its class labels: the policy must list them in output order."""
    runs_code: bool = False
    """Loading the file runs arbitrary code (refused without ``trust: pickle``)."""
    folder: bool = False
    """The model is a folder, not a file."""


FORMATS: dict[str, ModelFormat] = {f.name: f for f in (
    ModelFormat("skops", "scikit-learn estimator or Pipeline saved with skops", frozenset({"tabular"})),
    ModelFormat("torch_export", "PyTorch program saved with torch.export.save (.pt2)", frozenset({"tabular", "image"}),
                gradients=True, needs_classes=True),
    ModelFormat("torchscript", "PyTorch TorchScript file (deprecated by PyTorch; prefer torch_export)",
                frozenset({"tabular", "image"}), gradients=True, needs_classes=True),
    ModelFormat("state_dict", "PyTorch weights plus the architecture's Python class", frozenset({"image"}),
                gradients=True, layers=True, needs_classes=True, runs_code=False),
    ModelFormat("onnx", "ONNX model, run with onnxruntime", frozenset({"tabular"}), needs_classes=True),
    ModelFormat("xgboost", "XGBoost booster in its own format (.ubj or .json)", frozenset({"tabular"}),
                needs_classes=True),
    ModelFormat("lightgbm", "LightGBM booster in its own text format (.txt)", frozenset({"tabular"}),
                needs_classes=True),
    ModelFormat("huggingface", "a local transformers folder saved with save_pretrained", frozenset({"text"}),
                gradients=True, folder=True),
    ModelFormat("pickle", "pickle file (runs code when loaded; needs trust: pickle)", frozenset({"tabular"}),
                runs_code=True),
    ModelFormat("joblib", "joblib file (runs code when loaded; needs trust: pickle)", frozenset({"tabular"}),
                runs_code=True),
)}

TRUSTED_LIBRARIES: dict[str, tuple[str, ...]] = {
    "xgboost": ("xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor", "xgboost.sklearn.XGBRFClassifier",
                "xgboost.sklearn.XGBRFRegressor", "xgboost.core.Booster"),
    "lightgbm": ("lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor", "lightgbm.basic.Booster"),
}
"""skops: the types a library's scikit-learn estimators are saved as, trusted when the policy names the library
under ``trusted_libraries`` (instead of listing the library's internal type names)."""

# Types a skops file may hold without the policy listing them: scikit-learn's own estimators and
# numpy/builtin containers. Anything else (a custom class, a third-party estimator) must be trusted in the
# policy, because loading it runs that type's code.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "scipy.sparse.")
_TRUSTED_EXACT = {"collections.OrderedDict", "collections.defaultdict"}


@dataclass
class Loaded:
    estimator: Any
    framework: Literal["sklearn", "torch", "array"]
    kind: str = ""
    """What the model is, for the report (e.g. 'XGBoost Booster (binary:logistic)')."""
    warnings: list[str] = field(default_factory=list)


class caught:
    """Collect the warnings raised inside the block as texts (library, category, message), once each, instead
    of printing them: ``with caught() as seen: ...; seen.texts``. Deprecation notices are dropped: they tell a
    developer about a library's future (TorchScript's, say), not a reviewer about this audit's results."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._manager = warnings.catch_warnings(record=True)

    def __enter__(self) -> "caught":
        self._log = self._manager.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc) -> None:
        self._manager.__exit__(*exc)
        for w in self._log:
            if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
                continue
            text = describe_warning(w)
            if text not in self.texts:
                self.texts.append(text)


def describe_warning(w: warnings.WarningMessage) -> str:
    """One warning as the report states it: where it came from, its category and its message."""
    source = Path(w.filename).parts
    library = next((p for p in reversed(source[:-1]) if p not in ("site-packages", "dist-packages")
                    and not p.startswith("python")), "")
    if "site-packages" in source:
        library = source[source.index("site-packages") + 1]
    first = first_line(w.message) if str(w.message).strip() else ""
    return f"{library or 'python'} {w.category.__name__}: {first}"


# --- loaders -------------------------------------------------------------------------------------------------


def load_tabular(spec, path: Path) -> Loaded:
    """The model file of a tabular model ``spec`` (its ``format``), loaded without printing anything."""
    with caught() as seen:
        loaded = _LOADERS[spec.format](spec, path)
    loaded.warnings = [f"Loading {path.name}: {t}" for t in seen.texts] + loaded.warnings
    return loaded


def _skops(spec, path: Path) -> Loaded:
    return Loaded(load_skops(path, spec.id, spec.trusted_types, spec.trusted_libraries), "sklearn")


def load_skops(path: Path, model_id: str, trusted_types=(), trusted_libraries=()):
    """A scikit-learn estimator from a skops file, trusting only scikit-learn's, numpy's and builtin types plus
    those named (loading a type runs its code); refused, naming the types and the field to trust them in."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable skops file ({exc})",
                         hint="save scikit-learn models with skops.io.dump(model, path)") from None
    allowed = set(trusted_types) | _TRUSTED_EXACT
    for library in trusted_libraries:
        allowed |= set(TRUSTED_LIBRARIES[library])
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES) and t not in allowed]
    if refused:
        libraries = sorted({t.split(".")[0] for t in refused} & set(TRUSTED_LIBRARIES))
        hint = (f"if you trust them, add trusted_libraries: [{', '.join(libraries)}] to models[{model_id}]"
                if libraries and all(t.split(".")[0] in TRUSTED_LIBRARIES for t in refused)
                else f"if you trust them, list them under models[{model_id}].trusted_types")
        raise ModelError(f"{path}: the skops file contains types that are not trusted by default: "
                         f"{', '.join(refused)}", hint=hint)
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load skops model: {exc}") from None


def load_torchscript(path: Path):
    """A TorchScript module (tabular or image), on the CPU, in eval mode."""
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; it still loads it
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelError(f"{path}: not a TorchScript file ({first_line(exc)})",
                         hint="save PyTorch models with torch.export.save(torch.export.export(model, (x,)), "
                              "'model.pt2') and use format: torch_export") from None
    module.eval()
    return module


def _torchscript(spec, path: Path) -> Loaded:
    return Loaded(load_torchscript(path), "torch", "PyTorch TorchScript module")


def load_exported(path: Path):
    """The module of a ``torch.export`` program (.pt2), on the CPU."""
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not a torch.export program ({first_line(exc)})",
                         hint="save the model with torch.export.save(torch.export.export(model, (example,)), "
                              "'model.pt2')") from None
    return program.module()


class ExportedModule:
    """A ``torch.export`` program's module, callable like the model; pickles as the file's bytes (an exported
    module itself does not pickle), so it ships to Dask workers.

    The module checks every call's inputs against the exported signature (a forward pre-hook), which costs about
    as much as running a small network on a block of rows. It is checked on the first input of each shape and
    dtype; later inputs of that shape and dtype go straight to the module's graph."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.module = load_exported(path)
        self.checked: set = set()

    def __call__(self, inputs):
        key = (tuple(inputs.shape), inputs.dtype, inputs.requires_grad)
        if key in self.checked:
            return self.module.forward(inputs)
        out = self.module(inputs)
        self.checked.add(key)
        return out

    def __getstate__(self) -> dict:
        return {"data": self.data}

    def __setstate__(self, state: dict) -> None:
        import io

        import torch

        self.data = state["data"]
        self.module = torch.export.load(io.BytesIO(self.data)).module()
        self.checked = set()


def _torch_export(spec, path: Path) -> Loaded:
    return Loaded(ExportedModule(path), "torch", "PyTorch exported program (torch.export)")


def _pickle(spec, path: Path) -> Loaded:
    import joblib

    if spec.trust != "pickle":  # load_policy refuses this too; never rely on one check for safety
        raise ModelError(f"{path}: refusing to unpickle without 'trust: pickle' (models[{spec.id}])")
    try:
        estimator = joblib.load(path)
    except Exception as exc:
        raise ModelError(f"{path}: cannot unpickle model: {exc}") from None
    return Loaded(estimator, "sklearn", warnings=[
        f"Model {spec.id!r} was loaded from a {spec.format} file, which can run arbitrary code; "
        "its origin was trusted by the policy ('trust: pickle'), not verified by the auditor."])


class OnnxScorer:
    """An ONNX model through onnxruntime: float32 (or float64) matrix in, class probabilities out.

    The probability output is the one named ``probabilities`` (skl2onnx with zipmap off), else the last
    two-dimensional float output; ``outputs: logits`` in the policy applies a softmax. Rows are scored in
    fixed blocks so that a row's score does not depend on what else is in the call. Pickles as its file's bytes
    (for Dask workers)."""

    BLOCK = 512

    def __init__(self, data: bytes, logits: bool, regression: bool = False) -> None:
        self.data, self.logits, self.regression = data, logits, regression
        self._open()

    def _open(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(self.data, options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input = first.name
        self.dtype = np.float64 if first.type == "tensor(double)" else np.float32
        self.width = first.shape[1] if len(first.shape) == 2 and isinstance(first.shape[1], int) else None
        outputs = [o for o in self.session.get_outputs() if o.type in ("tensor(float)", "tensor(double)")
                   and len(o.shape) in ((1, 2) if self.regression else (2,))]
        named = [o for o in outputs if o.name == ("variable" if self.regression else "probabilities")]
        if not outputs and self.regression:
            raise ModelError("the ONNX model has no float output (the score)", hint="export the regressor's prediction")
        if not outputs:
            raise ModelError("the ONNX model has no two-dimensional float output (class probabilities)",
                             hint="export classifiers with their probabilities as a tensor (skl2onnx: "
                                  "options={'zipmap': False})")
        self.output = (named or outputs)[-1].name

    def __getstate__(self) -> dict:
        return {"data": self.data, "logits": self.logits, "regression": self.regression}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        padded = np.concatenate([X, np.repeat(X[-1:], -n % self.BLOCK, axis=0)]) if n % self.BLOCK else X
        parts = [self.session.run([self.output], {self.input: block.astype(self.dtype)})[0]
                 for block in np.split(padded, len(padded) // self.BLOCK)]
        out = np.concatenate(parts)[:n].astype(np.float64)
        if self.regression:
            return out.reshape(n, -1)
        if self.logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)


def _onnx(spec, path: Path) -> Loaded:
    try:
        scorer = OnnxScorer(path.read_bytes(), spec.logits, spec.task == "regression")
    except ModelError as exc:
        raise ModelError(f"{path}: {exc.message}", hint=exc.hint) from None
    except Exception as exc:
        raise ModelError(f"{path}: not an ONNX model onnxruntime can run ({first_line(exc)})",
                         hint="export the model to ONNX (skl2onnx, or torch.onnx.export)") from None
    return Loaded(scorer, "array", f"ONNX model (onnxruntime; output {scorer.output!r})")


class BoosterScorer:
    """An XGBoost or LightGBM booster, loaded and scored by its own library: numbers in (missing values as NaN,
    which boosters route natively), class probabilities out. Binary objectives give the positive class's
    probability, which becomes the two columns [1 - p, p]; regression objectives give the score, one column."""

    def __init__(self, library: str, booster, regression: bool = False) -> None:
        self.library, self.booster, self.regression = library, booster, regression

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.library == "xgboost":
            import xgboost

            p = self.booster.predict(xgboost.DMatrix(X, missing=np.nan))
        else:
            p = self.booster.predict(X)
        p = np.asarray(p, dtype=np.float64)
        if self.regression:
            return p.reshape(len(X), -1)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

    @property
    def feature_names(self) -> list[str] | None:
        if self.library == "xgboost":
            return list(self.booster.feature_names) if self.booster.feature_names else None
        names = list(self.booster.feature_name())
        return None if all(n == f"Column_{i}" for i, n in enumerate(names)) else names

    @property
    def width(self) -> int:
        return int(self.booster.num_features() if self.library == "xgboost" else self.booster.num_feature())


_PROBABILISTIC = {"xgboost": ("binary:logistic", "multi:softprob", "multi:softmax"),
                  "lightgbm": ("binary", "multiclass", "multiclassova", "cross_entropy")}
_REGRESSION = {"xgboost": ("reg:squarederror", "reg:squaredlogerror", "reg:absoluteerror", "reg:pseudohubererror",
                           "reg:tweedie", "reg:gamma", "count:poisson"),
               "lightgbm": ("regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma",
                            "tweedie")}


def _booster(spec, path: Path) -> Loaded:
    library = spec.format
    try:
        if library == "xgboost":
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(str(path))
            booster.set_param({"nthread": 1})
            import json

            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        else:
            import lightgbm

            booster = lightgbm.Booster(model_file=str(path))
            objective = str(booster.params.get("objective", "")) or _lightgbm_objective(path)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{path}: not a {library} model file ({first_line(exc)})",
                         hint=("save the booster with booster.save_model('model.ubj')" if library == "xgboost"
                               else "save the booster with booster.save_model('model.txt')")) from None
    regression = spec.task == "regression"
    name = "XGBoost" if library == "xgboost" else "LightGBM"
    if regression:
        if objective.split(" ")[0] not in _REGRESSION[library]:
            raise ModelError(f"{path}: the {library} objective {objective!r} does not give a regression score, and the "
                             "policy says task: regression",
                             hint=f"remove 'task: regression', or audit a regressor ({', '.join(_REGRESSION[library])})")
        return Loaded(BoosterScorer(library, booster, True), "array", f"{name} Booster ({objective.split(' ')[0]})")
    if objective.split(" ")[0] in _REGRESSION[library]:
        raise ModelError(f"{path}: the {library} objective {objective!r} gives scores, not class probabilities",
                         hint="set 'task: regression' on this model")
    if objective.split(" ")[0] not in _PROBABILISTIC[library]:
        raise ModelError(f"{path}: the {library} objective {objective!r} does not give class probabilities",
                         hint=f"audit a classifier trained with one of: {', '.join(_PROBABILISTIC[library])}")
    if library == "xgboost" and objective == "multi:softmax":
        raise ModelError(f"{path}: objective multi:softmax gives labels, not probabilities",
                         hint="train with multi:softprob")
    return Loaded(BoosterScorer(library, booster), "array", f"{name} Booster ({objective.split(' ')[0]})")


def _lightgbm_objective(path: Path) -> str:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:40]:
        if line.startswith("objective="):
            return line.partition("=")[2]
    return ""


_LOADERS = {"skops": _skops, "torchscript": _torchscript, "torch_export": _torch_export, "onnx": _onnx,
            "xgboost": _booster, "lightgbm": _booster, "pickle": _pickle, "joblib": _pickle}
