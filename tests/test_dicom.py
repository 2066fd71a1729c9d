"""DICOM files in image datasets: the same model input and maps as PNG, rescale and window, patient data kept out.

Every file here is a real DICOM file written with pydicom in a temporary folder; the model is the tiny CNN of
``fixtures_media`` (trained once per session), and the lesion sample's build script writes its DICOM copies.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from evidence_trace import trace
from fixtures_media import image_policy

from auditor.audit import prepare, run_audit
from auditor.cli import cli
from auditor.errors import DataError, PolicyError
from auditor.modalities.dicom import IDENTIFYING, DicomWindow, dicom_keyword, read_dicom
from auditor.plan import plan_run
from auditor.policy import load_policy

REPO = Path(__file__).resolve().parents[1]
LESION = REPO / "sample_audits" / "lesion"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
GREY = {"slope": 0.5, "intercept": -1024.0, "center": 40.0, "width": 511.0}  # 4 g + 1617 -> g after both LUTs


def write_dicom(path: Path, stored: np.ndarray, photometric: str = "MONOCHROME2", *, bits: int | None = None,
                slope=None, intercept=None, center=None, width=None, **tags) -> Path:
    """A DICOM Part 10 file (explicit VR little endian) holding ``stored`` as its pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    ds.set_pixel_data(stored, photometric, bits or stored.dtype.itemsize * 8, generate_instance_uid=False)
    for key, value in (("RescaleSlope", slope), ("RescaleIntercept", intercept), ("WindowCenter", center),
                       ("WindowWidth", width)):
        if value is not None:
            setattr(ds, key, value)
    for key, value in ({"Modality": "OT"} | tags).items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def grey_dicom(path: Path, grey: np.ndarray, photometric: str = "MONOCHROME2", **tags) -> Path:
    """``grey`` (uint8) as 12-bit stored values whose rescale and window give ``grey`` back (MONOCHROME1: inverted)."""
    shown = grey if photometric == "MONOCHROME2" else 255 - grey
    return write_dicom(path, 1617 + 4 * shown.astype(np.uint16), photometric, bits=12, **GREY, **tags)


def policy_for(image_folder: Path, folder: Path, csv: Path, explanations: list[dict], **dataset) -> Path:
    """The tiny image policy, written in ``folder``, auditing the tiny CNN on the images ``csv`` lists."""
    data = yaml.safe_load(image_policy(image_folder, explanations).read_text(encoding="utf-8"))
    model = data["models"][0]
    model["path"] = str(image_folder / "cnn.pt")
    model["architecture"]["file"] = str(image_folder / "tiny_cnn.py")
    data["datasets"][0].update({"path": str(csv), **dataset})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def copy_dataset(image_folder: Path, folder: Path, write) -> Path:
    """A copy of the tiny image dataset whose image k is ``write(k, rgb_pixels, folder)`` (a file name)."""
    from PIL import Image

    frame = pd.read_csv(image_folder / "data" / "labels.csv")
    files = []
    for k, name in enumerate(frame["file"]):
        files.append(write(k, np.asarray(Image.open(image_folder / "data" / name).convert("RGB")), folder))
    frame["file"] = files
    frame["mask"] = [str(image_folder / "data" / m) for m in frame["mask"]]
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


def _png_grey(k, rgb, folder):
    from PIL import Image

    (folder / "png").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).convert("L").save(folder / "png" / f"{k}.png")
    return f"png/{k}.png"


def _png_rgb(k, rgb, folder):
    from PIL import Image

    (folder / "png").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / "png" / f"{k}.png")
    return f"png/{k}.png"


def _luminance(rgb):
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).convert("L"))


