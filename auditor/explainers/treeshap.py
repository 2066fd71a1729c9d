"""Exact interventional SHAP values of tree ensembles, with numpy, for every decision and reference row at once
(Lundberg et al., 2020, "From local explanations to global understanding with explainable AI for trees", Nature
Machine Intelligence 2, Algorithm 3).

**The game on one leaf.** For a decision x and one reference row z, v(S) is the model at the row that takes the
features in S from x and the others from z. Call a feature on a leaf's path *failed* by a row when the row
leaves the path at a split on that feature. The hybrid row reaches the leaf exactly when no feature is failed by
both rows; then every feature x fails comes from z (is not in S) and every feature z fails comes from x (is in
S). With a features failed by z and b by x, the leaf's value w splits into +w (a-1)! b! / (a+b)! to each of the
first and -w a! (b-1)! / (a+b)! to each of the second; no other feature gets anything from that leaf. Summed
over leaves, these are the exact values of the game on the sum of the trees; averaged over the reference rows,
the interventional values.

**The link.** When the model's output is the sum of its trees (forests' and single trees' class probabilities,
regression ensembles' scores), these are the exact values of the output. When it is the logistic function of the
sum (boosted classifiers) the game on the probability does not split over trees, and its exact values cost time
exponential in the features a decision and a reference row route apart on. Each reference row's values of the
log-odds are then rescaled by (p(x) - p(z)) / (g(x) - g(z)), so that they add up to that row's difference of
probability: the values shap's ``TreeExplainer`` gives with ``model_output="probability"``. Where the two rows'
log-odds are equal (their routes need not be) the factor is its limit, p (1 - p); shap takes 1.

**Routing.** Rows are compared with the thresholds as the model's library compares them: scikit-learn's trees
(not the histogram ones) and XGBoost round the inputs to float32, XGBoost goes left when the value is below the
condition, LightGBM reads a missing value as zero or as missing as each split says. The trees must reproduce the
model's own output on the reference rows, or the engine declines.

**Vectorised.** A row's failed features on a leaf are a bit mask, so a (decision, reference row, leaf) triple
needs only its two masks. For leaves with at most :data:`CODE_SLOTS` features on the path the reference rows are
grouped by mask (2**k groups, a histogram; with the logistic link a matrix product of the rescaling factors with
the rows' one-hot masks) and each decision reads its contributions from a table indexed by its own mask; deeper
leaves are computed over every (decision, reference row) pair. Decisions go in blocks of exactly :data:`BLOCK`
rows, so a decision's values do not depend on which others share the call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ExplanationError, first_line

__all__ = ["TreeModel", "read_trees", "tree_values"]

CODE_SLOTS = 6
"""Leaves with at most this many distinct features on their path are computed by mask groups; deeper ones by pairs."""
BLOCK = 64
"""Decisions computed together (the last block padded), so that every matrix product has the same shape."""
CELLS = 4_000_000
"""Elements an intermediate array holds at once (about 32 MB of float64)."""

_PER_FEATURE = {"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "SimpleImputer", "MissingIndicator",
                "OneHotEncoder", "OrdinalEncoder", "KBinsDiscretizer", "QuantileTransformer", "PowerTransformer",
                "TargetEncoder"}
"""scikit-learn transformers whose every output column is a function of one input column (at transform time)."""
_FORESTS = {"RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
            "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor"}
_BOOSTED = {"GradientBoostingClassifier", "GradientBoostingRegressor", "HistGradientBoostingClassifier",
            "HistGradientBoostingRegressor"}


class _Unreadable(Exception):
    """A model detail the engine does not follow (the message says which): the sampling engines explain it."""


@dataclass(frozen=True)
class Trees:
    """Every tree's nodes in one set of arrays (children index into the same arrays; -1 at leaves). A row goes
    left at a split when its value is <= ``threshold``; a missing value goes where ``default_left`` says."""

    column: np.ndarray  # input column each split reads
    threshold: np.ndarray
    default_left: np.ndarray
    zero_missing: np.ndarray  # LightGBM's missing_type Zero: a zero is missing too
    nan_as_zero: np.ndarray  # LightGBM's missing_type None: a missing value is read as zero
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray  # (nodes, outputs), at leaves
    count: int


@dataclass(frozen=True)
class TreeModel:
    """A model the engine can read: its trees, how its output is made from them, and how rows reach them."""

    trees: Trees
    base: np.ndarray  # (outputs,): added to the sum of the trees
    link: str  # identity: the output is the sum; logistic: the probability is the logistic function of it
    classes: tuple[tuple[int, float], ...]  # per model output column: (tree output, sign)
    inputs: Callable  # (model, feature-space rows) -> (matrix the trees split on, feature of each column)
    float32: bool  # the library compares inputs rounded to float32
    tolerance: float  # how closely the trees must reproduce the model's own output


# --- reading a model ---------------------------------------------------------------------------------------

def read_trees(model) -> TreeModel | str | None:
    """The model's trees; why the engine cannot read them (a sentence) for a tree ensemble it does not read; None
    for a model that is not a tree ensemble."""
    estimator, framework = getattr(model, "estimator", None), getattr(model, "framework", None)
    try:
        if framework == "array" and type(estimator).__name__ == "BoosterScorer":
            return _xgboost(model) if estimator.library == "xgboost" else _lightgbm(model)
        if framework != "sklearn":
            return None
        final, steps, mixed = estimator, [], []
        if type(estimator).__name__ == "Pipeline":
            final, steps = estimator.steps[-1][1], [s for _, s in estimator.steps[:-1]]
            mixed = [type(s).__name__ for s in steps if not _per_feature(s)]
        name = type(final).__name__
        if name not in _FORESTS | _BOOSTED or not type(final).__module__.startswith("sklearn."):
            return None
        if mixed:
            return (f"its preprocessing ({', '.join(mixed)}) may combine features, so a split cannot be traced "
                    "to one feature")
        reader = _sklearn_forest if name in _FORESTS else _sklearn_boosted
        return reader(model, final, estimator[:-1] if steps else None)
    except Exception as exc:  # an estimator of another library version: the sampling engine still explains it
        return f"its trees could not be read ({first_line(exc)})"


def _per_feature(step) -> bool:
    if step is None or (isinstance(step, str) and step in ("passthrough", "drop")):
        return True
    name = type(step).__name__
    if not type(step).__module__.startswith("sklearn."):
        return False
    if name == "Pipeline":
        return all(_per_feature(s) for _, s in step.steps)
    if name == "ColumnTransformer":
        return all(_per_feature(t) for _, t, _ in step.transformers_)
    if name == "FunctionTransformer":  # how a ColumnTransformer keeps remainder="passthrough"
        return step.func is None
    return name in _PER_FEATURE


def _tree_arrays(column, threshold, default_left, left, right, value, zero_missing=None, nan_as_zero=None) -> dict:
    n = len(left)
    return {"column": np.asarray(column, dtype=np.int64), "threshold": np.asarray(threshold, dtype=np.float64),
            "default_left": np.asarray(default_left, dtype=bool), "left": np.asarray(left, dtype=np.int64),
            "right": np.asarray(right, dtype=np.int64), "value": np.asarray(value, dtype=np.float64).reshape(n, -1),
            "zero_missing": np.zeros(n, bool) if zero_missing is None else np.asarray(zero_missing, dtype=bool),
            "nan_as_zero": np.zeros(n, bool) if nan_as_zero is None else np.asarray(nan_as_zero, dtype=bool)}


def _joined(parts: list[dict]) -> Trees:
    offsets = np.cumsum([0] + [len(p["left"]) for p in parts])[:-1]
    joined = {}
    for key in ("column", "threshold", "default_left", "zero_missing", "nan_as_zero", "value"):
        joined[key] = np.concatenate([p[key] for p in parts])
    for key in ("left", "right"):
        joined[key] = np.concatenate([np.where(p[key] >= 0, p[key] + o, -1) for p, o in zip(parts, offsets)])
    joined["column"] = np.where(joined["left"] >= 0, joined["column"], -1)
    return Trees(**joined, count=len(parts))


def _sklearn_tree(tree, scale, normalise: bool = False) -> dict:
    t = tree.tree_
    value = t.value[:, 0, :] if t.value.shape[1] == 1 else None
    if value is None:
        raise ValueError("a multi-output tree")
    if normalise:  # a classifier tree's class fractions, as its predict_proba gives them
        total = value.sum(axis=1, keepdims=True)
        value = value / np.where(total == 0, 1.0, total)
    return _tree_arrays(t.feature, t.threshold, t.missing_go_to_left.astype(bool), t.children_left, t.children_right,
                        value * scale)


def _sklearn_forest(model, est, preprocess) -> TreeModel | str:
    members = [est] if not hasattr(est, "estimators_") else list(est.estimators_)
    classifier = hasattr(est, "classes_")
    if classifier and np.ndim(est.classes_[0]) > 0:
        return "it predicts several targets at once"
    parts = [_sklearn_tree(t, 1.0 / len(members), normalise=classifier) for t in members]
    outputs = parts[0]["value"].shape[1]
    return TreeModel(_joined(parts), np.zeros(outputs), "identity", tuple((k, 1.0) for k in range(outputs)),
                     _sklearn_inputs(preprocess), True, 1e-9)


def _sklearn_boosted(model, est, preprocess) -> TreeModel | str:
    name = type(est).__name__
    link = type(est._loss.link).__name__
    if name.endswith("Classifier"):
        if len(est.classes_) != 2:
            return "a multiclass boosted model's probability of one class depends on every class's trees (softmax)"
        scale = {"LogitLink": 1.0, "HalfLogitLink": 2.0}.get(link)  # HalfLogit (exponential loss): p = expit(2 g)
        if scale is None:
            return f"its loss ({type(est._loss).__name__}) has a link the auditor does not read"
        link, classes = "logistic", ((0, -1.0), (0, 1.0))
    else:
        if link != "IdentityLink":
            return f"its loss ({type(est._loss).__name__}) transforms the sum of the trees ({link})"
        scale, link, classes = 1.0, "identity", ((0, 1.0),)
    if name.startswith("Hist"):
        if getattr(est, "_preprocessor", None) is not None:
            return "it encodes categorical features itself (categorical splits)"
        parts = []
        for (predictor,) in est._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return "it has categorical splits"
            leaf = nodes["is_leaf"].astype(bool)
            parts.append(_tree_arrays(nodes["feature_idx"], nodes["num_threshold"], nodes["missing_go_to_left"],
                                      np.where(leaf, -1, nodes["left"].astype(np.int64)),
                                      np.where(leaf, -1, nodes["right"].astype(np.int64)),
                                      nodes["value"] * scale))
        base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)[:1] * scale
        return TreeModel(_joined(parts), base, link, classes, _sklearn_inputs(preprocess), False, 1e-9)
    if not (isinstance(est.init_, str) and est.init_ == "zero") and type(est.init_).__name__ not in (
            "DummyClassifier", "DummyRegressor"):
        return f"its initial estimator ({type(est.init_).__name__}) is not a constant"
    parts = [_sklearn_tree(t, est.learning_rate * scale) for t in est.estimators_[:, 0]]
    base = np.asarray(est._raw_predict_init(np.zeros((1, est.n_features_in_), dtype=np.float32)),
                      dtype=np.float64).reshape(-1)[:1] * scale
    return TreeModel(_joined(parts), base, link, classes, _sklearn_inputs(preprocess), True, 1e-9)


def _sklearn_inputs(preprocess) -> Callable:
    def inputs(model, rows):
        raw = model.sklearn_input(rows)
        if preprocess is None:
            names = getattr(model.estimator, "feature_names_in_", None)
            order = [model.space.names.index(str(n)) for n in names] if names is not None else range(rows.shape[1])
            return np.asarray(raw, dtype=np.float64), np.asarray(order, dtype=np.int64)
        return _traced(model, preprocess, rows)
    return inputs


def _traced(model, preprocess, rows) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed rows, and the feature each output column depends on (the number of features for a column
    constant over ``rows``: every row, and every hybrid of them, splits the same way on it). Found by moving each
    feature's values one row down: a column that varies over the rows changes when its own feature moves."""
    n, d = rows.shape
    probes = [rows] + [np.concatenate([rows[:, :k], np.roll(rows[:, k:k + 1], 1, axis=0), rows[:, k + 1:]], axis=1)
                       for k in range(d)]
    out = preprocess.transform(model.sklearn_input(np.concatenate(probes)))
    out = np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)
    base, moved = out[:n], out[n:].reshape(d, n, -1)
    changed = ~((moved == base) | (np.isnan(moved) & np.isnan(base))).all(axis=1)  # (features, columns)
    if (changed.sum(axis=0) > 1).any():
        raise _Unreadable("a column of its preprocessing depends on several features")
    return base, np.where(changed.any(axis=0), changed.argmax(axis=0), d)


