"""Model performance on the audited dataset.

Classifiers: accuracy, ROC AUC, confusion matrix, calibration, and for binary classifiers sensitivity,
specificity, PPV and NPV at the operating threshold. Regression models: RMSE, MAE, R², the residuals by decile
of the prediction, and, under a decision cut-off, how often the cut-off decides as the true value would (the
decision's own confusion matrix).

Every figure has its confidence interval beside it (``<figure>_ci``, :mod:`auditor.intervals`): Wilson for
proportions (accuracy, precision, recall, sensitivity, specificity, PPV, NPV, a group's positive rate, a
calibration bin's observed share), a seeded bootstrap over the rows for the rest. The level, the resamples,
the operating threshold and the smallest group that supports a conclusion are the policy's ``performance:``
settings (:class:`PerformanceSpec`)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn import metrics

from .intervals import Interval, bootstrap, weighted_auc, weighted_mean, wilson

__all__ = ["GroupStats", "OperatingPoint", "Performance", "PerformanceSpec", "RegressionGroupStats",
           "RegressionPerformance", "measure_groups", "measure_performance", "measure_regression",
           "measure_regression_groups"]


class PerformanceSpec(BaseModel):
    """How the performance figures are measured: their intervals, the operating threshold, the smallest group."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Level of every interval (0.95: 95%).")
    bootstrap: int = Field(
        default=1000, ge=0, le=100_000,
        description="Resamples of the rows (seeded with the audit seed) for the figures that are not proportions: "
        "ROC AUC, Brier score, balanced accuracy, log loss, F1, RMSE, MAE, R². 0: no bootstrap intervals "
        "(proportions keep their Wilson intervals).")
    operating_point: float = Field(
        default=0.5, ge=0, le=1,
        description="Binary classifiers: a decision is positive when P(positive class) is at or above this; "
        "sensitivity, specificity, PPV and NPV are measured there.")
    min_group_rows: int = Field(
        default=30, ge=1, description="A group (of a threshold's 'by') with fewer rows is marked as too few rows "
        "to conclude from.")

    @model_validator(mode="after")
    def _enough_resamples(self):
        if 0 < self.bootstrap < 100:
            raise ValueError(f"bootstrap: {self.bootstrap} resamples are too few for a percentile interval; "
                             "use 0 (off) or at least 100 (default 1000)")
        return self


class _Ci:
    """The intervals of one measurement: Wilson for proportions, the bootstrap (same seed, same resamples) else."""

    def __init__(self, spec: PerformanceSpec | None, seed: int) -> None:
        self.spec = spec or PerformanceSpec()
        self.seed = seed

    def share(self, successes, n) -> Interval | None:
        return wilson(int(successes), int(n), self.spec.confidence)

    def boot(self, statistic, *arrays) -> Interval | None:
        return bootstrap(statistic, *arrays, seed=self.seed, reps=self.spec.bootstrap, level=self.spec.confidence)


def _mean_of(w, values):
    return weighted_mean(w, values)


def _balanced(w, onehot, correct):
    """Per replicate: the mean recall over the classes present in the resample (as scikit-learn's);
    ``onehot``: the rows' true classes, one column per class."""
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = (w @ (onehot * correct[:, None])) / (w @ onehot)
    present = np.isfinite(recall)
    return np.where(present, recall, 0).sum(axis=1) / present.sum(axis=1)


def _f1(w, hit, said, truth):
    """Per replicate: F1 of one class (0 where it is never predicted nor true, as scikit-learn's zero_division=0)."""
    tp, fp, fn = w @ (hit * 1.0), w @ (said & ~hit), w @ (truth & ~hit)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)


def _macro_auc(w, y_index, proba):
    return np.mean([weighted_auc(w, y_index == c, proba[:, c]) for c in range(proba.shape[1])], axis=0)


def _rmse(w, residual):
    return np.sqrt(weighted_mean(w, residual ** 2))


