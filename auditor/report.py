"""Render evidence as one HTML report and, from the same HTML, a PDF.

``build_view`` turns evidence into display values (formatted numbers, sentences, charts); the
Jinja templates only lay them out (templates never compute). Autoescaping is on for every
template: strings from datasets and policies are treated as hostile. Users can override any
template by passing a folder that is searched before the shipped ones.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from . import charts
from .evidence import Evidence

__all__ = ["build_view", "render_html", "render_pdf", "template_dir"]

AUDIENCE = {
    "medical": "Clinical reviewers",
    "finance": "Model risk management",
}
METHOD_NOTES = {
    "integrated_gradients": {
        "cite": "M. Sundararajan, A. Taly, Q. Yan. Axiomatic Attribution for Deep Networks. ICML 2017.",
        "how": "Integrates the gradient of the model's probability for the attributed class along a straight path "
               "from a baseline input to the decision (Captum). Attributions are in probability units and, by the "
               "completeness axiom, sum to the difference between the decision's probability and the baseline's.",
        "quality": "Convergence delta: how far the numerical integral misses completeness. Small relative to the "
                   "probability difference means the attributions are numerically trustworthy.",
    },
    "lime": {
        "cite": "M. T. Ribeiro, S. Singh, C. Guestrin. \"Why Should I Trust You?\" Explaining the Predictions of Any "
                "Classifier. KDD 2016.",
        "how": "Perturbs the decision's features, scores the perturbations with the model, weights them by closeness "
               "(exponential kernel) and fits a weighted linear model; its weights are the explanation (lime package). "
               "Continuous features are discretised into quartiles of the reference data, so a weight applies to the "
               "condition shown (e.g. 'value > 15.8').",
        "quality": "Local fit R²: how well the linear model reproduces the model near the decision. Below 0.5 the "
                   "explanation describes the model poorly there.",
    },
    "rules": {
        "cite": "M. Craven, J. Shavlik. Extracting Tree-Structured Representations of Trained Networks. NIPS 1996; "
                "R. Guidotti et al. A Survey of Methods for Explaining Black Box Models. ACM Computing Surveys 2018.",
        "how": "A shallow decision tree (scikit-learn) is trained on the reference data to reproduce the audited model's "
               "own decisions, and each of its leaves is read as an IF ... THEN rule. Categorical attributes are split "
               "by category name, numeric ones at thresholds in the data's units.",
        "quality": "Fidelity: the share of held-out rows on which the rules and the model decide alike. Coverage and "
                   "precision of each rule are measured on the same held-out rows.",
    },
    "counterfactuals": {
        "cite": "R. K. Mothilal, A. Sharma, C. Tan. Explaining Machine Learning Classifiers through Diverse "
                "Counterfactual Explanations. FAT* 2020.",
        "how": "DiCE's method searches for a few diverse inputs, close to the decision, that the model decides the "
               "other way, changing only mutable features within their permitted ranges: for method random, the "
               "auditor's batched engine (DiCE's random search for all decisions at once, tested for equal quality "
               "against dice-ml); otherwise dice-ml itself (engine 'reference'). Every candidate is re-scored "
               "by the model and checked against the immutable features and ranges; candidates that fail are removed "
               "and counted.",
        "quality": "Validity (valid counterfactuals / asked), proximity (mean per-feature distance: numeric |change| / "
                   "range, categorical 0 or 1; lower is closer), sparsity (features changed) and diversity (mean "
                   "distance between a decision's counterfactuals).",
    },
    "gradcam": {
        "cite": "R. R. Selvaraju et al. Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
                "Localization. ICCV 2017.",
        "how": "Weights a convolutional layer's activations by the averaged gradients of the target class and keeps the "
               "positive part, upsampled to the image (Captum LayerGradCam). Coarse: its resolution is the layer's.",
        "quality": "Scored against ground-truth masks where the data has them: the pointing game (is the map's maximum "
                   "inside the finding, within 3 pixels?) and the share of the map's mass inside the finding.",
    },
    "lrp": {
        "cite": "S. Bach et al. On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance "
                "Propagation. PLoS ONE 2015.",
        "how": "Redistributes the target class's logit backwards through the network with relevance-conserving rules "
               "(Captum LRP, epsilon rule).",
        "quality": "Relevance minus the explained logit (biases absorb part of it), and the same ground-truth scores as "
                   "Grad-CAM.",
    },
    "lime_image": {
        "cite": "M. T. Ribeiro, S. Singh, C. Guestrin. \"Why Should I Trust You?\" KDD 2016.",
        "how": "Cuts the image into superpixels (SLIC) and fits a weighted linear model of the class probability on "
               "which segments are kept (lime package). Segments for and against the class are outlined.",
        "quality": "Local fit R², and the ground-truth scores.",
    },
    "layer_integrated_gradients": {
        "cite": "M. Sundararajan, A. Taly, Q. Yan. Axiomatic Attribution for Deep Networks. ICML 2017.",
        "how": "Integrated Gradients through the embedding layer's output (Captum LayerIntegratedGradients), from a "
               "baseline text whose tokens between [CLS] and [SEP] are all [PAD]; each token's attribution is summed over "
               "the embedding dimensions.",
        "quality": "Convergence delta (completeness gap), and, where the data marks a rationale, the share of positive "
                   "attribution on its tokens.",
    },
    "lime_text": {
        "cite": "M. T. Ribeiro, S. Singh, C. Guestrin. \"Why Should I Trust You?\" KDD 2016.",
        "how": "Removes words at random, rescores the texts and fits a weighted linear model over word presence "
               "(lime package).",
        "quality": "Local fit R², and the share of positive weight on the ground-truth rationale.",
    },
    "attention": {
        "cite": "S. Abnar, W. Zuidema. Quantifying Attention Flow in Transformers. ACL 2020; S. Jain, B. C. Wallace. "
                "Attention is not Explanation. NAACL 2019.",
        "how": "Shows the attention weights from [CLS] to every token for every head of every layer, and attention "
               "rollout: head-averaged attention mixed with the residual connection, multiplied through the layers.",
        "quality": "None: attention describes where the model looks, not what drives its output. It is not attribution.",
    },
    "permutation_importance": {
        "cite": "L. Breiman. Random Forests. Machine Learning 45, 2001; A. Fisher, C. Rudin, F. Dominici. All Models "
                "are Wrong, but Many are Useful. JMLR 2019.",
        "how": "Shuffles one feature at a time across the audited rows and measures how much the model's score drops "
               "(scikit-learn). Repeated with seeded shuffles; the bar is the mean drop and the whisker its standard "
               "deviation.",
        "quality": "Importance of correlated features is shared between them and can look small for each.",
    },
}
LIME_MIN_SCORE = 0.5


def template_dir() -> Path:
    """The shipped templates: inside the installed package, or the repository's templates/ folder."""
    packaged = Path(str(resources.files("auditor"))) / "templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "templates"


