"""Benchmark: this checkout's anatomy stage against another checkout's, interleaved.

The machines here drift by +-30 % between runs of the same code, more than most speed
changes are worth, so timing two versions one after the other says little. This runs
one worker process per checkout (``PYTHONPATH`` set to it), both pinned to the same CPU
core with one torch thread and each holding the same loaded series; the parent asks
them in turn, alternating which goes first, to time ``segment`` and then
``prepare_volume`` (segment + inputs + biomarkers) on every series once per round. Both
versions see the same drift; the script prints, per series, each version's minimum and
median over the rounds and the ratios new / old, and checks that both give the same
labels, model inputs and biomarkers (a speed change that alters any of them needs a new
preprocessing version).

Usage: git worktree add /tmp/old REV
       python bench/anatomy_ab.py --old /tmp/old [--cohort DIR] [--rounds 10] [--core 0]
(without ``--cohort`` one full-size patient per site is generated, seed 0, as
``bench/anatomy_speed.py`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_WORKER = r"""
import dataclasses, hashlib, json, os, sys, time
from pathlib import Path

sys.path.insert(0, sys.argv[3])
import numpy as np
import torch

torch.set_num_threads(1)
os.sched_setaffinity(0, {int(sys.argv[2])})
import engine
from anatomy_accuracy import soft_series_files
from engine.anatomy import PreprocessingSettings
from engine.anatomy.segment import segment
from engine.config import load_config
from engine.load import load_volume
from engine.prepare import prepare_volume

settings = PreprocessingSettings.from_config(load_config(None))
series = [(site, load_volume(f)) for _, site, f in soft_series_files(Path(sys.argv[1]))]
digests = []
for site, v in series:  # warm (the muscle network loads once) and what each version gives
    h = hashlib.sha1(segment(v, "cpu").labels.tobytes())
    p = prepare_volume(v, "bench", settings, anatomy_device="cpu")
    for f in dataclasses.fields(p.inputs):
        x = getattr(p.inputs, f.name)
        h.update(x.tobytes() if isinstance(x, np.ndarray) else repr(x).encode())
    h.update(repr(p.biomarkers).encode())
    digests.append(h.hexdigest())
head = {"sites": [s for s, _ in series], "outputs": digests, "engine": engine.__file__}
print(json.dumps(head), flush=True)
for line in sys.stdin:
    out = []
    for site, v in series:
        t0 = time.process_time()
        segment(v, "cpu")
        t1 = time.process_time()
        prepare_volume(v, "bench", settings, anatomy_device="cpu")
        out.append([t1 - t0, time.process_time() - t1])
    print(json.dumps(out), flush=True)
"""


def _start(checkout: Path, cohort: Path, core: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    bench = str(Path(__file__).resolve().parent)
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(cohort), str(core), bench],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(checkout),
    )  # fmt: skip


def _ask(worker: subprocess.Popen) -> list:
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("go\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise SystemExit(f"a worker stopped (exit code {worker.wait()}); see its error above")
    return json.loads(line)


def compare(old: Path, new: Path, cohort: Path, rounds: int, core: int) -> None:
    """Time both checkouts on ``cohort`` for ``rounds`` alternating rounds and print."""
    workers = {"old": _start(old, cohort, core), "new": _start(new, cohort, core)}
    heads = {}
    for name, w in workers.items():
        assert w.stdout is not None
        line = w.stdout.readline()
        if not line:
            raise SystemExit(f"the {name} checkout's worker failed to start (exit {w.wait()})")
        heads[name] = json.loads(line)
    times: dict[str, list] = {"old": [], "new": []}
    for r in range(rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            times[name].append(_ask(workers[name]))
    for w in workers.values():
        assert w.stdin is not None
        w.stdin.close()
        w.wait()
    print(
        f"anatomy A/B: old {heads['old']['engine']}, new {heads['new']['engine']}; {rounds} "
        "alternating rounds, CPU time, one pinned core, one torch thread; SYNTHETIC phantoms"
    )
    for n, site in enumerate(heads["new"]["sites"]):
        same = heads["old"]["outputs"][n] == heads["new"]["outputs"][n]
        parts = []
        for stage, what in ((0, "segment"), (1, "segment+inputs+biomarkers")):
            o = [t[n][stage] for t in times["old"]]
            w = [t[n][stage] for t in times["new"]]
            parts.append(
                f"{what} old {min(o):.3f} new {min(w):.3f} s (min, ratio {min(w) / min(o):.2f}; "
                f"median {statistics.median(o):.3f} / {statistics.median(w):.3f}, ratio "
                f"{statistics.median(w) / statistics.median(o):.2f})"
            )
        print(f"{site}: " + "; ".join(parts) + ("" if same else "; OUTPUTS DIFFER"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the other checkout's root")
    parser.add_argument("--cohort", type=Path, help="an existing `vfrisk synth` folder")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args()
    new = Path(__file__).resolve().parents[1]
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    if args.core not in os.sched_getaffinity(0):
        parser.error(f"--core {args.core}: not one of this machine's usable cores")
    if not (args.old / "engine" / "anatomy").is_dir():
        parser.error(f"--old {args.old}: not a vfrisk checkout (no engine/anatomy)")
    if args.cohort is not None:
        if not (args.cohort / "manifest.json").is_file():
            parser.error(f"--cohort {args.cohort}: not a `vfrisk synth` folder (no manifest.json)")
        compare(args.old, new, args.cohort, args.rounds, args.core)
        return
    from engine.synth.cohort import SynthRequest, synthesize

    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "cohort"
        synthesize(
            SynthRequest(
                out=cohort, patients=3, sites="dev,ext_a,ext_b", seed=0, resolution="full",
                workers=1,
            )
        )  # fmt: skip
        compare(args.old, new, cohort, args.rounds, args.core)


if __name__ == "__main__":
    main()