def _r2(w, y, pred):
    total = w.sum(axis=1)
    mean = (w @ y) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = w @ (y ** 2) - total * mean ** 2
        r2 = 1 - (w @ ((y - pred) ** 2)) / spread
    return np.where(spread > 1e-12 * np.maximum(1.0, w @ (y ** 2)), r2, np.nan)


class ClassMetrics(BaseModel):
    label: int | str
    name: str
    precision: float
    recall: float = Field(description="Sensitivity for this class.")
    f1: float
    support: int
    precision_ci: Interval | None = Field(default=None, description="Wilson, over the rows predicted as this class.")
    recall_ci: Interval | None = Field(default=None, description="Wilson, over the rows of this true class.")
    f1_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")


class CalibrationBin(BaseModel):
    lower: float
    upper: float
    mean_predicted: float
    observed: float = Field(description="Share of rows in the bin whose true class is the positive class.")
    count: int
    observed_ci: Interval | None = Field(default=None, description="Wilson, over the bin's rows.")


class OperatingPoint(BaseModel):
    """A binary classifier's decisions at the policy's operating threshold on P(positive class)."""

    threshold: float = Field(description="A decision is positive when P(positive class) is at or above this.")
    positive: int | str = Field(description="The positive class's label.")
    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int
    sensitivity: float | None = Field(description="TP / (TP + FN): share of the positive rows decided positive.")
    sensitivity_ci: Interval | None = None
    specificity: float | None = Field(description="TN / (TN + FP): share of the negative rows decided negative.")
    specificity_ci: Interval | None = None
    ppv: float | None = Field(description="Positive predictive value, TP / (TP + FP); None when none is positive.")
    ppv_ci: Interval | None = None
    npv: float | None = Field(description="Negative predictive value, TN / (TN + FN); None when none is negative.")
    npv_ci: Interval | None = None


def _operating_point(truth: np.ndarray, p: np.ndarray, threshold: float, positive, ci: _Ci) -> OperatingPoint:
    said = p >= threshold
    tp, fp = int((said & truth).sum()), int((said & ~truth).sum())
    tn, fn = int((~said & ~truth).sum()), int((~said & truth).sum())
    figures = {}
    for name, hits, total in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp), ("ppv", tp, tp + fp),
                              ("npv", tn, tn + fn)):
        figures[name] = hits / total if total else None
        figures[f"{name}_ci"] = ci.share(hits, total)
    return OperatingPoint(threshold=threshold, positive=positive, true_positive=tp, false_positive=fp,
                          true_negative=tn, false_negative=fn, **figures)


class Performance(BaseModel):
    rows: int
    accuracy: float
    balanced_accuracy: float
    roc_auc: float | None = Field(description="Binary: positive class vs rest; multiclass: one-vs-rest macro.")
    brier_score: float | None = Field(description="Binary only: mean squared error of P(positive).")
    log_loss: float
    confusion_matrix: list[list[int]] = Field(description="Rows: true class; columns: predicted class; model order.")
    per_class: list[ClassMetrics]
    calibration: list[CalibrationBin] = Field(description="Binary only: reliability of P(positive) in 10 bins.")
    accuracy_ci: Interval | None = Field(default=None, description="Wilson.")
    balanced_accuracy_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")
    roc_auc_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")
    brier_score_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")
    log_loss_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")
    operating_point: OperatingPoint | None = Field(
        default=None, description="Binary only: sensitivity, specificity, PPV and NPV at the policy's "
        "performance.operating_point.")


