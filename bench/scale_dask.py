"""The credit audit at scale on a two-worker Dask LocalCluster: wall time per phase and peak memory per size.

    .venv/bin/python bench/scale_dask.py                       # 1,000 and 10,000 decisions per model
    .venv/bin/python bench/scale_dask.py --sizes 1000 --full   # the credit policy's own explanations

The audited data is the credit test split (300 rows) resampled with replacement (seeded) to N rows, each with
a new application id, and the policy a copy of ``policies/credit_finance.yaml`` pointed at it, with
``--sample-size N`` (every row is a decision, for both models). By default the explanations are a lighter copy
of the policy's (LIME at 500 perturbations and one repeat, Integrated Gradients at 16 steps, one counterfactual
per adverse decision, surrogate rules; no Shapley values or permutation importance): the policy's own set takes
hours at 10,000 decisions on two CPUs. ``--full`` keeps the policy's set.

Each size runs in a fresh process through ``auditor.pipeline.execute`` with ``--executor dask`` (two
single-threaded workers), signed with a throw-away development identity. Phases: prepare, each explainer (as the
executor runs it, or in this process for the global ones), evidence (the rest of the audit, and evidence.json
streamed to disk), HTML, PDF, sign, write (everything else: the schema, model card, manifest, files). Peak RSS is
the kernel's high-water mark of this process, per phase (reset at each phase's start), and of each worker. The
HTML report is then opened in headless Chromium (``/usr/bin/chromium``, as the browser tests do): the seconds to
load it, and how long the register's script takes to filter, clear and sort one model's register. It prints
figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "credit_finance.yaml"
SEED = 11
LIGHT_EXPLANATIONS = [
    {"type": "lime", "num_samples": 500, "repeats": 1},
    {"type": "integrated_gradients", "n_steps": 16},
    {"type": "rules", "max_depth": 3, "min_samples_leaf": 25, "min_fidelity": 0.8},
    {"type": "counterfactuals", "method": "random", "count": 1,
     "immutable": ["age", "personal_status_sex", "foreign_worker", "credit_history"],
     "permitted_range": {"duration_months": [6, 60], "credit_amount": [250, 20000]}},
]


def write_inputs(folder: Path, n: int, *, full: bool) -> Path:
    """The resampled data (n rows) and a copy of the credit policy pointing at it; returns the policy's path."""
    import numpy as np
    import pandas as pd
    import yaml

    policy = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    for entry in policy["models"] + policy["datasets"]:
        entry["path"] = str((POLICY.parent / entry["path"]).resolve())
    audited = next(d for d in policy["datasets"] if d["id"] == "applications")
    frame = pd.read_csv(audited["path"])
    rows = np.random.default_rng(SEED).integers(0, len(frame), size=n)
    sample = frame.iloc[rows].reset_index(drop=True)
    sample[audited["id_column"]] = [f"R-{i:06d}" for i in range(n)]
    csv = folder / f"applications_{n}.csv"
    sample.to_csv(csv, index=False)
    audited["path"] = str(csv)
    audited["description"] = f"The 300 held-out applications resampled with replacement to {n} (seed {SEED})."
    if not full:
        policy["explanations"] = LIGHT_EXPLANATIONS
        names = {e["type"] for e in LIGHT_EXPLANATIONS} | {"performance", "fairness", "principal_reasons"}
        policy["thresholds"] = [t for t in policy["thresholds"] if t["metric"].split(".")[0] in names]
    path = folder / f"policy_{n}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _peak_mb() -> float:
    """This process's peak RSS: the kernel's high-water mark of its memory (VmHWM). Not ``ru_maxrss``, which Linux
    carries over fork and exec: a process started by a large one (this script run by audit_vs_naive.py, a Dask
    worker started by this one) would read its parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Peaks:
    """The main process's peak RSS per phase: at every phase boundary the kernel's high-water mark (VmHWM) goes to
    the phase that was running (the innermost timed one, else "write") and is reset (``/proc/self/clear_refs``)."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.mb: dict[str, float] = {}

    def boundary(self) -> None:
        name = self.stack[-1] if self.stack else "write"
        self.mb[name] = max(self.mb.get(name, 0.0), _peak_mb())
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
                refs.write("5")
        except OSError:  # not Linux, or not allowed: the phases then read the process's peak so far
            pass


