"""Counterfactuals of a regression model: towards a score range (``desired_range``) or, by default, the
favourable side of the model's decision cut-off.

A gradient-boosting regressor trained here on synthetic data (three numeric features, one categorical).
Properties: every counterfactual, re-scored by the scikit-learn pipeline itself (not through the adapter),
has a score in the target range and leaves immutable features alone; under a cut-off only adverse decisions
are asked, and their counterfactuals are favourable; the batched engine is held to dice-ml's regressor mode
on the same decisions; what cannot be asked of a model is refused at validate.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from auditor.cli import cli
from auditor.explainers import Batch
from auditor.explainers.counterfactuals import Counterfactuals, CounterfactualsSpec
from auditor.policy import DecisionSpec

from test_counterfactual_engines import assert_at_least_as_good, quality

REGIONS = ["north", "south", "east"]
NUMERIC = ["income", "debt", "age"]
IMMUTABLE = ["age", "region"]
CUT = 500.0  # the fixture model's cut-off: a score below 500 is adverse (decline)
RANGE = [540.0, 600.0]


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50, 15, n).round(1), "debt": rng.random(n).round(2),
                          "age": rng.integers(18, 80, n).astype(float),
                          "region": rng.choice(REGIONS, n).astype(object)})
    frame["score"] = (500 + 4 * (frame.income - 50) - 150 * (frame.debt - 0.5) + 0.5 * (frame.age - 50)
                      + frame.region.map({"north": 20.0, "south": -10.0, "east": -10.0})
                      + rng.normal(0, 10, n)).round(1)
    return frame


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder = tmp_path_factory.mktemp("regression_cf")
    train, test = make_frame(300, 0), make_frame(120, 1)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    encode = ColumnTransformer([("r", OneHotEncoder(), ["region"])], remainder="passthrough")
    pipe = Pipeline([("encode", encode), ("gbr", GradientBoostingRegressor(n_estimators=100, max_depth=2,
                                                                           random_state=0))])
    pipe.fit(train[NUMERIC + ["region"]], train.score)
    sio.dump(pipe, folder / "gbr.skops")
    return folder


def write_policy(folder, explanations: list) -> object:
    features = [{"name": n} for n in NUMERIC] + [{"name": "region", "type": "categorical", "categories": REGIONS}]
    model = {"path": "gbr.skops", "format": "skops", "task": "regression"}
    tree = {"version": 1,
            "audit": {"id": "scores", "title": "Scores", "audience": "finance", "owner": "t", "intended_use": "u"},
            "models": [{"id": "gbr", **model, "decision": {"adverse_if": {"below": CUT}, "adverse": "decline",
                                                           "favourable": "approve"}},
                       {"id": "plain", **model}],
            "datasets": [{"id": "test", "path": "test.csv", "target": "score", "features": features},
                         {"id": "train", "path": "train.csv", "target": "score", "features": features}],
            "audited": [{"model": "gbr", "dataset": "test", "background": "train"},
                        {"model": "plain", "dataset": "test", "background": "train"}],
            "sample": {"size": 8, "strategy": "random", "seed": 2},
            "explanations": explanations, "report": {"formats": ["html"]}}
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prepared(folder):
    from auditor.audit import prepare
    from auditor.policy import load_policy

    policy = load_policy(write_policy(folder, [{"type": "counterfactuals", "desired_range": RANGE}]))
    return {p.model.id: p for p in prepare(policy)}


def explain(prep, rows, model=None, **options):
    data = prep.dataset
    rows = list(rows)
    batch = Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])
    spec = CounterfactualsSpec(type="counterfactuals", count=3, immutable=IMMUTABLE, **({"for": "all"} | options))
    results, _ = Counterfactuals(spec).explain(model or prep.model, batch, background=prep.background.X, seed=7)
    return batch, results


def rescore(prep, x: np.ndarray, cf) -> float:
    """The counterfactual's score from the scikit-learn pipeline itself: the decision's values with the
    counterfactual's changes applied, as the frame the model was trained on."""
    values = prep.model.space.decode(x[None]).iloc[0].to_dict()
    for name, change in cf.changes.items():
        assert values[name] == change.before, (name, values[name], change.before)
        values[name] = change.after
    frame = pd.DataFrame([values])[NUMERIC + ["region"]]
    return float(prep.model.estimator.predict(frame)[0])


