"""The database schema: every table vfrisk writes, in one place.

Each issue adds its tables here. ``SCHEMA_VERSION`` is bumped whenever a table changes
incompatibly; a database of another version is refused with ``db_schema_mismatch``.
"""

from __future__ import annotations

__all__ = ["DDL", "SCHEMA_VERSION"]

#: Bumped whenever a table changes incompatibly; a mismatch is refused, never guessed.
SCHEMA_VERSION = 1

DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        command VARCHAR NOT NULL,
        code_version VARCHAR,
        config_hash VARCHAR,
        model_id VARCHAR,
        device VARCHAR,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        status VARCHAR,
        counts JSON
    )""",
    # -- index (issue 3): written only through engine/store/index_tables.py ----------------
    # files: every path the indexer has read, with the (size, mtime_ns) it had then, so a
    # re-run reads only new or changed files. status: 'instance' (a row in instances) or
    # 'unreadable' (a row in unreadable). Zip members are 'archive.zip!member/path'.
    """CREATE TABLE IF NOT EXISTS files (
        path VARCHAR PRIMARY KEY,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        status VARCHAR NOT NULL,
        indexed_at TIMESTAMP
    )""",
    # instances: one row per DICOM file (or NIfTI volume) with the header facts the series
    # summary and the loader need. position = first frame along the plane normal (mm);
    # frame_positions = every frame's (mm). No PatientName, birth date or other direct
    # identifiers: PatientID is the only patient key.
    """CREATE TABLE IF NOT EXISTS instances (
        path VARCHAR PRIMARY KEY,
        series_uid VARCHAR NOT NULL,
        sop_uid VARCHAR NOT NULL,
        sop_class_uid VARCHAR,
        instance_number INTEGER,
        position DOUBLE,
        frame_positions DOUBLE[],
        frames INTEGER,
        size BIGINT,
        mtime_ns BIGINT,
        source VARCHAR,
        study_uid VARCHAR,
        patient_id VARCHAR,
        study_date DATE,
        series_number INTEGER,
        modality VARCHAR,
        manufacturer VARCHAR,
        model VARCHAR,
        institution VARCHAR,
        kernel VARCHAR,
        image_type VARCHAR,
        series_description VARCHAR,
        body_part VARCHAR,
        orientation DOUBLE[],
        ipp DOUBLE[],
        slice_thickness DOUBLE,
        pixel_spacing DOUBLE[],
        rows INTEGER,
        columns INTEGER,
        is_image BOOLEAN
    )""",
    # unreadable: every file that is not an indexable DICOM object or NIfTI volume.
    """CREATE TABLE IF NOT EXISTS unreadable (
        path VARCHAR PRIMARY KEY,
        reason_code VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        size BIGINT,
        mtime_ns BIGINT
    )""",
    # series: one row per series with its summary, eligibility and selection (one selected
    # per study among the eligible). reason_code/reason are NULL exactly when selected.
    # Lengths in mm; n_slices counts frames; content_hash changes with any instance.
    """CREATE TABLE IF NOT EXISTS series (
        series_uid VARCHAR PRIMARY KEY,
        study_uid VARCHAR NOT NULL,
        patient_id VARCHAR,
        study_date DATE,
        series_number INTEGER,
        series_description VARCHAR,
        modality VARCHAR,
        sop_class_uid VARCHAR,
        institution VARCHAR,
        manufacturer VARCHAR,
        model VARCHAR,
        kernel VARCHAR,
        kernel_class VARCHAR,
        image_type VARCHAR,
        body_part VARCHAR,
        source VARCHAR,
        is_image BOOLEAN,
        orientation VARCHAR,
        axial_angle_deg DOUBLE,
        slice_thickness DOUBLE,
        slice_spacing_mm DOUBLE,
        max_gap_mm DOUBLE,
        pixel_spacing DOUBLE[],
        rows INTEGER,
        columns INTEGER,
        n_instances INTEGER,
        n_duplicates INTEGER,
        n_slices INTEGER,
        z_extent_mm DOUBLE,
        mixed_sizes VARCHAR,
        eligible BOOLEAN NOT NULL,
        selected BOOLEAN NOT NULL,
        reason_code VARCHAR,
        reason VARCHAR,
        content_hash VARCHAR NOT NULL,
        indexed_at TIMESTAMP
    )""",
    # -- clinical (issue 5): written only through engine/store/clinical_tables.py --------
    # clinical: one row per patient, keyed by patient_id (= DICOM PatientID), typed as the
    # data dictionary says (engine/clinical/dictionary.py). FRAX always in percent. extra:
    # JSON object of the file's columns outside the dictionary (direct identifiers such as
    # name, birth date, address or MRN are dropped before storage, never kept here).
    # source_file/source_row: where the row came from; imported_at/run_id: the import
    # that last changed it (an unchanged row keeps its first import's).
    """CREATE TABLE IF NOT EXISTS clinical (
        patient_id VARCHAR PRIMARY KEY,
        site VARCHAR NOT NULL,
        sex VARCHAR,
        age DOUBLE,
        height_cm DOUBLE,
        weight_kg DOUBLE,
        bmi DOUBLE,
        prior_fracture TINYINT,
        parent_hip_fracture TINYINT,
        current_smoking TINYINT,
        glucocorticoids TINYINT,
        rheumatoid_arthritis TINYINT,
        secondary_osteoporosis TINYINT,
        alcohol_3plus TINYINT,
        prevalent_vf TINYINT,
        frax_mof DOUBLE,
        frax_hip DOUBLE,
        scan_date DATE,
        followup_years DOUBLE NOT NULL,
        incident_vf TINYINT NOT NULL,
        event_type TINYINT NOT NULL,
        extra JSON,
        source_file VARCHAR NOT NULL,
        source_row INTEGER,
        imported_at TIMESTAMP NOT NULL,
        run_id VARCHAR
    )""",
    # clinical_links: recomputed by every import from the whole clinical table and the
    # selected series. status 'linked' (one row per patient: its index scan, the earliest
    # or latest selected series, [clinical] index_scan), 'no_scan' (clinical patient
    # without a selected series; series columns NULL) or 'no_clinical' (one row per
    # selected series whose PatientID has no clinical row). date_gap_days = clinical
    # scan_date - DICOM StudyDate; date_disagrees when |gap| > scan_date_tolerance_days.
    # The evaluation joins predictions (series_uid) to outcomes (clinical) through it.
    """CREATE TABLE IF NOT EXISTS clinical_links (
        patient_id VARCHAR,
        series_uid VARCHAR,
        study_uid VARCHAR,
        study_date DATE,
        n_scans INTEGER NOT NULL,
        scan_date DATE,
        date_gap_days INTEGER,
        date_disagrees BOOLEAN NOT NULL,
        status VARCHAR NOT NULL,
        linked_at TIMESTAMP NOT NULL,
        run_id VARCHAR
    )""",
)
