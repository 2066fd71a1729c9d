"""Data checks: what a reviewer looks at in the data before the explanations (SR 11-7's data quality and
ongoing monitoring; GMLP's independence of test data from training data).

For each audited dataset against its background (reference) dataset, on the feature-space matrices:

- missingness per feature in both, and features that are constant or nearly so;
- duplicate rows in the audited data;
- audited values outside the background's range, and categories the background never holds;
- class balance in both;
- **independence**: audited rows whose feature values all equal a background row (a test row that is also a
  training row), as a count, a share and the list of their ids;
- **population stability**: the population stability index (PSI) of every feature, and of each model's score
  (:func:`score_stability`), audited against background:
  ``PSI = sum over bins (a - b) ln(a / b)`` with ``a``, ``b`` the audited and background shares of a bin. Numeric
  features are binned at the background's deciles (``psi_bins``), categories are bins, and missing values are
  one more bin. An empty bin's share counts as ``EMPTY_SHARE`` (the usual correction: ln(0) is undefined). The
  usual bands: below 0.1 stable, 0.1 to 0.25 a shift, above 0.25 a major shift.

Each check raises observations at the policy's ``data_checks`` bounds (their defaults are the usual bands),
and thresholds can name ``data.missing_rate``, ``data.duplicate_share``, ``data.overlap_share`` and
``stability.psi`` (see :mod:`auditor.findings`).
"""

from __future__ import annotations

from typing import Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .explainers.base import Observation
from .numbers import listed, num, pct

__all__ = ["ClassShare", "DataCheck", "DataChecksSpec", "FeatureCheck", "PsiBin", "Stability", "check_data",
           "psi", "score_observations", "score_stability"]

Label = Union[int, str]
EMPTY_SHARE = 1e-4
"""The share an empty bin counts as in the PSI sum."""


class DataChecksSpec(BaseModel):
    """Bounds of the data checks: where they raise an observation (the usual bands by default)."""

    model_config = ConfigDict(extra="forbid")

    psi_bins: int = Field(default=10, ge=2, le=50, description="Numeric features and scores: bins at the "
                          "background's quantiles (10: deciles), plus one for missing values.")
    warn_psi: float = Field(default=0.1, ge=0, description="PSI from which a feature or score has shifted.")
    major_psi: float = Field(default=0.25, ge=0, description="PSI from which the shift is major.")
    warn_missing_rate: float = Field(default=0.2, ge=0, le=1, description="A feature missing in this share of "
                                     "audited rows or more is flagged.")
    near_constant: float = Field(default=0.95, gt=0, le=1, description="A feature whose most common value (or "
                                 "missing) holds this share of audited rows or more is flagged as near-constant.")
    warn_duplicate_share: float = Field(default=0.01, ge=0, le=1, description="Duplicate audited rows above this "
                                        "share are flagged.")
    warn_overlap_share: float = Field(default=0.0, ge=0, le=1, description="Audited rows that are also background "
                                      "rows, above this share, are flagged (default: any).")


class PsiBin(BaseModel):
    label: str = Field(description="The bin: a range, a category, or missing.")
    audited: float = Field(description="Share of audited rows in the bin.")
    background: float = Field(description="Share of background rows in the bin.")


class Stability(BaseModel):
    psi: float = Field(description="Population stability index, audited against background.")
    band: Literal["stable", "shift", "major shift"]
    sampling_psi: float = Field(description="The PSI that sampling alone gives, on average, with these row counts "
                                "and bins ((bins - 1) (1/n + 1/m), its chi-square approximation): a PSI near it is "
                                "not evidence of a shift.")
    bins: list[PsiBin]


class FeatureCheck(BaseModel):
    name: str
    display_name: str
    type: Literal["numeric", "categorical"]
    missing: int = Field(description="Audited rows where the value is missing.")
    missing_rate: float
    background_missing: int
    background_missing_rate: float
    distinct: int = Field(description="Distinct recorded values in the audited rows.")
    top_share: float = Field(description="Share of audited rows holding the most common value (missing counts as one).")
    constant: bool = Field(description="One value (or only missing) in every audited row.")
    near_constant: bool
    low: float | None = Field(description="Numeric: the background's lowest recorded value.")
    high: float | None = Field(description="Numeric: the background's highest recorded value.")
    out_of_range: int = Field(description="Numeric: audited values outside the background's range.")
    out_of_range_share: float
    unseen_categories: list[Label] = Field(description="Categorical: categories of audited rows the background lacks.")
    unseen_rows: int = Field(description="Audited rows holding such a category.")
    stability: Stability | None = Field(description="None when the background is the audited dataset itself.")


