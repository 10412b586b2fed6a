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
)
