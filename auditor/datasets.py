"""Datasets: load CSV, Parquet or a dataset scikit-learn ships, check it, and encode its features.

Inside the auditor every dataset is a float64 matrix in *feature space*: numeric features as they
are, categorical features as integer codes into their category list. :class:`FeatureSpace` converts
between that matrix and the original values; model adapters turn it into what each model expects.

A missing value (NaN, an empty cell, None) is NaN in feature space, for numeric and categorical features
alike, and NaN (``np.nan``) again when decoded: the model sees its missing values as they are. The
auditor never imputes; whether a model takes them is probed when it loads (:mod:`auditor.models`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .policy import DatasetSpec, FeatureSpec, Policy

__all__ = ["MISSING", "Dataset", "FeatureSpace", "LabelledRows", "is_missing", "load_dataset", "python_label"]

MISSING = "missing"
"""How a missing value reads in the evidence's decision values and the report."""


def is_missing(value) -> bool:
    """Whether a cell holds no value: None, NaN (float or numpy), pandas' NA or NaT."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like cells
        return False

_SKLEARN_LOADERS = {
    "sklearn:breast_cancer": "load_breast_cancer",
    "sklearn:digits": "load_digits",
    "sklearn:iris": "load_iris",
    "sklearn:wine": "load_wine",
    "sklearn:diabetes": "load_diabetes",
}
_SKLEARN_OPTIONS = {"sklearn:diabetes": {"scaled": False}}  # the measurements in their own units, not standardised


def python_label(value) -> int | str:
    """A class label as a plain Python int or str, so labels compare across numpy, pandas and YAML."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return str(value)


