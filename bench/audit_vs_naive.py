"""Benchmark: the auditor versus the per-decision notebook loop a user would write by hand.

Run from the repository root:

    .venv/bin/python bench/audit_vs_naive.py [--sizes 200,2000] [--repeats 3] [--quick] [--budget SECONDS]

Both sides explain the same sampled decisions of the Wisconsin breast-cancer data with the same models
(the gradient-boosting skops model and the 30-64-64-2 MLP, a torch.export program, from sample_audits/breast_cancer)
and the same settings: Integrated Gradients (MLP, n_steps 64, mean baseline), LIME (num_samples 5000),
surrogate rules (depth-3 tree) and counterfactuals (DiCE random, 3 per decision); then HTML + PDF and
signing with a throw-away development identity.

(a) the auditor, phase by phase, through its own functions in-process (prepare, each explainer's
    ``explain`` on the whole batch as run_audit calls it, evidence building, render_html, render_pdf,
    Identity.sign_pdf + sign_manifest), and ``auditor.pipeline.execute`` once per size end to end;
(b) the naive loop: LimeTabularExplainer.explain_instance, captum IntegratedGradients.attribute and
    dice_ml generate_counterfactuals one decision at a time, a scikit-learn surrogate tree once; the
    report/signing cost is the auditor's (a user still needs a report), so the ratio isolates the
    explanation work.

On a small CPU machine one full audit of 200 decisions takes longer than the whole time budget, so the
script measures within a wall-clock budget (``--budget``): phases whose full size does not fit are timed
on the first m decisions of the same sample (identical on both sides) and extrapolated linearly, and
every such figure is marked with the number of decisions it was measured on. Nothing here asserts speed:
it prints figures. The last line is ``total speedup vs naive: <ratio>x`` for the 200-decision size.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "sample_audits" / "breast_cancer"
BASE_POLICY = ROOT / "policies" / "breast_cancer_medical.yaml"
CLASSES = ["malignant", "benign"]  # scikit-learn's target codes 0 and 1, as build.py writes them
SEED = 7  # the sample policy's seed
N_STEPS = 64
LIME_SAMPLES = 5000
CF_COUNT = 3
DICE_SAMPLE_SIZE = 1000  # dice_ml's DiceRandom default sample_size: candidates scored per search round
METHODS = [("integrated_gradients", "mlp"), ("lime", "gbm"), ("lime", "mlp"), ("rules", "gbm"), ("rules", "mlp"),
           ("counterfactuals", "gbm"), ("counterfactuals", "mlp")]
TITLES = {"integrated_gradients": "Integrated Gradients", "lime": "LIME", "rules": "rules (surrogate tree)",
          "counterfactuals": "counterfactuals (DiCE)"}
LOCAL = {"integrated_gradients", "lime", "counterfactuals"}
CHEAP_PER_DECISION = 0.05  # seconds; below this a phase is re-timed on larger batches (batched methods)


def say(*parts) -> None:
    """Progress on stderr; the results go to stdout at the end."""
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


# --- time budget and memory ----------------------------------------------------------------------------


class Clock:
    def __init__(self, budget: float) -> None:
        self.start = time.perf_counter()
        self.budget = budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so a phase's own peak can be read afterwards."""
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], peak_mb())
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


PEAKS: dict[tuple, float] = {}  # (size, side, phase) -> peak RSS MB (max over repeats)
GROWTH: dict[tuple, float] = {}  # (size, side, phase) -> peak RSS minus RSS at the phase's start, MB (max)
PEAK_RESETS = True
PROCESS_PEAK = [0.0]  # ru_maxrss is reset along with the high-water mark, so the process peak is tracked here


def note_peak(k: tuple, start_rss: float) -> float:
    peak = peak_mb()
    PEAKS[k] = max(PEAKS.get(k, 0.0), peak)
    GROWTH[k] = max(GROWTH.get(k, 0.0), peak - start_rss)
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], peak)
    return peak


@contextlib.contextmanager
def phase(key: tuple, out: dict, name: str):
    """Time a phase into out[name] (seconds) and record its peak RSS under PEAKS[key + (name,)]."""
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], peak_mb())
    reset_peak()
    start_rss = rss_mb()
    t = time.perf_counter()
    try:
        yield
    finally:
        out[name] = out.get(name, 0.0) + time.perf_counter() - t
        note_peak(key + (name,), start_rss)


# The auditor's own silencer for DiCE's and LIME's progress bars and warnings: both sides run equally quiet.
from auditor.explainers.dice_reference import _quiet as quiet  # noqa: E402


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- inputs: data files, policies, identity --------------------------------------------------------------


@dataclass
class Inputs:
    tmp: Path
    names: list[str]
    train_csv: Path
    identity_dir: Path
    identity: object
    policies: dict[int, Path] = field(default_factory=dict)  # size -> policy file
    data_csv: dict[int, Path] = field(default_factory=dict)


def breast_cancer_frame():
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.copy()
    frame["diagnosis"] = np.asarray(CLASSES, dtype=object)[bunch.target.to_numpy()]
    return frame


def write_policy(path: Path, data_csv: Path, train_csv: Path, size: int, *, explanations: list[dict],
                 models: tuple[str, ...] = ("gbm", "mlp"), thresholds: bool = True) -> Path:
    """The sample policy, pointed at ``data_csv`` (audited) and the sample models, with absolute paths."""
    import yaml

    policy = yaml.safe_load(BASE_POLICY.read_text(encoding="utf-8"))
    policy["models"] = [m for m in policy["models"] if m["id"] in models]
    for m in policy["models"]:
        m["path"] = str((SAMPLE / "models" / Path(m["path"]).name).resolve())
    audited, train = policy["datasets"][0], policy["datasets"][1]
    audited["id"] = "data"
    audited["path"] = str(data_csv)
    audited["description"] = "Wisconsin breast-cancer data (benchmark copy)."
    train["path"] = str(train_csv)
    policy["audited"] = [{"model": m, "dataset": "data", "background": "train"} for m in models]
    policy["sample"] = {"size": size, "strategy": "stratified", "seed": SEED}
    policy["explanations"] = explanations
    if not thresholds:
        policy["thresholds"] = []
    else:
        names = {e["type"] for e in explanations}
        policy["thresholds"] = [t for t in policy["thresholds"]
                                if t["metric"].split(".")[0] in names | {"performance"}
                                or (t["metric"].startswith("agreement") and len(names & {"lime", "integrated_gradients"}) == 2)]
    path.write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


FULL_EXPLANATIONS = [
    {"type": "integrated_gradients", "n_steps": N_STEPS, "baseline": "mean"},
    {"type": "lime", "num_samples": LIME_SAMPLES},
    {"type": "rules"},
    {"type": "counterfactuals", "method": "random", "count": CF_COUNT},
]


def make_inputs(tmp: Path, sizes: list[int]) -> Inputs:
    import numpy as np

    from auditor.signing import init_identity, load_identity

    frame = breast_cancer_frame()
    names = [c for c in frame.columns if c != "diagnosis"]
    full = tmp / "breast_cancer_569.csv"
    frame.to_csv(full, index=False)
    identity_dir = tmp / "identity"
    init_identity(identity_dir, "benchmark signer (development)")
    inputs = Inputs(tmp, names, (SAMPLE / "data" / "train.csv").resolve(), identity_dir, load_identity(identity_dir))
    for n in sizes:
        if n <= len(frame):
            csv = full
        else:  # more decisions than rows: resample the 569 rows with replacement (seeded)
            rows = np.random.default_rng(SEED).integers(0, len(frame), size=n)
            csv = tmp / f"breast_cancer_resampled_{n}.csv"
            frame.iloc[rows].reset_index(drop=True).to_csv(csv, index=False)
        inputs.data_csv[n] = csv
        inputs.policies[n] = write_policy(tmp / f"policy_{n}.yaml", csv, inputs.train_csv, n,
                                          explanations=FULL_EXPLANATIONS)
    return inputs


