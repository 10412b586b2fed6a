"""Reason codes and structured logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import logs
from engine.errors import REASONS, VfriskError


def test_unknown_reason_code_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="unknown reason code"):
        VfriskError("no_such_code", "x")


def test_reason_codes_are_short_stable_identifiers_with_a_sentence() -> None:
    for code, sentence in REASONS.items():
        assert code.isidentifier() and code == code.lower(), code
        assert sentence.endswith(".") and len(sentence) > 15, code


def test_log_lines_are_one_json_object_each(tmp_path: Path) -> None:
    path = tmp_path / "log" / "vfrisk.log.jsonl"
    run = logs.configure(path, "synth")
    logs.event("synth.patient_written", patient_id="VFDEV000001", files=3)
    logs.event("error", level="error", code="not_dicom", path=Path("/x"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["synth.patient_written", "error"]
    assert lines[0]["run_id"] == run and lines[0]["command"] == "synth"
    assert lines[0]["files"] == 3 and lines[1]["level"] == "error" and lines[1]["path"] == "/x"
