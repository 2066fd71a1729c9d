#!/usr/bin/env python3
"""Shapley values on a tree ensemble: the auditor's tree engine vs shap's TreeExplainer, side by side.

    .venv/bin/python bench/shapley_trees.py                      # 200 decisions, 100 background rows, ~40 s
    .venv/bin/python bench/shapley_trees.py --decisions 50 --repeats 3 --no-enumerate

It prints figures and asserts nothing; ``run(...)`` returns them as a dict for another script. shap is a
benchmark dependency only (``make bench`` installs it); the auditor never imports it.

Both sides explain the breast-cancer sample's gradient-boosting model (``sample_audits/breast_cancer``, a
scikit-learn GradientBoostingClassifier, 100 trees of depth 3) on the same decisions (drawn from the 569-row
data set, seed 7, as in ``shapley_vs_captum.py``) against the same background rows (the Shapley family's
stratified sample of the 398-row reference data, seed 7), attributing the probability of the positive class:

- **auditor**: ``Shapley.explain`` with ``engine: auto`` (which takes the tree engine), end to end: the
  reference population's outputs, the background sample, the values and the typed results. Also timed: the
  engine alone (reading the trees and computing the values).
- **shap**: ``TreeExplainer(model, background, feature_perturbation="interventional",
  model_output="probability")`` built and ``shap_values`` called, every repeat.

Times are the median of ``--repeats`` runs, the two sides alternating in one process. Efficiency gaps are
|sum of values - (p(x) - mean p over the background rows)|, the same definition for both (the evidence's own gap
is against the whole reference population, so it also holds the background sample's error: printed apart).

**Why the values differ.** shap's C++ compares rows with split thresholds rounded to float32 (the decisions
rounded to float32, the background rows as they are); the model (scikit-learn) compares float32 values with
float64 thresholds. A row near a threshold can go left in shap and right in the model. The script counts such rows,
compares both sides again without those rows (the algorithms agree there), and, with enumeration on (the default),
takes the (decision, background row) pair where the two sides differ most and computes its exact values by
enumerating, tree by tree, every coalition of the features the tree splits on, to show which side is exact.

- **floor**: scoring the rows the sampling engine would need (decisions x 25 permutations x (features - 1) x
  background rows), in 1M-row calls: what Shapley values cost a model-agnostic method, for reference.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _gap(values: np.ndarray, px: np.ndarray, pb: np.ndarray) -> float:
    return float(np.abs(values.sum(axis=1) - (px - pb.mean())).max())


def _shap(estimator, X, bg) -> np.ndarray:
    import shap

    explainer = shap.TreeExplainer(estimator, bg, feature_perturbation="interventional", model_output="probability")
    values = np.asarray(explainer.shap_values(X))
    return values if values.ndim == 2 else values[..., 1]


def _enumerated(estimator, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Exact values of the rescaled log-odds game for one pair, by enumeration: the log-odds are a sum over trees,
    so their Shapley values are the sum of each tree's, enumerated over every coalition of the features that tree
    splits on (scikit-learn's own routing, ``tree.predict``), times (p(x) - p(z)) / (g(x) - g(z))."""
    phi = np.zeros(len(x))
    for tree in estimator.estimators_[:, 0]:
        features = sorted(set(tree.tree_.feature[tree.tree_.feature >= 0].tolist()))
        n = len(features)
        if not n:
            continue
        masks = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
        rows = np.repeat(z[None, :], len(masks), axis=0)
        for c, i in enumerate(features):
            rows[masks[:, c], i] = x[i]
        games = dict(zip(map(tuple, masks), tree.predict(rows) * estimator.learning_rate))
        for S, value in games.items():
            size = sum(S)
            for c, i in enumerate(features):
                if not S[c]:
                    weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                    phi[i] += weight * (games[S[:c] + (True,) + S[c + 1:]] - value)
    gx, gz = estimator.decision_function(np.stack([x, z]))
    px, pz = 1 / (1 + np.exp(-gx)), 1 / (1 + np.exp(-gz))
    return phi * ((px - pz) / (gx - gz) if gx != gz else px * (1 - px))


