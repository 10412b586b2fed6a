"""Import the clinical table: data dictionary, validation, linking to scans, storage.

``vfrisk import-clinical FILE --db DB`` (``engine.cli``) calls :func:`import_clinical`.
Modules: ``dictionary`` (the data dictionary as code), ``settings`` (``[clinical]``),
``validate`` (pure checks returning :class:`Problem` records), ``link`` (pure linking of
``patient_id`` to the DICOM PatientID of selected series), ``importer`` (orchestration;
the SQL is in ``engine.store.clinical_tables``).
"""

from engine.clinical.dictionary import COLUMNS, OPTIONAL, REQUIRED, ColumnSpec, markdown_table
from engine.clinical.importer import (
    ClinicalFileError,
    ImportRequest,
    ImportSummary,
    import_clinical,
    read_clinical_file,
    relink,
)
from engine.clinical.link import LinkCounts, link_patients
from engine.clinical.settings import ClinicalSettings, settings_from_config
from engine.clinical.validate import Problem, typed_frame, validate

__all__ = [
    "COLUMNS",
    "OPTIONAL",
    "REQUIRED",
    "ClinicalFileError",
    "ClinicalSettings",
    "ColumnSpec",
    "ImportRequest",
    "ImportSummary",
    "LinkCounts",
    "Problem",
    "import_clinical",
    "link_patients",
    "markdown_table",
    "read_clinical_file",
    "relink",
    "settings_from_config",
    "typed_frame",
    "validate",
]
