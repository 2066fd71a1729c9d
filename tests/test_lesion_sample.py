"""The lesion sample's generator and CNN: deterministic images, honest masks, a CNN that LRP can explain.

build.py and cnn.py are loaded from their files (sample_audits is not a package). Nothing is trained
here and nothing is written to the sample's data/ or models/ folders.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

LESION = Path(__file__).resolve().parents[1] / "sample_audits" / "lesion"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build():
    return _load("lesion_sample_build", LESION / "build.py")


@pytest.fixture(scope="module")
def cnn():
    return _load("lesion_sample_cnn_under_test", LESION / "cnn.py")


def test_generator_is_deterministic(build):
    first, second = build.make_split(8, seed=123), build.make_split(8, seed=123)
    assert [s.image_id for s in first] == [f"L{k:04d}" for k in range(1, 9)]
    for a, b in zip(first, second):
        assert a.label == b.label
        assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
        assert a.mask.dtype == np.uint8 and a.mask.shape == (64, 64)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    other = build.make_split(8, seed=124)
    assert not all(np.array_equal(a.image, c.image) for a, c in zip(first, other))


def test_written_files_are_identical(build, tmp_path):
    samples = build.make_split(4, seed=7)
    build.write_split(samples, tmp_path / "a")
    build.write_split(build.make_split(4, seed=7), tmp_path / "b")
    for rel in ["labels.csv"] + [f"{d}/{s.image_id}.png" for s in samples for d in ("images", "masks")]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    lines = (tmp_path / "a" / "labels.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image_id,file,mask,label"
    first = samples[0]
    assert lines[1] == f"{first.image_id},images/{first.image_id}.png,masks/{first.image_id}.png,{first.label}"


def test_masks_mark_lesions_only_and_lie_inside(build):
    samples = build.make_split(12, seed=5)
    labels = [s.label for s in samples]
    assert labels.count("lesion") == labels.count("normal") == 6
    for s in samples:
        assert set(np.unique(s.mask)) <= {0, 255}
        inside = s.mask > 0
        if s.label == "normal":
            assert not inside.any()
            continue
        assert inside.sum() >= 50  # semi-axes of at least 5 px
        rows, cols = np.nonzero(inside)
        m = build.MARGIN
        assert rows.min() >= m and cols.min() >= m and rows.max() <= 63 - m and cols.max() <= 63 - m


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mask_is_exactly_the_painted_pixels(build, seed):
    # The background is drawn before the lesion, so the same rng gives the same image without it.
    image, mask = build.make_image(np.random.default_rng(seed), lesion=True)
    again, mask_again = build.make_image(np.random.default_rng(seed), lesion=True)
    assert np.array_equal(image, again) and np.array_equal(mask, mask_again)
    background, none = build.make_image(np.random.default_rng(seed), lesion=False)
    assert not none.any()
    inside = mask > 0
    assert np.array_equal(image[~inside], background[~inside])  # nothing painted outside the mask
    darkening = background.astype(int).sum(axis=2) - image.astype(int).sum(axis=2)
    assert darkening[inside].min() > 10  # every mask pixel is visibly darker, even on the faded border
    assert darkening[inside].max() > 250  # and the core is dark brown


def test_cnn_forward_shape_and_layers(cnn):
    import torch

    torch.manual_seed(0)
    model = cnn.LesionCNN().eval()
    out = model(torch.rand(5, 3, 64, 64))
    assert out.shape == (5, 2)
    names = dict(model.named_modules())
    assert isinstance(names["features.6"], torch.nn.Conv2d) and isinstance(names["features.7"], torch.nn.ReLU)
    assert cnn.CLASSES == ["normal", "lesion"]
    # a fresh model accepts the state_dict keys the build saves
    assert {"normalize.mean", "normalize.std", "classifier.weight"} <= set(model.state_dict())


def test_lrp_runs_on_untrained_cnn_and_conserves_relevance(cnn):
    import torch
    from captum.attr import LRP

    torch.manual_seed(0)
    model = cnn.LesionCNN().eval()
    model.set_normalisation(torch.tensor([0.8, 0.65, 0.6]), torch.tensor([0.08, 0.09, 0.1]))
    x = torch.rand(3, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Input Tensor 0 did not already require gradients"
        attr = LRP(model).attribute(x, target=1)
        again = LRP(model).attribute(x, target=1)  # captum deletes rules after a call; ours must survive
    assert attr.shape == x.shape and torch.isfinite(attr).all()
    assert torch.equal(attr, again)
    # the identity rule over the normaliser: input relevance equals LRP's relevance of the normalised
    # input, as computed on the same layers without the normaliser
    class Rest(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.pool, self.classifier = model.features, model.pool, model.classifier

        def forward(self, z):
            return self.classifier(torch.flatten(self.pool(self.features(z)), 1))

    z = model.normalize(x).detach()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = LRP(Rest().eval()).attribute(z, target=1)
    assert torch.allclose(attr, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_sample_audit_report_traces_every_figure():
    """The lesion sample policy itself (its trained CNN, 2 decisions): every figure of its HTML is the
    evidence field its path names. The other samples are rendered from stored evidence in test_render.py."""
    import json

    from auditor.audit import prepare, run_audit
    from auditor.plan import plan_run
    from auditor.policy import load_policy
    from auditor.report import render_html

    from evidence_trace import trace

    if not (LESION / "models" / ".built").is_file():
        pytest.fail("sample models missing: run make samples")
    policy = load_policy(LESION.parents[1] / "policies" / "lesion_imaging_medical.yaml")
    evidence = run_audit(plan_run(policy, sample_size=2), prepare(policy))
    checked, problems = trace(render_html(evidence), json.loads(evidence.to_json()))
    assert not problems, "\n".join(problems[:20])
    assert checked > 50
