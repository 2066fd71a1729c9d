"""Benchmark: LIME and counterfactuals on models that take categorical columns, against the scoring floor.

Run from the repository root:

    .venv/bin/python bench/pipeline_categorical.py [--decisions 200] [--repeats 3] [--json out.json]

The credit sample (``policies/credit_finance.yaml``, models and data under ``sample_audits/credit``) has 13
categorical and 7 numeric features and two models: a scikit-learn ``Pipeline(ColumnTransformer(OneHotEncoder,
StandardScaler) -> GradientBoostingClassifier)`` that takes category strings (``gbm``), and a torch.export MLP
that takes the one-hot encoded matrix (``mlp``). For ``--decisions`` decisions of the audited data (the
auditor's stratified sample; drawn with replacement, under new ids, beyond its 300 rows) the script times,
per model:

- **auditor**: the family's ``explain`` on the whole batch, as ``run_audit`` calls it: LIME with the batched
  engine (the policy's ``num_samples``; one run, ``--lime-repeats`` to change), counterfactuals with the
  policy's settings (the batched random search);
- **floor**: the rows that run scored (counted, and kept, by wrapping the adapter's ``outputs``: every row the
  method asks the model for) scored again in the model's own input form, in large batches
  (``--floor-batch`` rows per call): for the Pipeline a pandas DataFrame of the raw category strings built once
  in bulk, for the MLP its float32 input tensor built once. Building those inputs is not timed;
- **overhead** = (auditor - floor) / floor: what encoding, sampling, searching and fitting add to scoring.

Each repeat times the auditor and the floor side by side in this process; figures are medians over the
repeats, wall-clock and CPU time of the process (all its threads; less distorted than wall-clock time when other
work shares the machine, but LIME's engine runs on threads, so its CPU time can exceed its wall-clock time). ``digest`` is a hash of the explanations (JSON), the same in every repeat, to compare results
across code versions. Nothing here asserts speed: it prints figures. ``run(...)`` returns them as a dict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

POLICY = ROOT / "policies" / "credit_finance.yaml"
PHASES = ("lime", "counterfactuals")
MODELS = ("gbm", "mlp")
FLOOR_BATCH = 200_000


def say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


class Counted:
    """Wraps a model adapter's ``outputs``: counts the rows and calls, keeps the first ``keep`` rows."""

    def __init__(self, model, keep: int) -> None:
        self.model, self.keep = model, keep
        self.rows = self.calls = 0
        self.kept: list = []
        self.inner = model.outputs

    def __enter__(self) -> "Counted":
        def outputs(X):
            import numpy as np

            X = np.asarray(X, dtype=np.float64)
            X = X[None, :] if X.ndim == 1 else X
            room = self.keep - sum(len(k) for k in self.kept)
            if room > 0:
                self.kept.append(X[:room].copy())
            self.rows += len(X)
            self.calls += 1
            return self.inner(X)

        self.model.outputs = outputs
        return self

    def __exit__(self, *exc) -> None:
        del self.model.outputs  # back to the class's method


def sample_decisions(prep, n: int, seed: int):
    """The auditor's stratified sample of ``n`` decisions (with replacement, under new ids, beyond the data)."""
    import numpy as np

    from auditor.explainers import Batch
    from auditor.sampling import draw_sample

    data = prep.dataset
    if n <= data.n_rows:
        rows = draw_sample("stratified", n, seed, y_true=data.y, proba=prep.model.outputs(data.X),
                           classes=prep.model.classes, ids=data.ids).rows
        return Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])
    rows = np.random.default_rng(seed).integers(0, data.n_rows, size=n)
    return Batch(X=data.X[rows], ids=[f"{data.ids[r]}#{j}" for j, r in enumerate(rows)], y=data.y[rows])


def model_input(model, X):
    """``X`` (feature space) in the model's own input form, built once: what the floor scores."""
    if model.framework == "sklearn":
        frame = model.space.decode(X)
        names = getattr(model.estimator, "feature_names_in_", None)
        return frame[list(names)] if names is not None else frame
    return model.to_tensor(X)


def score_floor(model, inputs, batch: int) -> tuple[float, float]:
    """Seconds (wall-clock, and CPU of this process) to score ``inputs`` (the model's own input form) with the model itself, ``batch`` rows a call."""
    n = len(inputs)
    if model.framework == "sklearn":
        score = model.estimator.predict_proba
        parts = [inputs.iloc[i : i + batch] for i in range(0, n, batch)]
    else:
        import torch

        def score(block):
            with torch.no_grad():
                return model.estimator(block)

        parts = [inputs[i : i + batch] for i in range(0, n, batch)]
    score(parts[0][:1000])  # warm-up
    t, cpu = time.perf_counter(), time.process_time()
    for part in parts:
        score(part)
    return time.perf_counter() - t, time.process_time() - cpu


