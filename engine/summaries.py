"""Human-readable summaries that the CLI and the demo print after each stage."""

from __future__ import annotations

from typing import Any

__all__ = ["describe_index", "describe_synth"]


def describe_synth(summary: Any, req: Any) -> str:
    """Summary of a ``SynthSummary`` made for a ``SynthRequest``."""
    sites = ", ".join(f"{name} {n}" for name, n in summary.per_site.items())
    lines = [
        f"SYNTHETIC cohort written to {summary.out} in {summary.seconds:.1f} s",
        f"  patients        {summary.patients} ({sites})",
        f"  prevalent VF    {summary.prevalent_vf}   incident VF {summary.incident_vf}   "
        f"deaths {summary.deaths}",
        f"  clinical table  {summary.out / 'clinical.csv'}",
        f"  ground truth    {summary.out / 'truth'}",
    ]
    if not req.tables_only:
        lines.insert(
            3,
            f"  archive         {summary.out / 'archive'}: {summary.series} series, "
            f"{summary.files} files, {summary.bytes / 1e6:.1f} MB "
            f"({req.resolution} resolution)",
        )
    lines.append("  Not real patients: for building and testing vfrisk only.")
    return "\n".join(lines)


def _by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in counts.items()) or "none"


def describe_index(s: Any) -> str:
    """Summary of an ``IndexSummary``: files, unreadable, series, selection, exclusions."""
    unreadable = sum(s.unreadable.values())
    excluded = sum(s.excluded.values())
    return "\n".join(
        [
            f"Indexed {s.archive} into {s.db} in {s.seconds:.1f} s",
            f"  files        {s.files_seen} seen: {s.new} new, {s.changed} changed, "
            f"{s.unchanged} unchanged, {s.removed} removed",
            f"  unreadable   {unreadable} ({_by_reason(s.unreadable)})",
            f"  series       {s.series} in {s.studies} studies of {s.patients} patients",
            f"  eligible     {s.eligible} series",
            f"  selected     {s.selected} series (one per study; "
            f"{s.studies_without_selection} studies have no eligible series)",
            f"  excluded     {excluded} series ({_by_reason(s.excluded)})",
        ]
    )
