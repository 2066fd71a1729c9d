"""auditor.datasets: loading CSV / bundled data, the checks that refuse bad data, feature coding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor.datasets import FeatureSpace, load_dataset, python_label
from auditor.errors import DataError
from auditor.policy import load_policy

from conftest import FEATURES, TARGET


def load_frame(write_policy, tmp_path, frame: pd.DataFrame | str, features=None, **dataset):
    """Write ``frame`` (or raw CSV text) as data.csv and load it as the policy's first dataset."""
    csv = tmp_path / "data.csv"
    if isinstance(frame, str):
        csv.write_text(frame, encoding="utf-8")
    else:
        frame.to_csv(csv, index=False)
    features = features if features is not None else [{"name": n} for n in FEATURES]
    spec = {"id": "data", "path": "data.csv", "target": TARGET, "features": features, **dataset}
    policy = load_policy(write_policy(tmp_path, datasets__0=spec))
    return load_dataset(policy.dataset("data"), policy)


def frame_of(n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    frame[TARGET] = ["no", "yes"] * (n // 2)
    return frame


def data_error(write_policy, tmp_path, frame, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        load_frame(write_policy, tmp_path, frame, **kwargs)
    return info.value


# --- a good file -------------------------------------------------------------------------------------


def test_loads_csv_in_feature_order(write_policy, tmp_path):
    frame = frame_of()
    frame["notes"] = "x"
    reordered = frame[["notes", TARGET, "f3", "f1", "f0", "f2"]]
    data = load_frame(write_policy, tmp_path, reordered)
    assert data.X.dtype == np.float64 and data.X.shape == (8, 4)
    np.testing.assert_array_equal(data.X, frame[FEATURES].to_numpy())  # policy order, not file order
    assert data.y.tolist() == frame[TARGET].tolist()
    assert data.ids.tolist() == list(range(8))  # default ids: row numbers
    assert data.unused_columns == ["notes"]
    assert data.space.names == FEATURES
    assert data.class_counts == {"no": 4, "yes": 4}
    assert data.file == tmp_path / "data.csv"


def test_id_column_gives_stable_ids(write_policy, tmp_path):
    frame = frame_of()
    frame["case"] = [f"p{i}" for i in (5, 3, 9, 1, 7, 2, 8, 4)]
    data = load_frame(write_policy, tmp_path, frame, id_column="case")
    assert data.ids.tolist() == frame["case"].tolist()
    assert "case" not in data.unused_columns


def test_duplicate_ids_are_refused(write_policy, tmp_path):
    frame = frame_of()
    frame["case"] = [1, 2, 3, 4, 5, 6, 3, 8]
    error = data_error(write_policy, tmp_path, frame, id_column="case")
    assert "'case'" in error.message and "duplicate id" in error.message


def test_duplicate_id_message_shows_the_plain_id(write_policy, tmp_path):
    frame = frame_of()
    frame["case"] = [1, 2, 3, 4, 5, 6, 3, 8]
    error = data_error(write_policy, tmp_path, frame, id_column="case")
    assert error.message.endswith("duplicate id 3")


# --- checks that refuse bad data -------------------------------------------------------------------------


def test_missing_values_load_as_nan_and_decode_as_nan(write_policy, tmp_path):
    """NaN, empty cells and whitespace are missing in numeric and categorical features alike: NaN in feature
    space, NaN again for the model, "missing" when shown. Nothing is imputed."""
    text = "f0,f1,f2,f3,label\n1.5,a,,2,no\n,b,3,1,yes\n2.5,, ,2,no\n0.5,a,1,NaN,yes\n"
    features = [{"name": "f0"}, {"name": "f1", "type": "categorical"}, {"name": "f2"}, {"name": "f3"}]
    data = load_frame(write_policy, tmp_path, text, features=features)
    assert data.space.categories[1] == ("a", "b")  # the missing state is not a category
    np.testing.assert_array_equal(np.isnan(data.X), [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    frame = data.space.decode(data.X)
    assert frame["f1"].tolist()[:2] == ["a", "b"] and pd.isna(frame["f1"].iloc[2])
    assert frame["f0"].isna().tolist() == [False, True, False, False]
    assert data.space.display_value(1, data.X[2, 1]) == "missing"
    np.testing.assert_array_equal(data.space.encode(frame), data.X)  # round trip, NaN included


def test_numeric_feature_with_text_among_missing_values(write_policy, tmp_path):
    error = data_error(write_policy, tmp_path, "f0,f1,f2,f3,label\n1,,2,3,no\n1,oops,2,3,yes\n")
    assert "'f1'" in error.message and "'oops'" in error.message and "row 1" in error.message


def test_inf_in_a_feature(write_policy, tmp_path):
    frame = frame_of()
    frame.loc[3, "f2"] = np.inf
    frame.loc[6, "f2"] = -np.inf
    error = data_error(write_policy, tmp_path, frame)
    assert "'f2'" in error.message
    assert "2 infinite value(s)" in error.message and "[3, 6]" in error.message


def test_empty_file(write_policy, tmp_path):
    error = data_error(write_policy, tmp_path, "")
    assert "data.csv" in error.message and "cannot read as csv" in error.message


def test_header_only_file_has_no_rows(write_policy, tmp_path):
    error = data_error(write_policy, tmp_path, ",".join(FEATURES + [TARGET]) + "\n")
    assert "no rows" in error.message and "datasets[data]" in error.message


def test_single_class_target(write_policy, tmp_path):
    frame = frame_of()
    frame[TARGET] = "yes"
    error = data_error(write_policy, tmp_path, frame)
    assert f"'{TARGET}'" in error.message and "single class" in error.message and "'yes'" in error.message


def test_missing_target_value(write_policy, tmp_path):
    frame = frame_of()
    frame.loc[4, TARGET] = None
    error = data_error(write_policy, tmp_path, frame)
    assert f"'{TARGET}'" in error.message and "missing" in error.message


def test_column_missing_from_data_suggests_close_match(write_policy, tmp_path):
    frame = frame_of().rename(columns={"f2": "mean radius"})
    features = [{"name": "f0"}, {"name": "f1"}, {"name": "mean_radius"}, {"name": "f3"}]
    error = data_error(write_policy, tmp_path, frame, features=features)
    assert "'mean_radius'" in error.message
    assert "did you mean 'mean radius'" in error.message
    assert "mean radius" in error.hint  # the hint lists the columns the data has


def test_non_numeric_value_in_numeric_feature(write_policy, tmp_path):
    frame = frame_of().astype({"f3": object})
    frame.loc[5, "f3"] = "abc"
    error = data_error(write_policy, tmp_path, frame)
    assert "'f3'" in error.message and "numeric" in error.message
    assert "categorical" in error.hint


def test_non_numeric_message_quotes_the_offending_value(write_policy, tmp_path):
    frame = frame_of().astype({"f3": object})
    frame.loc[5, "f3"] = "abc"
    error = data_error(write_policy, tmp_path, frame)
    assert "'abc'" in error.message


def test_unknown_category_is_refused(write_policy, tmp_path):
    frame = frame_of()
    frame["colour"] = ["red", "green", "blue", "red", "mauve", "green", "blue", "red"]
    features = [{"name": "f0"}, {"name": "colour", "type": "categorical", "categories": ["red", "green", "blue"]}]
    error = data_error(write_policy, tmp_path, frame, features=features)
    assert "'colour'" in error.message and "mauve" in error.message


# --- categorical coding ------------------------------------------------------------------------------------


def test_categories_coded_in_declared_order_and_decode_round_trips(write_policy, tmp_path):
    frame = frame_of()
    frame["colour"] = ["red", "green", "blue", "red", "blue", "green", "blue", "red"]
    frame["grade"] = [3, 1, 2, 3, 3, 1, 2, 2]
    features = [
        {"name": "f0"},
        {"name": "colour", "type": "categorical", "categories": ["red", "green", "blue"]},  # not sorted
        {"name": "grade", "type": "categorical", "categories": [3, 2, 1]},
        {"name": "f1"},
    ]
    data = load_frame(write_policy, tmp_path, frame, features=features)
    assert data.space.categorical_indices == [1, 2]
    assert data.space.categories[1] == ("red", "green", "blue")
    assert data.space.categories[2] == (3, 2, 1)
    assert data.X[:, 1].tolist() == [0, 1, 2, 0, 2, 1, 2, 0]
    assert data.X[:, 2].tolist() == [0, 2, 1, 0, 0, 2, 1, 1]

    decoded = data.space.decode(data.X)
    assert list(decoded.columns) == ["f0", "colour", "grade", "f1"]
    assert decoded["colour"].tolist() == frame["colour"].tolist()
    assert [python_label(v) for v in decoded["grade"]] == frame["grade"].tolist()
    np.testing.assert_array_equal(decoded["f0"].to_numpy(), frame["f0"].to_numpy())
    np.testing.assert_array_equal(decoded["f1"].to_numpy(), frame["f1"].to_numpy())
    assert data.space.display_value(1, 2.0) == "blue"


def test_undeclared_categories_are_sorted(write_policy, tmp_path):
    frame = frame_of()
    frame["colour"] = ["red", "green", "blue", "red", "blue", "green", "blue", "red"]
    features = [{"name": "f0"}, {"name": "colour", "type": "categorical"}]
    data = load_frame(write_policy, tmp_path, frame, features=features)
    assert data.space.categories[1] == ("blue", "green", "red")
    assert data.space.decode(data.X)["colour"].tolist() == frame["colour"].tolist()


def test_background_uses_the_audited_datasets_codes(write_policy, tmp_path):
    frame = frame_of()
    frame["colour"] = ["red", "green", "blue", "red", "blue", "green", "blue", "red"]
    features = [{"name": "f0"}, {"name": "colour", "type": "categorical"}]
    data = load_frame(write_policy, tmp_path, frame, features=features)
    other = frame.iloc[[1, 2, 5]]  # only 'green' and 'blue': sorted on its own, green would be code 1
    other.to_csv(tmp_path / "bg.csv", index=False)
    policy = load_policy(write_policy(tmp_path, name="bg.yaml", datasets__1={
        "id": "background", "path": "bg.csv", "target": TARGET, "features": features}))
    background = load_dataset(policy.dataset("background"), policy, space=data.space)
    assert background.space.categories == data.space.categories
    assert data.space.decode(background.X)["colour"].tolist() == ["green", "blue", "green"]


def test_feature_space_decode_clips_codes():
    from auditor.policy import FeatureSpec

    space = FeatureSpace((FeatureSpec(name="c", type="categorical"), FeatureSpec(name="x")), (("a", "b"), ()))
    decoded = space.decode(np.array([[0.2, 1.5], [1.0, -2.0], [7.0, 0.0]]))
    assert decoded["c"].tolist() == ["a", "b", "b"]
    assert decoded["x"].tolist() == [1.5, -2.0, 0.0]


# --- bundled data ------------------------------------------------------------------------------------------


def test_sklearn_breast_cancer_source_has_string_targets(write_policy, tmp_path):
    spec = {"id": "data", "source": "sklearn:breast_cancer", "target": "target",
            "features": [{"name": "mean radius"}, {"name": "worst area"}]}
    policy = load_policy(write_policy(tmp_path, datasets__0=spec))
    data = load_dataset(policy.dataset("data"), policy)
    assert data.source == "sklearn:breast_cancer" and data.file is None
    assert data.X.shape == (569, 2)
    assert data.class_counts == {"malignant": 212, "benign": 357}
    assert all(isinstance(v, str) for v in data.y)
    assert "mean texture" in data.unused_columns and "target" not in data.unused_columns
