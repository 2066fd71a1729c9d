"""What the templates lay out, and where in the evidence each figure is.

For every subject and decision the view gives the evidence paths of its figures, the families whose
partials lay out its explanations, the order in which features are shown and which decisions get a
detailed section. It computes no figure: templates print figures by path through ``fig``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from ..evidence import Evidence
from ..explainers import EXPLAINERS
from ..paths import path
from . import charts

__all__ = ["build_view"]

AUDIENCE = {"medical": "Clinical reviewers", "finance": "Model risk management"}
CASE_WORD = {"medical": "Case", "finance": "Decision"}
PRINT_LIMIT = 1000
"""Rows of the decision register per model in the PDF (the HTML lists every decision): misclassified and adverse
decisions first, then in sample order; the printed register says where the others are (the HTML, evidence.json).
Printing is the limit: WeasyPrint lays out a register line in tens of milliseconds."""
REASONS_PRINT_LIMIT = 50
"""Adverse decisions per model whose principal reasons the PDF's reasons chapter lists (the HTML lists every one):
those where a protected characteristic was withheld first, then those whose methods disagree, then those with a
detailed section, then in sample order. The chapter is in the report's front part, which is read on paper."""
SCREEN_PAGE_ROWS = 500
"""Lines of a register a browser shows at a time (its script adds "show more"; filters and sorts apply to all):
a browser lays out a 10,000-line table in seconds each time it changes."""


def _anchor(*parts: Any) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in str(p)) for p in parts)


def build_view(evidence: Evidence, *, generated_at: datetime | None = None) -> dict[str, Any]:
    """Everything the templates lay out: evidence objects for names and texts, paths for figures."""
    audit = evidence.audit
    generated_at = generated_at or datetime.now(timezone.utc)
    charts.reset_ids()
    report = evidence.policy["report"]
    subjects = [_subject(evidence, i, report) for i in range(len(evidence.subjects))]
    return {
        "audit": audit,
        "audience_label": AUDIENCE[audit["audience"]],
        "case_word": CASE_WORD[audit["audience"]],
        "generated": generated_at.strftime("%d %B %Y, %H:%M UTC"),
        "subjects": subjects,
        "findings": _findings(evidence),
        "data_checks": _data_checks(evidence),
        "fairness": any(s.get("fairness") for s in subjects),
        # the subjects' observations split once: checks (warnings) in the summary, notes in Appendix B
        "checks": [o for s in subjects for o in s["observations"] if o["level"] == "warn"],
        "notes": [o for s in subjects for o in s["observations"] if o["level"] != "warn"],
        "methods": _appendix(evidence),
        "top_features": report["top_features"],
        "warnings": evidence.warnings,
    }


def _data_checks(evidence: Evidence) -> list[dict[str, Any]]:
    """Each data check's path, and the paths of the score stability of the models audited on its data."""
    out = []
    for ci, c in enumerate(evidence.data_checks):
        scores = [(s.model.id, f"subjects[{si}].score_stability") for si, s in enumerate(evidence.subjects)
                  if s.dataset.id == c.dataset and s.background == c.background and s.score_stability is not None]
        out.append({"at": f"data_checks[{ci}]", "check": c, "anchor": _anchor("data", c.dataset, c.background),
                    "scores": scores})
    return out


def _class_names(model) -> dict[str, str]:
    return {str(c): n for c, n in zip(model.classes, model.class_names)}


