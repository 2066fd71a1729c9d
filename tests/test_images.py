"""Image models: loading, Grad-CAM / IG / LRP / LIME image, contrastive targets, ground-truth scores, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fixtures_media import image_policy

from auditor.audit import prepare, run_audit

from auditor.plan import plan_run
from auditor.cli import cli
from auditor.explainers import EXPLAINERS, Batch
from auditor.policy import load_policy

REPO = Path(__file__).resolve().parents[1]
LESION_POLICY = REPO / "policies" / "lesion_imaging_medical.yaml"


def explain(prep, name, rows, **options):
    data = prep.dataset
    batch = Batch(X=data.X[rows], ids=[data.ids[r] for r in rows], y=data.y[rows], masks=data.masks[rows])
    spec = EXPLAINERS[name].Spec(type=name, **options)
    return EXPLAINERS[name](spec).explain(prep.model, batch, background=prep.background.X, seed=0)[0]


def test_image_dataset_loads_pixels_and_masks(tiny_image):
    data = tiny_image.dataset
    assert data.X.shape == (24, 3, 16, 16) and data.X.dtype == np.float32 and 0 <= data.X.min() and data.X.max() <= 1
    spot = data.y == "spot"
    assert all(data.masks[i].any() == bool(spot[i]) for i in range(len(data.y)))


def test_lime_image_maps_and_segments_have_the_image_shape(tiny_image):
    results = explain(tiny_image, "lime_image", [1, 3], num_samples=80, n_segments=8)
    for r in results:
        assert np.asarray(r.segments).shape == (16, 16)
        for m in r.maps:
            assert np.asarray(m.attribution).shape == (16, 16)
            assert m.local_fit is not None
        assert set(r.positive_segments or []) | set(r.negative_segments or []) <= set(np.unique(r.segments).tolist())


def test_contrastive_targets_give_different_maps(tiny_image):
    for name, options in (("gradcam", {"layer": "features.2"}), ("integrated_gradients", {"baseline": "black", "n_steps": 16})):
        results = explain(tiny_image, name, [1, 2, 3], targets=["predicted", "other"], **options)
        for r in results:
            assert len(r.maps) == 2 and r.maps[0].target != r.maps[1].target
            assert not np.allclose(r.maps[0].attribution, r.maps[1].attribution)


def test_image_ig_completeness_within_recorded_delta(tiny_image):
    import torch

    prep = tiny_image
    results = explain(prep, "integrated_gradients", [1, 2], baseline="black", n_steps=32)
    for k, r in zip([1, 2], results):
        m = r.maps[0]
        t = prep.model.classes.index(m.target)
        with torch.no_grad():
            fx = prep.model.forward(torch.as_tensor(prep.dataset.X[k:k + 1]))[0, t].item()
            fb = prep.model.forward(torch.zeros_like(torch.as_tensor(prep.dataset.X[k:k + 1])))[0, t].item()
        # maps are stored with 5 significant digits: allow that rounding on top of the recorded delta
        total = float(np.sum(m.attribution))
        assert abs(total - (fx - fb)) <= abs(m.convergence_delta) + 1e-4 * (1 + abs(fx - fb)) + 16 * 16 * 1e-9


def test_unknown_gradcam_layer_is_exit_2_listing_layers(image_folder):
    policy = image_policy(image_folder, [{"type": "gradcam", "layer": "features.99"}])
    result = CliRunner().invoke(cli, ["validate", str(policy)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "features.99" in result.output and "available layers" in result.output
    assert "features.2" in result.output and "classifier" in result.output
    assert "explanations[0].layer" in result.output


def test_lrp_on_unsupported_layer_is_exit_2_naming_it(image_folder):
    policy = image_policy(image_folder, [{"type": "lrp"}], model_file="cnn_flatten.pt", flatten_module=True)
    result = CliRunner().invoke(cli, ["validate", str(policy)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "flatten (Flatten)" in result.output


def test_layer_methods_skip_torchscript_models_with_a_reason(image_folder, tiny_image):
    import torch

    scripted = torch.jit.script(tiny_image.model.module)
    torch.jit.save(scripted, str(image_folder / "cnn_script.pt"))
    path = image_policy(image_folder, [{"type": "gradcam", "layer": "features.2"}, {"type": "integrated_gradients",
                                                                                   "baseline": "black", "n_steps": 8}],
                        model_file="cnn_script.pt")
    text = path.read_text().replace("format: state_dict", "format: torchscript")
    path.write_text(text)
    policy = load_policy(path)
    evidence = run_audit(plan_run(policy, sample_size=2), prepare(policy))
    subject = evidence.subjects[0]
    assert [m.name for m in subject.methods] == ["integrated_gradients"]
    assert "state_dict" in subject.skipped[0].reason


@pytest.mark.skipif(not (REPO / "sample_audits/lesion/models/cnn_state_dict.pt").exists(),
                    reason="lesion sample not built (make test builds it)")
def test_gradcam_and_ig_hit_the_lesion_on_most_images():
    policy = load_policy(LESION_POLICY)
    policy.explanations = [e for e in policy.explanations if e.type in ("gradcam", "integrated_gradients")]
    policy.sample.strategy = "random"
    evidence = run_audit(plan_run(policy, sample_size=12, seed=2), prepare(policy))
    subject = evidence.subjects[0]
    for name in ("gradcam", "integrated_gradients"):
        scored = [m for d in subject.decisions for m in d.explanations[name].maps if m.pointing_hit is not None]
        assert len(scored) >= 3, "the sample must contain lesion images"
        hits = sum(m.pointing_hit for m in scored)
        assert hits >= 0.7 * len(scored), (name, hits, len(scored))
        assert all(0 <= m.mass_in_mask <= 1 for m in scored)