def measure(n: int, *, full: bool = False) -> dict:
    """One size in this process: {'decisions', 'phases' (seconds), 'wall_s', 'phase_peak_mb' (the main process's peak
    RSS in each phase), 'main_peak_mb', 'worker_peak_mb',
    'evidence_mb', 'html_mb', 'pdf_mb', 'pdf_pages'}."""
    from auditor import executors, pipeline
    from auditor.explainers import EXPLAINERS
    from auditor.output import PartialFolder
    from auditor.signing import Identity, init_identity

    phases: dict[str, float] = {}
    inside = [0.0]  # seconds of timed phases inside run_audit
    peaks = _Peaks()

    def timed(name, fn, *, in_audit=False):
        def wrapper(*args, **kwargs):
            peaks.boundary()
            peaks.stack.append(name)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t
                peaks.boundary()
                peaks.stack.pop()
                phases[name] = phases.get(name, 0.0) + spent
                if in_audit:
                    inside[0] += spent
        return wrapper

    workers: dict[str, float] = {}
    dask_explain, dask_close = executors.DaskExecutor.explain, executors.DaskExecutor.close

    def explain(self, explainer, *args, **kwargs):
        return timed(f"explain {explainer.spec.name}", dask_explain, in_audit=True)(self, explainer, *args, **kwargs)

    def close(self):
        try:
            found = self.client.run(_peak_mb)
            workers.update({w.rsplit(":", 1)[-1]: mb for w, mb in found.items()})
        except Exception:  # noqa: BLE001 - a figure missing, not a failed run
            pass
        dask_close(self)

    executors.DaskExecutor.explain, executors.DaskExecutor.close = explain, close
    for cls in EXPLAINERS.values():
        if cls.scope == "global":
            original = cls.explain

            def global_explain(self, *args, _original=original, **kwargs):
                return timed(f"explain {self.spec.name}", _original, in_audit=True)(self, *args, **kwargs)
            cls.explain = global_explain
    for name, attr in (("prepare", "prepare"), ("audit", "run_audit"), ("html", "render_html"), ("pdf", "render_pdf")):
        setattr(pipeline, attr, timed(name, getattr(pipeline, attr)))
    PartialFolder.stream = timed("evidence json", PartialFolder.stream)
    Identity.sign_pdf = timed("sign", Identity.sign_pdf)
    Identity.sign_manifest = timed("sign", Identity.sign_manifest)

    with tempfile.TemporaryDirectory(prefix="scale-dask-") as tmp:
        tmp = Path(tmp)
        policy = write_inputs(tmp, n, full=full)
        init_identity(tmp / "identity", "benchmark signer (development)")
        t = time.perf_counter()
        outcome = pipeline.execute(policy, out=tmp / "out", sample_size=n, executor="dask",
                                   identity_dir=tmp / "identity")
        wall = time.perf_counter() - t
        out = tmp / "out"
        pdf = (out / "report.pdf").read_bytes()
        browser = register_in_browser(out / "report.html")
        sizes = {k: (out / f).stat().st_size / 2**20 for k, f in
                 (("evidence_mb", "evidence.json"), ("html_mb", "report.html"), ("pdf_mb", "report.pdf"))}
    decisions = sum(len(s.decisions) for s in outcome.evidence.subjects)
    audit = phases.pop("audit")
    explained = {k: v for k, v in phases.items() if k.startswith("explain ")}
    ordered = {"prepare": phases.get("prepare", 0.0), **explained,
               "evidence": audit - inside[0] + phases.get("evidence json", 0.0),
               "html": phases.get("html", 0.0), "pdf": phases.get("pdf", 0.0), "sign": phases.get("sign", 0.0)}
    ordered["write"] = wall - sum(ordered.values())
    peaks.boundary()
    phase_mb = {"evidence": max(peaks.mb.get("audit", 0.0), peaks.mb.get("evidence json", 0.0))}
    phase_mb.update({k: v for k, v in peaks.mb.items() if k not in ("audit", "evidence json")})
    return {"decisions_per_model": n, "decisions": decisions, "phases": ordered, "wall_s": wall,
            "phase_peak_mb": {k: phase_mb.get(k, 0.0) for k in ordered},
            "main_peak_mb": max(phase_mb.values()), "worker_peak_mb": workers, **sizes,
            "pdf_pages": len(re.findall(rb"/Type\s*/Page[^s]", pdf)), "browser": browser}


CHROMIUM = Path("/usr/bin/chromium")

