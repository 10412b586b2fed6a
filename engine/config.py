"""The one TOML configuration of vfrisk: documented defaults plus a user override file.

The defaults live in ``engine/default_config.toml`` (read it for what each key means). A
user file overrides any subset of keys. It is found, first match wins, at ``--config FILE``,
``$VFRISK_CONFIG``, or ``./vfrisk.toml``. Unknown sections or keys and values whose type
differs from the default's are refused with ``VfriskError('bad_config')`` naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import VfriskError

__all__ = ["DEFAULT_CONFIG_PATH", "Config", "find_config_file", "load_config"]

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.toml")


@dataclass(frozen=True)
class Config:
    """Merged configuration: ``values[section][key]``, plus where the override came from."""

    values: dict[str, dict[str, Any]]
    source: Path | None

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    def hash(self) -> str:
        """A short stable hash of the merged values, recorded with every run for provenance."""
        text = json.dumps(self.values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The user config file to apply, or None for the defaults alone."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("VFRISK_CONFIG")
    if env:
        return Path(env)
    local = Path("vfrisk.toml")
    return local if local.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise VfriskError(
            "bad_config", f"configuration file {path} does not exist; check the path"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise VfriskError("bad_config", f"{path} is not valid TOML: {exc}") from None


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, list):
        # An empty default list is a list of names (kernel names and the like).
        item = default[0] if default else ""
        return isinstance(value, list) and all(_same_type(item, v) for v in value)
    return isinstance(value, type(default))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the defaults and apply the user file found by :func:`find_config_file`.

    Parameters
    ----------
    path : path-like, optional
        Explicit user configuration file (``--config``).
    """
    values = _read_toml(DEFAULT_CONFIG_PATH)
    source = find_config_file(path)
    if source is None:
        return Config(values=values, source=None)
    override = _read_toml(source)
    for section, table in override.items():
        if section not in values:
            raise VfriskError(
                "bad_config",
                f"{source}: unknown section [{section}]; known sections are {sorted(values)}",
            )
        if not isinstance(table, dict):
            raise VfriskError("bad_config", f"{source}: [{section}] must be a table")
        for key, value in table.items():
            if key not in values[section]:
                raise VfriskError(
                    "bad_config",
                    f"{source}: unknown key {section}.{key}; known keys are "
                    f"{sorted(values[section])}",
                )
            default = values[section][key]
            if not _same_type(default, value):
                raise VfriskError(
                    "bad_config",
                    f"{source}: {section}.{key} = {value!r} should be of type "
                    f"{type(default).__name__} like the default {default!r}",
                )
            values[section][key] = float(value) if isinstance(default, float) else value
    return Config(values=values, source=source)