WRITERS = {
    "rgb": lambda k, rgb, folder: write_dicom(folder / "rgb" / f"{k}.dcm", rgb, "RGB").relative_to(folder).as_posix(),
    "grey": lambda k, rgb, folder: grey_dicom(folder / "grey" / f"{k}.dcm", _luminance(rgb)).relative_to(folder).as_posix(),
    "inverted": lambda k, rgb, folder: grey_dicom(folder / "mono1" / f"{k}.dcm", _luminance(rgb),
                                                  "MONOCHROME1").relative_to(folder).as_posix(),
    # PNG and DICOM in one dataset; the DICOM files named .img, found by their DICM marker
    "mixed": lambda k, rgb, folder: (_png_grey(k, rgb, folder) if k % 2 else
                                     grey_dicom(folder / "grey" / f"{k}.img", _luminance(rgb)).relative_to(folder).as_posix()),
}


def _audit(policy_path: Path):
    policy = load_policy(policy_path)
    prepared = prepare(policy)
    return prepared[0].dataset, run_audit(plan_run(policy, sample_size=4), prepared)


EXPLANATIONS = [{"type": "gradcam", "layer": "features.2"},
                {"type": "integrated_gradients", "baseline": "black", "n_steps": 8}]


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_dicom_gives_the_model_input_and_maps_of_the_same_pixels_as_png(image_folder, tmp_path, kind):
    # the same pixels as PNG: the fixture's RGB PNGs for RGB DICOM, their greyscale PNGs for the others
    png_writer = _png_rgb if kind == "rgb" else _png_grey
    png_csv = copy_dataset(image_folder, tmp_path / "png", png_writer)
    dicom_csv = copy_dataset(image_folder, tmp_path / "dicom", WRITERS[kind])
    png_data, png = _audit(policy_for(image_folder, tmp_path / "p1", png_csv, EXPLANATIONS))
    dicom_data, dicom = _audit(policy_for(image_folder, tmp_path / "p2", dicom_csv, EXPLANATIONS,
                                          dicom_tags=["Modality"]))
    assert dicom_data.X.dtype == np.float32 and np.array_equal(dicom_data.X, png_data.X)
    a, b = png.subjects[0].decisions, dicom.subjects[0].decisions
    assert [d.id for d in a] == [d.id for d in b] and len(a) == 4
    for x, y in zip(a, b):
        assert x.image_png == y.image_png and x.probabilities == y.probabilities
        assert json.dumps(x.model_dump(mode="json")["explanations"]) == json.dumps(y.model_dump(mode="json")["explanations"])
        assert x.dicom_tags is None
        assert y.dicom_tags == (None if y.image_file.endswith(".png") else {"Modality": "OT"})


def test_rescale_slope_intercept_and_window_give_the_hand_computed_pixels(tmp_path):
    # stored 1000, slope 2, intercept -1024: 976; linear window centre 1000, width 200 (PS3.3 C.11.2.1.2.1):
    # ((976 - 999.5) / 199 + 0.5) * 255 = 97.39 -> 97. 0 -> -1024, below the window: 0; 4000 -> 6976: 255.
    # stored 1012 -> 1000: ((1000 - 999.5) / 199 + 0.5) * 255 = 128.14 -> 128.
    stored = np.array([[1000, 0], [4000, 1012]], dtype=np.uint16)
    window = {"slope": 2, "intercept": -1024, "center": 1000, "width": 200}
    mono2, _ = read_dicom(write_dicom(tmp_path / "a.dcm", stored, **window), where="test")
    assert mono2.dtype == np.uint8 and mono2.shape == (2, 2, 3)
    assert mono2[..., 0].tolist() == [[97, 0], [255, 128]]
    assert np.array_equal(mono2[..., 0], mono2[..., 1]) and np.array_equal(mono2[..., 0], mono2[..., 2])
    mono1, _ = read_dicom(write_dicom(tmp_path / "b.dcm", stored, "MONOCHROME1", **window), where="test")
    assert mono1[..., 0].tolist() == [[158, 255], [0, 127]]  # inverted: the lowest value shows white
    # signed pixels (CT-style): -24 with intercept 1000 is 976 again
    signed, _ = read_dicom(write_dicom(tmp_path / "c.dcm", np.array([[-24, -2000]], dtype=np.int16), slope=1,
                                       intercept=1000, center=1000, width=200), where="test")
    assert signed[..., 0].tolist() == [[97, 0]]
    # a policy window replaces the file's: centre 976, width 101: ((976 - 975.5) / 100 + 0.5) * 255 = 128.78 -> 129
    mine, _ = read_dicom(tmp_path / "a.dcm", where="test", window=DicomWindow(center=976, width=101))
    assert mine[0, 0, 0] == 129
    # without the rescale, stored 1000 is the window's centre: 128, not 97
    plain, _ = read_dicom(write_dicom(tmp_path / "d.dcm", stored, center=1000, width=200), where="test")
    assert plain[0, 0, 0] == 128


