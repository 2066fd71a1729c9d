"""auditor.explainers.counterfactuals: DiCE counterfactuals, re-scored and constraint-checked.

Property tests over seeds: every counterfactual that reaches the result flips the model's decision when
scored again here, leaves immutable features alone, stays within permitted ranges and uses whole numbers
for whole-number features; the counts add up. Hand-built candidates check that the filter drops what it
must. Bad constraint configuration is a user error (exit 2) naming the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.explainers import Batch
from auditor.explainers.counterfactuals import Counterfactuals, CounterfactualsResult, CounterfactualsSpec

IMMUTABLE = ["housing", "tenure"]
RANGES = {"income": [20, 90], "debt_ratio": [0.0, 0.9], "purpose": ["car", "education", "furniture"]}


def explainer(**options) -> Counterfactuals:
    options = {"count": 3, "immutable": IMMUTABLE, "permitted_range": RANGES, **options}
    return Counterfactuals(CounterfactualsSpec(type="counterfactuals", **({"for": "all"} | options)))


def batch_of(prep, rows) -> Batch:
    data = prep.dataset
    rows = list(rows)
    return Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])


def rescore(model, decision: dict, cf) -> tuple[object, float]:
    """The model's decision and probability for a counterfactual, scored independently of the explainer:
    the decision's values with the counterfactual's changes applied, encoded as one row."""
    values = dict(decision)
    for name, change in cf.changes.items():
        assert values[name] == change.before, (name, values[name], change.before)
        values[name] = change.after
    frame = pd.DataFrame([values])[model.space.names]
    proba = model.predict_proba(model.space.encode(frame))[0]
    return model.classes[int(proba.argmax())], float(proba.max()), values


def assert_counts_consistent(result: CounterfactualsResult, asked: int, from_dice: bool = True) -> None:
    assert result.asked == asked
    assert result.returned == (len(result.counterfactuals) + result.dropped_not_flipping
                               + result.dropped_constraint_violations)
    if from_dice:
        assert result.returned <= asked
    # validity: the share of what the search returned that is valid (none returned: not measured)
    assert result.validity == (pytest.approx(len(result.counterfactuals) / result.returned) if result.returned
                               else None)
    cfs = result.counterfactuals
    if cfs:
        assert result.proximity == pytest.approx(np.mean([c.distance for c in cfs]))
        assert result.sparsity == pytest.approx(np.mean([len(c.changes) for c in cfs]))
    else:
        assert result.proximity is None and result.sparsity is None
    assert (result.diversity is None) == (len(cfs) < 2)


# --- properties of DiCE's counterfactuals after the auditor's checks ---------------------------------------------


@pytest.mark.parametrize(("model_id", "seed", "engine"), [("pipe", 0, "batched"), ("pipe", 1, "batched"),
                                                        ("pipe", 2, "batched"), ("mlp", 0, "batched"),
                                                        ("pipe", 0, "reference"), ("mlp", 0, "reference")])
def test_every_counterfactual_flips_and_respects_the_constraints(loans, model_id, seed, engine):
    prep = loans.prepared[model_id]
    model, space = prep.model, prep.model.space
    rows = np.random.default_rng(seed).choice(prep.dataset.n_rows, 5, replace=False)
    batch = batch_of(prep, rows)
    results, parameters = explainer(engine=engine).explain(model, batch, background=prep.background.X, seed=seed)
    assert {k: parameters[k] for k in ("features_to_vary", "engine", "for")} == {
        "features_to_vary": ["income", "age", "purpose", "debt_ratio"], "engine": engine, "for": "all"}
    assert "holding Housing, Years with employer fixed" in parameters["searched"]
    assert len(results) == len(batch)

    decisions = space.decode(batch.X).to_dict(orient="records")
    original = [model.classes[i] for i in model.predict_proba(batch.X).argmax(axis=1)]
    whole = [n for n in space.names if n in ("income", "age", "debt_ratio", "tenure")
             and np.all(np.mod(prep.background.X[:, space.names.index(n)], 1) == 0)]
    assert whole == ["age"]
    valid = 0
    for result, decision, label in zip(results, decisions, original):
        assert result.original_label == label
        assert_counts_consistent(result, asked=3)
        for cf in result.counterfactuals:
            valid += 1
            assert cf.changes, "a counterfactual changes something"
            for name, change in cf.changes.items():
                assert change.before != change.after
            predicted, probability, values = rescore(model, decision, cf)
            assert predicted != label, (decision, cf)
            assert cf.predicted_label == predicted
            assert cf.probability == pytest.approx(probability, abs=1e-6)  # float32 networks: batch vs one row
            assert not set(IMMUTABLE) & set(cf.changes), cf.changes
            lo, hi = RANGES["income"]
            assert lo <= values["income"] <= hi
            lo, hi = RANGES["debt_ratio"]
            assert lo <= values["debt_ratio"] <= hi
            assert values["purpose"] in RANGES["purpose"]
            for name in whole:
                assert float(values[name]).is_integer(), (name, values[name])
            assert cf.distance > 0
    assert valid >= len(batch), f"only {valid} valid counterfactuals for {len(batch)} decisions"


@pytest.mark.parametrize(("method", "engine"), [("random", "batched"), ("random", "reference"),
                                               ("genetic", "reference"), ("kdtree", "reference")])
def test_whole_number_features_get_whole_numbers(loans, method, engine):
    prep = loans.prepared["pipe"]
    results, _ = explainer(method=method, engine=engine, count=2, immutable=[], permitted_range={}).explain(
        prep.model, batch_of(prep, [0, 2, 4]), background=prep.background.X, seed=5)
    ages = [cf.changes["age"].after for r in results for cf in r.counterfactuals if "age" in cf.changes]
    assert ages, "no counterfactual changed age; the property would not be exercised"
    assert all(float(a).is_integer() for a in ages), ages
    for r in results:
        assert_counts_consistent(r, asked=2)


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_same_seed_same_counterfactuals_whatever_the_batch(loans, engine):
    prep = loans.prepared["pipe"]
    explain = explainer(count=2, engine=engine).explain
    alone, _ = explain(prep.model, batch_of(prep, [6]), background=prep.background.X, seed=9)
    among, _ = explain(prep.model, batch_of(prep, [3, 6, 11]), background=prep.background.X, seed=9)
    assert alone[0] == among[1]
    assert alone[0].counterfactuals, "the decision has counterfactuals; the comparison would be vacuous"


# --- the filter: hand-built candidates -------------------------------------------------------------------------


def test_validate_drops_non_flipping_and_constraint_breaking_candidates(loans):
    prep = loans.prepared["pipe"]
    model, space = prep.model, prep.model.space
    proba = model.predict_proba(prep.dataset.X)
    decoded = space.decode(prep.dataset.X)
    # a declined applicant who rents and borrows for an allowed purpose, with income in range
    k = next(i for i in range(len(decoded)) if model.classes[proba[i].argmax()] == "bad"
             and decoded["housing"][i] == "rent" and decoded["purpose"][i] == "education"
             and 20 <= decoded["income"][i] <= 80 and decoded["debt_ratio"][i] <= 0.9)
    x, p = prep.dataset.X[k], proba[k]
    base = decoded.iloc[k].to_dict()
    better = {"income": 88.0, "age": 70, "debt_ratio": 0.05, "purpose": "car"}  # all in range, all mutable

    candidates = {
        "same": base,
        "slightly better": base | {"age": base["age"] + 1},
        "worse, housing changed": base | {"debt_ratio": 0.95, "housing": "free"},
        "flips, housing changed": base | better | {"housing": "own"},
        "flips, tenure changed": base | better | {"tenure": base["tenure"] + 3},
        "flips, income above range": base | better | {"income": 150.0},
        "flips, purpose not allowed": base | better | {"purpose": "business", "income": 90.0, "age": 75},
        "valid": base | better,
    }
    frame = pd.DataFrame(list(candidates.values()))[space.names]
    scored = model.predict_proba(space.encode(frame)).argmax(axis=1)
    flips = dict(zip(candidates, (model.classes[i] != "bad" for i in scored)))
    assert flips == {"same": False, "slightly better": False, "worse, housing changed": False,
                     "flips, housing changed": True, "flips, tenure changed": True,
                     "flips, income above range": True, "flips, purpose not allowed": True, "valid": True}

    spans = np.ptp(prep.background.X, axis=0)
    result = explainer(count=3)._validate(model, x, p, space.encode(frame), spans)
    assert result.returned == 8
    assert result.dropped_not_flipping == 3
    assert result.dropped_constraint_violations == 4
    assert len(result.counterfactuals) == 1 and result.validity == pytest.approx(1 / 8)
    assert_counts_consistent(result, asked=3, from_dice=False)
    (cf,) = result.counterfactuals
    assert {n: (c.before, c.after) for n, c in cf.changes.items()} == {
        "income": (base["income"], 88.0), "age": (float(base["age"]), 70.0),
        "purpose": ("education", "car"), "debt_ratio": (base["debt_ratio"], 0.05)}
    assert cf.predicted_label == "good"
    expected = np.mean([abs(base["income"] - 88) / spans[0], 0, abs(base["age"] - 70) / spans[2], 1,
                        abs(base["debt_ratio"] - 0.05) / spans[4], 0])
    assert cf.distance == pytest.approx(expected)

    # without constraints, every flipping candidate is valid
    free = explainer(count=3, immutable=[], permitted_range={})._validate(model, x, p, space.encode(frame), spans)
    assert (free.dropped_not_flipping, free.dropped_constraint_violations, len(free.counterfactuals)) == (3, 0, 5)

    # no candidates: nothing returned, nothing valid
    empty = explainer(count=3)._validate(model, x, p, space.encode(frame.iloc[:0]), spans)
    assert (empty.returned, empty.validity, empty.counterfactuals) == (0, None, [])
    assert_counts_consistent(empty, asked=3)


# --- bad configuration is a user error naming the field ----------------------------------------------------------


def _line_under(path: Path, parent: str, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, text in enumerate(lines) if text.strip().startswith(parent))
    return next(i for i, text in enumerate(lines[start:], start) if needle in text) + 1


CF = 1  # index of the counterfactuals entry in the loan policy's explanations

BAD_CONFIG = {
    "unknown immutable feature": (
        {"immutable": ["housing", "salary"]},
        ["explanations[1].immutable[1]", "unknown feature 'salary'", "use one of: income, housing"],
        ("immutable:", "- salary")),
    "numeric range of strings": (
        {"permitted_range": {"income": ["low", "high"]}},
        ["explanations[1].permitted_range.income", "'income' is numeric", "two numbers", "['low', 'high']"],
        ("permitted_range:", "income:")),
    "numeric range of three values": (
        {"permitted_range": {"age": [18, 30, 60]}},
        ["explanations[1].permitted_range.age", "'age' is numeric", "two numbers", "[18, 30, 60]"],
        ("permitted_range:", "age:")),
    "unknown category": (
        {"permitted_range": {"purpose": ["car", "yacht"]}},
        ["explanations[1].permitted_range.purpose", "'purpose' is categorical", "yacht",
         "business, car, education, furniture"],
        ("permitted_range:", "purpose:")),
    "min above max": (
        {"permitted_range": {"income": [90, 20]}},
        ["explanations[1].permitted_range.income", "min 90 is above max 20", "swap them"],
        ("permitted_range:", "income:")),
    "range for an unknown feature": (
        {"permitted_range": {"salary": [1, 2]}},
        ["explanations[1].permitted_range.salary", "unknown feature 'salary'"],
        ("permitted_range:", "salary:")),
    "immutable and ranged": (
        {"immutable": ["age"], "permitted_range": {"age": [18, 60]}},
        ["explanations[1].permitted_range.age", "both immutable and given a permitted range"],
        ("permitted_range:", "age:")),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", list(BAD_CONFIG))
def test_bad_counterfactual_config_exits_2_naming_the_field(loans, tmp_path, case, command):
    options, needles, (parent, needle) = BAD_CONFIG[case]
    entry = {"type": "counterfactuals", "count": 2, **options}
    policy = loans.write(tmp_path, **{f"explanations__{CF}": entry})
    args = [command, str(policy)] + (["--out", str(tmp_path / "out"), "-q"] if command == "run" else [])
    result = CliRunner().invoke(cli, args)
    text = result.output
    assert result.exit_code == 2, text
    assert "Error:" in text and "Traceback" not in text
    assert f"{policy}:{_line_under(policy, parent, needle)}: explanations[{CF}]." in text, text
    for n in needles:
        assert n in text, f"{n!r} not in:\n{text}"
    # one problem per model the entry applies to would be noise: the same problem is reported once
    assert text.count(needles[0] + ":") == 1, text
    assert not (tmp_path / "out").exists()


def test_good_counterfactual_config_validates(loans, tmp_path):
    entry = {"type": "counterfactuals", "immutable": IMMUTABLE, "permitted_range": RANGES}
    policy = loans.write(tmp_path, **{f"explanations__{CF}": entry})
    result = CliRunner().invoke(cli, ["validate", str(policy)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