class ClassShare(BaseModel):
    label: Label
    rows: int
    share: float
    background_rows: int
    background_share: float


class TargetSummary(BaseModel):
    """A numeric target (a regression model's): its distribution in both datasets, and how far it has moved."""

    quantiles: list[float] = Field(description="Minimum, quartiles and maximum of the audited true values.")
    mean: float
    background_quantiles: list[float]
    background_mean: float
    stability: Stability | None = Field(description="PSI of the true values, audited against background (None when "
                                        "the background is the audited data).")


class DataCheck(BaseModel):
    dataset: str
    background: str
    same_data: bool = Field(description="The background is the audited dataset itself: no overlap or PSI to measure.")
    rows: int
    background_rows: int
    settings: DataChecksSpec = Field(description="The bounds the observations were raised at.")
    features: list[FeatureCheck]
    max_missing_rate: float
    duplicate_rows: int = Field(description="Audited rows whose feature values repeat an earlier audited row.")
    duplicate_share: float
    duplicate_ids: list[Label]
    classes: list[ClassShare]
    minority_share: float = Field(description="Share of audited rows in the rarest class (0 for a numeric target).")
    target: TargetSummary | None = Field(default=None, exclude_if=lambda v: v is None,
                                         description="A numeric target's distribution (absent for class labels).")
    overlap_rows: int | None = Field(description="Audited rows whose feature values equal a background row.")
    overlap_share: float | None
    overlap_ids: list[Label] = Field(description="Their ids.")
    max_psi: float | None
    max_psi_feature: str | None
    observations: list[Observation]


def _band(value: float, spec: DataChecksSpec) -> str:
    return "major shift" if value > spec.major_psi else "shift" if value >= spec.warn_psi else "stable"


def _band_bound(band: str, spec: DataChecksSpec) -> tuple[float, str]:
    """The bound a shifted band was raised at, and the policy setting it comes from."""
    return (spec.major_psi, "data_checks.major_psi") if band == "major shift" else (spec.warn_psi, "data_checks.warn_psi")


def psi(audited: np.ndarray, background: np.ndarray) -> float:
    """PSI between two vectors of bin shares (each summing to 1), empty bins counted as ``EMPTY_SHARE``."""
    a = np.maximum(np.asarray(audited, dtype=np.float64), EMPTY_SHARE)
    b = np.maximum(np.asarray(background, dtype=np.float64), EMPTY_SHARE)
    return float(np.sum((a - b) * np.log(a / b)))


def _numeric_bins(audited: np.ndarray, background: np.ndarray, bins: int, unit: str = "") -> tuple[list, list, list]:
    """Labels and per-bin counts (audited, background) at the background's quantiles, missing as the last bin."""
    recorded = background[~np.isnan(background)]
    edges = np.unique(np.quantile(recorded, np.arange(1, bins) / bins)) if len(recorded) else np.array([])
    labels = ([f"≤ {num(edges[0], 4)}{unit}"] if len(edges) else ["any value"]) + [
        f"{num(lo, 4)} to {num(hi, 4)}{unit}" for lo, hi in zip(edges, edges[1:])] + (
        [f"> {num(edges[-1], 4)}{unit}"] if len(edges) else [])

    def counts(x: np.ndarray) -> list[int]:
        present = x[~np.isnan(x)]
        which = np.searchsorted(edges, present, side="left")  # bin k holds (edge[k-1], edge[k]]
        return np.bincount(which, minlength=len(labels)).tolist() + [int(np.isnan(x).sum())]

    return labels + ["missing"], counts(audited), counts(background)


def _categorical_bins(audited: np.ndarray, background: np.ndarray, categories: tuple) -> tuple[list, list, list]:
    def counts(x: np.ndarray) -> list[int]:
        present = x[~np.isnan(x)].astype(np.int64)
        return np.bincount(present, minlength=len(categories)).tolist() + [int(np.isnan(x).sum())]

    return [str(c) for c in categories] + ["missing"], counts(audited), counts(background)


def _stability(labels: list[str], a: list[int], b: list[int], spec: DataChecksSpec) -> Stability:
    a_share = np.asarray(a, dtype=np.float64) / max(sum(a), 1)
    b_share = np.asarray(b, dtype=np.float64) / max(sum(b), 1)
    keep = (a_share > 0) | (b_share > 0)  # a bin neither holds (missing, where nothing is) is not shown
    value = psi(a_share, b_share)
    noise = (int(keep.sum()) - 1) * (1 / max(sum(a), 1) + 1 / max(sum(b), 1))
    return Stability(psi=value, band=_band(value, spec), sampling_psi=float(noise), bins=[
        PsiBin(label=label, audited=float(x), background=float(y))
        for label, x, y, k in zip(labels, a_share, b_share, keep) if k])