def _booster_inputs(model, rows) -> tuple[np.ndarray, np.ndarray]:
    feature = np.empty(sum(len(g) for g in model.input_groups), dtype=np.int64)
    for i, group in enumerate(model.input_groups):
        feature[group] = i
    return model.encoded(rows), feature


def _xgboost(model) -> TreeModel | str:
    learner = json.loads(model.estimator.booster.save_raw("json"))["learner"]
    booster, objective = learner["gradient_booster"], learner["objective"]["name"]
    params = learner["learner_model_param"]
    if booster["name"] != "gbtree":
        return f"its booster is {booster['name']} (the auditor reads gbtree)"
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) > 1:
        return "a multiclass boosted model's probability of one class depends on every class's trees (softmax)"
    base_score = float(str(params["base_score"]).strip("[]"))
    if objective == "binary:logistic":
        link, classes, base = "logistic", ((0, -1.0), (0, 1.0)), math.log(base_score / (1 - base_score))
    elif objective in ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:quantileerror"):
        link, classes, base = "identity", ((0, 1.0),), base_score
    else:
        return f"its objective {objective} transforms the sum of the trees in a way the auditor does not read"
    parts = []
    for tree in booster["model"]["trees"]:
        if any(tree["split_type"]):
            return "it has categorical splits"
        left = np.asarray(tree["left_children"])
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        # XGBoost goes left when value < condition (in float32): the largest float32 below it, with <=
        threshold = np.nextafter(cond, np.float32(-np.inf)).astype(np.float64)
        parts.append(_tree_arrays(tree["split_indices"], threshold, tree["default_left"], left,
                                  tree["right_children"], np.where(left < 0, cond.astype(np.float64), 0.0)))
    return TreeModel(_joined(parts), np.array([base]), link, classes, _booster_inputs, True, 1e-5)