def _subject(evidence: Evidence, si: int, report: dict) -> dict[str, Any]:
    s = evidence.subjects[si]
    at = f"subjects[{si}]"
    names = _class_names(s.model)
    anchor = _anchor("subject", s.model.id, s.dataset.id)
    local, global_ = [], []
    for mi, m in enumerate(s.methods):
        family = EXPLAINERS.get(m.type)
        view = {"name": m.name, "title": m.title, "type": m.type, "at": f"{at}.methods[{mi}]",
                "partial": family.partial if family else "partials/methods/default.html.j2",
                "attribution": bool(family and family.attribution_field), "family": family}
        if family and family.attribution_field:
            view["field"] = family.attribution_field
            view["annotation"] = family.annotation
        if m.scope == "local":
            local.append(view)
        else:
            global_.append(view | {"result": path(at, "global_explanations", m.name),
                                   "detail_anchor": _anchor(anchor, m.name, "detail")})
    flags: dict[str, set[str]] = {}  # decision id -> explanation names a warning names it under
    for o in s.observations:
        if o.level == "warn" and o.method:
            for i in o.decisions:
                flags.setdefault(str(i), set()).add(o.method)
    labels = {f.name: f.display_name for f in s.dataset.features}
    units = {f.name: f.unit for f in s.dataset.features}
    kinds = {f.name: f.type for f in s.dataset.features}
    # what choosing the detailed and printed decisions needs of each, read once: their views are built as read
    facts = [(d.correct, d.principal_reasons is not None, str(d.id)) for d in s.decisions]
    every = range(len(facts))
    adverse = [i for i in every if facts[i][1]]
    limit = report.get("max_decisions")
    registered = limit is not None and len(facts) > limit
    # Misclassified and adverse decisions are the ones a reviewer must see first.
    ranked = sorted(every, key=lambda i: (facts[i][0] is not False, not facts[i][1])) if registered else every
    detailed = frozenset(ranked[:limit]) if registered else frozenset(every)
    printed = frozenset(ranked[:PRINT_LIMIT]) if registered else frozenset()
    reason_printed = _reasons_print(s, adverse, facts, detailed)

    def one(di: int, table: bool = False) -> dict[str, Any]:
        view = _decision(s, at, di, anchor, local, names, labels, flags) | {
            "detailed": di in detailed, "printed": di in printed, "reason_printed": di in reason_printed}
        if table:  # only a detailed section shows the values table: a register line needs none
            view.update(_values_table(s, view, labels, kinds, report["top_features"]))
        return view

    regression = s.model.task == "regression"
    positive = names.get(str(s.model.positive_class), str(s.model.positive_class))
    view = {
        "at": at,
        "anchor": anchor,
        "regression": regression,
        "decision_rule": s.model.decision,
        "output_name": (lambda target: "the score") if regression else (
            lambda target: f"P({names.get(str(target), str(target))})"),
        "out_fmt": "num" if regression else "prob",
        "towards": "the score up" if regression else f"towards {positive}",
        "away": "the score down" if regression else f"away from {positive}",
        "model": s.model,
        "dataset": s.dataset,
        "background": s.background,
        "positive": positive,
        "binary": len(s.model.classes) == 2,
        "class_name": lambda label: names.get(str(label), str(label)),
        "class_counts": [(names.get(k, k), path(at, "dataset", "class_counts", k)) for k in s.dataset.class_counts],
        "labels": labels,
        "units": units,
        "local": local,
        "global": global_,
        "has_subgroups": bool(s.subgroups),
        "observations": [{"level": o.level, "at": f"{at}.observations[{oi}].message"}
                         for oi, o in enumerate(s.observations)],
        "adverse": Built(one, adverse),
        "fairness": _fairness(evidence, si),
        "register": None,
        "decisions": Built(lambda di: one(di, table=True), sorted(detailed)),
        "reasons_print": {"printed": len(reason_printed), "unprinted": len(adverse) - len(reason_printed)},
    }
    if registered:
        rows = Built(one, every)
        view["register"] = {"rows": rows, "printed": len(printed), "unprinted": len(facts) - len(printed),
                            "page_rows": SCREEN_PAGE_ROWS,
                            "top_method": next((d["attributing"][0]["title"] for d in rows if d["attributing"]), None)}
    return view


class Built(Sequence):
    """Decision views, each built when it is read (from the evidence, which may be on disk): a register of 10,000
    lines holds one line's view at a time. ``build(index)`` makes the view of decision ``index``."""

    def __init__(self, build: Callable[[int], dict[str, Any]], indices: Sequence[int]) -> None:
        self._build = build
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self._build(i) for i in self._indices[k]]
        return self._build(self._indices[k])


def _reasons_print(s, adverse: list[int], facts: list[tuple], detailed: frozenset) -> frozenset:
    """The adverse decisions (indices) the printed reasons chapter lists, at most :data:`REASONS_PRINT_LIMIT`:
    those where a protected characteristic was withheld first, then those whose methods disagree, then those with a
    detailed section, then in sample order."""
    protected = {str(i) for i in (s.reasons.protected if s.reasons else ())}
    disagree = {str(i) for i in (s.reasons.disagree if s.reasons else ())}
    ranked = sorted(adverse, key=lambda i: (facts[i][2] not in protected, facts[i][2] not in disagree,
                                            i not in detailed))
    return frozenset(ranked[:REASONS_PRINT_LIMIT])


def _decision(s, at: str, di: int, subject_anchor: str, local: list[dict], names: dict, labels: dict,
              flags: dict) -> dict[str, Any]:
    """One decision as its register line reads it, and what a detailed section lays out beside the values table
    (:func:`_values_table`)."""
    d = s.decisions[di]
    dat = f"{at}.decisions[{di}]"
    attributing = [m for m in local if m["attribution"] and m["name"] in d.explanations
                   and m["family"].attributions(d.explanations[m["name"]]) is not None]
    top = ""
    if attributing:
        values = getattr(d.explanations[attributing[0]["name"]], attributing[0]["field"])
        ranked = sorted(values, key=lambda f: -abs(values[f]))
        top = ", ".join(f"{labels.get(f, f)} {'+' if values[f] > 0 else '−'}" for f in ranked[:3])
    return {
        "at": dat,
        "index": di,
        "anchor": _anchor(subject_anchor, "decision", d.id),
        "id": d.id,
        "true": names.get(str(d.true_label), str(d.true_label)),
        "predicted": "" if d.predicted_label is None else names.get(str(d.predicted_label), str(d.predicted_label)),
        "correct": d.correct,
        "adverse": d.principal_reasons is not None,
        "flags": flags.get(str(d.id), set()),
        "explained": [m for m in local if m["name"] in d.explanations],
        "attributing": attributing,
        "others": [m for m in local if m["name"] in d.explanations and m not in attributing],
        "top": top,
        "image": d.image_png is not None,
        "dicom_tags": list(d.dicom_tags or ()),  # keywords; their values print from the evidence
        "text": d.text is not None,
    }