def _environment(override: Path | None) -> jinja2.Environment:
    loaders = [jinja2.FileSystemLoader(str(override))] if override else []
    loaders.append(jinja2.FileSystemLoader(str(template_dir())))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every template, whatever its suffix
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


# --- formatting --------------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) < 10 ** -(digits + 1):
        return f"{x:.1e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _prob(p: float, relation: bool = False) -> str:
    """A probability to three decimals, without claiming certainty the model does not have.

    With ``relation`` the text starts with its comparison ("= 0.552", "> 0.999") to follow "P(x) ".
    """
    if p > 0.9995:
        return "> 0.999"
    if p < 0.0005:
        return "< 0.001"
    return f"= {p:.3f}" if relation else f"{p:.3f}"


def _signed(x: float) -> str:
    return ("+" if x > 0 else "−" if x < 0 else "") + _num(abs(x))


def _anchor(*parts: Any) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in str(p)) for p in parts)


# --- view --------------------------------------------------------------------------------------------


def build_view(evidence: Evidence, *, generated_at: datetime | None = None) -> dict[str, Any]:
    """Everything the templates show, as display-ready values."""
    audit = evidence.audit
    generated_at = generated_at or datetime.now(timezone.utc)
    charts.reset_ids()
    subjects = [_subject_view(evidence, s) for s in evidence.subjects]
    limit = evidence.policy["report"].get("max_decisions")
    for sv in subjects:
        sv["decisions_total"] = len(sv["decisions"])
        sv["register"] = None
        if limit is not None and len(sv["decisions"]) > limit:
            # Misclassified and adverse decisions are the ones a reviewer must see first.
            ranked = sorted(sv["decisions"], key=lambda d: (d["correct"], d["reasons"] is None))
            keep = {id(d) for d in ranked[:limit]}
            sv["register"] = _register_view(sv["decisions"], keep)
            sv["decisions"] = [d for d in sv["decisions"] if id(d) in keep]
    return {
        "audit": audit,
        "audience_label": AUDIENCE[audit["audience"]],
        "generated": generated_at.strftime("%d %B %Y, %H:%M UTC"),
        "generated_date": generated_at.strftime("%d %B %Y"),
        "policy_sha256": evidence.policy_sha256,
        "auditor_version": evidence.auditor_version,
        "evidence_version": evidence.evidence_version,
        "subjects": subjects,
        "summary": [s["summary"] for s in subjects],
        "findings": _findings_view(evidence),
        "finding_counts": {k: sum(f.status == k for f in evidence.findings) for k in ("pass", "warn", "fail")},
        "observations": [o for s in subjects for o in s["observations"]],
        "warnings": evidence.warnings,
        "methods": _methods_view(evidence),
        "sample": evidence.policy["sample"],
        "seed": evidence.subjects[0].sample.seed if evidence.subjects else evidence.policy["sample"]["seed"],
        "decision_count": sum(len(s.decisions) for s in evidence.subjects),
        "audit_top_features": evidence.policy["report"]["top_features"],
    }