REGISTER_TIMING = """async () => {
  // The first register (one model's decisions): its rows, and the milliseconds its script takes, each until the
  // next frame is drawn, to filter them by a word (an id prefix), to show only the adverse decisions (the Show
  // menu), to clear both, to sort the rows by the probability column, and to show every line (its "Show all").
  const frame = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  const table = document.querySelector("table.register");
  const body = table.tBodies[0];
  const controls = table.closest("section").querySelector(".register-controls");
  const search = controls.querySelector("input"), show = controls.querySelector("select");
  const shown = () => [...body.rows].filter(r => !r.classList.contains("filtered-out")).length;
  const timed = async (act) => { const t = performance.now(); act(); await frame(); return performance.now() - t; };
  const set = (el, value, type) => { el.value = value; el.dispatchEvent(new Event(type)); };
  const filter = await timed(() => set(search, "R-0000", "input"));
  const matched = shown();
  set(search, "", "input");
  const adverse_ms = await timed(() => set(show, "adverse", "change"));
  const adverse = shown();
  const clear = await timed(() => set(show, "", "change"));
  const sort = await timed(() => table.tHead.rows[0].cells[3].querySelector("button").click());
  const paged = shown();  // the lines on show at a time (all of them in a short register)
  const more = table.closest("section").querySelector(".register-more");
  const all_ms = more.hidden ? null : await timed(() => more.querySelectorAll("button")[1].click());
  return {rows: body.rows.length, matched, adverse, paged, filter_ms: filter, adverse_ms, clear_ms: clear,
          sort_ms: sort, all_ms, all: shown()};
}"""


def register_in_browser(html: Path) -> dict | None:
    """The HTML report's register in headless Chromium (Debian's, driven by Playwright): seconds to load the page,
    and the first register's rows and script timings (REGISTER_TIMING). None without Chromium or Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.is_file():
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t = time.perf_counter()
            page.goto(html.as_uri(), wait_until="load")
            loaded = time.perf_counter() - t
            return {"load_s": loaded, **page.evaluate(REGISTER_TIMING)}
        finally:
            browser.close()


def run(sizes: list[int] = (1000, 10000), *, full: bool = False) -> dict:
    """Every size in a fresh Python process (clean peak-memory marks); {size: measure(size)}."""
    results = {}
    for n in sizes:
        command = [sys.executable, __file__, "--one", str(n)] + (["--full"] if full else [])
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{n} decisions: exit {done.returncode}\n{done.stderr[-3000:]}")
        results[n] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def report(results: dict) -> str:
    sizes = list(results)
    names = list(dict.fromkeys(k for r in results.values() for k in r["phases"]))
    lines = ["| phase | " + " | ".join(f"{n:,} / model" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{results[n]['phases'].get(name, 0.0):.1f} s, {results[n]['phase_peak_mb'].get(name, 0.0):,.0f} MB"
            for n in sizes) + " |")
    rows = [("wall time", lambda r: f"{r['wall_s']:.1f} s"),
            ("decisions (both models)", lambda r: f"{r['decisions']:,}"),
            ("peak RSS, main process", lambda r: f"{r['main_peak_mb']:.0f} MB"),
            ("peak RSS, each worker", lambda r: ", ".join(f"{v:.0f}" for v in r["worker_peak_mb"].values()) + " MB"),
            ("evidence.json", lambda r: f"{r['evidence_mb']:.1f} MB"),
            ("report.html", lambda r: f"{r['html_mb']:.1f} MB"),
            ("report.pdf", lambda r: f"{r['pdf_mb']:.1f} MB, {r['pdf_pages']} pages"),
            ("HTML in Chromium: load", lambda r: _browser(r, lambda b: f"{b['load_s']:.1f} s")),
            ("register in Chromium (one model)",
             lambda r: _browser(r, lambda b: f"{b['rows']:,} rows, {b['paged']:,} on show at a time")),
            ("filter by a word", lambda r: _browser(r, lambda b: f"{b['filter_ms']:,.0f} ms ({b['matched']:,} rows)")),
            ("show the adverse ones", lambda r: _browser(r, lambda b: f"{b['adverse_ms']:,.0f} ms ({b['adverse']:,})")),
            ("show all again", lambda r: _browser(r, lambda b: f"{b['clear_ms']:,.0f} ms")),
            ("sort by probability", lambda r: _browser(r, lambda b: f"{b['sort_ms']:,.0f} ms")),
            ("show all lines", lambda r: _browser(r, lambda b: "(all on show)" if b["all_ms"] is None
                                                  else f"{b['all_ms']:,.0f} ms ({b['all']:,})"))]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(results[n]) for n in sizes) + " |")
    return "\n".join(lines)


def _browser(result: dict, cell) -> str:
    return "no Chromium" if result.get("browser") is None else cell(result["browser"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000],
                        help="decisions per model, comma-separated (default 1000,10000)")
    parser.add_argument("--full", action="store_true", help="the credit policy's own explanations")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, full=args.full)))
        return
    print(report(run(args.sizes, full=args.full)))


if __name__ == "__main__":
    main()