def measure_performance(proba: np.ndarray, y: np.ndarray, classes: list, class_names: list[str],
                        positive_index: int, *, spec: PerformanceSpec | None = None, seed: int = 0) -> Performance:
    """The figures and their intervals (``spec``: the policy's performance settings; ``seed``: the audit's)."""
    ci = _Ci(spec, seed)
    y_index = np.array([classes.index(v) for v in y], dtype=np.int64)
    pred = proba.argmax(axis=1)
    correct = pred == y_index
    k = len(classes)
    labels = list(range(k))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_index, pred, labels=labels, zero_division=0
    )
    present = np.unique(y_index)
    roc_auc = brier = roc_auc_ci = brier_ci = operating = None
    calibration: list[CalibrationBin] = []
    if k == 2:
        truth = y_index == positive_index
        p = proba[:, positive_index]
        roc_auc = float(metrics.roc_auc_score(truth, p))
        roc_auc_ci = ci.boot(weighted_auc, truth, p)
        brier = float(metrics.brier_score_loss(truth, p))
        brier_ci = ci.boot(_mean_of, (p - truth) ** 2)
        edges = np.linspace(0.0, 1.0, 11)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
        for b in range(10):
            mask = which == b
            if mask.any():
                calibration.append(CalibrationBin(lower=float(edges[b]), upper=float(edges[b + 1]),
                                                  mean_predicted=float(p[mask].mean()),
                                                  observed=float(truth[mask].mean()), count=int(mask.sum()),
                                                  observed_ci=ci.share(truth[mask].sum(), mask.sum())))
        operating = _operating_point(truth, p, ci.spec.operating_point, classes[positive_index], ci)
    elif len(present) == k:
        roc_auc = float(metrics.roc_auc_score(y_index, proba, multi_class="ovr", labels=labels))
        roc_auc_ci = ci.boot(_macro_auc, y_index, proba)
    clipped = np.clip(proba, 1e-15, 1)
    row_loss = -np.log(clipped[np.arange(len(y_index)), y_index] / clipped.sum(axis=1))
    said = [pred == i for i in labels]
    return Performance(
        rows=len(y_index),
        accuracy=float(metrics.accuracy_score(y_index, pred)),
        balanced_accuracy=float(metrics.balanced_accuracy_score(y_index, pred)),
        roc_auc=roc_auc,
        brier_score=brier,
        log_loss=float(metrics.log_loss(y_index, np.clip(proba, 1e-15, 1), labels=labels)),
        confusion_matrix=metrics.confusion_matrix(y_index, pred, labels=labels).tolist(),
        per_class=[
            ClassMetrics(label=classes[i], name=class_names[i], precision=float(precision[i]),
                         recall=float(recall[i]), f1=float(f1[i]), support=int(support[i]),
                         precision_ci=ci.share((said[i] & correct).sum(), said[i].sum()),
                         recall_ci=ci.share((said[i] & correct).sum(), support[i]),
                         f1_ci=ci.boot(_f1, said[i] & correct, said[i], y_index == i))
            for i in labels
        ],
        calibration=calibration,
        accuracy_ci=ci.share(correct.sum(), len(y_index)),
        balanced_accuracy_ci=ci.boot(_balanced, np.eye(k)[y_index], correct),
        roc_auc_ci=roc_auc_ci,
        brier_score_ci=brier_ci,
        log_loss_ci=ci.boot(_mean_of, row_loss),
        operating_point=operating,
    )


class GroupStats(BaseModel):
    group: str
    rows: int
    accuracy: float | None
    balanced_accuracy: float | None
    roc_auc: float | None = Field(description="None when the group holds a single true class.")
    brier_score: float | None
    positive_rate: float = Field(description="Share of the group's decisions predicted as the positive class.")
    too_few_rows: bool = Field(default=False, description="Fewer rows than the policy's "
                               "performance.min_group_rows: too few to conclude from.")
    accuracy_ci: Interval | None = Field(default=None, description="Wilson.")
    balanced_accuracy_ci: Interval | None = Field(default=None, description="Bootstrap over the group's rows.")
    roc_auc_ci: Interval | None = Field(default=None, description="Bootstrap over the group's rows.")
    brier_score_ci: Interval | None = Field(default=None, description="Bootstrap over the group's rows.")
    positive_rate_ci: Interval | None = Field(default=None, description="Wilson.")