REGISTER_LIMIT = 2000
"""Rows of the decision register per model; beyond it the report points to evidence.json."""


def _register_view(decisions: list[dict], detailed: set[int]) -> dict[str, Any]:
    """One line per sampled decision, for audits with more decisions than detailed sections."""
    rows = [{"id": d["id"], "anchor": d["anchor"] if id(d) in detailed else None, "true": d["true"],
             "predicted": d["predicted"], "probability": d["probability"], "correct": d["correct"],
             "top": d.get("top", ""), "counterfactuals": d.get("cf_count", ""),
             "adverse": d["reasons"] is not None} for d in decisions[:REGISTER_LIMIT]]
    first = next((d["methods"][0]["title"] for d in decisions if d.get("methods")), None)
    return {"rows": rows, "total": len(decisions), "omitted": max(0, len(decisions) - REGISTER_LIMIT),
            "top_method": first, "has_cf": any(r["counterfactuals"] for r in rows)}


def _class_name(model, label) -> str:
    return model.class_names[model.classes.index(label)] if label in model.classes else str(label)


def _performance_view(perf, model, positive: str) -> dict[str, Any]:
    confusion = {
        "headers": model.class_names,
        "rows": [{"name": model.class_names[i], "cells": row, "total": sum(row)}
                 for i, row in enumerate(perf.confusion_matrix)],
    }
    per_class = [{"name": c.name, "precision": _pct(c.precision), "recall": _pct(c.recall), "f1": _num(c.f1),
                  "support": c.support} for c in perf.per_class]
    return {
        "rows": perf.rows,
        "accuracy": _pct(perf.accuracy),
        "balanced_accuracy": _pct(perf.balanced_accuracy),
        "roc_auc": _num(perf.roc_auc),
        "brier": _num(perf.brier_score),
        "log_loss": _num(perf.log_loss),
        "confusion": confusion,
        "per_class": per_class,
        "calibration_svg": charts.calibration_chart(
            [(b.mean_predicted, b.observed, b.count) for b in perf.calibration], positive=positive
        ) if perf.calibration else None,
    }


