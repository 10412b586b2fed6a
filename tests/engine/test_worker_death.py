"""A worker process that dies never hangs ``prepare_many``: retried, then ``worker_died``.

The workers are really killed (SIGKILL, as the OOM killer does) from a second thread.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.anatomy import PreprocessingSettings
from engine.config import load_config
from engine.prepare import (
    MAX_WORKER_DEATHS,
    PreparedSeries,
    PrepareFailure,
    SeriesJob,
    prepare_many,
)
from engine.synth.cohort import main_series, series_files

EXAMPLE = Path(__file__).parents[2] / "sample_data" / "example"


def _jobs() -> list[SeriesJob]:
    return [
        SeriesJob(uid, tuple(str(p) for p in series_files(EXAMPLE, uid)))
        for uid in main_series(EXAMPLE)["series_uid"]
    ]


def _kill_children(stop: threading.Event, killed: list[int], once: bool) -> None:
    while not stop.is_set():
        for child in multiprocessing.active_children():
            if child.pid and child.pid not in killed:
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:  # exited, its exit not yet reported by the
                    continue  # fork server: still listed as a child
                killed.append(child.pid)
                if once:
                    return
        time.sleep(0.05)


def _run(once: bool) -> tuple[list[PreparedSeries | PrepareFailure], list[int]]:
    config = load_config()
    settings = PreprocessingSettings.from_config(config)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_children, args=(stop, killed, once), daemon=True)
    killer.start()
    try:
        results = list(prepare_many(_jobs(), dict(config["loading"]), settings, workers=2))
    finally:
        stop.set()
        killer.join()
    return results, killed


def test_series_of_a_killed_worker_are_retried_in_a_fresh_pool() -> None:
    results, killed = _run(once=True)
    assert len(killed) == 1
    assert sorted(r.series_uid for r in results) == sorted(j.series_uid for j in _jobs())
    assert all(isinstance(r, PreparedSeries) for r in results), results


def test_series_whose_workers_always_die_fail_alone_with_a_reason() -> None:
    results, killed = _run(once=False)
    assert len(killed) >= MAX_WORKER_DEATHS
    assert sorted(r.series_uid for r in results) == sorted(j.series_uid for j in _jobs())
    failed = [r for r in results if isinstance(r, PrepareFailure)]
    assert failed, "the killer ran throughout: series must have failed"
    for f in failed:
        assert f.reason_code == "worker_died" and f.series_uid in f.error


_START_AND_WAIT = """
import multiprocessing, sys, time
from engine.anatomy import PreprocessingSettings
from engine.config import load_config
from engine.prepare import PreparePool
config = load_config()
pool = PreparePool(dict(config["loading"]), PreprocessingSettings.from_config(config), workers=2)
while len(multiprocessing.active_children()) < 2:  # started from a thread
    time.sleep(0.01)
print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie waits for its new parent to reap it
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_of_a_parent_killed_while_they_start_leave_too() -> None:
    # the parent dies while its workers still import torch: they must not wait for work
    # forever (and keep the killed command's pipes open, as they did before issue 7)
    parent = subprocess.Popen(
        [sys.executable, "-c", _START_AND_WAIT], stdout=subprocess.PIPE, text=True
    )
    pids = [int(p) for p in parent.stdout.readline().split()]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert len(pids) == 2
    deadline = time.monotonic() + 120  # their start on 2 busy cores, then 0.5 s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