def _lightgbm(model) -> TreeModel | str:
    dump = model.estimator.booster.dump_model()
    objective = str(dump.get("objective", "")).split()
    kind = objective[0] if objective else ""
    if dump.get("num_tree_per_iteration", 1) != 1:
        return "a multiclass boosted model's probability of one class depends on every class's trees (softmax)"
    if dump.get("average_output"):
        return "it averages its trees (random-forest mode)"
    if kind in ("binary", "cross_entropy", "xentropy"):
        sigmoid = float(next((o.split(":")[1] for o in objective if o.startswith("sigmoid:")), 1.0))
        scale, link, classes = sigmoid, "logistic", ((0, -1.0), (0, 1.0))
    elif kind in ("regression", "regression_l1", "huber", "fair", "quantile", "mape") and "sqrt" not in objective:
        scale, link, classes = 1.0, "identity", ((0, 1.0),)
    else:
        return f"its objective {' '.join(objective)} transforms the sum of the trees in a way the auditor does not read"
    parts = []
    for info in dump["tree_info"]:
        nodes: list[dict] = []

        def visit(node: dict) -> int:
            k = len(nodes)
            nodes.append(node)
            if "leaf_value" not in node:
                if node["decision_type"] != "<=":
                    raise _Unreadable("it has categorical splits")
                node["_left"], node["_right"] = visit(node["left_child"]), visit(node["right_child"])
            return k

        try:
            visit(info["tree_structure"])
        except _Unreadable as why:
            return str(why)
        split = ["leaf_value" not in n for n in nodes]
        missing = [n.get("missing_type", "None") for n in nodes]
        parts.append(_tree_arrays(
            [n.get("split_feature", -1) for n in nodes], [n.get("threshold", 0.0) for n in nodes],
            [n.get("default_left", True) for n in nodes], [n["_left"] if s else -1 for n, s in zip(nodes, split)],
            [n["_right"] if s else -1 for n, s in zip(nodes, split)],
            [n.get("leaf_value", 0.0) * scale for n in nodes],
            zero_missing=[m == "Zero" for m in missing], nan_as_zero=[m in ("None", "Zero") for m in missing]))
    return TreeModel(_joined(parts), np.zeros(1), link, classes, _booster_inputs, False, 1e-9)