def _media_subject_view(s, performance: dict, positive: str, anchor: str, binary: bool) -> dict[str, Any]:
    from .media_views import media_decision_view, media_quality

    model = s.model
    by_name = {m.name: m for m in s.methods}
    quality, observations = media_quality(s)
    decisions = []
    for d in s.decisions:
        decisions.append({
            "anchor": _anchor(anchor, "decision", d.id), "id": d.id, "row": d.row,
            "true": _class_name(model, d.true_label), "predicted": _class_name(model, d.predicted_label),
            "correct": d.correct, "probability": _prob(d.probabilities[str(model.positive_class)], relation=True),
            "positive": positive, "media": media_decision_view(s, d, by_name), "text": d.text,
            "image_file": d.image_file, "methods": [], "rows": [], "agreement": None, "rule": None,
            "counterfactuals": [], "reasons": None,
        })
    wrong = [str(d.id) for d in s.decisions if not d.correct]
    if wrong:
        observations.append({"level": "info", "text": f"{model.id}: {len(wrong)} of {len(s.decisions)} sampled "
                             f"decisions are misclassified ({', '.join(wrong)})."})
    for skip in s.skipped:
        observations.append({"level": "info", "text": f"{model.id}: {skip.name} not run. {skip.reason}"})
    if any(m.type == "attention" for m in s.methods):
        observations.append({"level": "info", "text": f"{model.id}: attention maps show where the model's heads look, "
                             "not what changed its decision: attention is not attribution."})
    summary = {"anchor": anchor, "model": model.id, "kind": model.kind, "dataset": s.dataset.id,
               "rows": s.performance.rows, "accuracy": performance["accuracy"], "roc_auc": performance["roc_auc"],
               "sample": f"{s.sample.size} ({s.sample.strategy}, seed {s.sample.seed})",
               "methods": ", ".join(m.title for m in s.methods), "quality": quality}
    return {
        "anchor": anchor, "model": model, "model_short_sha": model.sha256[:16], "dataset": s.dataset,
        "background": s.background,
        "class_counts": ", ".join(f"{_class_name(model, _label(model, k))}: {v}" for k, v in s.dataset.class_counts.items()),
        "positive": positive, "binary": binary, "sample": s.sample, "performance": performance, "global": [],
        "local_methods": [{"name": m.name, "title": m.title, "type": m.type} for m in s.methods],
        "skipped": s.skipped, "decisions": decisions, "summary": summary, "observations": observations,
        "features": [], "adverse": [], "media": True,
    }