def measure_groups(proba: np.ndarray, y: np.ndarray, classes: list, positive_index: int,
                   groups: np.ndarray, *, spec: PerformanceSpec | None = None, seed: int = 0) -> list[GroupStats]:
    """Performance and positive-decision rate per group (groups: one label per row), with their intervals."""
    ci = _Ci(spec, seed)
    y_index = np.array([classes.index(v) for v in y], dtype=np.int64)
    pred = proba.argmax(axis=1)
    out = []
    for g in sorted(set(groups.tolist()), key=str):
        mask = groups == g
        yi, pi = y_index[mask], pred[mask]
        truth = yi == positive_index
        two = len(np.unique(truth)) == 2 and len(classes) == 2
        binary = len(classes) == 2 and mask.any()
        p = proba[mask, positive_index]
        n = int(mask.sum())
        out.append(GroupStats(
            group=str(g), rows=n,
            accuracy=float(metrics.accuracy_score(yi, pi)) if mask.any() else None,
            balanced_accuracy=float(metrics.balanced_accuracy_score(yi, pi)) if mask.any() else None,
            roc_auc=float(metrics.roc_auc_score(truth, p)) if two else None,
            brier_score=float(metrics.brier_score_loss(truth, p)) if binary else None,
            positive_rate=float((pi == positive_index).mean()) if mask.any() else 0.0,
            too_few_rows=n < ci.spec.min_group_rows,
            accuracy_ci=ci.share((yi == pi).sum(), n),
            balanced_accuracy_ci=ci.boot(_balanced, np.eye(len(classes))[yi], yi == pi) if mask.any() else None,
            roc_auc_ci=ci.boot(weighted_auc, truth, p) if two else None,
            brier_score_ci=ci.boot(_mean_of, (p - truth) ** 2) if binary else None,
            positive_rate_ci=ci.share((pi == positive_index).sum(), n),
        ))
    return out


class ResidualBin(BaseModel):
    lower: float = Field(description="Lowest prediction in the decile.")
    upper: float = Field(description="Highest prediction in the decile.")
    count: int
    mean_predicted: float
    mean_observed: float
    mean_residual: float = Field(description="Mean of true value minus prediction: above 0, the model predicts low.")
    rmse: float


class CutOffPerformance(BaseModel):
    cut_off: float
    side: Literal["below", "above"] = Field(description="Which side of the cut-off is adverse.")
    labels: list[str] = Field(description="The decision's names: [favourable, adverse].")
    adverse_rate: float = Field(description="Share of rows the model's score puts on the adverse side.")
    observed_adverse_rate: float = Field(description="Share of rows whose true value is on the adverse side.")
    accuracy: float = Field(description="Share of rows where the score and the true value fall on the same side.")
    confusion_matrix: list[list[int]] = Field(description="Rows: by the true value; columns: by the score; "
                                              "[favourable, adverse].")
    accuracy_ci: Interval | None = Field(default=None, description="Wilson.")


class RegressionPerformance(BaseModel):
    rows: int
    rmse: float
    mae: float
    r2: float
    mean_observed: float
    mean_predicted: float
    residual_deciles: list[ResidualBin] = Field(description="Residuals by decile of the prediction, lowest first.")
    decision: CutOffPerformance | None = Field(default=None, description="Under the policy's decision cut-off.")
    rmse_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")
    mae_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")
    r2_ci: Interval | None = Field(default=None, description="Bootstrap over the rows.")


