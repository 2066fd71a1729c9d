"""The model card: ``model-card.cdx.json``, a CycloneDX 1.6 ML-BOM of the audited models.

One component of type ``machine-learning-model`` per audited model, with its SHA-256 and file format, and a
``modelCard`` that holds:

- ``modelParameters``: the task (classification or regression), the model's architecture as the auditor read
  it, the audited dataset, the inputs (the features; an image or a text) and the outputs (a probability per
  class, or the score and its decision cut-off);
- ``quantitativeAnalysis.performanceMetrics``: every figure of the evidence's ``performance`` (accuracy, ROC AUC,
  Brier score, log loss, per-class precision, recall and F1, sensitivity and specificity at the operating point;
  RMSE, MAE, R² and the cut-off's figures for regression), each with its confidence interval where the evidence
  has one, and every group figure of ``subgroups`` as a slice (``personal_status_sex = male : single``). A value
  is the figure's JSON text in ``evidence.json``, so it reads back as exactly the same float. Curves and tables
  (calibration bins, residual deciles, confusion matrices) stay in the evidence;
- ``considerations``: the policy's intended use and population (use cases), its limitations and out-of-scope
  uses, the model's warnings and the groups with too few rows (technical limitations), the trade-off at the
  operating point or cut-off, and with protected features one fairness assessment per feature: the group with
  the lowest rate of the outcome counted, its adverse impact ratio, the rate gaps and possible proxies, and the
  policy's thresholds on the feature, in words from the evidence's figures.

Every figure is read from the ``evidence.json`` being written, never recomputed. The BOM refers to
``evidence.json``, ``report.html``, ``report.pdf`` and ``policy.yaml`` by SHA-256, its timestamp is the run's
start, and its serial number is a UUID 5 of the SHA-256 of every file it describes (:func:`serial_number`): the same
files and start time give the same bytes, and other files (a report signed at another time) another serial number. cyclonedx-python-lib 11 has no model-card classes, so the card is built as plain JSON; the tests validate
it against the CycloneDX 1.6 schema that package ships.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from .numbers import listed, num, pct
from .paths import path as evidence_path
from .provenance import canonical_bytes, sha256_bytes

__all__ = ["MODEL_CARD", "SPEC_VERSION", "build_model_card"]

MODEL_CARD = "model-card.cdx.json"
SPEC_VERSION = "1.6"
SERIAL_NAMESPACE = uuid.UUID("e4cfff83-b75c-4618-b5b8-2c61c1a66aa0")
"""The namespace of the serial numbers (see :func:`serial_number`)."""


def serial_number(files: dict[str, bytes]) -> str:
    """``urn:uuid:`` + the UUID 5, in :data:`SERIAL_NAMESPACE`, of each file's name and SHA-256, by name."""
    listing = "\n".join(f"{name} {sha256_bytes(data)}" for name, data in sorted(files.items()))
    return f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, listing)}"
REFERENCES = (("evidence.json", "evidence", "The audit's evidence: every figure of this card, with its path."),
              ("report.html", "documentation", "The audit report (HTML)."),
              ("report.pdf", "documentation", "The audit report (PDF, signed when the audit is)."),
              ("policy.yaml", "configuration", "The audit policy as it was run."))


def build_model_card(files: dict[str, bytes], *, started: datetime, evidence: dict | None = None) -> bytes:
    """The card for the output files ``files`` (file name -> bytes; ``evidence.json`` among them) of a run that
    started at ``started``, as canonical JSON (sorted keys, 2-space indent, trailing newline).

    ``evidence``: the evidence as ``evidence.json`` reads back (``Evidence.model_dump(mode="json")``, which is what
    that file's text is made from), when the caller has it; the per-decision explanations may be left out, as the
    card reads none of them. Without it the file's bytes are parsed, which at 10,000 decisions holds a copy of
    every explanation as Python objects."""
    if evidence is None:
        evidence = json.loads(files["evidence.json"])
    audit = evidence.get("audit", {})
    by_model: dict[str, list[int]] = {}
    for i, subject in enumerate(evidence["subjects"]):
        by_model.setdefault(subject["model"]["id"], []).append(i)
    card = {
        "$schema": f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": serial_number(files),
        "version": 1,
        "metadata": {
            "timestamp": started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "auditor",
                                      "version": evidence["auditor_version"]}]},
            "properties": _properties([("auditor:audit_id", audit.get("id")), ("auditor:title", audit.get("title")),
                                       ("auditor:owner", audit.get("owner")),
                                       ("auditor:policy_sha256", evidence.get("policy_sha256"))]),
        },
        "components": [_component(evidence, indices) for indices in by_model.values()],
        "externalReferences": [
            {"url": name, "type": kind, "comment": comment,
             "hashes": [{"alg": "SHA-256", "content": sha256_bytes(files[name])}]}
            for name, kind, comment in REFERENCES if name in files],
    }
    return canonical_bytes(card)


