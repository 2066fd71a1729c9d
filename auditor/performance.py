"""Model performance on the audited dataset.

Classifiers: accuracy, ROC AUC, confusion matrix, calibration. Regression models: RMSE, MAE, R², the residuals
by decile of the prediction, and, under a decision cut-off, how often the cut-off decides as the true value
would (the decision's own confusion matrix)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from sklearn import metrics

__all__ = ["GroupStats", "Performance", "RegressionGroupStats", "RegressionPerformance", "measure_groups",
           "measure_performance", "measure_regression", "measure_regression_groups"]


class ClassMetrics(BaseModel):
    label: int | str
    name: str
    precision: float
    recall: float = Field(description="Sensitivity for this class.")
    f1: float
    support: int


class CalibrationBin(BaseModel):
    lower: float
    upper: float
    mean_predicted: float
    observed: float = Field(description="Share of rows in the bin whose true class is the positive class.")
    count: int


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


def measure_performance(proba: np.ndarray, y: np.ndarray, classes: list, class_names: list[str],
                        positive_index: int) -> Performance:
    y_index = np.array([classes.index(v) for v in y], dtype=np.int64)
    pred = proba.argmax(axis=1)
    k = len(classes)
    labels = list(range(k))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_index, pred, labels=labels, zero_division=0
    )
    present = np.unique(y_index)
    roc_auc = brier = None
    calibration: list[CalibrationBin] = []
    if k == 2:
        truth = y_index == positive_index
        p = proba[:, positive_index]
        roc_auc = float(metrics.roc_auc_score(truth, p))
        brier = float(metrics.brier_score_loss(truth, p))
        edges = np.linspace(0.0, 1.0, 11)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
        for b in range(10):
            mask = which == b
            if mask.any():
                calibration.append(CalibrationBin(lower=float(edges[b]), upper=float(edges[b + 1]),
                                                  mean_predicted=float(p[mask].mean()),
                                                  observed=float(truth[mask].mean()), count=int(mask.sum())))
    elif len(present) == k:
        roc_auc = float(metrics.roc_auc_score(y_index, proba, multi_class="ovr", labels=labels))
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
                         recall=float(recall[i]), f1=float(f1[i]), support=int(support[i]))
            for i in labels
        ],
        calibration=calibration,
    )


class GroupStats(BaseModel):
    group: str
    rows: int
    accuracy: float | None
    balanced_accuracy: float | None
    roc_auc: float | None = Field(description="None when the group holds a single true class.")
    brier_score: float | None
    positive_rate: float = Field(description="Share of the group's decisions predicted as the positive class.")


def measure_groups(proba: np.ndarray, y: np.ndarray, classes: list, positive_index: int,
                   groups: np.ndarray) -> list[GroupStats]:
    """Performance and positive-decision rate per group (groups: one label per row)."""
    y_index = np.array([classes.index(v) for v in y], dtype=np.int64)
    pred = proba.argmax(axis=1)
    out = []
    for g in sorted(set(groups.tolist()), key=str):
        mask = groups == g
        yi, pi = y_index[mask], pred[mask]
        truth = yi == positive_index
        two = len(np.unique(truth)) == 2 and len(classes) == 2
        out.append(GroupStats(
            group=str(g), rows=int(mask.sum()),
            accuracy=float(metrics.accuracy_score(yi, pi)) if mask.any() else None,
            balanced_accuracy=float(metrics.balanced_accuracy_score(yi, pi)) if mask.any() else None,
            roc_auc=float(metrics.roc_auc_score(truth, proba[mask, positive_index])) if two else None,
            brier_score=float(metrics.brier_score_loss(truth, proba[mask, positive_index]))
            if len(classes) == 2 and mask.any() else None,
            positive_rate=float((pi == positive_index).mean()) if mask.any() else 0.0,
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


class RegressionPerformance(BaseModel):
    rows: int
    rmse: float
    mae: float
    r2: float
    mean_observed: float
    mean_predicted: float
    residual_deciles: list[ResidualBin] = Field(description="Residuals by decile of the prediction, lowest first.")
    decision: CutOffPerformance | None = Field(default=None, description="Under the policy's decision cut-off.")


def measure_regression(pred: np.ndarray, y: np.ndarray, decision=None) -> RegressionPerformance:
    """``pred``: the model's scores; ``y``: the true values; ``decision``: the model's DecisionSpec, if any."""
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
                                confusion_matrix=metrics.confusion_matrix(true, said, labels=[False, True]).tolist())
    return RegressionPerformance(
        rows=len(y), rmse=float(np.sqrt(metrics.mean_squared_error(y, pred))),
        mae=float(metrics.mean_absolute_error(y, pred)), r2=float(metrics.r2_score(y, pred)) if len(y) > 1 else 0.0,
        mean_observed=float(y.mean()), mean_predicted=float(pred.mean()), residual_deciles=bins, decision=cut)


class RegressionGroupStats(BaseModel):
    group: str
    rows: int
    rmse: float | None
    mae: float | None
    r2: float | None = Field(description="None when the group has fewer than two rows or a constant true value.")
    mean_residual: float | None = Field(description="Mean of true value minus prediction in the group.")
    positive_rate: float | None = Field(
        description="Share of the group's decisions on the adverse side of the cut-off (None without a cut-off).")


def measure_regression_groups(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, decision=None
                              ) -> list[RegressionGroupStats]:
    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out = []
    for g in sorted(set(groups.tolist()), key=str):
        mask = groups == g
        p, t = pred[mask], y[mask]
        some = bool(mask.any())
        out.append(RegressionGroupStats(
            group=str(g), rows=int(mask.sum()),
            rmse=float(np.sqrt(np.mean((t - p) ** 2))) if some else None,
            mae=float(np.mean(np.abs(t - p))) if some else None,
            r2=float(metrics.r2_score(t, p)) if len(t) > 1 and np.ptp(t) > 0 else None,
            mean_residual=float(np.mean(t - p)) if some else None,
            positive_rate=float(decision.adverse_if.adverse(p).mean()) if decision is not None and some else None,
        ))
    return out