def _subject_view(evidence: Evidence, s) -> dict[str, Any]:
    model, data, perf = s.model, s.dataset, s.performance
    top_n = evidence.policy["report"]["top_features"]
    labels = {f.name: f.display_name for f in data.features}
    positive = _class_name(model, model.positive_class)
    anchor = _anchor("subject", model.id, data.id)
    binary = len(model.classes) == 2

    performance = _performance_view(perf, model, positive)
    if data.kind != "tabular":
        return _media_subject_view(s, performance, positive, anchor, binary)

    global_views = []
    for name, result in s.global_explanations.items():
        title = next(m.title for m in s.methods if m.name == name)
        if result.method == "rules":
            global_views.append(_rules_view(name, title, result, model))
            continue
        ranked = sorted(result.importances.items(), key=lambda kv: -kv[1].mean)
        global_views.append({
            "name": name,
            "title": title,
            "type": result.method,
            "scoring": result.scoring,
            "baseline_score": _num(result.baseline_score),
            "rows_used": result.rows_used,
            "svg": charts.importance_chart(
                [(labels[f], imp.mean, imp.std) for f, imp in ranked[:top_n]],
                xlabel=f"Drop in {result.scoring} when the feature is shuffled",
            ),
            "table": [{"feature": labels[f], "mean": _num(imp.mean), "std": _num(imp.std)} for f, imp in ranked[:top_n]],
            "omitted": max(0, len(ranked) - top_n),
        })

    local_methods = [m for m in s.methods if m.scope == "local"]
    rules = next((r for r in s.global_explanations.values() if r.method == "rules"), None)
    decisions = [_decision_view(s, d, labels, positive, top_n, anchor, rules) for d in s.decisions]

    # Quality roll-ups, for the summary and observations.
    observations: list[dict[str, str]] = []
    quality = []
    for m in local_methods:
        results = [d.explanations[m.name] for d in s.decisions if m.name in d.explanations]
        if m.type == "integrated_gradients" and results:
            rel = [abs(r.convergence_delta) / max(abs(r.output - r.baseline_output), 1e-12) for r in results]
            worst = max(abs(r.convergence_delta) for r in results)
            quality.append(f"{m.title}: largest convergence delta {_num(worst, 2)} "
                           f"(at most {_pct(max(rel))} of the explained probability change)")
            if max(rel) > 0.05:
                observations.append({"level": "warn", "text": f"{model.id}: Integrated Gradients' convergence delta "
                                     f"exceeds 5% of the explained change for {sum(r > 0.05 for r in rel)} decision(s); "
                                     "increase n_steps."})
        if m.type == "lime" and results and results[0].stability is not None:
            unstable = [f"{d.id} ({_num(d.explanations[m.name].stability, 2)})" for d in s.decisions
                        if m.name in d.explanations and d.explanations[m.name].stability < 0.6]
            quality.append(f"{m.title}: top-5 stability over {m.spec['repeats']} runs, mean "
                           f"{_num(float(sum(r.stability for r in results) / len(results)), 2)}")
            if unstable:
                observations.append({"level": "warn", "text": f"{model.id}: LIME's top features change from run to run "
                                     f"(stability < 0.6) for decision(s) {', '.join(unstable)}: do not rely on those "
                                     "explanations' ranking."})
        if m.type == "lime" and results:
            scores = sorted(r.score for r in results)
            low = [d.id for d in s.decisions if m.name in d.explanations and d.explanations[m.name].score < LIME_MIN_SCORE]
            quality.append(f"{m.title}: local fit R² median {_num(scores[len(scores) // 2], 2)}, "
                           f"lowest {_num(scores[0], 2)}")
            if low:
                observations.append({"level": "warn", "text": f"{model.id}: LIME's local model fits poorly (R² < "
                                     f"{LIME_MIN_SCORE}) for decision(s) {', '.join(map(str, low))}: treat those "
                                     "explanations with caution."})
        if m.type == "counterfactuals" and results:
            asked = sum(r.asked for r in results)
            valid = sum(len(r.counterfactuals) for r in results)
            dropped = sum(r.dropped_constraint_violations for r in results)
            not_flip = sum(r.dropped_not_flipping for r in results)
            prox = [r.proximity for r in results if r.proximity is not None]
            quality.append(f"{m.title}: {valid} valid of {asked} asked ({_pct(valid / asked)}); "
                           f"mean proximity {_num(float(sum(prox) / len(prox)), 2) if prox else 'n/a'}; "
                           f"{not_flip} returned by the search did not flip the decision and {dropped} broke a constraint "
                           "(all removed)")
            if dropped:
                observations.append({"level": "warn", "text": f"{model.id}: the search returned {dropped} counterfactual(s) that "
                                     "changed an immutable feature or left a permitted range; they were removed and are "
                                     "not shown."})
            none_found = [str(d.id) for d in s.decisions if m.name in d.explanations
                          and not d.explanations[m.name].counterfactuals]
            if none_found:
                observations.append({"level": "info", "text": f"{model.id}: no valid counterfactual was found for "
                                     f"decision(s) {', '.join(none_found)} within the constraints."})
    if rules is not None:
        quality.append(f"Surrogate rules: fidelity {_pct(rules.fidelity)} on {rules.holdout_rows} held-out rows "
                       f"(policy minimum {_pct(rules.min_fidelity)})")
        if not rules.describes_model:
            observations.append({"level": "warn", "text": f"{model.id}: the surrogate rules agree with the model on only "
                                 f"{_pct(rules.fidelity)} of held-out rows, below the policy's minimum of "
                                 f"{_pct(rules.min_fidelity)}: the rules do not describe the model."})
    adverse = [d for d in s.decisions if d.principal_reasons is not None]
    if adverse:
        disagree = [str(d.id) for d in adverse if d.principal_reasons.agree is False]
        quality.append(f"Principal reasons: {len(adverse)} adverse decision(s); methods agree on the top reasons for "
                       f"{len(adverse) - len(disagree)}")
        if disagree:
            observations.append({"level": "warn", "text": f"{model.id}: the methods behind the principal reasons disagree "
                                 f"for decision(s) {', '.join(disagree)}; review those reasons before they are used in "
                                 "an adverse-action notice."})
    agreements = [d.agreement for d in s.decisions if d.agreement is not None]
    if agreements:
        n_agree = sum(a.agree for a in agreements)
        quality.append(f"Methods agree (top-{agreements[0].top_k} overlap ≥ 60%) on {n_agree} of {len(agreements)} decisions")
        if n_agree < len(agreements):
            disagree = [str(d.id) for d in s.decisions if d.agreement is not None and not d.agreement.agree]
            observations.append({"level": "info", "text": f"{model.id}: attribution methods disagree on the top "
                                 f"features of decision(s) {', '.join(disagree)}; read those with both methods in view."})
    wrong = [str(d.id) for d in s.decisions if not d.correct]
    if wrong:
        observations.append({"level": "info", "text": f"{model.id}: {len(wrong)} of {len(s.decisions)} sampled "
                             f"decisions are misclassified ({', '.join(wrong)})."})
    if s.sample.note:
        observations.append({"level": "info", "text": f"{model.id}: {s.sample.note}"})
    for skip in s.skipped:
        observations.append({"level": "info", "text": f"{model.id}: {skip.name} not run. {skip.reason}"})

    summary = {
        "anchor": anchor,
        "model": model.id,
        "kind": model.kind,
        "dataset": data.id,
        "rows": perf.rows,
        "accuracy": _pct(perf.accuracy),
        "roc_auc": _num(perf.roc_auc),
        "sample": f"{s.sample.size} ({s.sample.strategy}, seed {s.sample.seed})",
        "methods": ", ".join(m.title for m in s.methods),
        "quality": quality,
    }
    return {
        "anchor": anchor,
        "model": model,
        "model_short_sha": model.sha256[:16],
        "dataset": data,
        "background": s.background,
        "class_counts": ", ".join(f"{_class_name(model, _label(model, k))}: {v}" for k, v in data.class_counts.items()),
        "positive": positive,
        "binary": binary,
        "sample": s.sample,
        "performance": performance,
        "global": global_views,
        "local_methods": [{"name": m.name, "title": m.title, "type": m.type} for m in local_methods],
        "adverse": [{"id": d["id"], "anchor": d["anchor"], "reasons": d["reasons"]} for d in decisions if d["reasons"]],
        "skipped": s.skipped,
        "decisions": decisions,
        "summary": summary,
        "observations": observations,
        "features": [{"name": f.name, "label": f.display_name, "type": f.type, "unit": f.unit or ""} for f in data.features],
        "media": False,
    }


