"""The reference counterfactual engine: dice-ml's ``generate_counterfactuals`` per decision, and what both
engines share to decide whether a candidate reaches its target (:func:`at_target`).

dice-ml calls the model through :class:`_DiceModel` (predict / predict_proba on DataFrames of original
values) and prints progress bars and warnings for every decision, which :func:`_quiet` keeps off the
audit's output.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import warnings

import numpy as np

from .base import Batch, decision_seed

__all__ = ["at_target", "dice_search"]


def dice_search(spec, aim, model, batch: Batch, background, vary: list[str], seed: int, progress,
                targets: np.ndarray, proba: np.ndarray) -> list[np.ndarray]:
    """dice-ml's generate_counterfactuals per decision (none for a decision already at its target); the
    candidates as feature-space rows."""
    import dice_ml

    space = model.space
    names = space.names
    numeric = [f.name for f in space.features if f.type == "numeric"]
    # Whole-number features stay integers so DiCE proposes whole numbers (no "1.8 dependents");
    # the rest are float64 (DiCE fails on float32 frames under pandas 3).
    whole = {n for n in numeric if np.all(np.mod(background[:, names.index(n)], 1) == 0)}
    frame = _typed(space.decode(background), numeric, whole)
    scores = model.outputs(background)
    frame["__outcome__"] = scores[:, 0] if model.regression else scores.argmax(axis=1)
    target = {}
    if model.regression:  # DiCE takes a closed range: close an open end far outside the model's scores
        span = max(float(np.ptp(scores)), 1.0)
        wide = np.array([min(scores.min(), aim[1]) - 10 * span, max(scores.max(), aim[0]) + 10 * span])
        target = {"desired_range": np.where(np.isinf(aim), wide, aim).tolist()}
    done = at_target(model, proba, targets)
    data = dice_ml.Data(dataframe=frame, continuous_features=numeric, outcome_name="__outcome__")
    dice_model = dice_ml.Model(model=_DiceModel(model), backend="sklearn",
                               model_type="regressor" if model.regression else "classifier")
    dice = dice_ml.Dice(data, dice_model, method=spec.method)
    ranges = {n: list(v) for n, v in spec.permitted_range.items()}
    found = []
    for k in range(len(batch)):
        if done[k]:
            found.append(np.empty((0, len(names))))
            if progress:
                progress(1)
            continue
        query = _typed(space.decode(batch.X[k : k + 1]), numeric, whole)
        s = decision_seed(seed, batch.ids[k])
        random.seed(s)
        np.random.seed(s)
        kwargs = {"random_seed": s} if spec.method == "random" else {}
        with _quiet():
            try:
                out = dice.generate_counterfactuals(
                    query, total_CFs=spec.count, features_to_vary=vary,
                    desired_class="opposite" if len(model.classes) <= 2 else int(targets[k]),
                    permitted_range=ranges or None, posthoc_sparsity_algorithm="binary", verbose=False,
                    **target, **kwargs)
                cfs = out.cf_examples_list[0].final_cfs_df
            except Exception as exc:  # DiCE raises when it finds nothing ("No counterfactuals found")
                if "no counterfactuals found" not in str(exc).lower():
                    raise
                cfs = None
        if cfs is None or not len(cfs):
            found.append(np.empty((0, len(names))))
        else:
            found.append(_encode(space, cfs))
        if progress:
            progress(1)
    return found


def at_target(model, out: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Whether each row's outputs reach its target: the target class decided (for ``-1 - c``, any class but
    ``c``), or for a regression model (targets ``(rows, 2)``) a score in ``[low, high]``."""
    if model.regression:
        return (targets[:, 0] <= out[:, 0]) & (out[:, 0] <= targets[:, 1])
    decided = out.argmax(axis=1)
    return np.where(targets >= 0, decided == targets, decided != -1 - targets)


class _DiceModel:
    """What DiCE's sklearn backend calls: predict/predict_proba on DataFrames of original values."""

    def __init__(self, model) -> None:
        self.model = model

    def predict_proba(self, frame):
        return self.model.outputs(_encode(self.model.space, frame))

    def predict(self, frame):
        """The decided class index; a regression model's score (1-D, as DiCE's regressor mode takes it)."""
        if self.model.regression:
            return self.model.predict(_encode(self.model.space, frame))
        return self.predict_proba(frame).argmax(axis=1)


def _encode(space, frame) -> np.ndarray:
    """DiCE's frame as feature-space rows. Its genetic search turns categories into text ('2' for 2): map them
    back to the dataset's own values first."""
    frame = frame[space.names]
    for i in space.categorical_indices:
        text = {str(c): c for c in space.categories[i] if not isinstance(c, str)}
        values = frame[space.names[i]].tolist()
        if text and any(isinstance(v, str) and v in text for v in values):
            frame = frame.assign(**{space.names[i]: [text.get(v, v) if isinstance(v, str) else v for v in values]})
    return space.encode(frame)


def _typed(frame, numeric: list[str], whole: set[str]):
    for name in numeric:
        frame[name] = np.rint(frame[name]).astype(np.int64) if name in whole else frame[name].astype(np.float64)
    return frame


@contextlib.contextmanager
def _quiet():
    """DiCE prints tqdm bars and warnings for every decision; keep the audit's output readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)
