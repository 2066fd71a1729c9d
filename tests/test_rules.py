"""auditor.explainers.rules: surrogate trees exported as rules, on a model with categorical features.

The exported rules must decide every row as the fitted tree does, fidelity must be measured on rows the
tree did not train on (recomputed here with a tree fitted independently), and rules below the policy's
minimum fidelity must be reported as not describing the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from auditor.explainers import Batch
from auditor.explainers.rules import Rules, RulesSpec, rule_matches

from evidence_trace import visible_text

from conftest import DELETE, LOAN_CATEGORIES, LOAN_FEATURES, loan_design

MODELS = ["pipe", "mlp"]


def rules(**options) -> Rules:
    return Rules(RulesSpec(type="rules", **{"max_depth": 3, "min_samples_leaf": 10, **options}))


def whole(prep) -> Batch:
    data = prep.dataset
    return Batch(X=data.X, ids=list(data.ids), y=data.y)


def rows_as_values(space, X: np.ndarray) -> list[dict]:
    """Each row as rule_matches reads it: feature -> original value, categories by name."""
    return space.decode(X).to_dict(orient="records")


def model_labels(loans, model_id: str, frame: pd.DataFrame, classes: list) -> np.ndarray:
    """The audited model's decisions straight from the estimator (not through the auditor's adapter),
    as indices into the adapter's class order."""
    if model_id == "pipe":
        predicted = loans.pipeline.predict(frame[LOAN_FEATURES])
    else:
        import warnings

        import torch

        with warnings.catch_warnings():  # torch marks TorchScript deprecated; it is the auditor's format
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(loans.folder / "mlp.pt"))
        with torch.no_grad():
            out = net(torch.tensor(loan_design(frame), dtype=torch.float32)).numpy()
        predicted = np.array(["good", "bad"])[out.argmax(axis=1)]
    return np.array([classes.index(v) for v in predicted])


def design(frame: pd.DataFrame) -> np.ndarray:
    """The surrogate's inputs built from the CSV: numeric as is, one indicator per category in category order."""
    cols = []
    for name in LOAN_FEATURES:
        if name in LOAN_CATEGORIES:
            cols += [(frame[name] == c).to_numpy(dtype=np.float64) for c in LOAN_CATEGORIES[name]]
        else:
            cols.append(frame[name].to_numpy(dtype=np.float64))
    return np.column_stack(cols)


def independent_fidelity(loans, model_id, classes, train: pd.DataFrame, hold: pd.DataFrame, seed: int, **options):
    from sklearn.tree import DecisionTreeClassifier

    spec = RulesSpec(type="rules", **{"max_depth": 3, "min_samples_leaf": 10, **options})
    tree = DecisionTreeClassifier(max_depth=spec.max_depth, min_samples_leaf=spec.min_samples_leaf, random_state=seed)
    tree.fit(design(train), model_labels(loans, model_id, train, classes))
    hold_labels = model_labels(loans, model_id, hold, classes)
    train_agreement = float((tree.predict(design(train)) == model_labels(loans, model_id, train, classes)).mean())
    return float((tree.predict(design(hold)) == hold_labels).mean()), train_agreement


# --- the exported rules decide as the tree does ----------------------------------------------------------------


@pytest.mark.parametrize("model_id", MODELS)
def test_exported_rules_match_the_tree_on_every_row(loans, model_id):
    prep = loans.prepared[model_id]
    model, space = prep.model, prep.model.space
    explainer, seed = rules(), 4
    sample = Batch(X=prep.dataset.X[:25], ids=list(prep.dataset.ids[:25]))
    result, parameters = explainer.explain(model, whole(prep), background=prep.background.X, seed=seed, sample=sample)
    # the tree as explain() fits it: the reference data is another dataset, so it trains on all of it
    tree, meta = explainer.fit_tree(model, prep.background.X, seed)
    assert parameters == {"leaves": int(tree.get_n_leaves()), "depth": int(tree.get_depth())}
    assert len(result.rules) == tree.get_n_leaves()
    assert sorted(r.id for r in result.rules) == list(range(1, len(result.rules) + 1))

    # the tree does split on a categorical feature, so "is" / "is not" conditions are exercised
    kinds = {c.kind for r in result.rules for c in r.conditions}
    assert kinds & {"in", "not_in"} and "range" in kinds, kinds
    for r in result.rules:
        assert 1 <= len(r.conditions) <= 3
        for c in r.conditions:
            if c.kind != "range":
                assert c.values and set(c.values) <= set(LOAN_CATEGORIES[c.feature])

    for X in (prep.dataset.X, prep.background.X):
        tree_pred = tree.predict(explainer._design(space, X)[0])
        for values, predicted in zip(rows_as_values(space, X), tree_pred):
            matching = [r for r in result.rules if rule_matches(r, values)]
            assert len(matching) == 1, (values, [r.text for r in matching])
            assert matching[0].prediction == model.classes[int(predicted)], (values, matching[0].text)

    # each sampled decision is mapped to the rule its values satisfy
    assert set(result.decision_rules) == {str(i) for i in sample.ids}
    for values, i in zip(rows_as_values(space, sample.X), sample.ids):
        (rule,) = [r for r in result.rules if rule_matches(r, values)]
        assert result.decision_rules[str(i)] == rule.id


