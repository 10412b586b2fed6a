"""Pseudonyms for patient ids: a keyed SHA-256, stable for one key, shown by default.

Follow-up needs to find the same patient again, so the pseudonym is deterministic for a
key; without the key it cannot be reversed or recomputed from a guessed id. The key is
either a configured file or a random one created beside the database (``DB.pseudonym-key``,
mode 0600) the first time the dashboard runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from engine.errors import VfriskError

__all__ = ["key_path", "load_key", "pseudonymize"]


def key_path(db: Path, configured: str = "") -> Path:
    """Where the key lives: ``configured`` or ``DB.pseudonym-key`` beside the database."""
    return Path(configured) if configured else db.with_name(db.name + ".pseudonym-key")


def load_key(path: Path) -> bytes:
    """Read the key at ``path``, creating a random 32-byte key (0600) when it is missing.

    Raises
    ------
    VfriskError
        ``pseudonym_key_unavailable`` when the key is missing and its folder cannot be
        written (a database on a read-only share): the message names the file and the
        setting that moves it.
    """
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another session created it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    except OSError as exc:
        raise VfriskError(
            "pseudonym_key_unavailable",
            f"the pseudonym key {path} does not exist and cannot be created ({exc.strerror}); "
            "set [dashboard] pseudonym_key_file to a key file in a writable folder (the "
            "same file for everyone who must see the same pseudonyms)",
        ) from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    return key


def pseudonymize(ids: Iterable[object], key: bytes) -> list[str | None]:
    """``P-`` + the first 12 hex digits of HMAC-SHA256(key, id); None stays None."""
    out: list[str | None] = []
    for v in ids:
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
        else:
            digest = hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()
            out.append("P-" + digest[:12])
    return out