def assert_counts_consistent(result) -> None:
    assert result.returned == (len(result.counterfactuals) + result.dropped_not_flipping
                               + result.dropped_constraint_violations)
    assert result.valid == len(result.counterfactuals)
    assert result.validity == (len(result.counterfactuals) / result.returned if result.returned else None)


# --- (a) a desired range ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_every_counterfactual_scores_inside_the_desired_range(prepared, engine):
    prep = prepared["plain"]  # no cut-off: the range alone says what to reach
    rows = np.random.default_rng(0).choice(prep.dataset.n_rows, 12, replace=False)
    batch, results = explain(prep, rows, desired_range=RANGE, engine=engine)
    scores = prep.model.predict(batch.X)
    found = 0
    for x, score, result in zip(batch.X, scores, results):
        assert result.target_range == RANGE
        assert result.original_label == "score"
        inside = RANGE[0] <= score <= RANGE[1]
        assert result.asked == (0 if inside else 3)
        assert_counts_consistent(result)
        for cf in result.counterfactuals:
            assert not set(cf.changes) & set(IMMUTABLE)
            assert RANGE[0] <= rescore(prep, x, cf) <= RANGE[1]
            assert cf.probability == pytest.approx(rescore(prep, x, cf))  # the score is stored in place of P
            assert cf.predicted_label == "score"
            found += 1
    searched = [r for r in results if r.asked]
    assert searched and found >= 2 * len(searched)
    assert np.mean([len(r.counterfactuals) / r.asked for r in searched]) >= 0.8


def test_a_score_outside_the_range_is_not_valid(prepared):
    """The validator itself: hand-made candidates scored just outside the range are dropped, inside kept."""
    prep = prepared["plain"]
    model, X = prep.model, prep.dataset.X
    scores = model.predict(X)
    k = int(np.argmin(scores))  # far below the range
    candidates = X[np.argsort(scores)[-40:]]  # the highest-scoring rows, some inside, some above
    cand_scores = model.predict(candidates)
    explainer = Counterfactuals(CounterfactualsSpec(type="counterfactuals", count=3, desired_range=RANGE,
                                                   **{"for": "all"}))
    target = explainer.targets(model, model.outputs(X[k : k + 1]))[0]
    result = explainer._validate(model, X[k], model.outputs(X[k : k + 1])[0], candidates, np.ones(X.shape[1]),
                                 target)
    inside = int(((cand_scores >= RANGE[0]) & (cand_scores <= RANGE[1])).sum())
    assert 0 < inside < len(candidates)
    assert result.dropped_not_flipping == len(candidates) - inside
    assert len(result.counterfactuals) == inside


# --- (b) the favourable side of the cut-off ----------------------------------------------------------------------


@pytest.mark.parametrize("side", ["below", "above"])
@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_without_a_range_adverse_decisions_get_favourable_counterfactuals(prepared, side, engine):
    prep = prepared["gbr"]
    model = prep.model
    cut = CUT
    if side == "above":  # the same model read as a risk score: above the cut-off is adverse
        decision = DecisionSpec(adverse_if={"above": cut}, adverse="refer", favourable="routine")
        model = dataclasses.replace(model, spec=model.spec.model_copy(update={"decision": decision}))
    decision = model.spec.decision
    scores = model.predict(prep.dataset.X)
    adverse = np.flatnonzero(decision.adverse_if.adverse(scores))
    favourable = np.flatnonzero(~decision.adverse_if.adverse(scores))
    rows = np.concatenate([adverse[:6], favourable[:4]])
    batch, results = explain(prep, rows, model=model, engine=engine)
    assert len(results) == len(rows)
    for x, result, is_adverse in zip(batch.X, results, [True] * 6 + [False] * 4):
        assert result.target_range == ([cut, None] if side == "below" else [None, cut])
        assert_counts_consistent(result)
        if not is_adverse:
            assert result.original_label == decision.favourable
            assert (result.asked, result.returned, result.counterfactuals, result.validity) == (0, 0, [], None)
            continue
        assert result.original_label == decision.adverse and result.asked == 3
        assert result.counterfactuals, f"no counterfactual for an adverse decision ({engine}, {side})"
        for cf in result.counterfactuals:
            score = rescore(prep, x, cf)
            assert not decision.adverse_if.adverse([score])[0], (score, side)
            assert cf.predicted_label == decision.favourable
            assert not set(cf.changes) & set(IMMUTABLE)


