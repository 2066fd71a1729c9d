"""Text models: loading a local transformers folder, Layer IG completeness, LIME text, attention, rationales."""

from __future__ import annotations

import numpy as np

from fixtures_media import text_policy

from auditor.audit import prepare, run_audit

from auditor.plan import plan_run
from auditor.explainers import EXPLAINERS, Batch
from auditor.policy import load_policy
from auditor.report import render_html


def batch(prep, rows):
    data = prep.dataset
    return Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows],
                 rationales=[data.rationales[r] for r in rows])


def explain(prep, name, rows, **options):
    spec = EXPLAINERS[name].Spec(type=name, **options)
    return EXPLAINERS[name](spec).explain(prep.model, batch(prep, rows), background=prep.background.X, seed=0)[0]


def test_text_model_loads_offline_with_classes_from_config(tiny_text):
    assert tiny_text.model.classes == ["routine", "urgent"]
    proba = tiny_text.model.predict_proba(list(tiny_text.dataset.X[:4]))
    assert proba.shape == (4, 2) and np.allclose(proba.sum(axis=1), 1)


def test_layer_ig_completeness_within_recorded_delta(tiny_text):
    import torch

    prep = tiny_text
    tok = prep.model.tokenizer
    for output in ("logit", "probability"):
        results = explain(prep, "layer_integrated_gradients", [0, 1, 2], n_steps=64, output=output)
        for k, r in zip([0, 1, 2], results):
            t = r.targets[0]
            enc = prep.model.encode([prep.dataset.X[k]])
            ids, mask = enc["input_ids"], enc["attention_mask"]
            base = ids.clone()
            special = torch.tensor([[int(i) in {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id} for i in ids[0]]])
            base[~special] = tok.pad_token_id
            with torch.no_grad():
                f = lambda x: prep.model.module(input_ids=x, attention_mask=mask).logits  # noqa: E731
                fx, fb = f(ids), f(base)
                if output == "probability":
                    fx, fb = fx.softmax(-1), fb.softmax(-1)
            cls = prep.model.classes.index(t.target)
            change = float(fx[0, cls] - fb[0, cls])
            assert len(t.values) == len(r.tokens) == int(mask.sum())
            assert abs(sum(t.values) - change) <= abs(t.convergence_delta) + 1e-4 * (1 + abs(change))


def test_lime_text_weights_words_and_scores_rationale(tiny_text):
    results = explain(tiny_text, "lime_text", [0, 1], num_samples=120, num_features=5)
    for r in results:
        assert r.tokens and len(r.targets[0].values) == len(r.tokens)
        assert r.in_rationale is not None and any(r.in_rationale)
        assert len({w for w, v in zip(r.tokens, r.targets[0].values) if v != 0}) <= 5  # distinct words


def test_attention_rollout_is_a_distribution(tiny_text):
    results = explain(tiny_text, "attention", [0, 1])
    for r in results:
        L = np.asarray(r.cls_attention)
        assert L.shape[:2] == (2, 2) and L.shape[2] == len(r.tokens)
        assert abs(sum(r.rollout) - 1) < 1e-5 and min(r.rollout) >= 0


def test_text_report_shades_tokens_and_says_attention_is_not_attribution(text_folder):
    policy = load_policy(text_policy(text_folder, [{"type": "layer_integrated_gradients", "n_steps": 8},
                                                   {"type": "attention"}]))
    evidence = run_audit(plan_run(policy, sample_size=2), prepare(policy))
    html = render_html(evidence)
    assert "attention is not attribution" in html.lower()
    assert 'class="tok' in html and "rgba(" in html
    assert evidence.subjects[0].decisions[0].text