@dataclass(frozen=True)
class FeatureSpace:
    """Feature order, types and category codes shared by every explainer."""

    features: tuple[FeatureSpec, ...]
    categories: tuple[tuple, ...]  # per feature; empty for numeric

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def labels(self) -> list[str]:
        return [f.label for f in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.type == "categorical"]

    def decode(self, X: np.ndarray) -> pd.DataFrame:
        """Feature-space matrix -> DataFrame of original values (categories by name, missing as NaN)."""
        X = np.asarray(X, dtype=np.float64)
        columns = {}
        for i, f in enumerate(self.features):
            if f.type == "categorical":
                cats, codes = self.category_codes(X, i)
                columns[f.name] = cats[codes]
            else:
                columns[f.name] = X[:, i]
        return pd.DataFrame(columns)

    def category_codes(self, X: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Categorical feature ``i`` of the feature-space matrix ``X``: its categories with NaN after them (an object
        array), and each row's index into that array (a missing value's is the NaN's)."""
        cats = np.asarray(list(self.categories[i]) + [np.nan], dtype=object)
        column = X[:, i]
        gone = np.isnan(column)
        codes = np.clip(np.rint(np.where(gone, 0, column)).astype(np.int64), 0, len(cats) - 2)
        codes[gone] = len(cats) - 1
        return cats, codes

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """DataFrame of original values -> feature-space matrix (categories as codes).

        Raises DataError for a category the feature does not have.
        """
        X = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for i, f in enumerate(self.features):
            column = frame[f.name].to_numpy()
            if f.type == "categorical":
                index = {python_label(c): k for k, c in enumerate(self.categories[i])}
                try:
                    X[:, i] = [np.nan if is_missing(v) else index[python_label(v)] for v in column]
                except KeyError as exc:
                    raise DataError(f"feature {f.name!r}: unknown category {exc.args[0]!r}",
                                    hint=f"use one of {list(self.categories[i])}") from None
            else:
                X[:, i] = column.astype(np.float64)
        return X

    def display_value(self, i: int, value: float) -> str:
        """One value as a reviewer should read it: category by name, numbers without noise."""
        f = self.features[i]
        if value is None or np.isnan(value):
            return MISSING
        if f.type == "categorical":
            return str(self.categories[i][int(round(value))])
        text = f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
        return f"{text} {f.unit}" if f.unit else text


class LabelledRows:
    """Row count and class counts, shared by tabular, image and text datasets (needs ``X`` and ``y``)."""

    @property
    def n_rows(self) -> int:
        return len(self.X)

    @cached_property
    def class_counts(self) -> dict:
        """Rows per class of the target; empty for a numeric target (a regression model's)."""
        if getattr(self, "numeric_target", False):
            return {}
        labels, counts = np.unique(self.y.astype(str), return_counts=True)
        first = {str(v): v for v in self.y}
        return {first[label]: int(c) for label, c in zip(labels, counts)}


@dataclass
class Dataset(LabelledRows):
    spec: DatasetSpec
    source: str  # file path or bundled source name, as recorded in the evidence
    file: Path | None
    space: FeatureSpace
    X: np.ndarray  # float64, feature space
    y: np.ndarray  # labels (object array of Python ints/strs)
    ids: np.ndarray  # stable decision ids (object array)
    unused_columns: list[str]
    kind: str = "tabular"
    numeric_target: bool = False
    """The target is a number a regression model is measured against (``y`` float64), not a class label."""


def _read_frame(spec: DatasetSpec, policy: Policy) -> tuple[pd.DataFrame, str, Path | None]:
    where = f"datasets[{spec.id}]"
    if spec.source is not None:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, _SKLEARN_LOADERS[spec.source])(
            as_frame=True, **_SKLEARN_OPTIONS.get(spec.source, {}))
        frame = bunch.frame.copy()
        names = getattr(bunch, "target_names", None)
        if names is not None and "target" in frame:
            frame["target"] = np.asarray(names, dtype=object)[frame["target"].to_numpy()]
        return frame, spec.source, None
    path = policy.resolve(spec.path)
    fmt = spec.format or {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the file format from suffix {path.suffix!r} ({where}.path)",
                        hint="use a .csv or .parquet file, or set format: csv|parquet")
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found ({where}.path)", hint="correct the path") from None
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise DataError(f"{path}: cannot read as {fmt}: {exc}", hint=f"check that the file is valid {fmt}") from None
    return frame, str(spec.path), path


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_dataset(spec: DatasetSpec, policy: Policy, space: FeatureSpace | None = None, *,
                 numeric_target: bool = False) -> Dataset:
    """Load and check one dataset from the policy; raise DataError naming file, column and fix.

    With ``numeric_target`` (the dataset of a regression model) the target must hold numbers.
    With ``space`` (a background dataset for an audited one) the features must be the same and
    categories are coded as in ``space``, so both matrices mean the same thing.
    """
    frame, source, path = _read_frame(spec, policy)
    where = f"{source} (datasets[{spec.id}])"
    if space is not None and [f.name for f in spec.features] != space.names:
        raise DataError(f"{where}: a background dataset must list the same features, in the same order, as "
                        "the dataset it serves", hint="copy the features list from the audited dataset")
    if len(frame) == 0:
        raise DataError(f"{where}: the dataset has no rows", hint="point the policy at a file with data")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    wanted = [f.name for f in spec.features] + [spec.target] + ([spec.id_column] if spec.id_column else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        detail = "; ".join(f"{c!r}{_suggest(c, columns)}" for c in missing)
        raise DataError(
            f"{where}: column(s) named in the policy are not in the data: {detail}",
            hint=f"the data has columns: {', '.join(columns[:40])}{' ...' if len(columns) > 40 else ''}",
        )

    target = frame[spec.target]
    if target.isna().any():
        rows = [int(r) + 1 for r in np.flatnonzero(target.isna().to_numpy())[:5]]
        raise DataError(f"{where}: target column {spec.target!r} has {int(target.isna().sum())} missing value(s), "
                        f"first at data row(s) {rows} (the first row after the header is 1)", hint="drop or label these rows before the audit: "
                        "an outcome must be known to measure the model against it")
    if numeric_target:
        values = pd.to_numeric(target, errors="coerce")
        if values.isna().any() or pd.api.types.is_bool_dtype(target) or np.isinf(values).any():
            j = int(np.flatnonzero(values.isna().to_numpy() | np.isinf(values.to_numpy(dtype=float)))[0]
                    ) if (values.isna().any() or np.isinf(values).any()) else 0
            raise DataError(f"{where}: target column {spec.target!r} of a regression model holds {target.iloc[j]!r} "
                            f"(data row {j + 1}), not a finite number",
                            hint="a regression model is measured against numbers: clean the column, or audit a "
                                 "classifier (remove 'task: regression')")
        y = values.to_numpy(dtype=np.float64)
        if np.ptp(y) == 0:
            raise DataError(f"{where}: target column {spec.target!r} has a single value ({y[0]:g})",
                            hint="an audit of a regression model needs true values that vary")
    else:
        y = np.array([python_label(v) for v in target.to_numpy()], dtype=object)
    if not numeric_target and len(set(y.tolist())) < 2:
        raise DataError(f"{where}: target column {spec.target!r} has a single class ({y[0]!r})",
                        hint="an audit of a classifier needs examples of at least two classes")

    if spec.id_column:
        ids = frame[spec.id_column].to_numpy()
        if pd.Series(ids).duplicated().any():
            dup = python_label(pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0])
            raise DataError(f"{where}: id column {spec.id_column!r} has duplicate id {dup!r}",
                            hint="decision ids must be unique; use another column or leave id_column out")
        ids = np.array([python_label(v) for v in ids], dtype=object)
    else:
        ids = np.arange(len(frame)).astype(object)

    X = np.empty((len(frame), len(spec.features)), dtype=np.float64)
    categories: list[tuple] = []
    for i, f in enumerate(spec.features):
        col = frame[f.name]
        gone = col.isna().to_numpy()
        if not pd.api.types.is_numeric_dtype(col):  # only a column that can hold text can hold a blank string
            gone = gone | col.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
        if f.type == "numeric":
            present = col[~gone]
            if not pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
                numbers = pd.to_numeric(present, errors="coerce")
                bad = np.flatnonzero(numbers.isna().to_numpy())
                if len(bad) or pd.api.types.is_bool_dtype(present):
                    j = int(np.flatnonzero(~gone)[bad[0] if len(bad) else 0])
                    raise DataError(f"{where}: feature {f.name!r} is declared numeric but holds {col.iloc[j]!r} "
                                    f"(row {ids[j]})", hint="declare it 'type: categorical' or clean the column")
                present = numbers
            values = np.full(len(col), np.nan)
            values[~gone] = present.to_numpy(dtype=np.float64)
            if np.isinf(values).any():
                bad = np.flatnonzero(np.isinf(values))
                raise DataError(f"{where}: feature {f.name!r} has {len(bad)} infinite value(s), first at row(s) "
                                f"{[ids[j] for j in bad[:5]]}", hint="replace or drop these rows before the audit "
                                "(a missing value may be left empty)")
            X[:, i] = values
            categories.append(())
        else:
            values = [None if g else python_label(v) for v, g in zip(col.to_numpy(), gone)]
            if space is not None:
                cats = list(space.categories[i])
            elif f.categories is not None:
                cats = list(f.categories)
            else:
                cats = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
            index = {python_label(c): k for k, c in enumerate(cats)}
            unknown = sorted({v for v in values if v is not None and v not in index}, key=str)
            if unknown:
                raise DataError(f"{where}: feature {f.name!r} has values not in its declared categories: "
                                f"{unknown[:5]}", hint=f"add them to categories (now {cats}) or fix the data")
            X[:, i] = [np.nan if v is None else index[v] for v in values]
            categories.append(tuple(cats))
    used = set(wanted)
    return Dataset(
        spec=spec,
        source=source,
        file=path,
        space=FeatureSpace(tuple(spec.features), tuple(categories)),
        X=X,
        y=y,
        ids=ids,
        unused_columns=[c for c in columns if c not in used],
        numeric_target=numeric_target,
    )