def _properties(pairs) -> list[dict[str, str]]:
    return [{"name": name, "value": str(value)} for name, value in pairs if value is not None]


def _component(evidence: dict, indices: list[int]) -> dict[str, Any]:
    subjects = [evidence["subjects"][i] for i in indices]
    model = subjects[0]["model"]
    several = len(subjects) > 1
    prefixes = [f"{s['dataset']['id']}: " if several else "" for s in subjects]
    metrics: list[dict] = []
    for subject, prefix in zip(subjects, prefixes):
        metrics += _performance_metrics(subject, prefix)
    card: dict[str, Any] = {
        "modelParameters": _parameters(model, subjects),
        "quantitativeAnalysis": {"performanceMetrics": metrics},
    }
    considerations = _considerations(evidence, indices, prefixes)
    if considerations:
        card["considerations"] = considerations
    component = {
        "type": "machine-learning-model",
        "bom-ref": f"model:{model['id']}",
        "name": model["id"],
        "version": model.get("version"),
        "description": model.get("description"),
        "hashes": [{"alg": "SHA-256", "content": model["sha256"]}],
        "modelCard": card,
        "properties": _properties([
            ("auditor:format", model["format"]), ("auditor:path", model.get("path")),
            ("auditor:positive_class", model.get("positive_class") if model.get("task") != "regression" else None),
            ("auditor:evidence", ", ".join(f"subjects[{i}]" for i in indices))]),
    }
    return {k: v for k, v in component.items() if v is not None}


# --- model parameters ------------------------------------------------------------------------------------


def _parameters(model: dict, subjects: list[dict]) -> dict[str, Any]:
    task = model.get("task", "classification")
    datasets, seen = [], set()
    for s in subjects:
        d = s["dataset"]
        if d["id"] in seen:
            continue
        seen.add(d["id"])
        datasets.append({"type": "dataset", "name": d["id"], "description": d.get("description") or d["source"],
                         "contents": {"properties": _properties([("auditor:source", d["source"]),
                                                                 ("auditor:sha256", d.get("sha256")),
                                                                 ("auditor:rows", d["rows"])])}})
    return {"task": task, "modelArchitecture": model["kind"], "datasets": datasets,
            "inputs": _inputs(subjects[0]["dataset"]), "outputs": _outputs(model)}


def _inputs(dataset: dict) -> list[dict[str, str]]:
    if dataset.get("kind", "tabular") != "tabular":
        return [{"format": dataset["kind"]}]
    out = []
    for f in dataset["features"]:
        name = f["name"] if f["display_name"] == f["name"] else f"{f['name']} ({f['display_name']})"
        if f["type"] == "categorical":
            out.append({"format": f"{name}: categorical [{listed(f.get('categories') or [], limit=12)}]"})
        else:
            out.append({"format": f"{name}: numeric" + (f", {f['unit']}" if f.get("unit") else "")})
    return out


def _side(decision: dict) -> tuple[str, float]:
    rule = decision["adverse_if"]
    return ("above", rule["above"]) if rule.get("above") is not None else ("below", rule["below"])


def _outputs(model: dict) -> list[dict[str, str]]:
    if model.get("task") != "regression":
        return [{"format": f"probability of {name}"} for name in model["class_names"]]
    out = [{"format": "score: numeric"}]
    decision = model.get("decision")
    if decision:
        side, value = _side(decision)
        out.append({"format": f"decision: {decision['adverse']} when the score is {side} {num(value, 6)}, "
                              f"else {decision['favourable']}"})
    return out


# --- performance -----------------------------------------------------------------------------------------


def _text(value: float) -> str:
    return json.dumps(value)


def _figures(node: dict, skip: tuple[str, ...] = ()) -> list[tuple[str, float, dict | None]]:
    """The figures of one evidence object: its float fields (None left out), each with its ``<name>_ci``."""
    return [(k, v, node.get(f"{k}_ci")) for k, v in node.items()
            if isinstance(v, float) and not k.endswith("_ci") and k not in skip]


