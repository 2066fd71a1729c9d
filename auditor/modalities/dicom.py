"""DICOM files in image datasets: the pixels a viewer shows, and only the tags the policy keeps.

An image dataset's CSV may list DICOM files (suffix ``.dcm``, or any file with ``DICM`` after its 128-byte
preamble) beside PNG files. pydicom reads them. :func:`read_dicom` turns a file into the same uint8 RGB array a PNG
of the displayed pixels gives, so that the model input (float32, divided by 255) is identical whichever
file holds the pixels:

- MONOCHROME2 and MONOCHROME1: stored values -> Modality LUT (``RescaleSlope`` x value +
  ``RescaleIntercept``, or the file's Modality LUT Sequence; DICOM PS3.3 C.11.1) -> the linear VOI LUT
  (PS3.3 C.11.2.1.2.1) with the file's ``WindowCenter`` / ``WindowWidth`` (the first pair if several),
  or the policy's ``dicom_window``, onto 0-255 -> rounded to integers (half to even) -> MONOCHROME1
  inverted (255 - v: its lowest value is white) -> the grey copied into R, G and B, as a greyscale PNG
  converts to RGB.
- RGB (8 bits a sample): taken as stored; DICOM defines no rescale or window for colour.

Transfer syntaxes: the uncompressed ones and RLE Lossless, which pydicom decodes by itself. Others (JPEG,
JPEG-LS, JPEG 2000, ...) need decoder plugins, and lossy JPEG decodes to slightly different pixels with
different libraries, so an audit of them would not be reproducible: they are refused. So are other
photometric interpretations (YBR_*, PALETTE COLOR) and multi-frame files.

Tags: a file's tags are never copied into the evidence, except the keywords the policy lists under
``dicom_tags``. :func:`dicom_keyword` validates those: real keywords of the data dictionary (PS3.6),
and none that identifies a patient or a person (names, ids, addresses, dates and times, instance UIDs;
after PS3.15 Annex E), nor sequences or binary values.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..errors import DataError

__all__ = ["IDENTIFYING", "DicomKeyword", "DicomWindow", "dicom_keyword", "is_dicom", "read_dicom", "voi_linear"]

IDENTIFYING = frozenset({
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientBirthDate", "PatientBirthTime",
    "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation", "MedicalRecordLocator",
    "PatientInsurancePlanCodeSequence", "PatientReligiousPreference", "EthnicGroup", "Occupation",
    "MilitaryRank", "BranchOfService", "CountryOfResidence", "RegionOfResidence", "CurrentPatientLocation",
    "PatientInstitutionResidence", "PatientComments", "AdditionalPatientHistory", "PatientState",
    "ResponsiblePerson", "ResponsibleOrganization", "AccessionNumber", "StudyID", "AdmissionID",
    "ServiceEpisodeID", "RequestedProcedureID", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "ImageComments", "StudyComments",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
})
"""Keywords ``dicom_tags`` refuses by name (PS3.15 Annex E); every person name (VR PN), date or time
(DA, DT, TM) and UID (UI) is refused by its value representation as well."""

_REFUSED_VR = {"PN": "a person's name", "DA": "a date", "DT": "a date and time", "TM": "a time",
               "UI": "a unique identifier"}
_NOT_TEXT_VR = {"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB")


def dicom_keyword(name: str) -> str:
    """``name`` if the policy may keep it in the evidence, else ValueError saying why and what to do."""
    from pydicom.datadict import dictionary_VR, keyword_dict

    if name not in keyword_dict:
        close = difflib.get_close_matches(name, list(keyword_dict), n=3)
        raise ValueError(f"{name!r} is not a DICOM keyword; "
                         + (f"did you mean {' or '.join(close)}?" if close else
                            "use a keyword of the DICOM data dictionary (PS3.6), e.g. Modality"))
    vr = dictionary_VR(name)
    if name in IDENTIFYING or vr in _REFUSED_VR:
        what = ("identifies a patient or a person" if name in IDENTIFYING
                else f"is {_REFUSED_VR[vr]}, which can identify a patient")
        raise ValueError(f"{name} {what} (DICOM PS3.15 Annex E): patient identifiers never reach the evidence or "
                         "the report; remove it from dicom_tags")
    if vr in _NOT_TEXT_VR:
        raise ValueError(f"{name} holds a sequence or binary data (VR {vr}); keep tags with a text or number value, "
                         "e.g. Modality, BodyPartExamined, Manufacturer")
    return name


DicomKeyword = Annotated[str, AfterValidator(dicom_keyword)]
"""A policy's ``dicom_tags`` entry: a keyword :func:`dicom_keyword` accepts."""