# --- (a) the auditor, phase by phase ---------------------------------------------------------------------


@contextlib.contextmanager
def instrumented_explainers(log: list, cache: dict, replay: bool = False):
    """Time every explainer's ``explain`` as run_audit calls it (and keep its results), or, with
    ``replay``, answer from ``cache`` instead of computing, so the rest of run_audit (evidence building)
    can be timed at full size without running any explainer twice."""
    from auditor.explainers import EXPLAINERS

    patched = []
    for kind in ("integrated_gradients", "lime", "rules", "counterfactuals"):
        cls = EXPLAINERS[kind]
        original = cls.__dict__["explain"]

        def wrapper(self, model, batch, *args, _original=original, _cls=cls, **kwargs):
            key = (self.spec.type, model.id)
            t = time.perf_counter()
            if replay:
                results, params = cache[key]
                if _cls.scope == "local":
                    results = [results[k % len(results)] for k in range(len(batch))]
                out = (results, params)
            else:
                out = _original(self, model, batch, *args, **kwargs)
                cache[key] = out
            log.append((key, len(batch), time.perf_counter() - t))
            return out

        setattr(cls, "explain", wrapper)
        patched.append((cls, original))
    try:
        yield
    finally:
        for cls, original in patched:
            setattr(cls, "explain", original)


def sample_rows(prepared, size: int):
    """The decisions run_audit samples for ``size`` (the same for every model: stratified on y)."""
    from auditor.sampling import draw_sample

    p = prepared[0]
    proba = p.model.predict_proba(p.dataset.X)
    return draw_sample("stratified", size, SEED, y_true=p.dataset.y, proba=proba, classes=p.model.classes,
                       ids=p.dataset.ids).rows


def truncated(evidence, k: int):
    """The same evidence with only the first k decisions of each subject (the pilot's render costs)."""
    return evidence.model_copy(update={"subjects": [s.model_copy(update={"decisions": s.decisions[:k]})
                                                    for s in evidence.subjects]})


def render_and_sign(evidence, inputs: Inputs, key: tuple, times: dict) -> None:
    from auditor.provenance import canonical_bytes
    from auditor.report import render_html, render_pdf

    identity = inputs.identity
    evidence_bytes = evidence.to_json().encode("utf-8")
    with phase(key, times, "html"):
        html = render_html(evidence, generated_at=datetime.now(timezone.utc), signer=identity.describe(),
                           evidence_sha256=hashlib.sha256(evidence_bytes).hexdigest())
    with phase(key, times, "pdf"):
        pdf = render_pdf(html)
    with phase(key, times, "sign"):
        signed = identity.sign_pdf(pdf, reason="Explainability audit benchmark")
        manifest = canonical_bytes({"outputs": {name: hashlib.sha256(data).hexdigest() for name, data in
                                                (("evidence.json", evidence_bytes), ("report.pdf", signed))}})
        identity.sign_manifest(manifest)
    times["_pdf_bytes"] = len(signed)


def auditor_side(inputs: Inputs, n: int, m: int, rows_n, *, key: tuple, cheap_limit: float,
                 render_m: bool = False) -> dict:
    """One repeat of (a). Returns per-phase seconds at m (``at_m``), estimates for n (``full``), how each
    estimate was obtained (``how``), the m-decision evidence and the render timings."""
    from auditor.audit import prepare, run_audit
    from auditor.plan import plan_run
    from auditor.explainers import EXPLAINERS, Batch
    from auditor.policy import load_policy
    from auditor.provenance import build_manifest, canonical_bytes

    t: dict = {}
    with phase(key, t, "prepare"):
        policy = load_policy(inputs.policies[n])
        prepared = prepare(policy)
    log: list = []
    cache: dict = {}
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], peak_mb())
    reset_peak()
    start_rss = rss_mb()
    start = time.perf_counter()
    with instrumented_explainers(log, cache):
        evidence = run_audit(plan_run(policy, sample_size=m), prepared)
    run_audit_s = time.perf_counter() - start
    at_m = {"prepare": t["prepare"]}
    for (kind, model_id), _, secs in log:
        at_m[(kind, model_id)] = at_m.get((kind, model_id), 0.0) + secs
        note_peak(key + ((kind, model_id),), start_rss)
    explain_s = sum(s for _, _, s in log)

    def evidence_rest(ev, prep, size: int) -> float:
        t0 = time.perf_counter()
        data = ev.to_json().encode("utf-8")
        build_manifest(plan=plan_run(policy, sample_size=size), prepared=prep, outputs={"evidence.json": data},
                       run_id="bench", started="", finished="", signer=inputs.identity.describe())
        canonical_bytes({"bench": True})
        return time.perf_counter() - t0

    at_m["evidence"] = run_audit_s - explain_s + evidence_rest(evidence, prepared, m)
    note_peak(key + ("evidence",), start_rss)
    full = dict(at_m)
    how = {k: "measured" for k in at_m}
    if m < n:
        # Evidence building at full size: run_audit with every explainer answering from the m-decision
        # results (replayed), so only the evidence code runs on n decisions.
        replay_log: list = []
        reset_peak()
        start_rss = rss_mb()
        start = time.perf_counter()
        with instrumented_explainers(replay_log, cache, replay=True):
            evidence_n = run_audit(plan_run(policy, sample_size=n), prepared)
        replay_s = time.perf_counter() - start - sum(s for _, _, s in replay_log)
        full["evidence"] = replay_s + evidence_rest(evidence_n, prepared, n)
        note_peak(key + ("evidence",), start_rss)
        how["evidence"] = f"measured at {n} (explainer results replayed)"
        spent = 0.0
        # Cheap phases (batched ones such as IG) are re-timed on larger batches of the same sample: each in
        # turn (the one predicted cheapest at the whole batch first) goes to the whole batch if that call is
        # predicted (linearly, an over-estimate of a batched phase) to fit what is left of ``cheap_limit``
        # (shared by the phases), else doubles if that fits: so no cheap phase takes the whole allowance from
        # the others, and a phase's fixed cost is not scaled up with its decisions. Expensive per-decision
        # phases (LIME, DiCE) keep the m decisions they share with the naive side.
        grown = {k: (at_m[k], m) for k in at_m if isinstance(k, tuple) and k[0] in LOCAL}  # global methods do not grow

        def next_size(k) -> int | None:
            secs, done = grown[k]
            if done >= n or secs / done >= CHEAP_PER_DECISION:
                return None
            return next((size for size in (n, min(n, 2 * done)) if spent + secs * size / done <= cheap_limit), None)

        while True:
            growing = {k: size for k in grown if (size := next_size(k))}
            if not growing:
                break
            k = min(growing, key=lambda k: grown[k][0] / grown[k][1])  # the least per decision
            kind, model_id = k
            secs, done = grown[k]
            prep = next(p for p in prepared if p.model.id == model_id)
            spec = next(s for s in policy.explanations if s.type == kind)
            data = prep.dataset
            nxt = growing[k]
            rows = rows_n[:nxt]
            batch = Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows])
            grow: dict = {}
            with phase(key, grow, k):
                EXPLAINERS[kind](spec).explain(prep.model, batch, background=prep.background.X, seed=SEED)
            grown[k], spent = (grow[k], nxt), spent + grow[k]
        for k, (secs, done) in grown.items():
            full[k] = secs * n / done
            how[k] = f"measured at {n}" if done == n else f"x{n}/{done}"
    # The report at full size: rendered and signed from the n-decision evidence whose explanations were
    # replayed (what a page costs depends on its structure, not on the numbers in it).
    render: dict = {}
    render_and_sign(evidence_n if m < n else evidence, inputs, key, render)
    if render_m and m < n:
        render_small: dict = {}
        render_and_sign(evidence, inputs, key + ("at_m",), render_small)
        render["_at_m"] = render_small
    return {"at_m": at_m, "full": full, "how": how, "evidence": evidence, "render": render, "prepared": prepared}