def test_rle_lossless_reads_as_the_uncompressed_file(tmp_path):
    from pydicom import dcmread
    from pydicom.uid import RLELossless

    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ds = dcmread(grey_dicom(tmp_path / "plain.dcm", grey))
    ds.compress(RLELossless)  # pydicom's own RLE encoder: no plugin
    ds.save_as(tmp_path / "rle.dcm")
    plain, _ = read_dicom(tmp_path / "plain.dcm", where="t")
    rle, _ = read_dicom(tmp_path / "rle.dcm", where="t")
    assert np.array_equal(rle, plain) and np.array_equal(plain[..., 0], grey)


def test_policy_window_reaches_the_model_input(image_folder, tmp_path):
    csv = copy_dataset(image_folder, tmp_path / "d", WRITERS["grey"])
    # the files' own window maps them to their grey pixels; centre 40 +- 25 saturates most of them
    path = policy_for(image_folder, tmp_path / "p", csv, EXPLANATIONS[:1], dicom_window={"center": 40, "width": 51})
    data = prepare(load_policy(path))[0].dataset
    first = pd.read_csv(csv)["file"][0]
    grey, _ = read_dicom(tmp_path / "d" / first, where="t", window=DicomWindow(center=40, width=51))
    assert np.array_equal(data.X[0, 0], grey[..., 0].astype(np.float32) / 255.0)
    own = prepare(load_policy(policy_for(image_folder, tmp_path / "q", csv, EXPLANATIONS[:1])))[0].dataset
    assert not np.array_equal(own.X, data.X)


PLANTED = ["Qwertzuiop", "Yxcvbnmasd", "PID-7731-ZQX", "OPID-5550-KLM", "19230405", "Klinikum Plantedorf"]


def test_patient_identifiers_reach_no_output_file(image_folder, tmp_path):
    """Name, ids, birth date and institution are in every file's tags; none is in any output, as bytes or as
    the PDF's text. The kept tags are, as evidence fields, and a hostile kept value is escaped."""

    def planted(k, rgb, folder):
        return write_dicom(folder / "rgb" / f"{k}.dcm", rgb, "RGB", PatientName="Qwertzuiop^Yxcvbnmasd",
                           PatientID="PID-7731-ZQX", OtherPatientIDs="OPID-5550-KLM", PatientBirthDate="19230405",
                           InstitutionName="Klinikum Plantedorf", StudyDescription="Qwertzuiop follow-up",
                           Modality="XC", BodyPartExamined="SKIN",
                           Manufacturer="<script>alert(1)</script>").relative_to(folder).as_posix()

    csv = copy_dataset(image_folder, tmp_path / "data", planted)
    path = policy_for(image_folder, tmp_path / "policy", csv, EXPLANATIONS[:1],
                      dicom_tags=["Modality", "BodyPartExamined", "Manufacturer", "SeriesDescription"])
    data = yaml.safe_load(path.read_text())
    data["report"]["formats"] = ["html", "pdf"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "run" / "out"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--sample", "2", "-q"])
    assert result.exit_code in (0, 1), result.output
    written = [f for f in (tmp_path / "run").rglob("*") if f.is_file()]  # the output and the audit history beside it
    assert {"report.html", "report.pdf", "evidence.json", "manifest.json"} <= {f.name for f in written}
    for f in written:
        content = f.read_bytes().lower()
        for secret in PLANTED:
            assert secret.lower().encode() not in content, (secret, f.name)
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True, check=True).stdout
        assert b"SKIN" in text and not any(s.lower().encode() in text.lower() for s in PLANTED)
    evidence = json.loads((out / "evidence.json").read_text(encoding="utf-8"))
    kept = [d["dicom_tags"] for d in evidence["subjects"][0]["decisions"]]
    assert kept == [{"Modality": "XC", "BodyPartExamined": "SKIN", "Manufacturer": "<script>alert(1)</script>",
                     "SeriesDescription": None}] * 2
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'data-evidence="subjects[0].decisions[0].dicom_tags.BodyPartExamined" data-format="text">SKIN<' in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    _, problems = trace(html, evidence)
    assert not problems, problems[:5]


