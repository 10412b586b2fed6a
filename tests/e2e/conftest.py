"""A database made by the real commands and a real ``vfrisk dashboard`` server for the browser.

``vfrisk index`` + ``vfrisk import-clinical`` on the committed sample cohort (made by
``vfrisk synth``), ``vfrisk score`` with a tiny randomly initialised checkpoint (weights
are random: the numbers say nothing about fractures), ``vfrisk report``; then
``vfrisk dashboard`` in a child process on a free port, until the session ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data" / "example"
CHROMIUM = "/usr/bin/chromium"


@dataclass(frozen=True)
class Server:
    """A running dashboard: its URL and database."""

    url: str
    db: Path
    log: Path


def _tiny_checkpoint(path: Path) -> None:
    import torch

    from engine.config import load_config
    from models.checkpoint import save_checkpoint
    from models.config import ModelConfig
    from models.network import FractureNet

    torch.manual_seed(0)
    net = FractureNet(ModelConfig(width=8, depth=(1, 1, 1), triplets_per_level=2,
                                  triplet_spacing=3, train_window=8, dropout=0.0,
                                  layer_scale_init=0.1))  # fmt: skip
    version = str(load_config(None)["preprocessing"]["version"])
    save_checkpoint(net, path, preprocessing_version=version, metadata={"note": "random e2e"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`vfrisk dashboard` on a scored sample database, on 127.0.0.1 and a free port."""
    tmp = tmp_path_factory.mktemp("e2e")
    archive = tmp / "archive"
    shutil.copytree(SAMPLE / "archive", archive)
    db, log, ckpt = tmp / "vfrisk.duckdb", str(tmp / "log.jsonl"), tmp / "tiny.pt"
    _tiny_checkpoint(ckpt)
    for argv in (
        ["index", str(archive), "--db", str(db), "--workers", "1", "--no-progress"],
        ["import-clinical", str(SAMPLE / "clinical.csv"), "--db", str(db)],
        ["score", "--db", str(db), "--model", str(ckpt), "--workers", "1", "--device", "cpu",
         "--no-progress"],
        ["report", "--db", str(db)],
    ):  # fmt: skip
        assert main(["--log-file", log, *argv]) == 0, argv
    port = _free_port()
    out = tmp / "server.log"
    env = dict(os.environ)
    env.pop("VFRISK_CONFIG", None)
    with open(out, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--log-file", log, "dashboard", "--db", str(db),
             "--port", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"vfrisk dashboard did not start:\n{out.read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield Server(url=url, db=db, log=out)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def browser():  # noqa: ANN201 - a playwright Browser
    """Debian's chromium driven by Playwright; never downloaded.

    Missing chromium or Playwright fails the test in CI (``VFRISK_REQUIRE_TOOLS``, set by
    ``.ci/run``, which installs them) and skips it elsewhere.
    """
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is not installed (Debian: apt-get install chromium)"
    if missing:
        if os.environ.get("VFRISK_REQUIRE_TOOLS"):
            pytest.fail(missing + "; .ci/run installs it")
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()