# --- (b) the naive notebook loop ----------------------------------------------------------------------------


class CountingDiceModel:
    """The auditor's DiCE model wrapper (same data/model setup), counting the rows DiCE scores."""

    def __init__(self, adapter) -> None:
        from auditor.explainers.dice_reference import _DiceModel

        self.inner = _DiceModel(adapter)
        self.rows = 0
        self.calls = 0

    def predict_proba(self, frame):
        self.rows += len(frame)
        self.calls += 1
        return self.inner.predict_proba(frame)

    def predict(self, frame):
        return self.predict_proba(frame).argmax(axis=1)


def naive_side(inputs: Inputs, n: int, m: int, rows_n, rows_m, adapters: dict, *, key: tuple,
               ig_allowance: float) -> dict:
    """One repeat of (b): what a user writes in a notebook with the same libraries and settings."""
    import numpy as np
    import pandas as pd
    import skops.io as sio
    import torch
    from captum.attr import IntegratedGradients
    from lime.lime_tabular import LimeTabularExplainer
    from sklearn.tree import DecisionTreeClassifier

    t: dict = {}
    with phase(key, t, "prepare"):
        train = pd.read_csv(inputs.train_csv)
        data = pd.read_csv(inputs.data_csv[n])
        gbm_path = SAMPLE / "models" / "gbm.skops"
        gbm = sio.load(gbm_path, trusted=sio.get_untrusted_types(file=gbm_path))
        mlp = torch.export.load(str(SAMPLE / "models" / "mlp.pt2")).module()
    names = inputs.names
    background = train[names].to_numpy(dtype=np.float64)
    X = data[names].to_numpy(dtype=np.float64)

    def gbm_proba(rows):
        return gbm.predict_proba(pd.DataFrame(rows, columns=names))

    def mlp_proba(rows):
        with torch.no_grad():
            return torch.softmax(mlp(torch.as_tensor(rows, dtype=torch.float32)), dim=1).double().numpy()

    predict = {"gbm": gbm_proba, "mlp": mlp_proba}
    positive = {"gbm": list(gbm.classes_).index("malignant"), "mlp": CLASSES.index("malignant")}

    # LIME: the explainer built once, then explain_instance per decision.
    lime_explainer = None
    for model_id in ("gbm", "mlp"):
        with phase(key, t, ("lime", model_id)):
            if lime_explainer is None:
                lime_explainer = LimeTabularExplainer(background, mode="classification", feature_names=names,
                                                      class_names=["benign", "malignant"], discretize_continuous=True,
                                                      random_state=SEED)
            for row in X[rows_m]:
                lime_explainer.explain_instance(row, predict[model_id], labels=(positive[model_id],),
                                                num_features=len(names), num_samples=LIME_SAMPLES)

    # Integrated Gradients, one row at a time: at least m rows, then on through the sample while the
    # allowance lasts (a per-row loop scales linearly, so the rest is extrapolated from the rows done).
    ig_key = ("integrated_gradients", "mlp")
    with phase(key, t, ig_key):
        started = time.perf_counter()
        ig = IntegratedGradients(lambda x: torch.softmax(mlp(x), dim=1))
        baseline = torch.as_tensor(background.mean(axis=0, keepdims=True), dtype=torch.float32)
        ig_done = 0
        for row in X[rows_n]:
            ig.attribute(torch.as_tensor(row[None, :], dtype=torch.float32), baselines=baseline,
                         target=positive["mlp"], n_steps=N_STEPS, return_convergence_delta=True)
            ig_done += 1
            if ig_done >= m and time.perf_counter() - started > ig_allowance:
                break

    # Surrogate rules: one scikit-learn tree per model, fitted to the model's own decisions.
    fidelity = {}
    for model_id in ("gbm", "mlp"):
        with phase(key, t, ("rules", model_id)):
            labels = predict[model_id](background).argmax(axis=1)
            tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=20, random_state=SEED).fit(background, labels)
            fidelity[model_id] = float((tree.predict(X) == predict[model_id](X).argmax(axis=1)).mean())

    # DiCE: the auditor's data/model setup, then a plain loop, one decision per call.
    import dice_ml

    from auditor.explainers.dice_reference import _typed

    raw: dict = {}
    counts: dict = {}
    for model_id in ("gbm", "mlp"):
        adapter = adapters[model_id]
        space = adapter.space
        numeric = space.names
        whole = {c for c in numeric if np.all(np.mod(background[:, names.index(c)], 1) == 0)}
        with phase(key, t, ("counterfactuals", model_id)):
            frame = _typed(space.decode(background), numeric, whole)
            frame["__outcome__"] = adapter.predict_proba(background).argmax(axis=1)
            dmodel = CountingDiceModel(adapter)
            dice = dice_ml.Dice(dice_ml.Data(dataframe=frame, continuous_features=numeric, outcome_name="__outcome__"),
                                dice_ml.Model(model=dmodel, backend="sklearn", model_type="classifier"),
                                method="random")
            found = []
            np.random.seed(SEED)
            for k, row in enumerate(X[rows_m]):
                query = _typed(space.decode(row[None, :]), numeric, whole)
                with quiet():
                    try:
                        out = dice.generate_counterfactuals(query, total_CFs=CF_COUNT, desired_class="opposite",
                                                            posthoc_sparsity_algorithm="binary", random_seed=SEED + k,
                                                            verbose=False)
                        found.append(out.cf_examples_list[0].final_cfs_df)
                    except Exception as exc:  # DiCE raises when it finds nothing
                        if "no counterfactuals found" not in str(exc).lower():
                            raise
                        found.append(None)
        raw[model_id] = found
        counts[model_id] = (dmodel.rows, dmodel.calls)

    full, how = {}, {}
    for k, v in t.items():
        done = ig_done if k == ig_key else m
        if isinstance(k, tuple) and k[0] in LOCAL and done < n:
            full[k], how[k] = v * n / done, f"x{n}/{done}"
        else:
            full[k] = v
            how[k] = f"measured at {n}" if isinstance(k, tuple) and k[0] in LOCAL else "measured"
    t[ig_key] = t[ig_key] * m / ig_done  # the time for the same m decisions as the other phases
    return {"at_m": t, "full": full, "how": how, "raw": raw, "counts": counts, "X": X, "background": background}


# --- counterfactual quality ------------------------------------------------------------------------------