def run(decisions: int = 200, background_rows: int = 100, repeats: int = 5, enumerate_pair: bool = True,
        floor: bool = True) -> dict:
    """The figures, as a dict (seconds, ratios, value differences, efficiency gaps)."""
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    from auditor.explainers import EXPLAINERS, Batch
    from auditor.explainers.base import attribution_targets
    from auditor.explainers.shapley import background_rows as sample_background
    from auditor.explainers.treeshap import read_trees, tree_values
    from bench.shapley_vs_captum import decisions as draw, floor as score_floor, load

    prepared, X_all = load()
    prep = prepared["gbm"]
    model, reference = prep.model, prep.background.X
    X = draw(X_all, decisions)
    family = EXPLAINERS["shapley"]
    spec = family.Spec(type="shapley", background_rows=background_rows)
    scores = model.predict_proba(reference)[:, model.positive_index]
    bg = sample_background(reference, background_rows, 7, scores=scores)
    px, pb = model.predict_proba(X), model.predict_proba(bg)
    targets = attribution_targets(model, px)
    positive = model.positive_index
    batch = Batch(X=X, ids=list(range(len(X))))

    times = {"auditor": [], "engine": [], "shap": []}
    for _ in range(repeats):
        start = time.perf_counter()
        results, parameters = family(spec).explain(model, batch, background=reference, seed=7)
        times["auditor"].append(time.perf_counter() - start)
        start = time.perf_counter()
        trees = read_trees(model)
        ours, _ = tree_values(trees, model, X, bg, targets, px, pb)
        times["engine"].append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = _shap(model.estimator, X, bg)
        times["shap"].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    names = model.space.names
    explained = np.array([[r.attributions[n] for n in names] for r in results])

    # shap's C++ reads thresholds as float32, and compares them with the decisions rounded to float32 but with
    # the background rows as they are (float64); the model compares float32 values with float64 thresholds. Rows
    # where the two comparisons disagree at some split are routed differently; the others alike.
    t = trees.trees
    split = np.flatnonzero(t.left >= 0)
    thr, thr32 = t.threshold[split], t.threshold[split].astype(np.float32).astype(np.float64)

    def misrouted(rows: np.ndarray, shap_rows: np.ndarray) -> np.ndarray:
        model_left = rows.astype(np.float32).astype(np.float64)[:, t.column[split]] <= thr
        return (model_left != (shap_rows[:, t.column[split]] <= thr32)).any(axis=1)

    off_x, off_bg = misrouted(X, X.astype(np.float32).astype(np.float64)), misrouted(bg, bg)
    keep_x, keep_bg = ~off_x, ~off_bg
    alike, _ = tree_values(trees, model, X[keep_x], bg[keep_bg], targets[keep_x], px[keep_x], pb[keep_bg])
    theirs_alike = _shap(model.estimator, X[keep_x], bg[keep_bg])

    out = {
        "decisions": len(X), "background_rows": len(bg), "features": X.shape[1], "trees": t.count,
        "repeats": repeats, "engine_ran": parameters["engine"],
        "auditor_s": median["auditor"], "engine_s": median["engine"], "shap_s": median["shap"],
        "ratio": median["auditor"] / median["shap"], "engine_ratio": median["engine"] / median["shap"],
        "times": times,
        "max_abs_diff": float(np.abs(explained - theirs).max()),
        "rows_routed_apart": (int(off_x.sum()), int(off_bg.sum())),
        "max_abs_diff_routed_alike": float(np.abs(alike - theirs_alike).max()),
        "routed_alike": (int(keep_x.sum()), int(keep_bg.sum())),
        "engine_vs_explain": float(np.abs(explained - ours).max()),
        "efficiency_gap_auditor": _gap(explained, px[:, positive], pb[:, positive]),
        "efficiency_gap_shap": _gap(theirs, px[:, positive], pb[:, positive]),
        "evidence_max_efficiency_gap": max(r.efficiency_gap for r in results),
    }
    if enumerate_pair:  # the (decision, background row) pair where the two sides differ most, enumerated
        k = int(np.abs(explained - theirs).max(axis=1).argmax())
        x, t, p = X[k:k + 1], targets[k:k + 1], px[k:k + 1]
        pairs = [(tree_values(trees, model, x, bg[j:j + 1], t, p, pb[j:j + 1])[0][0],
                  _shap(model.estimator, x, bg[j:j + 1])[0]) for j in range(len(bg))]
        j = int(np.argmax([np.abs(a - b).max() for a, b in pairs]))
        exact = _enumerated(model.estimator, X[k], bg[j])
        out["pair"] = {"decision": k, "background_row": j,
                       "auditor_vs_exact": float(np.abs(pairs[j][0] - exact).max()),
                       "shap_vs_exact": float(np.abs(pairs[j][1] - exact).max())}
    if floor:
        rows = len(X) * spec.n_samples * (X.shape[1] - 1) * len(bg)
        out["floor_rows"], out["floor_s"] = rows, score_floor(model, rows, X.shape[1])
    return out