def score_stability(audited: np.ndarray, background: np.ndarray, spec: DataChecksSpec) -> Stability:
    """PSI of a model's score (its probability of the positive class) on the audited against the background rows."""
    return _stability(*_numeric_bins(audited, background, spec.psi_bins), spec)


def score_observations(model_id: str, dataset: str, background: str, stability: Stability,
                       spec: DataChecksSpec) -> list[Observation]:
    """A warning when a model's scores have shifted from the reference data's, at the band's bound."""
    if stability.band == "stable":
        return []
    bound, setting = _band_bound(stability.band, spec)
    return [Observation(
        level="warn", code="stability.score", threshold=bound, setting=setting,
        message=f"{model_id}: its scores on {dataset} have shifted from those on {background} ({stability.band}, "
                f"PSI {num(stability.psi, 3)}): the audited population is not the one the reference data describe.")]


def _row_keys(X: np.ndarray) -> list[bytes]:
    """Each row as bytes, every NaN written alike, so rows compare equal exactly when every value (or its
    missing state) does."""
    canonical = np.where(np.isnan(X), np.nan, X + 0.0)  # one NaN pattern; -0.0 as 0.0
    return [row.tobytes() for row in np.ascontiguousarray(canonical)]


def _feature(i: int, f, space, X: np.ndarray, B: np.ndarray, same: bool, spec: DataChecksSpec) -> FeatureCheck:
    x, b = X[:, i], B[:, i]
    gone, b_gone = np.isnan(x), np.isnan(b)
    values, counts = np.unique(x[~gone], return_counts=True)
    states = counts.tolist() + ([int(gone.sum())] if gone.any() else [])
    top = max(states) / len(x)
    low = high = None
    out = 0
    unseen: list = []
    unseen_rows = 0
    if f.type == "numeric":
        if (~b_gone).any():
            low, high = float(np.min(b[~b_gone])), float(np.max(b[~b_gone]))
            out = int(((x[~gone] < low) | (x[~gone] > high)).sum())
        labels, a_counts, b_counts = _numeric_bins(x, b, spec.psi_bins, f" {f.unit}" if f.unit else "")
    else:
        held = set(np.unique(b[~b_gone]).astype(np.int64).tolist())
        codes = x[~gone].astype(np.int64)
        missing_codes = sorted(set(codes.tolist()) - held)
        unseen = [space.categories[i][k] for k in missing_codes]
        unseen_rows = int(np.isin(codes, missing_codes).sum())
        labels, a_counts, b_counts = _categorical_bins(x, b, space.categories[i])
    return FeatureCheck(
        name=f.name, display_name=f.label, type=f.type, missing=int(gone.sum()), missing_rate=float(gone.mean()),
        background_missing=int(b_gone.sum()), background_missing_rate=float(b_gone.mean()), distinct=len(values),
        top_share=float(top), constant=len(states) == 1, near_constant=bool(top >= spec.near_constant),
        low=low, high=high, out_of_range=out, out_of_range_share=out / len(x), unseen_categories=unseen,
        unseen_rows=unseen_rows, stability=None if same else _stability(labels, a_counts, b_counts, spec))


