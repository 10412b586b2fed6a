"""Write the synthetic studies' documents: a dose-report screen (SC) and a text SR.

A Secondary Capture dose screen (PS3.3 A.8.1) with Modality CT, as scanners save their
dose page, and a Basic Text SR (PS3.3 A.35.1), the non-image object of each study.
Everything written is synthetic.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    SecondaryCaptureImageStorage,
)

from engine.synth.dicom_base import (
    StudyInfo,
    WrittenSeries,
    base_dataset,
    make_uid,
    series_paths,
    set_pixels,
    write_instance,
)
from engine.synth.profiles import SiteProfile

__all__ = ["write_dose_screen", "write_text_sr"]


# A 3 x 5 pixel font for the dose screen: five rows of three bits per glyph.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111",
    "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010",
    "P": "110101110100100", "R": "110101110101101", "S": "011100010001110",
    "T": "111010010010010", "U": "101101101101111", "V": "101101101101010",
    "W": "101101111111101", "X": "101101010101101", "Y": "101101010010010",
    ".": "000000000000010", ":": "000010000010000", "-": "000000111000000",
    "/": "001001010100100",
}  # fmt: skip


def _draw_text(img: np.ndarray, text: str, row: int, col: int, scale: int, value: int) -> None:
    """Burn ``text`` into ``img`` (uint8) at (row, col); unknown characters are blanks."""
    for n, char in enumerate(text.upper()):
        bits = _GLYPHS.get(char)
        if bits is None:
            continue
        glyph = np.array([int(b) for b in bits], dtype=bool).reshape(5, 3)
        block = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        r, c = row, col + n * 4 * scale
        target = img[r : r + block.shape[0], c : c + block.shape[1]]
        target[block[: target.shape[0], : target.shape[1]]] = value


def _dose_values(study: StudyInfo) -> tuple[float, float]:
    """Deterministic CTDIvol (mGy) and DLP (mGy cm) of a study, from its UID."""
    digest = hashlib.sha256((study.study_uid + "dose").encode()).digest()
    ctdi = 6.0 + digest[0] / 255 * 10.0
    return round(ctdi, 2), round(ctdi * (38.0 + digest[1] / 255 * 12.0), 1)


def write_dose_screen(
    root: Path,
    study: StudyInfo,
    profile: SiteProfile,
    *,
    series_number: int,
    description: str = "Dose Report",
) -> WrittenSeries:
    """Write a dose-report screenshot: Secondary Capture Image Storage with Modality CT.

    The image is 8-bit MONOCHROME2, 256 x 384, with burned-in text (CTDIvol, DLP) and
    blocks, as scanners save their dose page. Returns ``kind='secondary_capture'``.
    """
    series_uid = make_uid(study.study_uid, "series", series_number)
    ds = base_dataset(
        study,
        profile,
        sop_class=SecondaryCaptureImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        modality="CT",
        description=description,
    )
    ds.ConversionType = "WSD"  # SC Equipment module: workstation
    ds.BodyPartExamined = "ABDOMEN"  # not paired, so Laterality (2C) is not required
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = ds.SeriesDate, ds.SeriesTime
    ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 256, 384
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0

    ctdi, dlp = _dose_values(study)
    img = np.zeros((256, 384), dtype=np.uint8)
    img[8:40, 8:376] = 70  # title bar
    img[64:66, 8:376] = img[170:172, 8:376] = 160  # table rules
    _draw_text(img, "DOSE REPORT", 14, 16, 4, 255)
    _draw_text(img, "SERIES KVP CTDIVOL DLP", 76, 16, 3, 220)
    _draw_text(img, f"2 120 {ctdi:.2f} {dlp:.1f}", 112, 16, 3, 220)
    _draw_text(img, f"TOTAL DLP: {dlp:.1f} MGY-CM", 190, 16, 3, 255)
    _draw_text(img, "PHANTOM: BODY 32", 226, 16, 2, 180)
    uid = make_uid(series_uid, 1)
    (path,) = series_paths(root, study, profile, series_number, [uid])
    set_pixels(ds, img, ds.file_meta.TransferSyntaxUID)
    write_instance(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "secondary_capture", description, None, (path,))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """One code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning)."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _text_item(concept: Dataset, text: str) -> Dataset:
    """An SR content item: CONTAINS a TEXT with the given concept name."""
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([concept])
    item.TextValue = text
    return item


def write_text_sr(
    root: Path,
    study: StudyInfo,
    profile: SiteProfile,
    *,
    series_number: int,
    description: str = "Radiology Report",
) -> WrittenSeries:
    """Write a short radiology report as a Basic Text SR (Modality SR, no pixels).

    The content tree is a ``Diagnostic Imaging Report`` container (LOINC 18748-4) holding
    a ``Findings`` and an ``Impression`` section, each with one TEXT item (the section
    structure of TID 2000, without declaring the template). Returns ``kind='sr'``.
    """
    series_uid = make_uid(study.study_uid, "series", series_number)
    ds = base_dataset(
        study,
        profile,
        sop_class=BasicTextSRStorage,
        series_uid=series_uid,
        series_number=series_number,
        modality="SR",
        description=description,
        has_pixels=False,
    )
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.InstanceNumber = 1
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    phase = "portal venous phase after IV contrast" if study.contrast else "without contrast"
    sections = (
        ("121070", "Findings", "121071", "Finding",
         f"CT of the abdomen and pelvis {phase}. Synthetic study for software testing."),
        ("121072", "Impression", "121073", "Impression",
         "Synthetic report: no clinical content."),
    )  # fmt: skip
    content = []
    for sec_code, sec_name, item_code, item_name, text in sections:
        section = Dataset()
        section.RelationshipType = "CONTAINS"
        section.ValueType = "CONTAINER"
        section.ConceptNameCodeSequence = Sequence([_code(sec_code, "DCM", sec_name)])
        section.ContinuityOfContent = "SEPARATE"
        section.ContentSequence = Sequence([_text_item(_code(item_code, "DCM", item_name), text)])
        content.append(section)
    ds.ContentSequence = Sequence(content)
    uid = make_uid(series_uid, 1)
    (path,) = series_paths(root, study, profile, series_number, [uid])
    write_instance(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "sr", description, None, (path,))