def _metric(kind: str, value: float, ci: dict | None, slice_: str | None) -> dict[str, Any]:
    metric: dict[str, Any] = {"type": kind, "value": _text(value)}
    if slice_:
        metric["slice"] = slice_
    if ci:
        metric["confidenceInterval"] = {"lowerBound": _text(ci["lower"]), "upperBound": _text(ci["upper"])}
    return metric


def _class_name(model: dict, label) -> str:
    classes = [str(c) for c in model["classes"]]
    return model["class_names"][classes.index(str(label))] if str(label) in classes else str(label)


def _performance_metrics(subject: dict, prefix: str) -> list[dict]:
    """Every figure of the subject's performance, then of each group of its subgroups (as slices)."""
    perf, model = subject["performance"], subject["model"]
    overall = subject["dataset"]["id"] if prefix else None  # a model audited on several datasets: which one
    out = [_metric(k, v, ci, overall) for k, v, ci in _figures(perf)]
    for row in perf.get("per_class") or []:
        out += [_metric(f"{k} ({row['name']})", v, ci, overall) for k, v, ci in _figures(row)]
    point = perf.get("operating_point")
    if point:
        where = f"at P({_class_name(model, point['positive'])}) >= {num(point['threshold'], 6)}"
        out += [_metric(f"{k} {where}", v, ci, overall) for k, v, ci in _figures(point, skip=("threshold",))]
    decision = perf.get("decision")
    if decision:
        adverse = decision["labels"][1]
        where = f"of the decision ({adverse} when the score is {decision['side']} {num(decision['cut_off'], 6)})"
        out += [_metric(f"{k} {where}", v, ci, overall) for k, v, ci in _figures(decision, skip=("cut_off",))]
    for feature, groups in (subject.get("subgroups") or {}).items():
        for g in groups:
            out += [_metric(k, v, ci, f"{prefix}{feature} = {g['group']}") for k, v, ci in _figures(g)]
    return out


# --- considerations --------------------------------------------------------------------------------------


def _considerations(evidence: dict, indices: list[int], prefixes: list[str]) -> dict[str, list]:
    audit = evidence.get("audit", {})
    use = [audit["intended_use"]] if audit.get("intended_use") else []
    if audit.get("population"):
        use.append(f"Population: {audit['population']}")
    limits = list(audit.get("limitations") or []) + [f"Out of scope: {x}" for x in audit.get("out_of_scope") or []]
    tradeoffs, fairness = [], []
    min_rows = (evidence.get("policy", {}).get("performance") or {}).get("min_group_rows")
    for i, prefix in zip(indices, prefixes):
        subject = evidence["subjects"][i]
        if i == indices[0]:
            limits += subject["model"].get("warnings") or []
        limits += _small_groups(subject, prefix, min_rows)
        tradeoff = _tradeoff(subject)
        if tradeoff:
            tradeoffs.append(prefix + tradeoff)
        protected = (subject.get("fairness") or {}).get("features") or []
        fairness += [_assessment(evidence, i, j, prefix) for j in range(len(protected))]
    out = {"useCases": use, "technicalLimitations": limits, "performanceTradeoffs": tradeoffs,
           "fairnessAssessments": fairness}
    return {k: v for k, v in out.items() if v}


def _small_groups(subject: dict, prefix: str, min_rows: int | None) -> list[str]:
    small = [f"{feature} = {g['group']} ({g['rows']} rows)"
             for feature, groups in (subject.get("subgroups") or {}).items() for g in groups if g.get("too_few_rows")]
    if not small:
        return []
    bound = f" (fewer than {min_rows} rows, performance.min_group_rows)" if min_rows else ""
    return [f"{prefix}Groups with too few rows to conclude from{bound}: {listed(small)}."]