def _values_table(s, view: dict, labels: dict, kinds: dict, top_n: int) -> dict[str, Any]:
    """A detailed decision's "values behind the explanation": the features any attribution method ranks in its
    top ``top_n``, in the order the methods rank them, each with its value, every method's attribution and the
    family's annotation (a counterfactual's change, say) by path."""
    d = s.decisions[view["index"]]
    dat, attributing = view["at"], view["attributing"]
    order: list[str] = []
    for m in attributing:
        values = getattr(d.explanations[m["name"]], m["field"])
        order += [f for f in sorted(values, key=lambda f: -abs(values[f]))[:top_n] if f not in order]
    rows = []
    for f in order:
        cells = []
        for m in attributing:
            v = getattr(d.explanations[m["name"]], m["field"]).get(f)
            cells.append({"at": None if v is None else path(dat, "explanations", m["name"], m["field"], f),
                          "sign": "" if not v else ("pos" if v > 0 else "neg")})
        note = None
        for m in attributing:
            field = (m.get("annotation") or (None,))[0]
            if field and kinds.get(f) == "numeric" and f in getattr(d.explanations[m["name"]], field):
                note = path(dat, "explanations", m["name"], field, f)
        rows.append({"feature": labels.get(f, f), "value": path(dat, "values", f), "cells": cells, "note": note})
    annotated = [m for m in attributing if m.get("annotation")]
    return {"rows": rows,
            "note_title": annotated[0]["annotation"][1] if annotated and any(r["note"] for r in rows) else None}


def _fairness(evidence: Evidence, si: int) -> dict[str, Any] | None:
    """The subject's fairness evidence by path (its observations are the subject's, in the summary)."""
    if evidence.subjects[si].fairness is None:
        return None
    return {"at": f"subjects[{si}].fairness"}


def _findings(evidence: Evidence) -> list[dict[str, Any]]:
    """Findings, failures first, each linked to the report section holding its evidence."""
    order = {"fail": 0, "warn": 1, "pass": 2}
    out = []
    ranked = sorted(enumerate(evidence.findings), key=lambda x: (order[x[1].status], x[1].id, x[1].model or ""))
    fairness = any(s.fairness is not None for s in evidence.subjects)
    subgroups = any(s.subgroups for s in evidence.subjects)
    for i, f in ranked:
        head = f.metric.split(".")[0]
        reasons = "reasons" if evidence.audit["audience"] == "finance" else "cases"  # medical: no reasons chapter
        by_group = subgroups and (f.metric == "fairness.positive_rate_gap" or
                                  (head == "performance" and f.subgroup is not None))
        section = ("subgroups" if by_group else  # the group tables are in the supporting appendix
                   "fairness" if head == "fairness" and fairness else
                   "performance" if head in ("performance", "fairness") else
                   reasons if head == "principal_reasons" else
                   "models" if head in ("data", "stability") else  # the data chapter holds the data checks
                   "global" if _scope(evidence, head) == "global" else "cases")
        out.append({"at": f"findings[{i}]", "status": f.status, "id": f.id, "model": f.model or "",
                    "comparator": f.comparator or "", "anchor": section, "evidence": f.evidence,
                    "interval": f.interval is not None})
    return out


def _scope(evidence: Evidence, name: str) -> str | None:
    """Whether the explanation ``name`` is global or per decision (None: not an explanation)."""
    for s in evidence.subjects:
        for m in s.methods:
            if m.name == name:
                return m.scope
    return None


def _appendix(evidence: Evidence) -> list[dict[str, Any]]:
    """Each explanation once: its family's notes, and its settings and derived parameters by path."""
    seen: dict[str, dict[str, Any]] = {}
    for si, s in enumerate(evidence.subjects):
        for mi, m in enumerate(s.methods):
            if m.name in seen:
                continue
            at = f"subjects[{si}].methods[{mi}]"
            params = [(k, path(at, "spec", k)) for k, v in m.spec.items()
                      if k not in ("type", "id", "models") and v not in (None, [], {})]
            params += [(k, path(at, "parameters", k)) for k, v in m.parameters.items()
                       if v is not None and not isinstance(v, (dict, list))]
            family = EXPLAINERS.get(m.type)
            seen[m.name] = {"name": m.name, "title": m.title, "type": m.type, "params": params,
                            "notes": family.notes if family else None}
    return list(seen.values())