def test_whole_number_thresholds_read_as_whole_numbers(loans):
    prep = loans.prepared["pipe"]
    result, _ = rules().explain(prep.model, whole(prep), background=prep.background.X, seed=4)
    age = [c for r in result.rules for c in r.conditions if c.feature == "age"]
    assert age, "the tree should split on age"
    for c in age:
        if c.low is not None:  # age > 49.5 reads "Age ≥ 50"
            assert f"Age ≥ {int(np.floor(c.low)) + 1}" in c.text and "." not in c.text
        if c.high is not None:
            assert f"Age ≤ {int(np.floor(c.high))}" in c.text and "." not in c.text


# --- fidelity on rows the tree did not train on -----------------------------------------------------------------


@pytest.mark.parametrize("model_id", MODELS)
def test_fidelity_on_the_audited_data_when_the_reference_is_another_dataset(loans, model_id):
    prep = loans.prepared[model_id]
    seed = 7
    result, _ = rules().explain(prep.model, whole(prep), background=prep.background.X, seed=seed)
    assert result.training_rows == len(loans.background_frame) == 400
    assert result.holdout_rows == len(loans.frame) == 300
    assert "audited dataset" in result.holdout

    expected, train_agreement = independent_fidelity(loans, model_id, prep.model.classes,
                                                     loans.background_frame, loans.frame, seed)
    assert result.fidelity == pytest.approx(expected, abs=1e-12)
    assert train_agreement != pytest.approx(expected), "training agreement would not tell the two apart"
    _rule_statistics_add_up(result)


@pytest.mark.parametrize("model_id", MODELS)
def test_fidelity_on_a_seeded_holdout_when_the_reference_is_the_audited_data(loans, model_id):
    prep = loans.prepared[model_id]
    seed, fraction = 3, 0.25
    n = len(loans.frame)
    result, _ = rules(holdout_fraction=fraction).explain(prep.model, whole(prep), background=prep.dataset.X, seed=seed)
    assert result.training_rows + result.holdout_rows == n
    assert result.holdout_rows == n - int(round(n * (1 - fraction))) == 75
    assert f"seed {seed}" in result.holdout

    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - fraction)))
    train, hold = loans.frame.iloc[np.sort(order[:cut])], loans.frame.iloc[np.sort(order[cut:])]
    expected, train_agreement = independent_fidelity(loans, model_id, prep.model.classes, train, hold, seed)
    assert result.fidelity == pytest.approx(expected, abs=1e-12)
    assert train_agreement != pytest.approx(expected), "training agreement would not tell the two apart"
    _rule_statistics_add_up(result)

    # a copy of the audited data counts as the same data
    copy, _ = rules(holdout_fraction=fraction).explain(prep.model, whole(prep), background=prep.dataset.X.copy(),
                                                       seed=seed)
    assert copy == result


def _rule_statistics_add_up(result) -> None:
    """Coverage and support partition the held-out rows; precision weighted by support is the fidelity."""
    assert sum(r.support for r in result.rules) == result.holdout_rows
    assert sum(r.coverage for r in result.rules) == pytest.approx(1.0)
    assert sum(r.training_rows for r in result.rules) == result.training_rows
    agree = sum(r.precision * r.support for r in result.rules if r.precision is not None)
    assert agree / result.holdout_rows == pytest.approx(result.fidelity)
    assert [r.coverage for r in result.rules] == sorted((r.coverage for r in result.rules), reverse=True)


# --- below the minimum fidelity the report says so ----------------------------------------------------------------


def test_low_fidelity_rules_do_not_describe_the_model(loans):
    prep = loans.prepared["pipe"]
    result, _ = rules(max_depth=1, min_fidelity=1.0).explain(prep.model, whole(prep), background=prep.background.X,
                                                             seed=0)
    assert len(result.rules) == 2 and result.fidelity < 1.0
    assert result.describes_model is False and result.min_fidelity == 1.0
    at_fidelity, _ = rules(max_depth=1, min_fidelity=result.fidelity).explain(
        prep.model, whole(prep), background=prep.background.X, seed=0)
    assert at_fidelity.describes_model is True  # the minimum is inclusive