def _label(model, text: str):
    return next((c for c in model.classes if str(c) == text), text)


def _decision_view(s, d, labels: dict[str, str], positive: str, top_n: int, subject_anchor: str,
                   rules=None) -> dict[str, Any]:
    model = s.model
    names = list(labels)
    methods = []
    union: list[str] = []
    top = ""  # the register's summary: the first attribution method's three largest, with their direction
    attributions = {n: r for n, r in d.explanations.items() if r.method in ("integrated_gradients", "lime")}
    for name, r in attributions.items():
        values = r.attributions if r.method == "integrated_gradients" else r.weights
        ordered = sorted(values.items(), key=lambda kv: -abs(kv[1]))
        if not top:
            top = ", ".join(f"{labels[f]} {'+' if v > 0 else '−'}" for f, v in ordered[:3])
        ranked = ordered[:top_n]
        for f, _ in ranked:
            if f not in union:
                union.append(f)
        target = _class_name(model, r.target)
        if r.method == "integrated_gradients":
            change = r.output - r.baseline_output
            quality = (f"P({target}) {_prob(r.baseline_output)} at baseline → {_prob(r.output)} here; attributions sum "
                       f"to {_signed(change + r.convergence_delta)}; convergence delta {_num(r.convergence_delta, 2)}")
            flag = abs(r.convergence_delta) > 0.05 * max(abs(change), 1e-12)
        else:
            quality = (f"local fit R² {_num(r.score, 2)}; local model predicts {_num(r.local_prediction)} "
                       f"vs model {_prob(r.model_prediction)}")
            flag = r.score < LIME_MIN_SCORE
        title = next(m.title for m in s.methods if m.name == name)
        methods.append({
            "name": name,
            "title": title,
            "type": r.method,
            "svg": charts.attribution_chart([(labels[f], v) for f, v in ranked],
                                            xlabel=f"Attribution to P({target})"),
            "quality": quality,
            "flag": flag,
        })
    rows = []
    for f in union:
        cells, condition = [], ""
        for name, r in attributions.items():
            values = r.attributions if r.method == "integrated_gradients" else r.weights
            v = values.get(f)
            cells.append({"value": _signed(v) if v is not None else "–", "sign": _sign(v)})
            if r.method == "lime" and f in r.conditions and s.dataset.features[names.index(f)].type == "numeric":
                # LIME writes the display name into the condition; the row already names the feature.
                condition = r.conditions[f].replace(labels[f], "value")
        value = d.values[f]
        rows.append({"feature": labels[f], "value": value if isinstance(value, str) else _num(value, 4),
                     "cells": cells, "condition": condition})
    agreement = None
    if d.agreement is not None:
        a = d.agreement
        agreement = {
            "agree": a.agree,
            "text": (f"{a.shared} of the top {a.top_k} features are shared by "
                     f"{' and '.join(next(m.title for m in s.methods if m.name == n) for n in a.methods)}"
                     + (f"; rank correlation over all features {_num(a.rank_correlation, 2)}" if a.rank_correlation is not None else "")
                     + "."),
        }
    true_name = _class_name(model, d.true_label)
    pred_name = _class_name(model, d.predicted_label)
    rule = None
    if rules is not None and str(d.id) in rules.decision_rules:
        r = next(x for x in rules.rules if x.id == rules.decision_rules[str(d.id)])
        rule = {"id": r.id, "text": r.text, "agrees": r.prediction == d.predicted_label,
                "describes_model": rules.describes_model}
    counterfactuals = [_counterfactual_view(n, r, model, labels, s) for n, r in d.explanations.items()
                       if r.method == "counterfactuals"]
    reasons = None
    if d.principal_reasons is not None:
        pr = d.principal_reasons
        titles = {m.name: m.title for m in s.methods}
        reasons = {
            "entries": [{"rank": x.rank, "text": x.text, "feature": labels[x.feature],
                       "support": ", ".join(f"{titles[m]} #{k}" for m, k in x.method_ranks.items() if k) or "–"}
                      for x in pr.reasons],
            "methods": ", ".join(titles[m] for m in pr.methods),
            "agree": pr.agree,
            "overlap": None if pr.overlap is None else _pct(pr.overlap),
        }
    cf_count = ", ".join(f"{len(r.counterfactuals)} of {r.asked}" for r in d.explanations.values()
                         if r.method == "counterfactuals")
    return {
        "anchor": _anchor(subject_anchor, "decision", d.id),
        "id": d.id,
        "row": d.row,
        "top": top,
        "cf_count": cf_count,
        "true": true_name,
        "predicted": pred_name,
        "correct": d.correct,
        "probability": _prob(d.probabilities[str(model.positive_class)], relation=True),
        "has_conditions": any(r["condition"] for r in rows),
        "positive": positive,
        "methods": methods,
        "method_titles": [m["title"] for m in methods],
        "rule": rule,
        "counterfactuals": counterfactuals,
        "reasons": reasons,
        "rows": rows,
        "agreement": agreement,
        "shown": len(rows),
        "total_features": len(names),
    }