@pytest.mark.parametrize("case", ["photometric", "truncated", "compressed", "not_dicom", "no_window", "frames"])
def test_bad_dicom_is_a_data_error_naming_the_file_and_the_field(tmp_path, case):
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    path = tmp_path / "scan.dcm"
    grey = np.full((16, 16), 100, dtype=np.uint16)
    field = {"photometric": "PhotometricInterpretation", "truncated": "PixelData", "compressed": "TransferSyntaxUID",
             "not_dicom": "not a DICOM file", "no_window": "WindowCenter", "frames": "NumberOfFrames"}[case]
    if case == "photometric":
        write_dicom(path, np.zeros((16, 16, 3), np.uint8), "RGB")
        ds = dcmread(path)
        ds.PhotometricInterpretation = "YBR_FULL"
        ds.save_as(path)
    elif case == "truncated":
        raw = write_dicom(path, grey, center=100, width=50).read_bytes()
        path.write_bytes(raw[:-100])
    elif case == "compressed":
        ds = dcmread(write_dicom(path, np.zeros((16, 16, 3), np.uint8), "RGB"))
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.save_as(path)
    elif case == "not_dicom":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    elif case == "no_window":
        write_dicom(path, grey)
    else:
        ds = dcmread(write_dicom(path, grey, center=100, width=50))
        ds.NumberOfFrames = 2
        ds.save_as(path)
    with pytest.raises(DataError) as err:
        read_dicom(path, where="datasets[x]")
    assert str(path) in err.value.message and field in err.value.message
    assert err.value.hint
    if case == "no_window":
        assert "dicom_window" in err.value.hint