def cf_quality_auditor(evidence) -> dict:
    import numpy as np

    out = {}
    for s in evidence.subjects:
        results = [d.explanations["counterfactuals"] for d in s.decisions if "counterfactuals" in d.explanations]
        if not results:
            continue
        out[s.model.id] = _summarise([(r.returned, r.dropped_not_flipping, r.validity, r.proximity, r.sparsity,
                                       r.diversity) for r in results], np)
    return out


def cf_quality_naive(naive: dict, rows_m, adapters: dict) -> dict:
    """Validity, proximity, sparsity and diversity of DiCE's raw output, re-scored by the model, with the
    auditor's definitions (auditor/explainers/counterfactuals.py)."""
    import numpy as np

    from auditor.explainers.counterfactuals import _distance, _same

    X, background = naive["X"], naive["background"]
    spans = np.ptp(background, axis=0)
    spans[spans == 0] = 1.0
    out = {}
    for model_id, found in naive["raw"].items():
        adapter = adapters[model_id]
        space = adapter.space
        per = []
        for x, df in zip(X[rows_m], found):
            original = int(adapter.predict_proba(x[None, :])[0].argmax())
            if df is None or not len(df):
                per.append((0, 0, 0.0, None, None, None))
                continue
            cands = space.encode(df.drop(columns="__outcome__")[space.names])
            flipped = adapter.predict_proba(cands).argmax(axis=1) != original
            valid = cands[flipped]
            dists = [_distance(space, x, r, spans) for r in valid]
            changed = [sum(not _same(x[i], r[i]) for i in range(len(x))) for r in valid]
            pairs = [_distance(space, a, b, spans) for a, b in combinations(valid, 2)]
            per.append((len(cands), int((~flipped).sum()), len(valid) / CF_COUNT,
                        float(np.mean(dists)) if dists else None, float(np.mean(changed)) if changed else None,
                        float(np.mean(pairs)) if pairs else None))
        out[model_id] = _summarise(per, np)
    return out


def _summarise(per: list[tuple], np) -> dict:
    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    return {"decisions": len(per), "returned": mean([p[0] for p in per]), "not_flipping": sum(p[1] for p in per),
            "validity": mean([p[2] for p in per]), "proximity": mean([p[3] for p in per]),
            "sparsity": mean([p[4] for p in per]), "diversity": mean([p[5] for p in per])}


# --- floors: every model input the methods need, scored in big batched calls ----------------------------


def floor_times(n: int, adapters: dict, background, row_cap: int) -> dict:
    """Seconds to score, in batched calls (1M-row chunks), what each method needs for n decisions:
    LIME's n x num_samples perturbations, DiCE's n x sample_size candidates (estimate), IG's n x n_steps
    forward+backward passes, the surrogate's background + audited rows. Beyond ``row_cap`` rows per
    measurement the time is extrapolated linearly (returned in the second dict)."""
    import numpy as np
    import skops.io as sio
    import torch

    gbm_path = SAMPLE / "models" / "gbm.skops"
    gbm = sio.load(gbm_path, trusted=sio.get_untrusted_types(file=gbm_path))
    mlp = adapters["mlp"].estimator
    rng = np.random.default_rng(SEED)
    chunk_rows = min(1_000_000, row_cap)
    chunk = background[rng.integers(0, len(background), size=chunk_rows)] * rng.normal(1.0, 0.1, (chunk_rows, 30))
    tensor = torch.as_tensor(chunk, dtype=torch.float32)

    def gbm_score(rows):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fitted with feature names; a numpy array is the fastest input
            gbm.predict_proba(rows)

    def mlp_score(rows):
        with torch.no_grad():
            torch.softmax(mlp(rows), dim=1)

    def ig_pass(rows):
        x = rows.clone().requires_grad_(True)
        torch.softmax(mlp(x), dim=1)[:, 0].sum().backward()

    def timed(fn, data, total_rows):
        measured = min(total_rows, row_cap)
        first = min(len(data), measured)
        fn(data[:first] if first <= 200_000 else data[:10_000])  # warm-up (a first call settles the kernels for its shapes)
        t = time.perf_counter()
        done = 0
        while done < measured:
            step = min(len(data), measured - done)
            fn(data[:step])
            done += step
        secs = time.perf_counter() - t
        return secs * total_rows / measured, measured < total_rows

    out, extrapolated = {}, {}
    for (kind, model_id), rows in {
        ("lime", "gbm"): n * LIME_SAMPLES, ("lime", "mlp"): n * LIME_SAMPLES,
        ("counterfactuals", "gbm"): n * DICE_SAMPLE_SIZE, ("counterfactuals", "mlp"): n * DICE_SAMPLE_SIZE,
        ("integrated_gradients", "mlp"): n * N_STEPS,
    }.items():
        fn, data = ((gbm_score, chunk) if model_id == "gbm" else
                    (ig_pass if kind == "integrated_gradients" else mlp_score, tensor))
        out[(kind, model_id)], extrapolated[(kind, model_id)] = timed(fn, data, rows)
    for model_id in ("gbm", "mlp"):
        t = time.perf_counter()
        adapters[model_id].predict_proba(background)
        out[("rules", model_id)] = time.perf_counter() - t
        extrapolated[("rules", model_id)] = False
    return out, extrapolated


# --- pilot: per-decision costs, to fit the measurements into the budget ---------------------------------


@dataclass
class Costs:
    prepare: float = 3.0
    naive_prepare: float = 1.0
    a_local_pd: float = 3.0  # auditor's local explainers, seconds per decision (both models)
    a_global: float = 0.5
    evidence_pd: float = 0.05
    b_pd: float = 3.0  # naive LIME + DiCE per decision
    b_ig_pd: float = 0.01
    a_ig_pd: float = 0.005
    render_fixed: float = 8.0  # HTML + PDF + signing intercept
    render_pd: float = 0.8
    rows_per_s_gbm: float = 4e5
    rows_per_s_mlp: float = 2e6
    ig_rows_per_s: float = 5e5


def pilot(inputs: Inputs, n: int, adapters: dict, p: int) -> Costs:
    """Run both sides on p decisions (also warms up imports, fonts and first-call overheads)."""
    import numpy as np

    from auditor.audit import prepare, run_audit

    from auditor.plan import plan_run
    from auditor.policy import load_policy

    c = Costs()
    key = ("pilot",)
    policy = load_policy(inputs.policies[n])
    t = time.perf_counter()
    prepared = prepare(policy)
    c.prepare = time.perf_counter() - t
    log: list = []
    cache: dict = {}
    t = time.perf_counter()
    with instrumented_explainers(log, cache):
        evidence = run_audit(plan_run(policy, sample_size=p), prepared)
    total = time.perf_counter() - t
    local = sum(s for (k, _), _, s in log if k in LOCAL)
    c.a_local_pd = local / p
    c.a_ig_pd = sum(s for (k, _), _, s in log if k == "integrated_gradients") / p
    c.a_global = sum(s for (k, _), _, s in log if k not in LOCAL)
    c.evidence_pd = max(0.0, total - local - c.a_global) / p
    r: dict = {}
    render_and_sign(truncated(evidence, 1), inputs, key, r)  # warm-up (fonts, templates)
    r1: dict = {}
    render_and_sign(truncated(evidence, 1), inputs, key, r1)
    rp: dict = {}
    render_and_sign(evidence, inputs, key, rp)
    one = r1["html"] + r1["pdf"] + r1["sign"]
    many = rp["html"] + rp["pdf"] + rp["sign"]
    c.render_pd = min(3.0, max(0.05, (many - one) / max(1, p - 1)))
    c.render_fixed = max(1.0, one - c.render_pd)
    rows = sample_rows(prepared, p)
    naive = naive_side(inputs, n, p, rows, rows, adapters, key=key, ig_allowance=0.0)["at_m"]
    c.naive_prepare = naive["prepare"]
    c.b_pd = sum(v for k, v in naive.items() if isinstance(k, tuple) and k[0] in ("lime", "counterfactuals")) / p
    c.b_ig_pd = naive[("integrated_gradients", "mlp")] / p
    # scoring rates for the floors
    bg = adapters["gbm"].estimator
    X = np.tile(prepared[0].background.X, (100, 1))  # ~40k rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        bg.predict_proba(X)
        c.rows_per_s_gbm = len(X) / (time.perf_counter() - t)
    import torch

    tx = torch.as_tensor(X, dtype=torch.float32)
    t = time.perf_counter()
    with torch.no_grad():
        adapters["mlp"].estimator(tx)
    c.rows_per_s_mlp = len(X) / max(1e-6, time.perf_counter() - t)
    t = time.perf_counter()
    x = tx.clone().requires_grad_(True)
    adapters["mlp"].estimator(x)[:, 0].sum().backward()
    c.ig_rows_per_s = len(X) / max(1e-6, time.perf_counter() - t)
    return c