# --- routing rows ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Paths:
    leaves: np.ndarray  # (L,) node ids
    nodes: np.ndarray  # (L, D) the splits on the way to each leaf (-1 beyond the root)
    went_left: np.ndarray  # (L, D)


def _paths(trees: Trees) -> _Paths:
    n = len(trees.left)
    parent = np.full(n, -1)
    went_left = np.zeros(n, bool)
    split = np.flatnonzero(trees.left >= 0)
    parent[trees.left[split]], went_left[trees.left[split]] = split, True
    parent[trees.right[split]] = split
    leaves = np.flatnonzero(trees.left < 0)
    nodes, dirs, at = [], [], leaves
    while (at >= 0).any():
        up = np.where(at >= 0, parent[np.maximum(at, 0)], -1)
        nodes.append(up)
        dirs.append(np.where(at >= 0, went_left[np.maximum(at, 0)], False))
        at = up
    nodes, dirs = nodes[:-1], dirs[:-1]  # the last step found every path's end
    if not nodes:
        return _Paths(leaves, np.zeros((len(leaves), 0), np.int64), np.zeros((len(leaves), 0), bool))
    return _Paths(leaves, np.stack(nodes, axis=1), np.stack(dirs, axis=1))


def _slots(paths: _Paths, split_feature: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per leaf: the slot (distinct feature, in path order) of each split on its path, the feature of each slot
    (-1 beyond), and the number of slots."""
    L, D = paths.nodes.shape
    features = np.where(paths.nodes >= 0, split_feature[np.maximum(paths.nodes, 0)], -1)
    slot = np.full((L, D), -1, dtype=np.int64)
    feature = np.full((L, max(D, 1)), -1, dtype=np.int64)
    width = np.zeros(L, dtype=np.int64)
    rows = np.arange(L)
    for p in range(D):
        f = features[:, p]
        seen = np.full(L, -1, dtype=np.int64)
        for q in range(p):
            hit = (features[:, q] == f) & (seen < 0) & (f >= 0)
            seen[hit] = slot[hit, q]
        new = (f >= 0) & (seen < 0)
        seen[new] = width[new]
        feature[rows[new], width[new]] = f[new]
        width[new] += 1
        slot[:, p] = np.where(f >= 0, seen, -1)
    if width.max(initial=0) > 62:
        raise _Unreadable("a path through one of its trees splits on more than 62 features")
    return slot, feature[:, :max(int(width.max(initial=0)), 1)], width


def _goes_left(tm: TreeModel, matrix: np.ndarray) -> np.ndarray:
    """(rows, nodes): whether each row goes left at each split."""
    t = tm.trees
    if tm.float32:
        matrix = matrix.astype(np.float32).astype(np.float64)
    split = np.flatnonzero(t.left >= 0)
    out = np.zeros((len(matrix), len(t.left)), dtype=bool)
    step = max(1, CELLS // max(len(matrix), 1))
    for s in range(0, len(split), step):
        nodes = split[s:s + step]
        v = matrix[:, t.column[nodes]]
        gone = np.isnan(v)
        v = np.where(gone & t.nan_as_zero[nodes], 0.0, v)
        missing = (gone & ~t.nan_as_zero[nodes]) | (t.zero_missing[nodes] & (np.abs(v) <= 1e-35))
        out[:, nodes] = np.where(missing, t.default_left[nodes], v <= t.threshold[nodes])
    return out


def _fails(left: np.ndarray, paths: _Paths, slot: np.ndarray) -> np.ndarray:
    """(rows, leaves) bit masks: bit s set when the row leaves the path at a split on the leaf's slot s."""
    out = np.zeros((len(left), len(paths.leaves)), dtype=np.int64)
    for p in range(paths.nodes.shape[1]):
        node, on = paths.nodes[:, p], paths.nodes[:, p] >= 0
        off = (left[:, np.maximum(node, 0)] != paths.went_left[:, p]) & on
        out |= np.where(off, np.left_shift(1, np.maximum(slot[:, p], 0)), 0)
    return out


# --- the values --------------------------------------------------------------------------------------------

def _weights(k: int) -> tuple[np.ndarray, np.ndarray]:
    """WA[a, b] = (a-1)! b! / (a+b)! (a feature z fails) and WB[a, b] = a! (b-1)! / (a+b)! (one x fails)."""
    f = math.factorial
    wa, wb = np.zeros((k + 1, k + 1)), np.zeros((k + 1, k + 1))
    for a in range(k + 1):
        for b in range(k + 1):
            if a:
                wa[a, b] = f(a - 1) * f(b) / f(a + b)
            if b:
                wb[a, b] = f(a) * f(b - 1) / f(a + b)
    return wa, wb


def _table(k: int) -> np.ndarray:
    """C[fx, fz, s]: a leaf's value times this is slot s's share, for the masks fx (decision) and fz (reference)."""
    codes = np.arange(2 ** k)
    ones = np.bitwise_count(codes).astype(np.int64)
    wa, wb = _weights(k)
    apart = (codes[:, None] & codes[None, :]) == 0
    a, b = ones[None, :], ones[:, None]
    bits = ((codes[:, None] >> np.arange(k)) & 1).astype(np.float64)
    return ((wa[a, b] * apart)[:, :, None] * bits[None, :, :]
            - (wb[a, b] * apart)[:, :, None] * bits[:, None, :])


def _scatter(out: np.ndarray, contrib: np.ndarray, feature: np.ndarray, d: int) -> None:
    """out[x, feature[l, s]] += contrib[x, l, s] (features past d, and empty slots, dropped)."""
    B = len(contrib)
    target = np.where(feature >= 0, feature, d)[None, :, :] + (d + 1) * np.arange(B)[:, None, None]
    out += np.bincount(target.ravel(), weights=contrib.ravel(), minlength=B * (d + 1)).reshape(B, d + 1)[:, :d]


def _rescaling(gx: np.ndarray, gz: np.ndarray) -> np.ndarray:
    """(sigmoid(gx) - sigmoid(gz)) / (gx - gz) for every pair, without cancellation: the limit sigmoid'(g) when
    they are equal. sigmoid(a) - sigmoid(b) = sinh((a - b) / 2) / (2 cosh(a / 2) cosh(b / 2))."""
    def log_cosh(y):
        y = np.abs(y)
        return y + np.log1p(np.exp(-2 * y)) - math.log(2)

    u = np.abs(gx[:, None] - gz[None, :]) / 2
    small = u < 300
    us = np.where(small, u, 1.0)
    log_sinhc = np.where(small, np.log(np.where(u == 0, 1.0, np.sinh(us) / np.where(u == 0, 1.0, us))),
                         u - math.log(2) - np.log(np.maximum(u, 1.0)))
    return np.exp(log_sinhc - math.log(4) - log_cosh(gx / 2)[:, None] - log_cosh(gz / 2)[None, :])


@dataclass(frozen=True)
class _Group:
    """Leaves with the same number k of features on their path, and what every block of decisions reuses."""

    leaves: np.ndarray
    k: int
    table: np.ndarray | None = None  # mask groups: C[fx, fz, s]
    per_mask: np.ndarray | None = None  # mask groups, equal weights: (leaves, 2**k, k), each decision mask's shares
    onehot: np.ndarray | None = None  # mask groups, weighted: (reference rows, leaves * 2**k)


def _groups(fz: np.ndarray, width: np.ndarray, weighted: bool):
    """The leaves in groups by k, in chunks that keep a block's intermediate arrays within CELLS (one at a time)."""
    m = len(fz)
    for k in range(1, int(width.max(initial=0)) + 1):
        leaves = np.flatnonzero(width == k)
        if k > CODE_SLOTS:
            step = max(1, CELLS // (BLOCK * m * 4))
            yield from (_Group(leaves[s:s + step], k) for s in range(0, len(leaves), step))
            continue
        table, masks = _table(k), 2 ** k
        step = max(1, CELLS // (masks * max(BLOCK * k, m)))  # bounds the block's gather and the one-hot
        for s in range(0, len(leaves), step):
            part = leaves[s:s + step]
            fzp, lp = fz[:, part], np.arange(len(part))
            if weighted:
                onehot = (fzp[:, :, None] == np.arange(masks)).reshape(m, -1).astype(np.float64)
                yield _Group(part, k, table, onehot=onehot)
            else:  # every reference row weighs 1 / m: a histogram of their masks
                h = np.bincount((lp[None, :] * masks + fzp).ravel(), minlength=len(part) * masks)
                yield _Group(part, k, per_mask=np.einsum("fcs,lc->lfs", table, h.reshape(len(part), masks) / m))


def _contributions(g: _Group, fx: np.ndarray, fz: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """(decisions, leaves, k): each slot's share of its leaf's value (per unit of value), for one block of
    decisions; ``weights`` (decisions x reference rows) weigh each reference row's game (None: all 1 / rows)."""
    fxp = fx[:, g.leaves]
    if g.per_mask is not None:
        return g.per_mask[np.arange(len(g.leaves))[None, :], fxp]
    if g.onehot is not None:
        h = (weights @ g.onehot).reshape(len(fx), len(g.leaves), -1)
        return np.matmul(h[:, :, None, :], g.table[fxp])[:, :, 0, :]
    # every (decision, reference row) pair
    wa, wb = _weights(g.k)
    w = np.full((len(fx), len(fz)), 1.0 / len(fz)) if weights is None else weights
    fzp, shifts = fz[:, g.leaves], np.arange(g.k)
    a, b = np.bitwise_count(fzp).astype(np.int64), np.bitwise_count(fxp).astype(np.int64)
    reach = w[:, :, None] * ((fxp[:, None, :] & fzp[None, :, :]) == 0)
    given = (reach * wb[a[None, :, :], b[:, None, :]]).sum(axis=1)  # (B, leaves): to each slot x fails
    taken = np.einsum("xzl,zls->xls", reach * wa[a[None, :, :], b[:, None, :]],
                      ((fzp[:, :, None] >> shifts) & 1).astype(np.float64))
    return taken - ((fxp[:, :, None] >> shifts) & 1) * given[:, :, None]


def tree_values(tm: TreeModel, model, X: np.ndarray, bg: np.ndarray, targets: np.ndarray, outputs_x: np.ndarray,
                outputs_bg: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Values (decisions x features) of each decision's target output against the reference rows ``bg``, or
    (None, why) when the engine cannot follow the rows through the trees or the trees read from the model do not
    reproduce its output on ``bg`` (the same rows for every chunk of decisions). Raises
    :class:`ExplanationError` when they reproduce it on ``bg`` but not on ``X``."""
    n, d = X.shape
    try:
        matrix, column_feature = tm.inputs(model, np.concatenate([X, bg]))
        split_feature = np.where(tm.trees.left >= 0, column_feature[np.maximum(tm.trees.column, 0)], -1)
        paths = _paths(tm.trees)
        slot, feature, width = _slots(paths, split_feature)
    except (_Unreadable, ValueError, TypeError) as why:
        return None, first_line(why)
    fails = _fails(_goes_left(tm, matrix), paths, slot)
    value = tm.trees.value[paths.leaves]  # (leaves, tree outputs)
    margin = tm.base[None, :] + np.stack([np.where(fails == 0, value[:, o], 0.0).sum(axis=1)
                                          for o in range(value.shape[1])], axis=1)
    if tm.link == "logistic":
        p = 1.0 / (1.0 + np.exp(-margin[:, 0]))
        own = np.stack([1.0 - p, p], axis=1)
    else:
        own = margin
    for rows, theirs, where in ((slice(n, None), outputs_bg, "reference"), (slice(0, n), outputs_x, "decision")):
        gap = float(np.abs(own[rows] - theirs).max(initial=0.0))
        if gap > tm.tolerance:
            why = (f"the trees read from the model do not reproduce its output on the {where} rows (largest "
                   f"difference {gap:.2g})")
            if where == "reference":
                return None, why
            raise ExplanationError(f"model {model.id!r}: {why}", hint="use engine: batched for this model")

    fx, fz = fails[:n], fails[n:]
    blocks = []  # (target column, its decisions, the padded block, its weights, its values so far)
    for column in sorted(set(int(t) for t in targets)):
        mine = np.flatnonzero(targets == column)
        for s in range(0, len(mine), BLOCK):
            rows = mine[s:s + BLOCK]
            block = np.concatenate([rows, np.repeat(rows[-1:], BLOCK - len(rows))])
            weights = _rescaling(margin[block, 0], margin[n:, 0]) / len(bg) if tm.link == "logistic" else None
            blocks.append((column, rows, block, weights, np.zeros((BLOCK, d))))
    for g in _groups(fz, width, weighted=tm.link == "logistic"):
        for column, _, block, weights, got in blocks:
            share = _contributions(g, fx[block], fz, weights) * value[g.leaves, tm.classes[column][0]][None, :, None]
            _scatter(got, share, feature[g.leaves][:, :g.k], d)
    out = np.zeros((n, d))
    for column, rows, _, _, got in blocks:
        out[rows] = tm.classes[column][1] * got[:len(rows)]
    return out, None