@pytest.mark.parametrize("case", ["truncated", "photometric"])
def test_auditor_run_on_a_bad_dicom_exits_2_without_traceback(image_folder, tmp_path, case):
    from pydicom import dcmread

    def bad_third(k, rgb, folder):
        name = grey_dicom(folder / "grey" / f"{k}.dcm", _luminance(rgb))
        if k == 3 and case == "truncated":
            name.write_bytes(name.read_bytes()[:-40])
        elif k == 3:
            ds = dcmread(name)
            ds.PhotometricInterpretation = "PALETTE COLOR"
            ds.save_as(name)
        return name.relative_to(folder).as_posix()

    csv = copy_dataset(image_folder, tmp_path / "d", bad_third)
    path = policy_for(image_folder, tmp_path / "p", csv, EXPLANATIONS[:1])
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Error:" in result.output
    assert "3.dcm" in result.output and "I03" in result.output  # the file and its row's id
    assert ("PixelData" if case == "truncated" else "PhotometricInterpretation") in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("keyword", ["PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                                     "ReferringPhysicianName", "StudyDate", "SOPInstanceUID", "AccessionNumber"])
def test_policy_refuses_patient_identifying_tags(image_folder, tmp_path, keyword):
    path = policy_for(image_folder, tmp_path, tmp_path / "labels.csv", EXPLANATIONS[:1],
                      dicom_tags=["Modality", keyword])
    (tmp_path / "labels.csv").write_text("file,label\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    [problem] = [p for p in err.value.problems if "dicom_tags" in p.field]
    assert problem.field == "datasets[0].dicom_tags[1]" and problem.line
    assert keyword in problem.message and "patient" in problem.message and "remove it" in problem.message
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output and keyword in result.output


def test_policy_checks_dicom_keywords_and_window(image_folder, tmp_path):
    (tmp_path / "labels.csv").write_text("file,label\n")
    path = policy_for(image_folder, tmp_path, tmp_path / "labels.csv", EXPLANATIONS[:1],
                      dicom_tags=["Modalty", "ReferencedImageSequence"], dicom_window={"center": 40, "width": 0})
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    text = str(err.value)
    assert "'Modalty' is not a DICOM keyword; did you mean Modality" in text
    assert "ReferencedImageSequence holds a sequence" in text
    assert "datasets[0].dicom_window.width" in text
    assert dicom_keyword("BodyPartExamined") == "BodyPartExamined" and dicom_keyword("PatientAge") == "PatientAge"


def test_every_refused_keyword_is_a_real_dicom_keyword():
    from pydicom.datadict import keyword_dict

    assert sorted(k for k in IDENTIFYING if k not in keyword_dict) == []


# --- the lesion sample's DICOM copies -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("lesion_sample_build_dicom", LESION / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_lesion_build_writes_dicom_copies_of_the_same_pixels(build, tmp_path):
    from PIL import Image

    samples = build.dicom_choice(build.make_split(10, seed=9))
    assert sorted(s.label for s in samples) == ["lesion", "lesion", "normal", "normal"]
    build.write_dicom_copies(samples, tmp_path / "a")
    build.write_dicom_copies(build.dicom_choice(build.make_split(10, seed=9)), tmp_path / "b")
    files = sorted(f.relative_to(tmp_path / "a") for f in (tmp_path / "a").rglob("*") if f.is_file())
    assert len(files) == 10
    for rel in files:  # deterministic, byte for byte
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    from pydicom import dcmread

    for s in samples:
        rgb, tags = read_dicom(tmp_path / "a" / "rgb" / f"{s.image_id}.dcm", where="t", tags=["Modality"])
        assert np.array_equal(rgb, s.image) and tags == {"Modality": "XC"}
        grey_file = tmp_path / "a" / "grey" / f"{s.image_id}.dcm"
        grey, _ = read_dicom(grey_file, where="t")
        assert np.array_equal(grey[..., 0], np.asarray(Image.fromarray(s.image).convert("L")))
        ds = dcmread(grey_file)
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) != (1.0, 0.0) and "WindowCenter" in ds
        assert str(ds.PatientName) and ds.PatientID  # fake, for the privacy checks
    lines = (tmp_path / "a" / "labels.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image_id,file,mask,label" and lines[1].startswith(f"{samples[0].image_id},rgb/")


@pytest.mark.skipif(not (LESION / "data" / "dicom" / "labels.csv").is_file(),
                    reason="lesion sample's DICOM copies not built (make samples builds them)")
def test_lesion_cnn_sees_the_same_images_from_the_sample_dicom_copies(tmp_path):
    policy = yaml.safe_load((REPO / "policies" / "lesion_imaging_medical.yaml").read_text(encoding="utf-8"))
    base = REPO / "policies"
    for m in policy["models"]:
        m["path"] = str((base / m["path"]).resolve())
        m["architecture"]["file"] = str((base / m["architecture"]["file"]).resolve())
    policy["datasets"] = [dict(policy["datasets"][0], id="dicom", path=str(LESION / "data" / "dicom" / "labels.csv"),
                               dicom_tags=["Modality", "BodyPartExamined"])]
    policy["audited"] = [{"model": "cnn", "dataset": "dicom"}]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    dicom = prepare(load_policy(path))[0].dataset
    png = prepare(load_policy(REPO / "policies" / "lesion_imaging_medical.yaml"))[0].dataset
    rows = [list(png.ids).index(i) for i in dicom.ids]
    assert np.array_equal(dicom.X, png.X[rows]) and np.array_equal(dicom.masks, png.masks[rows])
    assert dicom.tags == [{"Modality": "XC", "BodyPartExamined": "SKIN"}] * 4
