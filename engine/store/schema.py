"""The database schema: every table vfrisk writes, in one place.

Each issue adds its tables here. ``SCHEMA_VERSION`` is bumped whenever a table changes.
An additive change (a new column) comes with its statements in ``MIGRATIONS``: the first
access to an older database (reader or writer) applies them in place, in one transaction
under the writer's lock; a database of a newer version, or of an older one without a
migration path, is refused with ``db_schema_mismatch``.
"""

from __future__ import annotations

__all__ = ["DDL", "MIGRATIONS", "SCHEMA_VERSION"]

#: Bumped whenever a table changes; see ``MIGRATIONS``.
SCHEMA_VERSION = 2

#: version -> the statements that bring a database of that version to the next one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: the spinal canal's HU reading per level (engine/anatomy/canal.py)
    1: ("ALTER TABLE biomarkers ADD COLUMN IF NOT EXISTS canal_hu DOUBLE",),
}

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
    # -- models and predictions (specified by issue 7, created by issue 5 so the report can
    # read them): written by `vfrisk score` / `vfrisk train`. model_id = checkpoint sha256
    # prefix; card = the model card (JSON). risk_Ny = P(fracture by N years) from the index
    # scan; p_fracture = P(prevalent vertebral fracture) from the detection head.
    """CREATE TABLE IF NOT EXISTS models (
        model_id VARCHAR PRIMARY KEY,
        name VARCHAR,
        path VARCHAR,
        sha256 VARCHAR,
        preprocessing_version VARCHAR,
        card JSON,
        created_at TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS predictions (
        series_uid VARCHAR NOT NULL,
        patient_id VARCHAR,
        model_id VARCHAR NOT NULL,
        p_fracture DOUBLE,
        risk_1y DOUBLE,
        risk_2y DOUBLE,
        risk_3y DOUBLE,
        risk_4y DOUBLE,
        risk_5y DOUBLE,
        content_hash VARCHAR,
        run_id VARCHAR,
        scored_at TIMESTAMP,
        PRIMARY KEY (series_uid, model_id)
    )""",
    # -- evaluation (issue 5): written only through engine/store/report_tables.py ---------
    # One row per (run_id, model_id, score, site, subgroup, horizon, metric): the long
    # table of `vfrisk report`, read by the dashboard instead of recomputing. model_id is
    # NULL for a report without model predictions (FRAX alone); score names what is
    # evaluated ('model', 'frax_mof', 'frax_hip', 'l1_hu', or 'cohort' for counts such as
    # patients/events/deaths/median_followup); site 'all' = pooled; subgroup 'all',
    # 'sex=F', 'age=70-79', ...; horizon in years, NULL when the metric has none (Harrell
    # c, detection AUROC, counts). Paired comparisons are metrics of score 'model' named
    # 'delta_<metric>_vs_<comparator>' (estimate = model - comparator, p_value two-sided).
    # n/events are the patients and fractures the number rests on (complete cases);
    # counts are stored unsuppressed: exports suppress those below [report] min_cell_count.
    # Key: the unique index below (PRIMARY KEY columns cannot be NULL in DuckDB, so the
    # NULLs of model_id and horizon are folded in by coalesce).
    """CREATE TABLE IF NOT EXISTS evaluation (
        run_id VARCHAR NOT NULL,
        model_id VARCHAR,
        score VARCHAR NOT NULL,
        site VARCHAR NOT NULL,
        subgroup VARCHAR NOT NULL,
        horizon DOUBLE,
        metric VARCHAR NOT NULL,
        estimate DOUBLE,
        ci_low DOUBLE,
        ci_high DOUBLE,
        p_value DOUBLE,
        n INTEGER,
        events INTEGER,
        method VARCHAR,
        computed_at TIMESTAMP NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS evaluation_key ON evaluation (
        run_id, coalesce(model_id, ''), score, site, subgroup, coalesce(horizon, -1), metric
    )""",
    # evaluation_latest: the rows of the most recent report run per model (model_id NULL =
    # the FRAX-only reports), what the dashboard shows by default.
    """CREATE OR REPLACE VIEW evaluation_latest AS
        SELECT e.* FROM evaluation e
        JOIN (
            SELECT coalesce(model_id, '') AS model_key, arg_max(run_id, computed_at) AS run_id
            FROM evaluation GROUP BY ALL
        ) latest
        ON coalesce(e.model_id, '') = latest.model_key AND e.run_id = latest.run_id""",
    # -- biomarkers (issue 4): written only through engine/store/biomarker_tables.py -----
    # One row per (series_uid, level T12..L4, preprocessing_version), absent levels
    # included (present = false, measures NULL). Definitions in
    # engine/anatomy/biomarkers.py: HU in Hounsfield units, heights in mm, areas in cm2
    # (both sides, mean over the level's slices), volumes in cm3, losses as fractions.
    # genant_grade NULL = not assessable (absent or truncated body); shape '' = none.
    # canal_hu: the spinal canal's median HU behind the body, the scan's internal HU
    # reference (engine/anatomy/canal.py; NULL where unread).
    # flags / series_flags: comma-separated stable strings (cement, truncated, padding,
    # small_roi / contrast, missing_<LEVEL>). The series_* columns and smi_cm2_m2,
    # height_cm, contrast repeat the per-series values on each of its rows.
    """CREATE TABLE IF NOT EXISTS biomarkers (
        series_uid VARCHAR NOT NULL,
        level VARCHAR NOT NULL,
        preprocessing_version VARCHAR NOT NULL,
        present BOOLEAN NOT NULL,
        trabecular_hu DOUBLE,
        roi_volume_cm3 DOUBLE,
        body_volume_cm3 DOUBLE,
        height_anterior_mm DOUBLE,
        height_middle_mm DOUBLE,
        height_posterior_mm DOUBLE,
        height_ref_mm DOUBLE,
        wedge_loss DOUBLE,
        biconcave_loss DOUBLE,
        crush_loss DOUBLE,
        genant_grade TINYINT,
        shape VARCHAR,
        psoas_area_cm2 DOUBLE,
        paraspinal_area_cm2 DOUBLE,
        muscle_area_cm2 DOUBLE,
        psoas_hu DOUBLE,
        paraspinal_hu DOUBLE,
        muscle_hu DOUBLE,
        flags VARCHAR NOT NULL,
        canal_hu DOUBLE,
        series_mean_trabecular_hu DOUBLE,
        series_l1_trabecular_hu DOUBLE,
        series_l3_muscle_area_cm2 DOUBLE,
        series_l3_muscle_hu DOUBLE,
        smi_cm2_m2 DOUBLE,
        height_cm DOUBLE,
        contrast BOOLEAN,
        series_flags VARCHAR NOT NULL,
        run_id VARCHAR,
        measured_at TIMESTAMP,
        PRIMARY KEY (series_uid, level, preprocessing_version)
    )""",
    # -- scoring (issue 7): written only through engine/store/score_tables.py ------------
    # failures: the latest failed attempt of `vfrisk score` per (series, model): stage
    # ('load', 'anatomy', 'model'), reason_code (engine/errors.py) and the message naming
    # the series or file. content_hash as at the attempt: a series re-indexed with other
    # content is tried again; --retry-failed retries the rest. A success deletes the row.
    """CREATE TABLE IF NOT EXISTS failures (
        series_uid VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        reason_code VARCHAR NOT NULL,
        error VARCHAR NOT NULL,
        content_hash VARCHAR,
        run_id VARCHAR,
        failed_at TIMESTAMP,
        PRIMARY KEY (series_uid, model_id)
    )""",
    # prediction_horizons: risk at the years beyond predictions.risk_5y (year 6..T) when a
    # model predicts that far; written and replaced together with the predictions row.
    """CREATE TABLE IF NOT EXISTS prediction_horizons (
        series_uid VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL,
        year INTEGER NOT NULL,
        risk DOUBLE NOT NULL,
        PRIMARY KEY (series_uid, model_id, year)
    )""",
    # series_qa: how each scored series was prepared, for the dashboard's QA views:
    # segmentation_source ('builtin' or 'masks'), qa_flags (comma-separated, e.g.
    # missing_T12), qa_png (absolute path of the QA picture, NULL when none was drawn).
    """CREATE TABLE IF NOT EXISTS series_qa (
        series_uid VARCHAR NOT NULL,
        preprocessing_version VARCHAR NOT NULL,
        segmentation_source VARCHAR NOT NULL,
        qa_flags VARCHAR NOT NULL,
        qa_png VARCHAR,
        run_id VARCHAR,
        prepared_at TIMESTAMP,
        PRIMARY KEY (series_uid, preprocessing_version)
    )""",
    # -- dashboard (issue 8): written only through engine/store/dashboard_tables.py -------
    # audit: one row per worklist export (action 'export_worklist') or display of patient
    # identifiers ('show_identifiers'): who (the signed-in user, else the OS account),
    # exported_at (UTC), the filters as JSON and the number of rows exported. No identifiers.
    """CREATE TABLE IF NOT EXISTS audit (
        export_id VARCHAR PRIMARY KEY,
        action VARCHAR NOT NULL,
        who VARCHAR NOT NULL,
        exported_at TIMESTAMP NOT NULL,
        filters JSON,
        n_rows BIGINT NOT NULL
    )""",
)