def _tradeoff(subject: dict) -> str | None:
    perf, model = subject["performance"], subject["model"]
    point, decision = perf.get("operating_point"), perf.get("decision")
    if point and point.get("sensitivity") is not None and point.get("specificity") is not None:
        positive = _class_name(model, point["positive"])
        return (f"A decision is {positive} when P({positive}) >= {num(point['threshold'], 6)}: there sensitivity is "
                f"{num(point['sensitivity'])} and specificity {num(point['specificity'])}; a lower threshold raises "
                f"sensitivity at the cost of specificity, a higher one the reverse.")
    if decision:
        adverse = decision["labels"][1]
        return (f"A score {decision['side']} {num(decision['cut_off'], 6)} is decided {adverse}: the decision falls "
                f"on the true value's side for {pct(decision['accuracy'])} of the rows, and decides "
                f"{pct(decision['adverse_rate'])} {adverse} against {pct(decision['observed_adverse_rate'])} "
                f"observed.")
    return None


def _ci_text(ci: dict | None) -> str:
    if not ci:
        return ""
    return f"; {round(100 * ci.get('level', 0.95))}% CI {num(ci['lower'])} to {num(ci['upper'])}"


def _share(group: dict) -> str:
    d = group["decided"]
    ci = f"; 95% CI {pct(d['low'])} to {pct(d['high'])}" if d.get("low") is not None else ""
    return f"{pct(d['rate'])} ({d['count']} of {d['n']}{ci})"


def _under(where: str, prefix: str) -> bool:
    return where == prefix or where.startswith((prefix + ".", prefix + "["))


def _assessment(evidence: dict, i: int, j: int, prefix: str) -> dict[str, str]:
    """The fairness assessment of protected feature ``j`` of subject ``i``, in words from its figures."""
    subject = evidence["subjects"][i]
    fair = subject["fairness"]
    pf = fair["features"][j]
    by_group = {g["group"]: g for g in pf["groups"]}
    low, high, outcome = pf.get("min_impact_group"), pf.get("highest_group"), fair.get("outcome")
    at_risk = (f"{prefix}{pf['display_name']} = {low}: the group with the lowest rate of {outcome} "
               f"(protected basis: {pf['basis']})" if low is not None
               else f"{prefix}{pf['display_name']} (protected basis: {pf['basis']})")
    rates = (f"Decided {outcome} for {_share(by_group[low])} of {low}, against {_share(by_group[high])} of {high}, "
             f"the group with the highest rate." if low in by_group and high in by_group else None)
    harms = []
    if fair.get("kind") == "favourable" and rates:
        benefits = f"{rates} The rates count {fair['note']}."
    elif rates:
        benefits = f"Not assessed: the rates count {fair['note']}, which is not read as a benefit."
        harms.append(rates)
    else:
        benefits = f"Not assessed: {fair['note']}."
        harms.append("No group rates to compare.")
    ratio, bound = pf.get("min_impact_ratio"), fair["settings"]["min_impact_ratio"]
    if ratio is not None:
        side = "below" if ratio < bound else "at or above"
        harms.append(f"Adverse impact ratio {num(ratio)} ({low} over {high}{_ci_text(pf.get('min_impact_ratio_ci'))})"
                     f", {side} the policy's bound {num(bound)} (four-fifths rule).")
    for name, label in (("tpr", "True-positive"), ("fpr", "False-positive")):
        gap, groups = pf.get(f"{name}_gap"), pf.get(f"{name}_groups") or []
        if gap is not None:
            between = f"{groups[0]} highest, {groups[1]} lowest" if len(groups) == 2 else listed(groups)
            harms.append(f"{label} rate gap {num(gap)} ({between}{_ci_text(pf.get(f'{name}_gap_ci'))}).")
    v = fair["settings"]["proxy_cramers_v"]
    harms.append(f"Possible proxies (bias-corrected Cramér's V at least {num(v)} on {fair['proxy_dataset']}): "
                 f"{listed(pf['proxies'])}." if pf["proxies"] else
                 f"No feature reaches the proxy bound (bias-corrected Cramér's V {num(v)}) on {fair['proxy_dataset']}.")
    base = f"subjects[{i}]"
    scopes = (evidence_path(base, "fairness", "features", j), evidence_path(base, "subgroups", pf["feature"]),
              evidence_path(base, "reasons", "protected_share"))
    checked = [f["message"] for f in evidence.get("findings", []) if any(_under(f["evidence"], s) for s in scopes)]
    mitigation = "No mitigation is recorded in the evidence: the audit measures and reports. " + (
        "The policy's thresholds on it: " + " ".join(f"({n}) {m}." for n, m in enumerate(checked, 1))
        if checked else "No policy threshold checks it.")
    return {"groupAtRisk": at_risk, "benefits": benefits, "harms": " ".join(harms), "mitigationStrategy": mitigation}