# --- (c) the batched engine against dice-ml's regressor mode ------------------------------------------------------


@pytest.mark.parametrize("target", ["cut-off", "range"])
def test_batched_engine_as_good_as_dice_for_a_regression_model(prepared, target):
    prep = prepared["gbr"]
    scores = prep.model.predict(prep.dataset.X)
    if target == "cut-off":
        rows = np.flatnonzero(scores < CUT)[:20]
        options = {}
    else:
        rows = np.flatnonzero((scores < RANGE[0]) | (scores > RANGE[1]))[:20]
        options = {"desired_range": RANGE}
    assert len(rows) == 20
    _, reference = explain(prep, rows, engine="reference", **options)
    _, batched = explain(prep, rows, engine="batched", **options)
    common = [k for k in range(len(rows)) if len(reference[k].counterfactuals) > 1
              and len(batched[k].counterfactuals) > 1]
    assert len(common) >= len(rows) // 2, "too few decisions explained by both engines to compare"
    b, r = quality(batched, common), quality(reference, common)
    print(f"\n{target}: batched {b}\n{target}: dice-ml {r}")
    assert b["validity"] >= 0.9
    assert_at_least_as_good(b, r)


# --- (d) refused at validate ----------------------------------------------------------------------------------------


def test_check_refuses_what_a_regression_model_cannot_be_asked(prepared, loans):
    plain, gbr, classifier = prepared["plain"].model, prepared["gbr"].model, loans.prepared["pipe"].model

    def fields(model, **options):
        spec = CounterfactualsSpec(type="counterfactuals", **options)
        return {f: (message, fix) for f, message, fix in Counterfactuals.check(spec, model)}

    assert fields(gbr) == {} and fields(gbr, desired_range=RANGE) == {} and fields(plain, desired_range=RANGE) == {}
    message, fix = fields(plain)["desired_range"]
    assert "need desired_range, or a decision cut-off" in message and "desired_range: [low, high]" in fix
    assert set(fields(gbr, desired="approve")) == {"desired"}
    assert "regression model" in fields(plain, desired="score", desired_range=RANGE)["desired"][0]
    assert set(fields(classifier, desired_range=RANGE)) == {"desired_range"}
    assert fields(classifier) == {}
    with pytest.raises(ValidationError, match="low < high"):
        CounterfactualsSpec(type="counterfactuals", desired_range=[600, 540])
    with pytest.raises(ValidationError):
        CounterfactualsSpec(type="counterfactuals", desired_range=[540])


def test_validate_exits_2_for_a_regression_model_without_range_or_cut_off(folder):
    path = write_policy(folder, [{"type": "counterfactuals", "count": 2}])
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "explanations[0].desired_range" in result.output and "'plain'" in result.output
    assert "'gbr'" not in result.output  # the model with a cut-off is fine
    ok = write_policy(folder, [{"type": "counterfactuals", "count": 2, "models": ["gbr"]},
                               {"type": "counterfactuals", "id": "ranged", "desired_range": RANGE}])
    result = CliRunner().invoke(cli, ["validate", str(ok)])
    assert result.exit_code == 0, result.output
    backwards = write_policy(folder, [{"type": "counterfactuals", "desired_range": [600, 540]}])
    result = CliRunner().invoke(cli, ["validate", str(backwards)])
    assert result.exit_code == 2 and "explanations[0].desired_range" in result.output, result.output
    assert "low < high" in result.output


# --- the report prints the score --------------------------------------------------------------------------------


def test_report_prints_the_counterfactual_score_traced_to_the_evidence(folder):
    import json

    from auditor.audit import prepare, run_audit
    from auditor.plan import plan_run
    from auditor.policy import load_policy
    from auditor.report import render_html

    from evidence_trace import trace

    policy = load_policy(write_policy(folder, [{"type": "counterfactuals", "count": 2, "models": ["gbr"]}]))
    evidence = run_audit(plan_run(policy), prepare(policy))
    html = render_html(evidence)
    checked, problems = trace(html, json.loads(evidence.to_json()))
    assert not problems, "\n".join(problems[:10])
    assert "Target: a score of at least" in html and "approve, score" in html
    assert "(P " not in html.split("What would change the decision")[1].split("</table>")[0]