def _rules_view(name: str, title: str, result, model) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "type": "rules",
        "fidelity": _pct(result.fidelity),
        "min_fidelity": _pct(result.min_fidelity),
        "describes_model": result.describes_model,
        "holdout": result.holdout,
        "training_rows": result.training_rows,
        "rules": [{"id": r.id, "conditions": [c.text for c in r.conditions],
                   "then": _class_name(model, r.prediction), "coverage": _pct(r.coverage),
                   "precision": _pct(r.precision), "support": r.support} for r in result.rules],
    }


def _counterfactual_view(name: str, r, model, labels: dict[str, str], s) -> dict[str, Any]:
    units = {f.name: f.unit for f in s.dataset.features}

    def show(feature: str, v) -> str:
        if isinstance(v, str):
            return v
        unit = units.get(feature)
        return _num(v, 4) + (f" {unit}" if unit else "")

    return {
        "title": next(m.title for m in s.methods if m.name == name),
        "entries": [{"changes": [{"feature": labels[f], "before": show(f, c.before), "after": show(f, c.after)}
                               for f, c in cf.changes.items()],
                   "outcome": _class_name(model, cf.predicted_label), "probability": _prob(cf.probability)}
                  for cf in r.counterfactuals],
        "summary": (f"{len(r.counterfactuals)} valid of {r.asked} asked; the search returned {r.returned}, of which "
                    f"{r.dropped_not_flipping} did not change the decision and {r.dropped_constraint_violations} "
                    "broke a constraint (removed)."),
        "metrics": (f"proximity {_num(r.proximity, 2)}, sparsity {_num(r.sparsity, 2)} features changed, "
                    f"diversity {_num(r.diversity, 2)}") if r.counterfactuals else "",
    }


def _sign(v: float | None) -> str:
    return "" if not v else ("pos" if v > 0 else "neg")


