"""Global surrogate rules: a shallow decision tree trained to mimic the audited model, read as
IF ... THEN rules (Craven & Shavlik, 1996, "Extracting Tree-Structured Representations of Trained
Networks"; Guidotti et al., 2018, "A Survey of Methods for Explaining Black Box Models").

The tree learns the model's *predictions*, not the true outcomes, so its rules describe the model.
How well they do is its **fidelity**: agreement with the model on rows the tree did not train on
(the audited dataset when the reference data is a different dataset; otherwise a seeded hold-out
share of it). Below the policy's ``min_fidelity`` the report says plainly that the rules do not
describe the model. Each rule carries its coverage and precision on those held-out rows.

Missing values stay missing: scikit-learn's tree learns, at each split, which side a missing value goes
to, and can split missing from recorded values; a categorical feature's missing state is one more
column of its one-hot design. The rules read "X is missing", "X is recorded" or "X ≤ t or missing".
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from ..numbers import pct
from .base import Batch, Explainer, ExplainerSpec, MethodSummary, Notes, Observation, Progress, RuleSet

__all__ = ["Condition", "Rule", "Rules", "RulesResult", "RulesSpec", "RulesSummary", "rule_matches"]


class RulesSpec(ExplainerSpec):
    type: Literal["rules"]
    max_depth: int = Field(default=3, ge=1, le=8, description="Depth of the surrogate tree (rules have at most this many conditions).")
    min_samples_leaf: int = Field(default=20, ge=1, description="Fewest training rows a rule may rest on.")
    min_fidelity: float = Field(default=0.9, ge=0, le=1, description="Below this the report says the rules do not describe the model.")
    holdout_fraction: float = Field(
        default=0.3, gt=0, lt=1,
        description="Share held out for fidelity when the reference data is the audited dataset itself.",
    )


class Condition(BaseModel):
    feature: str
    kind: Literal["range", "in", "not_in", "missing", "present"] = Field(
        description="range: between low and high; in / not_in: categories (null: missing); missing: no value; "
        "present: any recorded value.")
    low: float | None = Field(default=None, description="range: value > low (exclusive)")
    high: float | None = Field(default=None, description="range: value <= high (inclusive)")
    or_missing: bool = Field(default=False, description="range: a missing value also satisfies it.")
    values: list[int | str | None] = Field(default_factory=list, description="in / not_in: category names; "
                                           "null stands for a missing value")
    text: str


class Rule(BaseModel):
    id: int
    conditions: list[Condition]
    prediction: int | str | float = Field(
        description="Class the model is predicted to give rows the rule covers; regression: the rule's score (the "
        "mean of the model's scores on the training rows it covers).")
    coverage: float = Field(description="Share of held-out rows the rule covers.")
    precision: float | None = Field(description="Share of covered held-out rows where the model agrees; None if none "
                                    "covered, and for a regression model (see error).")
    error: float | None = Field(default=None, description="Regression: mean absolute difference between the rule's "
                                "score and the model's on the covered held-out rows; None if none covered.")
    support: int = Field(description="Held-out rows covered.")
    training_rows: int
    text: str


class RulesResult(BaseModel):
    method: Literal["rules"] = "rules"
    fidelity: float = Field(description="Agreement of the rules with the model on held-out rows (a regression "
                            "model's: R² of the rules' scores against the model's).")
    fidelity_kind: Literal["agreement", "r2"] = Field(
        default="agreement", description="agreement: share of rows decided alike; r2: a regression tree's R².")
    min_fidelity: float
    describes_model: bool
    training_rows: int
    holdout_rows: int
    holdout: str = Field(description="Which rows measured fidelity.")
    rules: list[Rule]
    decision_rules: dict[str, int] = Field(description="Sampled decision id (as text) -> id of the rule covering it.")


def rule_matches(rule: Rule, values: dict) -> bool:
    """Whether a row (feature -> original value, categories by name) satisfies every condition.

    Numbers are compared as float32, as scikit-learn's tree does: a value between a threshold and its
    float32 rounding then falls on the same side as in the tree."""
    for c in rule.conditions:
        v = values[c.feature]
        if c.kind in ("missing", "present") or (v is None and c.kind == "range"):
            if (v is None) != (c.kind == "missing" or c.or_missing):
                return False
        elif c.kind == "range":
            v = float(np.float32(v))  # the tree compares its float32 copy of the input with the threshold
            if (c.low is not None and not v > c.low) or (c.high is not None and not v <= c.high):
                return False
        elif c.kind == "in" and v not in c.values:
            return False
        elif c.kind == "not_in" and v in c.values:
            return False
    return True


class RulesSummary(MethodSummary):
    kind: Literal["rules"] = "rules"
    fidelity: float = Field(description="Agreement of the rules with the model on held-out rows.")
    min_fidelity: float = Field(description="The policy's minimum for the rules to describe the model.")
    holdout_rows: int
    rules: int = Field(description="Number of rules (leaves of the tree).")
    describes_model: bool


class Rules(Explainer):
    """A shallow decision tree fitted to the model's predictions, exported as readable rules."""

    scope = "global"
    title = "Surrogate rules"
    notes = Notes(
        computes="A shallow decision tree (scikit-learn) is trained on the reference data to reproduce the audited "
                 "model's own decisions, and each of its leaves is read as an IF ... THEN rule. Categorical "
                 "attributes are split by category name, numeric ones at thresholds in the data's units. For a "
                 "regression model the tree is a regression tree on the model's scores, and each rule gives a score.",
        reading="Fidelity is the share of held-out rows on which the rules and the model decide alike (for a "
                "regression model: the R² of the rules' scores against the model's on held-out rows). Coverage and "
                "precision of each rule (regression: the mean absolute difference from the model's score) are "
                "measured on the same held-out rows. Below the policy's minimum fidelity the rules are only a rough "
                "sketch of the model's logic.",
        limits="A depth-limited tree cannot represent interactions deeper than its depth; the rules describe the "
               "model's decisions on data like the reference data, not elsewhere.",
        cite="M. Craven, J. Shavlik. Extracting Tree-Structured Representations of Trained Networks. NIPS 1996; "
             "R. Guidotti et al. A Survey of Methods for Explaining Black Box Models. ACM Computing Surveys 2018.",
    )
    Spec = RulesSpec
    Results = (RulesResult,)
    Summaries = (RulesSummary,)
    figures = {"fidelity": "agreement of the rules with the model on held-out rows (regression: R²)"}
    partial = "partials/methods/rules.html.j2"

    @classmethod
    def comparable(cls, result) -> RuleSet:
        return RuleSet(rules=[r.text for r in result.rules], fidelity=result.fidelity)

    def summarize(self, name, model_id, result, decision_ids, parameters):
        summary = RulesSummary(fidelity=result.fidelity, min_fidelity=result.min_fidelity,
                               holdout_rows=result.holdout_rows, rules=len(result.rules),
                               describes_model=result.describes_model)
        observations = []
        if not result.describes_model:
            measured = (f"reproduce the model's scores with an R² of only {result.fidelity:.3f} on held-out rows, below "
                        f"the policy's minimum of {result.min_fidelity:.3f}" if result.fidelity_kind == "r2" else
                        f"agree with the model on only {pct(result.fidelity)} of held-out rows, below the policy's "
                        f"minimum of {pct(result.min_fidelity)}")
            observations.append(Observation(
                level="warn", code="rules.low_fidelity", method=name, threshold=result.min_fidelity,
                setting=f"explanations[{name}].min_fidelity",
                message=f"{model_id}: the surrogate rules {measured}: the rules do not describe the model."))
        return summary, observations

    # --- design matrix: numeric as is, categories one-hot, so splits read as "is / is not" ----------

    @staticmethod
    def _design(space, X: np.ndarray, missing: frozenset = frozenset()) -> tuple[np.ndarray, list[tuple[int, object]]]:
        """One column per numeric feature (missing values as NaN, which the tree routes), one per category, and
        for a categorical feature with missing values (``missing``: their names) one for its missing state."""
        cols, meta = [], []
        for i, f in enumerate(space.features):
            if f.type == "categorical":
                for k, cat in enumerate(space.categories[i]):
                    cols.append((np.rint(X[:, i]) == k).astype(np.float64))
                    meta.append((i, cat))
                if f.name in missing:
                    cols.append(np.isnan(X[:, i]).astype(np.float64))
                    meta.append((i, None))
            else:
                cols.append(X[:, i])
                meta.append((i, _NUMERIC))
        return np.column_stack(cols), meta

    def fit_tree(self, model, train_X: np.ndarray, seed: int):
        """The fitted tree and the design-column metadata; the tree's labels are the model's predictions (a
        regression model's scores, for a regression tree)."""
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        design, meta = self._design(model.space, train_X, frozenset(getattr(model, "missing_features", ())))
        kind = DecisionTreeRegressor if model.regression else DecisionTreeClassifier
        tree = kind(max_depth=self.spec.max_depth, min_samples_leaf=self.spec.min_samples_leaf,
                    random_state=seed).fit(design, _labels(model, train_X))
        return tree, meta

    def explain(self, model, batch: Batch, *, background, seed, progress: Progress | None = None,
                sample: Batch | None = None):
        """``batch`` is the audited dataset, ``background`` the reference data, ``sample`` the decisions."""
        same = background is batch.X or (background.shape == batch.X.shape and np.array_equal(background, batch.X))
        if same:
            order = np.random.default_rng(seed).permutation(len(batch.X))
            cut = int(round(len(order) * (1 - self.spec.holdout_fraction)))
            train_X, hold_X = batch.X[np.sort(order[:cut])], batch.X[np.sort(order[cut:])]
            holdout = f"{len(hold_X)} rows of the audited dataset held out at random (seed {seed})"
        else:
            train_X, hold_X = background, batch.X
            holdout = "the audited dataset (the tree was trained on the reference data)"
        tree, meta = self.fit_tree(model, train_X, seed)
        integer_valued = [bool(np.all(np.equal(np.mod(c[~np.isnan(c)], 1), 0))) for c in train_X.T]
        missing = frozenset(getattr(model, "missing_features", ()))
        rules, leaf_to_rule = _export(tree, meta, model, integer_valued, missing)

        hold_design, _ = self._design(model.space, hold_X, missing)
        hold_model = _labels(model, hold_X)
        if model.regression:
            from sklearn.metrics import r2_score

            fidelity = float(r2_score(hold_model, tree.predict(hold_design))) if len(hold_X) > 1 else 0.0
        else:
            fidelity = float((tree.predict(hold_design) == hold_model).mean())
        hold_leaves = tree.apply(hold_design)
        train_leaves = tree.apply(self._design(model.space, train_X, missing)[0])
        for leaf, rule in leaf_to_rule.items():
            covered = hold_leaves == leaf
            rule.support = int(covered.sum())
            rule.coverage = float(covered.mean())
            rule.training_rows = int((train_leaves == leaf).sum())
            if model.regression:
                rule.error = float(np.abs(hold_model[covered] - rule.prediction).mean()) if covered.any() else None
                continue
            predicted = model.classes.index(rule.prediction)
            rule.precision = float((hold_model[covered] == predicted).mean()) if covered.any() else None
        rules.sort(key=lambda r: (-r.coverage, r.id))

        decision_rules = {}
        if sample is not None and len(sample):
            leaves = tree.apply(self._design(model.space, sample.X, missing)[0])
            decision_rules = {str(i): leaf_to_rule[leaf].id for i, leaf in zip(sample.ids, leaves)}
        if progress:
            progress(1)
        result = RulesResult(fidelity=fidelity, fidelity_kind="r2" if model.regression else "agreement",
                             min_fidelity=self.spec.min_fidelity,
                             describes_model=fidelity >= self.spec.min_fidelity, training_rows=len(train_X),
                             holdout_rows=len(hold_X), holdout=holdout, rules=rules, decision_rules=decision_rules)
        return result, {"leaves": int(tree.get_n_leaves()), "depth": int(tree.get_depth())}