def floor_estimate(c: Costs, n: int, row_cap: int) -> float:
    def rows(r):
        return min(r, row_cap)

    return (2 * rows(n * LIME_SAMPLES) + 2 * rows(n * DICE_SAMPLE_SIZE)) / 2 * (1 / c.rows_per_s_gbm + 1 / c.rows_per_s_mlp) \
        + rows(n * N_STEPS) / c.ig_rows_per_s + 2.0


def plan_size(c: Costs, n: int, budget: float, repeats: int, m_min: int, row_cap: int) -> tuple[int, int, float]:
    """Choose (repeats, m decisions timed per repeat) so that the size's work fits ``budget`` seconds."""
    budget *= 0.9  # estimates from a few decisions on a shared machine: keep a margin
    cheap_limit = max(2.0, 0.015 * budget)
    fixed = (c.prepare + c.naive_prepare + c.a_global + c.render_fixed + c.evidence_pd * n
             + min(2 * c.a_ig_pd * n, cheap_limit) + min(c.b_ig_pd * n, cheap_limit) + 0.5)
    per_decision = c.a_local_pd + c.evidence_pd + c.b_pd + c.render_pd
    once_fixed = floor_estimate(c, n, row_cap) + (c.prepare + c.a_global + c.render_fixed + 2.0)  # floors + execute()
    once_pd = (c.a_local_pd + c.evidence_pd + c.render_pd) + c.render_pd / 2  # execute() at m, render at m/2
    r = repeats
    while True:
        m = int((budget - once_fixed - r * fixed) / (r * per_decision + once_pd))
        if m >= min(m_min, n) or r == 1:
            break
        r -= 1
    m = max(min(m, n), min(3, n))  # below m_min only when even one repeat cannot afford it
    return r, m, cheap_limit


# --- report formatting -----------------------------------------------------------------------------------