def digest(results, parameters) -> str:
    blob = json.dumps([r.model_dump(mode="json") for r in results] + [parameters], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run(decisions: int = 200, *, repeats: int = 3, models=MODELS, phases=PHASES, lime_repeats: int = 1,
        policy_path: Path = POLICY, seed: int | None = None, floor_batch: int = FLOOR_BATCH,
        floor_rows: int = 2_000_000) -> dict:
    """Time each (phase, model): the auditor's ``explain`` on ``decisions`` decisions and the floor of the
    rows it scored. Returns ``{"decisions", "repeats", "cases": {"lime/gbm": {...}, ...}}``, each case with
    ``auditor_s``, ``floor_s`` (medians), ``overhead``, ``rows``, ``calls``, ``floor_extrapolated`` (rows beyond
    ``floor_rows`` are timed at the measured rate), ``digest`` and the per-repeat times."""
    import numpy as np

    from auditor.audit import prepare
    from auditor.explainers import EXPLAINERS
    from auditor.policy import load_policy

    policy = load_policy(policy_path)
    seed = policy.sample.seed if seed is None else seed
    t = time.perf_counter()
    prepared = {p.model.id: p for p in prepare(policy)}
    say(f"prepared {', '.join(prepared)} in {time.perf_counter() - t:.1f} s")
    batch = sample_decisions(next(iter(prepared.values())), decisions, seed)
    specs = {}
    for kind in phases:
        spec = next((s for s in policy.explanations if s.type == kind), None)
        spec = spec or EXPLAINERS[kind].Spec(type=kind)
        if kind == "lime":
            spec = spec.model_copy(update={"engine": "batched", "repeats": lime_repeats})
        specs[kind] = spec
    cases: dict[str, dict] = {}
    for r in range(repeats):
        for kind in phases:
            for model_id in models:
                prep = prepared[model_id]
                key = f"{kind}/{model_id}"
                case = cases.setdefault(key, {"auditor": [], "floor": [], "auditor_cpu": [], "floor_cpu": [],
                                              "digests": set()})
                explainer = EXPLAINERS[kind](specs[kind])
                with Counted(prep.model, floor_rows if r == 0 else 0) as counted:
                    t, cpu = time.perf_counter(), time.process_time()
                    results, parameters = explainer.explain(prep.model, batch, background=prep.background.X,
                                                            seed=seed)
                    case["auditor"].append(time.perf_counter() - t)
                    case["auditor_cpu"].append(time.process_time() - cpu)
                case["digests"].add(digest(results, parameters))
                if r == 0:
                    case["rows"], case["calls"] = counted.rows, counted.calls
                    case["inputs"] = model_input(prep.model, np.concatenate(counted.kept))
                measured = len(case["inputs"])
                wall, cpu = score_floor(prep.model, case["inputs"], floor_batch)
                case["floor"].append(wall * case["rows"] / measured)
                case["floor_cpu"].append(cpu * case["rows"] / measured)
                case["floor_extrapolated"] = measured < case["rows"]
                say(f"repeat {r + 1}/{repeats} {key}: auditor {case['auditor'][-1]:.2f} s "
                    f"(CPU {case['auditor_cpu'][-1]:.2f} s), floor {case['floor'][-1]:.2f} s "
                    f"(CPU {case['floor_cpu'][-1]:.2f} s; {case['rows']:,} rows, {case['calls']} calls)")
    out = {}
    for key, case in cases.items():
        auditor, floor = statistics.median(case["auditor"]), statistics.median(case["floor"])
        auditor_cpu, floor_cpu = statistics.median(case["auditor_cpu"]), statistics.median(case["floor_cpu"])
        out[key] = {"auditor_s": auditor, "floor_s": floor, "overhead": (auditor - floor) / floor,
                    "auditor_cpu_s": auditor_cpu, "floor_cpu_s": floor_cpu,
                    "cpu_overhead": (auditor_cpu - floor_cpu) / floor_cpu,
                    "rows": case["rows"], "calls": case["calls"], "floor_extrapolated": case["floor_extrapolated"],
                    "digest": ",".join(sorted(case["digests"])), "auditor_runs": case["auditor"],
                    "floor_runs": case["floor"]}
    return {"decisions": decisions, "repeats": repeats, "seed": seed, "cases": out}


def table(result: dict) -> str:
    lines = [f"| {result['decisions']} decisions | auditor | floor | overhead | CPU: auditor | floor | overhead "
             "| rows scored | calls | digest |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, c in result["cases"].items():
        star = "*" if c["floor_extrapolated"] else ""
        lines.append(f"| {key} | {c['auditor_s']:.2f} s | {c['floor_s']:.2f} s{star} | {c['overhead']:.2f}x | "
                     f"{c['auditor_cpu_s']:.2f} s | {c['floor_cpu_s']:.2f} s{star} | {c['cpu_overhead']:.2f}x | "
                     f"{c['rows']:,} | {c['calls']} | {c['digest']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--lime-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None, help="default: the policy's sample seed")
    parser.add_argument("--floor-batch", type=int, default=FLOOR_BATCH)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    import os

    load = os.getloadavg()[0]
    result = run(args.decisions, repeats=args.repeats, models=args.models.split(","),
                 phases=args.phases.split(","), lime_repeats=args.lime_repeats, seed=args.seed,
                 floor_batch=args.floor_batch)
    result["load_average"] = [load, os.getloadavg()[0]]
    print(table(result))
    print(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; medians of {args.repeats}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