def _labels(model, X: np.ndarray) -> np.ndarray:
    """What the tree learns: the model's class index per row, or a regression model's score."""
    return model.predict(X) if model.regression else model.outputs(X).argmax(axis=1)


_NUMERIC = object()  # design-column marker: a numeric feature's own column


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e6 else f"{x:,.0f}"


def _category(value) -> str:
    return "missing" if value is None else f"“{value}”"


def _export(tree, meta, model, integer_valued: list[bool], missing: frozenset = frozenset()):
    """Walk root-to-leaf paths, merge each feature's conditions, and word them. A category of ``None`` is
    the missing state; a numeric bound's ``missing`` says whether missing values are on its side (True),
    are all it holds ("only") or are not on it (False); features without missing values never mention it."""
    t = tree.tree_
    space = model.space
    rules: list[Rule] = []
    leaf_to_rule: dict[int, Rule] = {}

    def walk(node: int, bounds: dict) -> None:
        if t.children_left[node] == -1:
            conditions = []
            for i, f in enumerate(space.features):
                if i not in bounds:
                    continue
                b = bounds[i]
                unit = f" {f.unit}" if f.unit else ""
                if f.type == "categorical":
                    order = list(space.categories[i]) + [None]
                    if b.get("in") is not None:
                        vals = list(b["in"])
                        text = (f"{f.label} is {_category(vals[0])}" if len(vals) == 1
                                else f"{f.label} is one of {', '.join(_category(v) for v in vals)}")
                        conditions.append(Condition(feature=f.name, kind="in", values=vals, text=text))
                    else:
                        vals = sorted(b["not_in"], key=order.index)
                        text = f"{f.label} is not {' or '.join(_category(v) for v in vals)}"
                        conditions.append(Condition(feature=f.name, kind="not_in", values=vals, text=text))
                    continue
                low, high, state = b.get("low"), b.get("high"), b.get("missing")
                if state == "only":
                    conditions.append(Condition(feature=f.name, kind="missing", text=f"{f.label} is missing"))
                    continue
                if low is None and high is None:
                    if state is False:
                        conditions.append(Condition(feature=f.name, kind="present", text=f"{f.label} is recorded"))
                    continue
                if integer_valued[i]:  # x > 24.5 reads better as x >= 25 for whole-number features
                    lo_t = None if low is None else f"{f.label} ≥ {_fmt(np.floor(low) + 1)}{unit}"
                    hi_t = None if high is None else f"{f.label} ≤ {_fmt(np.floor(high))}{unit}"
                    both = None if low is None or high is None else \
                        f"{_fmt(np.floor(low) + 1)} ≤ {f.label} ≤ {_fmt(np.floor(high))}{unit}"
                else:
                    lo_t = None if low is None else f"{f.label} > {_fmt(low)}{unit}"
                    hi_t = None if high is None else f"{f.label} ≤ {_fmt(high)}{unit}"
                    both = None if low is None or high is None else \
                        f"{_fmt(low)} < {f.label} ≤ {_fmt(high)}{unit}"
                text = both or lo_t or hi_t
                or_missing = f.name in missing and state is not False
                conditions.append(Condition(feature=f.name, kind="range", low=low, high=high, or_missing=or_missing,
                                            text=text + (" or missing" if or_missing else "")))
            if model.regression:
                prediction = float(t.value[node][0][0])
                name = f"score {_fmt(prediction)}"
            else:
                prediction = model.classes[int(np.argmax(t.value[node][0]))]
                name = model.class_names[model.classes.index(prediction)]
            text = ("IF " + " AND ".join(c.text for c in conditions) if conditions else "IF (any row)") + f" THEN {name}"
            rule = Rule(id=len(rules) + 1, conditions=conditions, prediction=prediction, coverage=0.0,
                        precision=None, support=0, training_rows=0, text=text)
            rules.append(rule)
            leaf_to_rule[node] = rule
            return
        column, threshold = t.feature[node], float(t.threshold[node])
        i, cat = meta[column]
        left, right = {k: dict(v) for k, v in bounds.items()}, {k: dict(v) for k, v in bounds.items()}
        if cat is _NUMERIC and np.isinf(threshold):  # missing (right) against every recorded value (left)
            left.setdefault(i, {})["missing"] = False
            right.setdefault(i, {})["missing"] = "only"
        elif cat is _NUMERIC:  # numeric: left is value <= threshold, missing values go where the tree learnt
            left.setdefault(i, {})["high"] = min(threshold, left.get(i, {}).get("high", np.inf))
            right.setdefault(i, {})["low"] = max(threshold, right.get(i, {}).get("low", -np.inf))
            gone_left = bool(t.missing_go_to_left[node])
            side, other = (left, right) if gone_left else (right, left)
            other[i]["missing"] = False
            if side[i].get("missing") is None:
                side[i]["missing"] = True
        else:  # one-hot column: left is "not cat", right is "is cat"
            entry = left.setdefault(i, {})
            if entry.get("in") is not None:
                entry["in"] = [c for c in entry["in"] if c != cat]
            else:
                entry["not_in"] = list(dict.fromkeys([*entry.get("not_in", []), cat]))
            right.setdefault(i, {})["in"] = [cat]
            right[i].pop("not_in", None)
        walk(t.children_left[node], left)
        walk(t.children_right[node], right)

    walk(0, {})
    return rules, leaf_to_rule