class DicomWindow(BaseModel):
    """The policy's ``dicom_window``: a linear VOI window (PS3.3 C.11.2.1.2) replacing the files' own, in the
    units after RescaleSlope / RescaleIntercept (e.g. centre 40, width 400: soft tissue in CT)."""

    model_config = ConfigDict(extra="forbid")

    center: float
    width: float = Field(ge=1, description="At least 1, as the linear function requires.")


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is to be read as DICOM: a ``.dcm`` suffix, or ``DICM`` after the 128-byte preamble."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def voi_linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """The linear VOI LUT of DICOM PS3.3 C.11.2.1.2.1 onto 0-255 (float64, before rounding)."""
    c, w = float(center), float(width)
    x = np.asarray(x, dtype=np.float64)
    lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    inside = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0 if w > 1 else np.zeros_like(x)
    return np.where(x <= lo, 0.0, np.where(x > hi, 255.0, inside))


def _multiple(value) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(value, (list, tuple, MultiValue))


def _tag_text(ds, keyword: str) -> str | None:
    """A kept tag's value as text (multiple values joined by a backslash, as DICOM writes them); None if absent."""
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return None  # not text (policy keywords are text VRs; a file may still store one as bytes)
    if _multiple(value):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _window(ds, override, fail) -> tuple[float, float]:
    if override is not None:
        return float(override.center), float(override.width)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        extra = " (it has a VOI LUT Sequence, which the auditor does not apply)" if "VOILUTSequence" in ds else ""
        fail("WindowCenter/WindowWidth", f"missing{extra}: the auditor needs a window to map the pixels to 8 bits",
             "add dicom_window: {center: ..., width: ...} to this dataset in the policy (in the units after "
             "RescaleSlope/RescaleIntercept, e.g. center 40, width 400 for soft tissue in CT)")
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function != "LINEAR":
        fail("VOILUTFunction", f"is {function}; the auditor applies the LINEAR window only",
             "set dicom_window in the policy to window these files linearly")
    center, width = (float(v[0]) if _multiple(v) else float(v) for v in (ds.WindowCenter, ds.WindowWidth))
    if width < 1:
        fail("WindowWidth", f"is {width:g}; the linear window needs at least 1", "set dicom_window in the policy")
    return center, width


def read_dicom(path: Path, *, where: str, window=None, tags: list[str] | tuple[str, ...] = ()
               ) -> tuple[np.ndarray, dict[str, str | None]]:
    """The displayed pixels of a DICOM file as uint8 (H, W, 3), and the values of the ``tags`` it keeps.

    ``window`` (with ``center`` and ``width``) replaces the files' own windows; ``where`` prefixes every
    error (the dataset and row). Raises DataError naming the file and the DICOM attribute at fault.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import RLELossless, UncompressedTransferSyntaxes

    def fail(field: str, problem: str, hint: str):
        raise DataError(f"{where}: DICOM file {path}: {field} {problem}", hint=hint)

    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise DataError(f"{where}: image file not found: {path}",
                        hint="check the image paths (relative to the CSV)") from None
    except InvalidDicomError:
        raise DataError(f"{where}: {path} is not a DICOM file (no 'DICM' after the 128-byte preamble)",
                        hint="list DICOM Part 10 files (.dcm) or PNG files in the image column") from None
    except Exception as exc:  # pydicom raises many kinds on a damaged or truncated header
        raise DataError(f"{where}: DICOM file {path} cannot be read: {type(exc).__name__}: {exc}",
                        hint="the file may be truncated or damaged: export it again") from None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax not in UncompressedTransferSyntaxes and syntax != RLELossless:
        fail("TransferSyntaxUID", f"is {syntax} ({syntax.name}), a compression the auditor does not decode",
             "decompress the files first (e.g. with pydicom: ds.decompress(); ds.save_as(...)); uncompressed "
             "and RLE Lossless files are read")
    if "PixelData" not in ds:
        fail("PixelData", "is missing: the file holds no image, or it is truncated",
             "list image files only; if this one is an image, export it again (it may be cut short)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in _PHOTOMETRIC:
        fail("PhotometricInterpretation", f"is {photometric or '(missing)'!r}; the auditor reads "
             f"{', '.join(_PHOTOMETRIC)}", "convert the files to RGB or MONOCHROME2 (e.g. with pydicom's "
             "convert_color_space), or export PNG")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        fail("NumberOfFrames", f"is {frames}; each row of an image dataset is one 2-D image",
             "write one file per frame")
    if photometric == "RGB" and int(ds.get("BitsStored", 8)) != 8:
        fail("BitsStored", f"is {ds.BitsStored}; RGB files are read with 8 bits a sample", "export 8-bit RGB")
    try:
        stored = ds.pixel_array
    except Exception as exc:
        fail("PixelData", f"cannot be decoded: {type(exc).__name__}: {exc}",
             "the file may be truncated or damaged: export it again")
    if photometric == "RGB":
        pixels = np.asarray(stored, dtype=np.uint8)
    else:
        if "ModalityLUTSequence" in ds:
            from pydicom.pixels import apply_modality_lut

            values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        else:
            slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
            values = (stored.astype(np.float64) * (1.0 if slope in (None, "") else float(slope))
                      + (0.0 if intercept in (None, "") else float(intercept)))
        grey = np.rint(voi_linear(values, *_window(ds, window, fail))).astype(np.uint8)
        if photometric == "MONOCHROME1":
            grey = 255 - grey
        pixels = np.repeat(grey[..., None], 3, axis=2)
    return pixels, {k: _tag_text(ds, k) for k in tags}