@pytest.mark.parametrize("min_fidelity", [1.0, 0.5])
def test_report_says_when_rules_do_not_describe_the_model(loans, tmp_path, min_fidelity):
    from auditor.audit import prepare, run_audit
    from auditor.plan import plan_run
    from auditor.policy import load_policy
    from auditor.report import render_html

    path = loans.write(tmp_path, audited=[{"model": "pipe", "dataset": "loans", "background": "history"}],
                       explanations=[{"type": "rules", "max_depth": 1, "min_fidelity": min_fidelity}],
                       principal_reasons=DELETE, sample={"size": 3, "strategy": "random", "seed": 1})
    policy = load_policy(path)
    evidence = run_audit(plan_run(policy), prepare(policy))
    result = evidence.subjects[0].global_explanations["rules"]
    html = visible_text(render_html(evidence))
    if min_fidelity == 1.0:
        assert result.describes_model is False
        assert "These rules do not describe the model" in html
        assert "the rules do not describe the model." in html  # the observation in the summary
    else:
        assert result.describes_model is True and result.fidelity >= 0.5
        assert "do not describe the model" not in html
    for r in result.rules:  # the rules are shown either way
        for c in r.conditions:
            assert c.text in html


# --- the tree compares float32 inputs; the exported thresholds must agree with it -----------------------------


@pytest.fixture(scope="module")
def amounts(tmp_path_factory):
    """Amounts with two decimals on a 0.02 grid; the model switches between 26.98 and 27.00. The audited
    amount 26.99 lies between the tree's threshold and its float32 rounding: float32(26.99) <= t < 26.99."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from auditor.audit import prepare
    from auditor.policy import load_policy

    folder = tmp_path_factory.mktemp("amounts")
    grid = np.round(np.arange(2000, 3401, 2) / 100, 2)  # 20.00, 20.02, ..., 34.00
    train = pd.DataFrame({"amount": grid, "y": np.where(grid > 26.99, "high", "low")})
    audit = pd.DataFrame({"amount": [25.0, 26.99, 28.0], "y": ["low", "low", "high"]})
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1e6, max_iter=10_000)).fit(train[["amount"]], train["y"])
    train.to_csv(folder / "train.csv", index=False)
    audit.to_csv(folder / "audit.csv", index=False)
    sio.dump(model, folder / "model.skops")
    features = [{"name": "amount"}]
    policy = {
        "version": 1,
        "audit": {"id": "amounts", "title": "Amounts", "audience": "finance", "owner": "Test team",
                  "intended_use": "A threshold between two float32 values."},
        "models": [{"id": "amounts", "path": "model.skops", "format": "skops"}],
        "datasets": [{"id": "audit", "path": "audit.csv", "target": "y", "features": features},
                     {"id": "train", "path": "train.csv", "target": "y", "features": features}],
        "audited": [{"model": "amounts", "dataset": "audit", "background": "train"}],
        "explanations": [{"type": "rules", "max_depth": 1, "min_samples_leaf": 1}],
    }
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    (prep,) = prepare(load_policy(folder / "policy.yaml"))
    return prep


def test_threshold_case_is_what_it_claims(amounts):
    """The premises of the next test: one split, between 26.98 and 27.00, with 26.99 on either side of it
    depending on whether it is compared in float64 or in float32 (as the tree does)."""
    model = amounts.model
    proba = model.predict_proba(np.array([[26.98], [27.0]]))
    assert [model.classes[i] for i in proba.argmax(axis=1)] == ["low", "high"]
    tree, _ = rules(max_depth=1, min_samples_leaf=1).fit_tree(model, amounts.background.X, seed=0)
    t = float(tree.tree_.threshold[0])
    assert 26.98 < t < 27.0
    assert float(np.float32(26.99)) <= t < 26.99
    assert model.classes[int(tree.predict(np.array([[26.99]]))[0])] == "low"


def test_rules_match_the_tree_for_values_next_to_a_threshold(amounts):
    batch = whole(amounts)
    result, _ = rules(max_depth=1, min_samples_leaf=1).explain(amounts.model, batch, background=amounts.background.X,
                                                                 seed=0, sample=batch)
    for values, i in zip(rows_as_values(amounts.model.space, batch.X), batch.ids):
        matching = [r.id for r in result.rules if rule_matches(r, values)]
        assert matching == [result.decision_rules[str(i)]], (values, [r.text for r in result.rules])