def check_data(dataset, background, spec: DataChecksSpec) -> DataCheck:
    """Every check of one audited tabular dataset against its background."""
    space, X, B = dataset.space, dataset.X, background.X
    same = background is dataset
    features = [_feature(i, f, space, X, B, same, spec) for i, f in enumerate(space.features)]
    keys = _row_keys(X)
    seen: set[bytes] = set()
    duplicates = []
    for k, key in enumerate(keys):
        if key in seen:
            duplicates.append(dataset.ids[k])
        seen.add(key)
    overlap_ids: list = []
    if not same:
        held = set(_row_keys(B))
        overlap_ids = [dataset.ids[k] for k, key in enumerate(keys) if key in held]
    labels = list(dict.fromkeys(list(dataset.class_counts) + list(background.class_counts)))
    classes = [ClassShare(label=c, rows=dataset.class_counts.get(c, 0),
                          share=dataset.class_counts.get(c, 0) / dataset.n_rows,
                          background_rows=background.class_counts.get(c, 0),
                          background_share=background.class_counts.get(c, 0) / background.n_rows) for c in labels]
    shifted = [f for f in features if f.stability is not None]
    worst = max(shifted, key=lambda f: f.stability.psi) if shifted else None
    check = DataCheck(
        dataset=dataset.spec.id, background=background.spec.id, same_data=same, rows=dataset.n_rows,
        background_rows=background.n_rows, settings=spec, features=features,
        max_missing_rate=max((f.missing_rate for f in features), default=0.0),
        duplicate_rows=len(duplicates), duplicate_share=len(duplicates) / dataset.n_rows, duplicate_ids=duplicates,
        classes=classes, minority_share=min(c.share for c in classes if c.rows) if any(c.rows for c in classes) else 0.0,
        overlap_rows=None if same else len(overlap_ids), overlap_share=None if same else len(overlap_ids) / dataset.n_rows,
        overlap_ids=overlap_ids, max_psi=worst.stability.psi if worst else None,
        max_psi_feature=worst.name if worst else None, observations=[])
    if getattr(dataset, "numeric_target", False):
        y, b = np.asarray(dataset.y, dtype=float), np.asarray(background.y, dtype=float)
        check.target = TargetSummary(
            quantiles=np.quantile(y, [0, 0.25, 0.5, 0.75, 1]).tolist(), mean=float(y.mean()),
            background_quantiles=np.quantile(b, [0, 0.25, 0.5, 0.75, 1]).tolist(), background_mean=float(b.mean()),
            stability=None if same else _stability(*_numeric_bins(y, b, spec.psi_bins), spec))
    check.observations = _observations(check, spec)
    return check


def _observations(check: DataCheck, spec: DataChecksSpec) -> list[Observation]:
    where = f"Dataset {check.dataset}"
    out = []
    missing = [f for f in check.features if f.missing_rate >= spec.warn_missing_rate and f.missing]
    if missing:
        out.append(Observation(
            level="warn", code="data.missing", threshold=spec.warn_missing_rate, setting="data_checks.warn_missing_rate",
            message=f"{where}: {listed(f'{f.display_name} ({pct(f.missing_rate)})' for f in missing)} missing in "
                    f"{pct(spec.warn_missing_rate, 0)} of rows or more. The models see these values as missing; check "
                    "that the explanations' missing states make sense for them."))
    flat = [f for f in check.features if f.near_constant]
    if flat:
        out.append(Observation(
            level="warn", code="data.near_constant", threshold=spec.near_constant, setting="data_checks.near_constant",
            message=f"{where}: {listed(f.display_name for f in flat)} "
                    f"{'is' if len(flat) == 1 else 'are'} constant or nearly so (one value in "
                    f"{pct(spec.near_constant, 0)} of rows or more): the data say little about "
                    f"{'its' if len(flat) == 1 else 'their'} effect."))
    if check.duplicate_share > spec.warn_duplicate_share:
        out.append(Observation(
            level="warn", code="data.duplicates", threshold=spec.warn_duplicate_share,
            setting="data_checks.warn_duplicate_share", decisions=check.duplicate_ids,
            message=f"{where}: {check.duplicate_rows} row(s) ({pct(check.duplicate_share)}) repeat an earlier row's "
                    "feature values."))
    if check.overlap_share is not None and check.overlap_share > spec.warn_overlap_share:
        out.append(Observation(
            level="warn", code="data.overlap", threshold=spec.warn_overlap_share, setting="data_checks.warn_overlap_share",
            decisions=check.overlap_ids,
            message=f"{where}: {check.overlap_rows} audited row(s) ({pct(check.overlap_share)}) have the same feature "
                    f"values as a row of {check.background}: the audited data are not independent of the reference "
                    f"data (rows {listed(check.overlap_ids)})."))
    outside = [f for f in check.features if f.out_of_range or f.unseen_rows]
    if outside:
        out.append(Observation(
            level="info", code="data.outside_background",
            message=f"{where}: values outside what {check.background} holds: " + listed(
                f"{f.display_name} ({f.out_of_range or f.unseen_rows} row(s))" for f in outside) + "."))
    for band in ("major shift", "shift"):
        bound, setting = _band_bound(band, spec)
        shifted = [f for f in check.features if f.stability is not None and f.stability.band == band]
        if shifted:
            out.append(Observation(
                level="warn", code="stability.major_shift" if band == "major shift" else "stability.shift",
                threshold=bound, setting=setting,
                message=f"{where}: the population has shifted from {check.background} ({band}, PSI "
                        f"{'above' if band == 'major shift' else 'at least'} {num(bound, 2)}) for "
                        f"{listed(f'{f.display_name} ({num(f.stability.psi, 3)})' for f in shifted)}"
                        + (f"; with these row counts sampling alone gives a PSI of about "
                           f"{num(max(f.stability.sampling_psi for f in shifted), 2)}" if band == "shift" else "")
                        + "."))
    return out
