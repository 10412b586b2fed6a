"""Structured logs: one JSON object per line for every event of every command.

Each line carries ``ts`` (UTC ISO 8601), ``level``, ``command``, ``run_id``, ``event`` (a
dotted name such as ``synth.patient_written``) and the event's own fields. Human-facing
progress goes to the terminal separately; the JSON log is for machines and audits.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import uuid
from pathlib import Path
from typing import Any

__all__ = ["configure", "event", "run_id"]

_LOGGER = logging.getLogger("vfrisk")
_CONTEXT: dict[str, str] = {"command": "", "run_id": ""}


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            **_CONTEXT,
            "event": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(path: Path, command: str, level: str = "info") -> str:
    """Send the ``vfrisk`` logger to a JSON-lines file (appending) and return the run id.

    Parameters
    ----------
    path : Path
        Log file; its folder is created when missing.
    command : str
        The CLI subcommand, recorded on every line.
    level : str
        Lowest level written: debug, info, warning or error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in list(_LOGGER.handlers):
        _LOGGER.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_JsonLines())
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(level.upper())
    _LOGGER.propagate = False
    _CONTEXT["command"] = command
    _CONTEXT["run_id"] = uuid.uuid4().hex[:12]
    return _CONTEXT["run_id"]


def run_id() -> str:
    """The id of the current command's run ('' before :func:`configure`)."""
    return _CONTEXT["run_id"]


def event(name: str, level: str = "info", **fields: Any) -> None:
    """Log one event with its fields (values must be JSON-serializable or str()-able)."""
    _LOGGER.log(logging.getLevelNamesMapping()[level.upper()], name, extra={"fields": fields})