def measure_regression(pred: np.ndarray, y: np.ndarray, decision=None, *, spec: PerformanceSpec | None = None,
                       seed: int = 0) -> RegressionPerformance:
    """``pred``: the model's scores; ``y``: the true values; ``decision``: the model's DecisionSpec, if any;
    ``spec``: the policy's performance settings; ``seed``: the audit's."""
    ci = _Ci(spec, seed)
    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    residual = y - pred
    bins = []
    order = np.argsort(pred, kind="stable")
    for part in np.array_split(order, min(10, len(order))):
        if len(part):
            bins.append(ResidualBin(lower=float(pred[part].min()), upper=float(pred[part].max()), count=len(part),
                                    mean_predicted=float(pred[part].mean()), mean_observed=float(y[part].mean()),
                                    mean_residual=float(residual[part].mean()),
                                    rmse=float(np.sqrt(np.mean(residual[part] ** 2)))))
    cut = None
    if decision is not None:
        said, true = decision.adverse_if.adverse(pred), decision.adverse_if.adverse(y)
        cut = CutOffPerformance(cut_off=decision.adverse_if.value, side=decision.adverse_if.side,
                                labels=[decision.favourable, decision.adverse], adverse_rate=float(said.mean()),
                                observed_adverse_rate=float(true.mean()), accuracy=float((said == true).mean()),
                                confusion_matrix=metrics.confusion_matrix(true, said, labels=[False, True]).tolist(),
                                accuracy_ci=ci.share((said == true).sum(), len(y)))
    return RegressionPerformance(
        rows=len(y), rmse=float(np.sqrt(metrics.mean_squared_error(y, pred))),
        mae=float(metrics.mean_absolute_error(y, pred)), r2=float(metrics.r2_score(y, pred)) if len(y) > 1 else 0.0,
        mean_observed=float(y.mean()), mean_predicted=float(pred.mean()), residual_deciles=bins, decision=cut,
        rmse_ci=ci.boot(_rmse, residual), mae_ci=ci.boot(_mean_of, np.abs(residual)),
        r2_ci=ci.boot(_r2, y, pred) if len(y) > 1 else None)


class RegressionGroupStats(BaseModel):
    group: str
    rows: int
    rmse: float | None
    mae: float | None
    r2: float | None = Field(description="None when the group has fewer than two rows or a constant true value.")
    mean_residual: float | None = Field(description="Mean of true value minus prediction in the group.")
    positive_rate: float | None = Field(
        description="Share of the group's decisions on the adverse side of the cut-off (None without a cut-off).")
    too_few_rows: bool = Field(default=False, description="Fewer rows than the policy's "
                               "performance.min_group_rows: too few to conclude from.")
    rmse_ci: Interval | None = Field(default=None, description="Bootstrap over the group's rows.")
    mae_ci: Interval | None = Field(default=None, description="Bootstrap over the group's rows.")
    r2_ci: Interval | None = Field(default=None, description="Bootstrap over the group's rows.")
    positive_rate_ci: Interval | None = Field(default=None, description="Wilson.")


def measure_regression_groups(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, decision=None, *,
                              spec: PerformanceSpec | None = None, seed: int = 0) -> list[RegressionGroupStats]:
    ci = _Ci(spec, seed)
    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out = []
    for g in sorted(set(groups.tolist()), key=str):
        mask = groups == g
        p, t = pred[mask], y[mask]
        some = bool(mask.any())
        r2 = float(metrics.r2_score(t, p)) if len(t) > 1 and np.ptp(t) > 0 else None
        adverse = decision.adverse_if.adverse(p) if decision is not None and some else None
        out.append(RegressionGroupStats(
            group=str(g), rows=int(mask.sum()),
            rmse=float(np.sqrt(np.mean((t - p) ** 2))) if some else None,
            mae=float(np.mean(np.abs(t - p))) if some else None,
            r2=r2,
            mean_residual=float(np.mean(t - p)) if some else None,
            positive_rate=float(adverse.mean()) if adverse is not None else None,
            too_few_rows=int(mask.sum()) < ci.spec.min_group_rows,
            rmse_ci=ci.boot(_rmse, t - p) if some else None,
            mae_ci=ci.boot(_mean_of, np.abs(t - p)) if some else None,
            r2_ci=ci.boot(_r2, t, p) if r2 is not None else None,
            positive_rate_ci=ci.share(adverse.sum(), len(adverse)) if adverse is not None else None,
        ))
    return out
