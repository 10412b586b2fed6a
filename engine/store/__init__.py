"""The only package that talks to DuckDB: connections, locking, schema and table access.

See ``engine/store/connection.py`` for the concurrency design (writers hold the file for
one short transaction, readers for one batch of queries, under phase-fair locks).
"""

from engine.store.connection import Store
from engine.store.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Store"]
