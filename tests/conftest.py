"""Shared test configuration: external tools and the gpu marker."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def require_tool() -> Callable[[str], str]:
    """Return a function giving an external tool's path.

    Without the tool the test is skipped, except when ``VFRISK_REQUIRE_TOOLS`` is set (as
    in ``.ci/run``, which installs the tools), where it fails.
    """

    def find(name: str) -> str:
        path = shutil.which(name)
        if path:
            return path
        message = f"{name} is not installed (Debian: dicom3tools / dcmtk)"
        if os.environ.get("VFRISK_REQUIRE_TOOLS"):
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)

    return find


@pytest.fixture
def dciodvfy_errors(require_tool: Callable[[str], str]) -> Callable[[Path], list[str]]:
    """Return a function listing the ``Error`` lines of dicom3tools' ``dciodvfy FILE``.

    Warnings are allowed; errors are not.
    """
    exe = require_tool("dciodvfy")

    def errors(path: Path) -> list[str]:
        out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
        return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]

    return errors


@contextlib.contextmanager
def _unwritable(path: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if not chattr or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a file unwritable for root here (chattr +i)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@pytest.fixture
def unwritable() -> Callable[[Path], contextlib.AbstractContextManager[None]]:
    """``with unwritable(path):`` makes ``path`` unwritable for this process (chmod; for
    root, which chmod does not stop, ``chattr +i``), or skips the test where it cannot."""
    return _unwritable