def _changes_view(diff) -> dict[str, Any]:
    """'Changes since the last audit', from an AuditDiff (auditor.diff)."""
    subjects = []
    for sd in diff.subjects:
        perf = [{"metric": m.metric, "a": _num(m.a, 4), "b": _num(m.b, 4), "delta": _num(m.delta, 3)}
                for m in sd.performance if m.delta not in (None, 0)]
        importance = [{"name": i.name, "correlation": _num(i.rank_correlation, 3), "entered": ", ".join(i.entered),
                       "left": ", ".join(i.left)} for i in sd.importance if i.changed]
        rules = [{"name": r.name, "fidelity": f"{_num(r.fidelity.a, 3)} → {_num(r.fidelity.b, 3)}",
                  "added": r.added, "removed": r.removed} for r in sd.rules if r.changed]
        reasons = [{"id": c.id, "a": "; ".join(c.reasons_a) or "none", "b": "; ".join(c.reasons_b) or "none"}
                   for c in sd.reasons_changed]
        subjects.append({"model": sd.model, "dataset": sd.dataset, "performance": perf, "importance": importance,
                         "rules": rules, "reasons": reasons, "changed": sd.changed})
    return {
        "changed": diff.changed,
        "previous_run": diff.a.run_id or "(folder)", "previous_finished": diff.a.finished_utc or "",
        "policy_changed": diff.policy_changed,
        "inputs": [{"id": c.id, "a": (c.sha256_a or "")[:16], "b": (c.sha256_b or "")[:16]}
                   for c in diff.inputs.models + diff.inputs.datasets if c.changed],
        "findings": [{"id": f.id, "model": f.model or "", "a": f.status_a, "b": f.status_b,
                      "value_a": _num(f.value_a, 4), "value_b": _num(f.value_b, 4)} for f in diff.findings.changed],
        "subjects": subjects,
    }


def _findings_view(evidence: Evidence) -> list[dict[str, Any]]:
    """Findings, failures first, each linked to the report section holding its evidence."""
    order = {"fail": 0, "warn": 1, "pass": 2}
    out = []
    for f in sorted(evidence.findings, key=lambda f: (order[f.status], f.id, f.model or "")):
        head = f.metric.split(".")[0]
        section = ("performance" if head in ("performance", "fairness") else
                   "global" if ".global_explanations." in f.evidence else "cases")
        bound = "n/a" if f.threshold is None else f"{f.comparator or ''} {_num(f.threshold, 4)}".strip()
        out.append({"status": f.status, "id": f.id, "model": f.model or "", "value": _num(f.value, 4),
                    "threshold": bound, "anchor": section, "evidence": f.evidence, "message": f.message})
    return out


def _param(v: Any) -> str:
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_param(x)}" for k, x in v.items())
    return str(v)


def _methods_view(evidence: Evidence) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for s in evidence.subjects:
        for m in s.methods:
            if m.name in seen:
                continue
            params = {k: _param(v) for k, v in m.spec.items()
                      if k not in ("type", "id", "models") and v not in (None, [], {})}
            derived = {k: _param(v) for k, v in m.parameters.items()
                       if not isinstance(v, (dict, list))}
            note = METHOD_NOTES.get(m.type, {})
            seen[m.name] = {"name": m.name, "title": m.title, "type": m.type, "params": {**params, **derived},
                            "how": note.get("how", ""), "quality": note.get("quality", ""), "cite": note.get("cite", "")}
    return list(seen.values())


# --- rendering -----------------------------------------------------------------------------------------


def render_html(evidence: Evidence, *, generated_at: datetime | None = None, templates: Path | None = None,
                signer: dict | None = None, evidence_sha256: str | None = None, changes=None) -> str:
    """The report. ``signer`` (Identity.describe()) and ``evidence_sha256`` fill the signature and
    verification sections; without a signer the report says it is unsigned."""
    env = _environment(templates)
    view = build_view(evidence, generated_at=generated_at)
    view["signer"] = signer
    view["evidence_sha256"] = evidence_sha256
    view["changes"] = _changes_view(changes) if changes is not None else None
    css = (template_dir() / "report.css").read_text(encoding="utf-8")
    if templates and (templates / "report.css").is_file():
        css = (templates / "report.css").read_text(encoding="utf-8")
    template = env.get_template(f"{evidence.audit['audience']}.html.j2")
    # The stylesheet is a template file (ours or the user's override), not data: insert it verbatim.
    return template.render(**view, css=Markup(css.replace("</", "<\\/")))


def render_pdf(html: str) -> bytes:
    """The PDF of the same HTML (WeasyPrint, print CSS). No network: only inline data: URLs are fetched."""
    import logging

    import weasyprint

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)

    from weasyprint.urls import URLFetcher

    # Only data: URLs (images inlined in the charts' SVG); http, file and the rest are refused.
    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    return weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