def table(r: dict) -> list[str]:
    """The figures of :func:`run` as printed lines: a Markdown table, then the values' differences."""
    lines = [f"{r['trees']} trees, {r['features']} features: {r['decisions']} decisions, {r['background_rows']} "
             f"background rows; median of {r['repeats']}", "",
             "| | seconds | / shap |", "|---|---|---|",
             f"| auditor, Shapley.explain (engine {r['engine_ran']}) | {r['auditor_s']:.3f} | {r['ratio']:.2f}x |",
             f"| auditor, tree engine alone | {r['engine_s']:.3f} | {r['engine_ratio']:.2f}x |",
             f"| shap TreeExplainer (interventional, probability) | {r['shap_s']:.3f} | 1.00x |"]
    if "floor_s" in r:
        lines.append(f"| floor: scoring the sampling engine's {r['floor_rows'] / 1e6:.1f}M rows | {r['floor_s']:.2f} | "
                     f"{r['floor_s'] / r['shap_s']:.1f}x |")
    n_x, n_bg = r["routed_alike"]
    lines += ["", f"max abs diff of values, auditor vs shap: {r['max_abs_diff']:.2e}",
              f"rows shap routes unlike the model (float32 thresholds): {r['rows_routed_apart'][0]} decisions, "
              f"{r['rows_routed_apart'][1]} background rows; without them ({n_x} decisions, {n_bg} background rows), "
              f"max abs diff {r['max_abs_diff_routed_alike']:.2e}"]
    if "pair" in r:
        p = r["pair"]
        lines.append(f"pair decision {p['decision']} / background row {p['background_row']}, exact values enumerated "
                     f"tree by tree: auditor vs exact {p['auditor_vs_exact']:.1e}, shap vs exact "
                     f"{p['shap_vs_exact']:.1e}")
    lines.append(f"efficiency gap (vs the background rows' mean): auditor {r['efficiency_gap_auditor']:.1e}, shap "
                 f"{r['efficiency_gap_shap']:.1e}; the evidence's (vs the whole reference population): "
                 f"{r['evidence_max_efficiency_gap']:.1e}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--background-rows", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-enumerate", action="store_true", help="Skip the exact enumeration of one pair.")
    parser.add_argument("--no-floor", action="store_true", help="Skip timing the sampling engine's floor.")
    args = parser.parse_args(argv)
    import os

    load = os.getloadavg()
    r = run(args.decisions, args.background_rows, args.repeats, not args.no_enumerate, not args.no_floor)
    print(f"Shapley values on the breast-cancer GBM: load average {' '.join(f'{x:.2f}' for x in load)} -> "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(table(r)))
    print(f"tree engine / shap: {r['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
