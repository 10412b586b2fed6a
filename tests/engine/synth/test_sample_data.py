"""The committed example cohort is exactly what its recorded command generates today."""

from __future__ import annotations

import json
from pathlib import Path

from engine.synth.cohort import SynthRequest, synthesize

EXAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "example"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "vfrisk.log.jsonl"
    }


def test_committed_example_regenerates_byte_for_byte(tmp_path: Path) -> None:
    request = json.loads((EXAMPLE / "manifest.json").read_text())["request"]
    assert request["resolution"] == "low" and request["profiles_path"] is None
    out = tmp_path / "example"
    synthesize(SynthRequest(out=out, patients=request["patients"], sites=request["sites"],
                            seed=request["seed"], resolution=request["resolution"]))  # fmt: skip
    committed, fresh = _files(EXAMPLE), _files(out)
    assert sorted(committed) == sorted(fresh)
    changed = [name for name in committed if committed[name] != fresh[name]]
    assert changed == [], "regenerate sample_data/example (see sample_data/README.md)"


def test_example_is_small_and_says_it_is_synthetic() -> None:
    size = sum(len(b) for b in _files(EXAMPLE).values())
    assert size < 15e6
    assert "SYNTHETIC" in (EXAMPLE / "SYNTHETIC.txt").read_text()
    assert json.loads((EXAMPLE / "manifest.json").read_text())["synthetic"] is True
