"""Reason codes: every bad-input outcome in vfrisk carries a stable code and a sentence.

Codes are short, stable strings that tests and the dashboard group by; the sentence beside
each code says what it means in words a radiographer or data manager understands. Add a
code here before using it anywhere (``reason()`` refuses unknown codes).
"""

from __future__ import annotations

__all__ = ["REASONS", "VfriskError", "reason"]

REASONS: dict[str, str] = {
    # configuration and command line
    "bad_config": "The configuration file is invalid.",
    "bad_profile": "A synthetic site profile is invalid.",
    "bad_sites_spec": "The --sites specification is invalid.",
    "bad_argument": "A command-line argument is invalid.",
    "output_exists": "The output location already holds data that would be overwritten.",
    # storage
    "db_busy": "The database stayed locked by another vfrisk process for too long.",
    "db_schema_mismatch": "The database was written by an incompatible vfrisk version.",
    "db_not_found": "The database file does not exist.",
    "db_read_only": "The database file cannot be written (read-only file or file system).",
    # file-level reading (index and load)
    "not_dicom": "The file is not a DICOM file.",
    "empty_file": "The file is empty (zero bytes).",
    "truncated": "The file ends before its data does; it was probably cut off in transfer.",
    "no_pixel_data": "The DICOM object holds no image pixels.",
    "unsupported_transfer_syntax": "The pixel compression cannot be decoded here.",
    "bad_header": "The DICOM header is damaged or lacks required attributes.",
    "bad_zip": "The zip archive is damaged or cannot be opened.",
    "bad_nifti": "The NIfTI file is damaged or has no usable geometry.",
    "decode_failed": "The image pixels could not be decoded.",
    "dicomdir": "The file is a DICOMDIR (a media directory of the archive), not an image.",
    "archive_not_found": "The archive folder to index does not exist or is not a folder.",
    # series-level eligibility (index) and loading
    "not_ct": "The series is not CT (another modality).",
    "no_image": "The object holds no images (a report, dose record or other document).",
    "localizer": "The series is a scout (localizer), not an axial image stack.",
    "secondary_capture": "The series is a secondary capture (a screenshot, e.g. a dose page).",
    "derived": "The series is derived or reformatted, not an original axial reconstruction.",
    "not_axial": "The images are not axial (coronal, sagittal or oblique planes).",
    "too_few_slices": "The series has too few slices to cover the lumbar spine.",
    "short_coverage": "The series covers too short a length along the body for T12-L4.",
    "thick_slices": "The slices are thicker than allowed for scoring.",
    "mixed_sizes": "The slices of the series disagree in size or orientation.",
    "slice_gap": "Slices are missing: the gap between neighbours is too large to fill in.",
    "not_preferred": "Another series of the same study was chosen for scoring.",
    "series_not_found": "The series is not in the database.",
    "mixed_series": "The files given as one series belong to several series.",
    "overlapping_slices": "Two different images share one position; the series mixes acquisitions.",
    # anatomy (issue 4)
    "empty_volume": "The volume holds only air (every voxel at or below -900 HU).",
    "no_spine_found": "No vertebral column was found: the volume holds no persistent bone.",
    "not_abdomen": (
        "Bone was found but no vertebral bodies: the scan is not of the trunk (head, limb)."
    ),
    "no_level_anchor": (
        "Vertebrae were found but neither the last ribs (T12) nor the pelvis (L5) to name them."
    ),
    "muscle_weights_missing": (
        "The weights of the built-in muscle network are missing from the installation."
    ),
    # clinical import (issue 5)
    "clinical_file_not_found": "The clinical file to import does not exist.",
    "clinical_unreadable": "The clinical file cannot be read as CSV or Parquet.",
    "clinical_invalid": (
        "The clinical table breaks the data dictionary; the report names each row, column, "
        "value and rule, and nothing was imported."
    ),
    # anatomy: imported masks and cached model inputs (issue 4)
    "masks_missing": "The segmentation masks of the series (TotalSegmentator output) are missing.",
    "masks_misaligned": (
        "The segmentation masks lie on another grid than the CT series (another series or "
        "a cropped volume)."
    ),
    "preprocessing_mismatch": (
        "Cached model inputs were made with other preprocessing settings than the current ones."
    ),
    # evaluation report (issue 5)
    "no_clinical_data": (
        "The database holds no clinical table; import it with `vfrisk import-clinical` first."
    ),
    "model_not_found": "The requested model id is not in the database's models table.",
    "unknown_output_format": "The report output file has an extension vfrisk cannot write.",
    "checkpoint_mismatch": "The model checkpoint is for other preprocessing, or is damaged.",
    # experiments (issue 6)
    "comparator_not_fitted": (
        "A comparator model could not be fitted on the development site (too few fractures "
        "among complete cases, constant covariates, or no convergence)."
    ),
    "unknown_variant": "The experiment variant name is not one vfrisk knows.",
    # batch scoring (issue 7)
    "model_missing": (
        "The fracture model's checkpoint file does not exist: train one with `vfrisk train` "
        "or pass --model."
    ),
    "no_levels_present": (
        "None of the levels T12-L4 was found in the series, so the model cannot score it."
    ),
    "ray_unavailable": (
        "The Ray backend needs the optional `ray` extra (pip install -e '.[ray]')."
    ),
    # training (issue 6)
    "no_training_data": (
        "The database holds no patient of the training site that is linked to a scan with "
        "usable model inputs."
    ),
    "too_few_events": (
        "Too few fractures (prevalent or incident) among the training patients to train and "
        "validate a model."
    ),
    "recalibration_failed": (
        "The validation patients cannot recalibrate the model's risk (no fracture by the "
        "horizon, or a risk that does not rank them); the model is saved uncalibrated."
    ),
    "worker_died": (
        "The worker process preparing the series died (out of memory, or killed) each time "
        "it was tried."
    ),
    "internal_error": (
        "vfrisk failed unexpectedly on this item (a bug); the traceback is in the error text. "
        "Please report it."
    ),
    # -- dashboard (issue 8) -----------------------------------------------------------
    "unsafe_host": (
        "The dashboard would listen on a network address without authentication configured."
    ),
    "pseudonym_key_unavailable": (
        "The pseudonym key file is missing and cannot be created (an unwritable folder)."
    ),
    "upload_refused": (
        "The uploaded file was refused: too large, too many members, a zip bomb, a path "
        "leaving the upload folder, or not a DICOM series / NIfTI volume."
    ),
}


def reason(code: str) -> str:
    """The human sentence for a reason code; raises KeyError for an unknown code."""
    return REASONS[code]


class VfriskError(Exception):
    """An error the user can act on: a reason code plus a message naming file or row.

    Parameters
    ----------
    code : str
        A key of ``REASONS``.
    message : str
        What failed, where (file, row, key) and what to do about it.
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in REASONS:
            raise KeyError(f"unknown reason code {code!r}; add it to engine.errors.REASONS")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"
