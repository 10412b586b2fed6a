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
)
