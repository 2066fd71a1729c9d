#!/usr/bin/env python3
"""Shapley values: the auditor's batched engine vs the per-decision Captum loop, and vs its floor.

    .venv/bin/python bench/shapley_vs_captum.py                      # 20 and 200 decisions, ~3 min
    .venv/bin/python bench/shapley_vs_captum.py --sizes 50 --naive 10

It prints figures and asserts nothing. Both sides use the breast-cancer sample (the gradient-boosting
skops model and the 30-64-64-2 MLP (a torch.export program since the sample moved to it)), its 398-row training split as the reference data, and
decisions drawn from the 569-row data set (stratified, seed 7), with the Shapley family's defaults:
100 background rows (stratified by the model's output), 25 permutations per decision.

- **auditor**: ``Shapley.explain`` on the whole batch (engine ``batched``): every decision's permutations
  and background rows scored in chunks of about 250,000 rows.
- **Captum loop**: what a notebook does: per decision, ``ShapleyValueSampling.attribute`` over the
  decision repeated once per background row, with Captum's defaults (``perturbations_per_eval=1``: one
  model call per permutation step). Timed on the first ``--naive`` decisions and scaled linearly (marked *).
- **Captum, batched steps**: the auditor's ``reference`` engine: the same loop with
  ``perturbations_per_eval`` = the number of features (one call per permutation).
- **floor**: the rows the method must score (decisions x permutations x (features - 1) x background rows),
  scored in 1M-row calls.

The last line is ``shapley speedup vs per-decision Captum: <ratio>x`` for the largest size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICY = ROOT / "policies" / "breast_cancer_medical.yaml"


def load():
    """The sample's models and reference data, and the 569 rows to draw decisions from, in feature space."""
    from auditor.audit import prepare
    from auditor.policy import load_policy

    prepared = {p.model.id: p for p in prepare(load_policy(POLICY))}
    import sklearn.datasets

    frame = sklearn.datasets.load_breast_cancer(as_frame=True).frame
    space = prepared["gbm"].dataset.space
    X = frame[space.names].to_numpy(dtype=np.float64)
    return prepared, X


def decisions(X: np.ndarray, n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    rows = rng.permutation(len(X))[:n] if n <= len(X) else rng.integers(0, len(X), size=n)
    return X[np.sort(rows)]


def captum_loop(model, X, bg, targets, n_samples: int, per_eval: int) -> float:
    import torch
    from captum.attr import ShapleyValueSampling

    from auditor.explainers import decision_seed

    svs = ShapleyValueSampling(lambda t: torch.from_numpy(model.predict_proba(t.detach().numpy())))
    baselines = torch.from_numpy(np.ascontiguousarray(bg))
    mask = torch.arange(X.shape[1]).unsqueeze(0)
    start = time.perf_counter()
    for k, x in enumerate(X):
        torch.manual_seed(decision_seed(7, k))
        inputs = torch.from_numpy(np.repeat(x[None, :], len(bg), axis=0))
        svs.attribute(inputs, baselines=baselines, target=int(targets[k]), feature_mask=mask, n_samples=n_samples,
                      perturbations_per_eval=per_eval)
    return time.perf_counter() - start


def floor(model, rows: int, d: int) -> float:
    """Scoring ``rows`` rows of ``d`` features in 1M-row calls (random values in the data's range)."""
    chunk = np.random.default_rng(0).normal(size=(min(rows, 1_000_000), d)) * 10 + 20
    start = time.perf_counter()
    left = rows
    while left > 0:
        model.predict_proba(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--naive", type=int, default=10, help="Decisions the per-decision Captum loop is timed on.")
    args = parser.parse_args(argv)

    from auditor.explainers import EXPLAINERS, Batch
    from auditor.explainers.base import attribution_targets
    from auditor.explainers.shapley import background_rows

    family = EXPLAINERS["shapley"]
    spec = family.Spec(type="shapley")
    prepared, X_all = load()
    print(f"Shapley values, breast-cancer sample: {spec.background_rows} background rows, {spec.n_samples} "
          f"permutations per decision; load average {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}")
    print()
    print("| decisions | model | auditor (batched) | per-decision Captum loop | Captum, batched steps | floor "
          "| Captum loop / auditor | auditor / floor | max abs diff to Captum |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals = (0.0, 0.0)
    for n in args.sizes:
        X = decisions(X_all, n)
        totals = (0.0, 0.0)  # the last size's Captum loop and auditor seconds, both models
        for model_id in ("gbm", "mlp"):
            prep = prepared[model_id]
            model, background = prep.model, prep.background.X
            batch = Batch(X=X, ids=list(range(n)))
            explainer = family(spec)
            start = time.perf_counter()
            ours, _ = explainer.explain(model, batch, background=background, seed=7)
            t_auditor = time.perf_counter() - start

            scores = model.predict_proba(background)[:, model.positive_index]
            bg = background_rows(background, spec.background_rows, 7, scores=scores)
            targets = attribution_targets(model, model.predict_proba(X))
            m = min(n, args.naive)
            t_loop = captum_loop(model, X[:m], bg, targets, spec.n_samples, per_eval=1) * n / m
            t_steps = captum_loop(model, X[:m], bg, targets, spec.n_samples, per_eval=X.shape[1]) * n / m
            mark = "*" if m < n else ""

            reference, _ = family(family.Spec(type="shapley", engine="reference")).explain(
                model, Batch(X=X[:m], ids=list(range(m))), background=background, seed=7)
            names = model.space.names
            diff = max(abs(a.attributions[f] - b.attributions[f]) for a, b in zip(ours[:m], reference) for f in names)
            rows = n * spec.n_samples * (X.shape[1] - 1) * len(bg)
            t_floor = floor(model, rows, X.shape[1])
            print(f"| {n} | {model_id} | {t_auditor:.2f} s | {t_loop:.1f} s{mark} | {t_steps:.1f} s{mark} | "
                  f"{t_floor:.2f} s ({rows / 1e6:.1f}M rows) | {t_loop / t_auditor:.1f}x | {t_auditor / t_floor:.2f}x | "
                  f"{diff:.1e} |")
            totals = (totals[0] + t_loop, totals[1] + t_auditor)
    print()
    print(f"(* scaled from the first {args.naive} decisions)")
    print(f"shapley speedup vs per-decision Captum: {totals[0] / totals[1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
