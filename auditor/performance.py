"""Model performance on the audited dataset: accuracy, ROC AUC, confusion matrix, calibration."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from sklearn import metrics

__all__ = ["GroupStats", "Performance", "measure_groups", "measure_performance"]


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