def fmt_s(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 100:
        return f"{x:,.0f} s"
    if x >= 10:
        return f"{x:.1f} s"
    if x >= 0.1:
        return f"{x:.2f} s"
    return f"{x * 1000:.1f} ms"


def fmt_x(x: float | None) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "-"
    return f"{x:,.0f}x" if x >= 100 else f"{x:.1f}x"


def fmt_q(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(headers: list[str], rows: list[list[str]], align: str) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def _range(values: list[float]) -> str:
    return f"{fmt_s(min(values))}..{fmt_s(max(values))}" if len(values) > 1 else ""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def phase_label(k) -> str:
    if isinstance(k, tuple):
        return f"{TITLES[k[0]]} ({k[1]})"
    return {"prepare": "prepare (policy, data, models)", "evidence": "evidence (run_audit - explainers, JSON)",
            "html": "render HTML", "pdf": "render PDF", "sign": "sign (PDF + manifest)"}[k]


# --- the run ---------------------------------------------------------------------------------------------


def run_size(inputs: Inputs, n: int, costs: Costs, budget: float, repeats: int, m_min: int, row_cap: int,
             adapters: dict, lines: list[str]) -> float:
    """Benchmark one size; append its report to ``lines``; return the total speedup (b/a)."""
    from auditor.audit import prepare
    from auditor.pipeline import execute
    from auditor.policy import load_policy

    size_start = time.perf_counter()
    r_count, m, cheap_limit = plan_size(costs, n, budget, repeats, m_min, row_cap)
    say(f"size {n}: budget {budget:.0f} s -> {r_count} repeat(s), {m} of {n} decisions timed per repeat"
        + (" (the rest extrapolated)" if m < n else ""))
    prepared = prepare(load_policy(inputs.policies[n]))
    rows_n = sample_rows(prepared, n)
    rows_m = sample_rows(prepared, m)
    size_adapters = {p.model.id: p.model for p in prepared}
    a_runs, b_runs = [], []
    for r in range(r_count):
        seed_everything(SEED + r)
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        for side in order:
            t0 = time.perf_counter()
            if side == "a":
                res = auditor_side(inputs, n, m, rows_n, key=(n, "a"), cheap_limit=cheap_limit, render_m=r == 0)
                a_runs.append(res)
            else:
                res = naive_side(inputs, n, m, rows_n, rows_m, size_adapters, key=(n, "b"), ig_allowance=cheap_limit)
                b_runs.append(res)
            say(f"  size {n} repeat {r + 1}/{r_count} ({'auditor' if side == 'a' else 'naive'}): "
                f"{time.perf_counter() - t0:.1f} s")
    # Render/sign: measured at the full size in every repeat; at m decisions once (first repeat), for the
    # comparison with execute() below.
    at_m_render = a_runs[0]["render"].get("_at_m", a_runs[0]["render"])
    for res in a_runs:
        for k in ("html", "pdf", "sign"):
            res["at_m"][k] = at_m_render[k]
            res["full"][k] = res["render"][k]
            res["how"][k] = f"measured at {n} (replayed evidence)" if m < n else "measured"
    for res_b, res_a in zip(b_runs, a_runs):  # the same report and signature cost on both sides
        for k in ("html", "pdf", "sign"):
            res_b["at_m"][k] = res_a["at_m"][k]
            res_b["full"][k] = res_a["full"][k]
            res_b["how"][k] = "= auditor"

    # Floors.
    say(f"  size {n}: floors")
    floors, floor_extra = floor_times(n, size_adapters, b_runs[0]["background"], row_cap)
    # execute() end to end, once.
    say(f"  size {n}: auditor.pipeline.execute at {m} decisions")
    out = inputs.tmp / f"e2e_{n}"
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], peak_mb())
    reset_peak()
    t = time.perf_counter()
    execute(inputs.policies[n], out=out, sample_size=m, identity_dir=inputs.identity_dir, force=True)
    e2e = time.perf_counter() - t
    e2e_peak = peak_mb()
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], e2e_peak)

    # ---- report
    phases = ["prepare", ("integrated_gradients", "mlp"), ("lime", "gbm"), ("lime", "mlp"), ("rules", "gbm"),
              ("rules", "mlp"), ("counterfactuals", "gbm"), ("counterfactuals", "mlp"), "evidence", "html", "pdf",
              "sign"]
    med_a = {k: median([res["full"].get(k, 0.0) for res in a_runs]) for k in phases}
    med_b = {k: median([res["full"].get(k, 0.0) for res in b_runs]) for k in phases if k != "evidence"}
    tot_a = median([sum(res["full"].get(k, 0.0) for k in phases) for res in a_runs])
    tot_b = median([sum(res["full"].get(k, 0.0) for k in phases) for res in b_runs])
    at_m_a = median([sum(res["at_m"].get(k, 0.0) for k in phases) for res in a_runs])
    floor_total = sum(floors.values())
    lines.append("")
    lines.append(f"=== {n} decisions x 2 models (gbm, mlp) - {r_count} repeat(s), medians"
                 + (f"; {m} of {n} decisions timed per repeat" if m < n else "") + " ===")
    rows = []
    for k in phases:
        a = med_a[k]
        b = med_b.get(k)
        f = floors.get(k) if isinstance(k, tuple) else None
        how_a = a_runs[0]["how"].get(k, "")
        how_b = b_runs[0]["how"].get(k, "") if k != "evidence" else "(none)"
        spread = [res["full"].get(k, 0.0) for res in a_runs]
        spread_b = [res["full"].get(k, 0.0) for res in b_runs]
        rows.append([phase_label(k), fmt_s(a) + (" *" if how_a.startswith(("x", "at ")) else ""),
                     "-" if b is None else fmt_s(b) + (" *" if how_b.startswith(("x", "at ")) else ""),
                     "-" if b is None or not a else fmt_x(b / a), f"{100 * a / tot_a:.0f}%",
                     "-" if f is None else fmt_s(f) + (" ~" if floor_extra.get(k) else ""),
                     "-" if f is None or not f else fmt_x(a / f), "-" if f is None or b is None or not f else fmt_x(b / f),
                     _range(spread), "-" if b is None else _range(spread_b), how_a, how_b])
    tots_a = [sum(res["full"].get(k, 0.0) for k in phases) for res in a_runs]
    tots_b = [sum(res["full"].get(k, 0.0) for k in phases) for res in b_runs]
    rows.append(["TOTAL", fmt_s(tot_a), fmt_s(tot_b), fmt_x(tot_b / tot_a), "100%", fmt_s(floor_total),
                 fmt_x(tot_a / floor_total), fmt_x(tot_b / floor_total), _range(tots_a), _range(tots_b), "", ""])
    lines.append(table(["phase", "auditor (a)", "naive (b)", "b/a", "% of a", "floor", "a/floor", "b/floor",
                        "a: min..max", "b: min..max", "a: how", "b: how"], rows, "lrrrrrrrrrll"))
    notes = [
        "* = extrapolated: 'xN/M' = measured on the first M decisions of the sample, scaled linearly to N.",
        "  HTML, PDF and signing are measured at N: the report of the N-decision evidence built with replayed",
        "    explanations (the 'evidence' row), 25 detailed decision sections per model and a register of all N.",
        "  Render and signing are the auditor's on both sides ('= auditor'): the ratio isolates the explanation work.",
        "  floor = the phase's model inputs scored in batched calls (chunks of up to 1M rows): LIME n x 5000 rows;",
        f"    DiCE n x {DICE_SAMPLE_SIZE} candidates (estimate); IG n x {N_STEPS} forward+backward rows; rules: the background",
        f"    scored once. '~' = scored up to {row_cap:,} rows, then scaled linearly.",
    ]
    lines.extend(notes)
    if a_runs[0]["how"].get("evidence", "").startswith("measured at"):
        lines.append("  evidence: run_audit at full size with every explainer replaying its M-decision results, so only")
        lines.append("    the evidence code (sampling, scoring the dataset, decisions, agreement, findings, JSON) ran on N.")
    lines.append(f"  speedup (b/a) in total: {tot_b / tot_a:.2f}x; without the shared render/sign rows: "
                 f"{(tot_b - sum(med_a[k] for k in ('html', 'pdf', 'sign'))) / max(1e-9, tot_a - sum(med_a[k] for k in ('html', 'pdf', 'sign'))):.2f}x")
    lines.append(f"  execute() end to end (policy -> signed output folder) at {m} decisions: {fmt_s(e2e)} "
                 f"(peak RSS {e2e_peak:,.0f} MB); the auditor's phases at the same {m} decisions, measured: "
                 f"{fmt_s(at_m_a)} (median)" + ("" if m < n else " - this is the full size"))
    if m < n:
        lines.append(f"    execute() at the full {n} decisions was not run (it does not fit the budget); "
                     f"the phase-sum estimate above is {fmt_s(tot_a)}.")
    counts = b_runs[-1]["counts"]
    for model_id, (rows_scored, calls) in counts.items():
        k = ("counterfactuals", model_id)
        lines.append(f"  naive DiCE ({model_id}) scored {rows_scored / m:,.0f} rows in {calls / m:.0f} model calls per decision "
                     f"(the floor assumes {DICE_SAMPLE_SIZE}); with the rows it really scored the floor would be "
                     f"{fmt_s(floors[k] * rows_scored / m / DICE_SAMPLE_SIZE)}, a/floor {fmt_x(med_a[k] / (floors[k] * rows_scored / m / DICE_SAMPLE_SIZE))}")
    # memory table
    mem_rows = []

    def mem(side, k):
        peak = PEAKS.get((n, side, k))
        return "-" if peak is None else f"{peak:,.0f} (+{GROWTH[(n, side, k)]:,.0f})"

    for k in phases:
        mem_rows.append([phase_label(k), mem("a", k), "-" if k in ("html", "pdf", "sign") else mem("b", k)])
    lines.append("")
    lines.append(f"  peak RSS per phase, MB, and (+growth over the RSS at the phase's start); "
                 f"{'kernel high-water mark reset before each phase' if PEAK_RESETS else 'process high-water mark (monotonic)'}; "
                 "the auditor's explainers and evidence share run_audit's peak;")
    earlier = max((v for k, v in PEAKS.items() if k[0] == "pdf_vs_html"), default=None)
    lines.append("  absolute values include what the allocator kept from earlier stages"
                 + (f" (the PDF-vs-HTML report, run first, peaked at {earlier:,.0f} MB)" if earlier else "")
                 + "; the growth is the phase's own:")
    lines.extend("    " + line for line in table(["phase", "auditor", "naive"], mem_rows, "lrr").splitlines())

    # counterfactual quality
    qa = cf_quality_auditor(a_runs[-1]["evidence"])
    qb = cf_quality_naive(b_runs[-1], rows_m, size_adapters)
    lines.append("")
    lines.append(f"  counterfactual quality on the same {m} decisions (last repeat; asked {CF_COUNT} per decision; "
                 "auditor: validated evidence; naive: DiCE's raw output re-scored):")
    q_rows = []
    for model_id in ("gbm", "mlp"):
        for side, q in (("auditor", qa.get(model_id)), ("naive", qb.get(model_id))):
            if q is None:
                continue
            q_rows.append([model_id, side, f"{q['returned']:.2f}" if q["returned"] is not None else "-",
                           str(q["not_flipping"]), fmt_q(q["validity"]), fmt_q(q["proximity"]), fmt_q(q["sparsity"], 2),
                           fmt_q(q["diversity"])])
    lines.extend("    " + line for line in table(
        ["model", "side", "returned/dec.", "not flipping", "validity", "proximity", "sparsity", "diversity"],
        q_rows, "llrrrrrr").splitlines())
    lines.append("    validity = valid / asked; proximity = mean per-feature distance (|delta| / range); sparsity = "
                 "features changed; diversity = mean pairwise distance (as auditor/explainers/counterfactuals.py)")
    say(f"size {n} done in {time.perf_counter() - size_start:.0f} s: auditor {fmt_s(tot_a)}, naive {fmt_s(tot_b)}, "
        f"b/a {tot_b / tot_a:.2f}x")
    # measured per-decision costs, to plan the next size
    measured = Costs(**vars(costs))
    measured.prepare = median([res["at_m"]["prepare"] for res in a_runs])
    measured.naive_prepare = median([res["at_m"]["prepare"] for res in b_runs])
    measured.a_local_pd = median([sum(v for k, v in res["at_m"].items() if isinstance(k, tuple) and k[0] in LOCAL)
                                  for res in a_runs]) / m
    measured.b_pd = median([sum(v for k, v in res["at_m"].items() if isinstance(k, tuple)
                                and k[0] in ("lime", "counterfactuals")) for res in b_runs]) / m
    measured.a_global = median([sum(v for k, v in res["at_m"].items() if isinstance(k, tuple) and k[0] not in LOCAL)
                                for res in a_runs])
    measured.evidence_pd = median([res["full"]["evidence"] for res in a_runs]) / n
    ig = ("integrated_gradients", "mlp")
    measured.a_ig_pd = median([res["full"][ig] for res in a_runs]) / n
    measured.b_ig_pd = median([res["full"][ig] for res in b_runs]) / n
    # the report's cost at this size, for planning the next (detailed sections are capped: mostly fixed)
    measured.render_fixed = sum(med_a[k] for k in ("html", "pdf", "sign"))
    measured.render_pd = 0.0
    return tot_b / tot_a, measured


