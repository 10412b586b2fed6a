"""The ``[dashboard]`` settings and the environment the app reads them from.

``vfrisk dashboard`` starts ``streamlit run dashboard/app.py`` in a child process; the
database path and the configuration file travel in environment variables (Streamlit's
own command line takes no application arguments), and the app reads them back with
:func:`from_environment`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.config import Config, load_config

__all__ = [
    "ENV_AUTH",
    "ENV_CONFIG",
    "ENV_DB",
    "LOCAL_HOSTS",
    "DashboardSettings",
    "from_environment",
    "settings_from_config",
]

ENV_DB = "VFRISK_DASHBOARD_DB"
ENV_AUTH = "VFRISK_DASHBOARD_AUTH"
ENV_CONFIG = "VFRISK_CONFIG"
#: Addresses reachable only from this machine: no sign-in needed.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class DashboardSettings:
    """``[dashboard]`` plus the report's horizons and small-cell limit.

    Attributes mirror ``engine/default_config.toml`` (sizes in MB, counts in rows).
    """

    host: str
    port: int
    auth_secrets: Path
    max_upload_mb: int
    max_members: int
    max_unpacked_mb: int
    max_ratio: float
    worklist_rows: int
    export_max_rows: int
    pseudonym_key_file: str
    decision_sample: int
    qa_dir: str
    horizons: tuple[int, ...]
    min_cell_count: int
    lock_timeout_s: float


def settings_from_config(config: Config) -> DashboardSettings:
    """Read ``[dashboard]`` (and ``[report]`` horizons, min_cell_count) from a config."""
    d = config["dashboard"]
    secrets = Path(d["auth_secrets"]) if d["auth_secrets"] else Path(".streamlit/secrets.toml")
    return DashboardSettings(
        host=d["host"],
        port=int(d["port"]),
        auth_secrets=secrets,
        max_upload_mb=int(d["max_upload_mb"]),
        max_members=int(d["max_members"]),
        max_unpacked_mb=int(d["max_unpacked_mb"]),
        max_ratio=float(d["max_ratio"]),
        worklist_rows=int(d["worklist_rows"]),
        export_max_rows=int(d["export_max_rows"]),
        pseudonym_key_file=d["pseudonym_key_file"],
        decision_sample=int(d["decision_sample"]),
        qa_dir=d["qa_dir"],
        horizons=tuple(int(h) for h in config["report"]["horizons"]),
        min_cell_count=int(config["report"]["min_cell_count"]),
        lock_timeout_s=float(config["storage"]["lock_timeout_s"]),
    )


def from_environment() -> tuple[Path, Config, bool]:
    """The database, configuration and whether sign-in is required, as the CLI set them.

    Without ``VFRISK_DASHBOARD_DB`` the configuration's ``[storage] db`` is used.
    """
    config = load_config(None)  # honours $VFRISK_CONFIG
    db = Path(os.environ.get(ENV_DB) or config["storage"]["db"])
    return db, config, os.environ.get(ENV_AUTH) == "1"