def pdf_vs_html(inputs: Inputs, n_decisions: int, lines: list[str]) -> None:
    """Render one LIME-only, one-model report of n decisions as HTML and as PDF."""
    from auditor.audit import prepare, run_audit
    from auditor.plan import plan_run
    from auditor.policy import load_policy
    from auditor.report import render_html, render_pdf
    from auditor.report.pdf import _SCREEN_ONLY_ROW

    from bench import pdf_parts

    say(f"PDF vs HTML: building LIME-only evidence for {n_decisions} decisions")
    csv = inputs.tmp / "breast_cancer_569.csv"
    if n_decisions > 569:  # more decisions than rows: resample with replacement (seeded)
        import numpy as np

        frame = breast_cancer_frame()
        csv = inputs.tmp / f"breast_cancer_resampled_{n_decisions}.csv"
        frame.iloc[np.random.default_rng(SEED).integers(0, len(frame), size=n_decisions)].to_csv(csv, index=False)
    path = write_policy(inputs.tmp / "policy_lime_only.yaml", csv, inputs.train_csv, n_decisions,
                        explanations=[{"type": "lime", "num_samples": 100}], models=("gbm",))
    policy = load_policy(path)
    evidence = run_audit(plan_run(policy), prepare(policy))
    decisions = sum(len(s.decisions) for s in evidence.subjects)
    lines.append("")
    lines.append(f"=== PDF vs HTML rendering: one report of {decisions} decisions (gbm, LIME-only evidence, "
                 "LIME num_samples 100 to build it quickly) ===")
    detailed = evidence.policy["report"]["max_decisions"]
    every = evidence.model_copy(update={"policy": {**evidence.policy,
                                                   "report": {**evidence.policy["report"], "max_decisions": None}}})
    for label, ev in ((f"as the auditor writes it ({detailed} detailed decision sections + a register of all "
                       f"{decisions})", evidence), ("every decision in a detailed section (max_decisions: null)", every)):
        say(f"PDF vs HTML: rendering, {label}")
        key = ("pdf_vs_html", label[:8])
        t: dict = {}
        with phase(key, t, "html"):
            html = render_html(ev, generated_at=datetime.now(timezone.utc))
        with phase(key, t, "pdf"):
            pdf = render_pdf(html)
        lines.append(f"  {label}:")
        lines.append(f"    render_html: {fmt_s(t['html'])} ({len(html) / 1e6:.1f} MB, peak RSS {PEAKS[key + ('html',)]:,.0f} MB)")
        lines.append(f"    render_pdf:  {fmt_s(t['pdf'])} ({len(pdf) / 1e6:.1f} MB, peak RSS {PEAKS[key + ('pdf',)]:,.0f} MB)")
        lines.append(f"    PDF / HTML: {t['pdf'] / t['html']:.1f}x; PDF per decision {1000 * t['pdf'] / decisions:.0f} ms")
        if ev is evidence:  # where WeasyPrint's time goes, and the parts against one piece
            say("PDF vs HTML: the same report printed in one piece, step by step")
            stripped = _SCREEN_ONLY_ROW.sub("", html)
            one = pdf_parts.single(stripped)
            lines.extend(pdf_parts.describe(one))
            lines.append(pdf_parts.compared(one, stripped, t["pdf"], os.cpu_count() or 1))


def big_dataset(inputs: Inputs, lines: list[str], rows: int = 1_000_000) -> None:
    """A 1,000,000 x 30 Parquet file through auditor.datasets.load_dataset, then 200 decisions sampled the way
    run_audit samples them (every row scored by the model first)."""
    import gc

    import numpy as np
    import pandas as pd

    from auditor.datasets import load_dataset
    from auditor.models import load_model
    from auditor.policy import load_policy
    from auditor.sampling import draw_sample

    say(f"big dataset: writing {rows:,} x 30 Parquet")
    frame = breast_cancer_frame()
    rng = np.random.default_rng(SEED)
    pick = rng.integers(0, len(frame), size=rows)
    values = frame[inputs.names].to_numpy()[pick] * rng.normal(1.0, 0.02, (rows, len(inputs.names)))
    big = pd.DataFrame(values, columns=inputs.names)
    big["diagnosis"] = frame["diagnosis"].to_numpy()[pick]
    path = inputs.tmp / "big.parquet"
    big.to_parquet(path, index=False)
    size_mb = path.stat().st_size / 1e6
    del big, values, pick
    gc.collect()
    policy_path = write_policy(inputs.tmp / "policy_big.yaml", path, inputs.train_csv, 200,
                               explanations=[{"type": "lime", "num_samples": 100}], models=("gbm",))
    policy = load_policy(policy_path)
    spec = policy.dataset("data")
    say("big dataset: load_dataset")
    rss_before = rss_mb()
    reset_peak()
    t = time.perf_counter()
    data = load_dataset(spec, policy)
    load_s = time.perf_counter() - t
    load_peak = peak_mb()
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], load_peak)
    rss_after_load = rss_mb()
    # The Python/numpy allocations of a second load, traced: tracemalloc slows every allocation several times,
    # so the time above is of an untraced load.
    del data
    gc.collect()
    tracemalloc.start()
    data = load_dataset(spec, policy)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    model = load_model(policy.model("gbm"), policy, data)
    reset_peak()
    t = time.perf_counter()
    proba = model.predict_proba(data.X)  # run_audit scores every row (performance, and the sampling strategies)
    score_s = time.perf_counter() - t
    t = time.perf_counter()
    sample = draw_sample("stratified", 200, SEED, y_true=data.y, proba=proba, classes=model.classes, ids=data.ids)
    sample_s = time.perf_counter() - t
    score_peak = peak_mb()
    PROCESS_PEAK[0] = max(PROCESS_PEAK[0], score_peak)
    rss_after = rss_mb()
    lines.append("")
    lines.append(f"=== {rows:,} x 30 Parquet ({size_mb:.0f} MB on disk) through auditor.datasets.load_dataset ===")
    lines.append(f"  load_dataset: {fmt_s(load_s)}; RSS {rss_before:,.0f} -> {rss_after_load:,.0f} MB, peak {load_peak:,.0f} MB; "
                 f"tracemalloc peak (Python/numpy allocations) {traced_peak / 2**20:,.0f} MB")
    lines.append(f"  score every row with the gbm model (as run_audit does before sampling): {fmt_s(score_s)}; "
                 f"draw_sample 200 stratified: {fmt_s(sample_s)}; peak {score_peak:,.0f} MB; RSS after {rss_after:,.0f} MB")
    lines.append(f"  sampled {len(sample.rows)} decisions")
    del data, proba, model
    gc.collect()


def other_cases(quick: bool, lines: list[str]) -> None:
    """The cases run by their own scripts, each printed as that script prints it: Shapley values on the GBM, the
    tree engine against shap's TreeExplainer (``shapley_trees.py``); the credit sample's categorical Pipeline and
    MLP, LIME and counterfactuals against the floor of scoring their rows in the model's own input form
    (``pipeline_categorical.py``); and the credit audit at 1,000 and 10,000 decisions per model on a two-worker
    Dask cluster (``scale_dask.py``: wall time, time and peak memory per phase, the register in Chromium)."""
    from bench import pipeline_categorical, scale_dask, shapley_trees

    decisions = 20 if quick else 200
    say(f"Shapley on trees: {decisions} decisions, tree engine and shap")
    lines += ["", f"Shapley values, breast-cancer GBM, {decisions} decisions (bench/shapley_trees.py)"]
    try:
        lines += shapley_trees.table(shapley_trees.run(decisions, 100, repeats=3, enumerate_pair=not quick))
    except ImportError as error:  # shap is a benchmark dependency: make bench installs it
        lines.append(f"not run: {error} (make bench installs requirements-bench.lock)")
    say(f"categorical pipelines: {decisions} credit decisions")
    result = pipeline_categorical.run(decisions, repeats=1 if quick else 2)
    lines += ["", "credit sample, Pipeline(ColumnTransformer -> gradient boosting) and MLP: the auditor's phase "
              "against the floor of scoring its rows in the model's own input form (bench/pipeline_categorical.py); "
              "overhead = (auditor - floor) / floor", "", pipeline_categorical.table(result)]
    if not quick:
        say("Dask: the credit audit at 1,000 and 10,000 decisions per model on a two-worker LocalCluster")
        lines += ["", "credit audit, 1,000 and 10,000 decisions per model, two-worker Dask LocalCluster, each size in a "
                  "fresh process: seconds and the main process's peak RSS per phase (bench/scale_dask.py)", "",
                  scale_dask.report(scale_dask.run([1000, 10000]))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help="decisions per audit, comma-separated (default 200,2000; quick: 20)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per size (default 3; quick: 1); "
                        "reduced automatically where the budget does not allow them")
    parser.add_argument("--quick", action="store_true", help="small configuration (~2 minutes): 20 decisions, 1 repeat, "
                        "no 2,000 size, no 1M-row dataset, a 60-decision PDF-vs-HTML report")
    parser.add_argument("--budget", type=float, default=None,
                        help="wall-clock target for the whole run, seconds (default 760, which keeps the run under 15 minutes; quick: 110)")
    parser.add_argument("--pdf-decisions", type=int, default=None, help="decisions in the PDF-vs-HTML report (default 500)")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([20] if quick else [200, 2000])
    repeats = args.repeats or (1 if quick else 3)
    budget = args.budget or (110.0 if quick else 760.0)
    pdf_n = args.pdf_decisions or (60 if quick else 500)
    m_min = 3 if quick else 10
    row_cap = 200_000 if quick else 2_000_000
    clock = Clock(budget)
    load_start = os.getloadavg()

    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    global PEAK_RESETS
    PEAK_RESETS = reset_peak()
    say(f"importing; budget {budget:.0f} s, sizes {sizes}, repeats {repeats}")
    import torch

    from auditor.audit import prepare
    from auditor.policy import load_policy

    seed_everything(SEED)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        inputs = make_inputs(tmp, sizes)
        adapters = {p.model.id: p.model for p in prepare(load_policy(inputs.policies[sizes[0]]))}
        say("pilot: 3 decisions on both sides (warm-up and per-decision cost estimates)")
        costs = pilot(inputs, sizes[0], adapters, 3)
        say(f"pilot: auditor {costs.a_local_pd:.2f} s/decision explaining, naive {costs.b_pd:.2f} s/decision "
            f"(LIME+DiCE), report {costs.render_pd:.2f} s/decision + {costs.render_fixed:.1f} s")

        # The PDF-vs-HTML report and the other scripts' cases first (their cost is fixed), so that the size
        # comparisons can use whatever time is left; the 1M-row data set last (its ~1 GB would stay in the process's RSS), time reserved.
        pdf_vs_html(inputs, pdf_n, lines)
        other_cases(quick, lines)
        reserve = 10.0 if quick else 45.0
        ratios = {}
        size_lines: list[str] = []
        for i, n in enumerate(sizes):
            remaining = clock.left() - reserve
            later = len(sizes) - i - 1
            share = remaining if later == 0 else remaining * (0.55 if later == 1 else 1.0 / (later + 1))
            ratios[n], costs = run_size(inputs, n, costs, max(share, 30.0), repeats, m_min, row_cap, adapters,
                                        size_lines)
        if not quick:
            big_dataset(inputs, lines)
        lines = size_lines + lines

    ru = max(PROCESS_PEAK[0], peak_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = cpu.ru_utime + cpu.ru_stime
    load_end = os.getloadavg()
    out = [
        "auditor vs naive per-decision loop - breast cancer (gbm skops + 30-64-64-2 torch.export MLP)",
        f"machine: {os.cpu_count()} CPU(s), torch threads {torch.get_num_threads()}, Python {sys.version.split()[0]}; "
        f"IG n_steps {N_STEPS}, LIME num_samples {LIME_SAMPLES}, DiCE random {CF_COUNT} per decision, rules depth 3; "
        f"stratified sample, seed {SEED}",
        f"run: sizes {sizes}, repeats {repeats} (reduced per size where the {budget:.0f} s budget needs it), "
        f"budget {budget:.0f} s",
        *lines,
        "",
        f"machine load: 1-minute load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end "
        f"({os.cpu_count()} CPUs); this process used {cpu_s:,.0f} s of CPU in {clock.elapsed():,.0f} s of wall time"
        + (" - other work was running on this machine: timings are noisy" if max(load_start[0], load_end[0]) > (os.cpu_count() or 1) + 0.5
           else ""),
        f"process peak RSS: {ru:,.0f} MB (max of getrusage ru_maxrss and the per-phase high-water marks, since "
        f"resetting the mark also resets ru_maxrss); wall time {clock.elapsed():.0f} s",
    ]
    target = 200 if 200 in ratios else sizes[0]
    if target != 200:
        out.append(f"(no 200-decision size in this run: the speedup below is for {target} decisions)")
    sys.stderr.flush()
    print("\n".join(out))
    print(f"total speedup vs naive: {ratios[target]:.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
