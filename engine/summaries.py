"""Human-readable summaries that the CLI and the demo print after each stage."""

from __future__ import annotations

from typing import Any

__all__ = ["describe_clinical", "describe_index", "describe_synth"]


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


def describe_clinical(s: Any, max_warnings: int = 10) -> str:
    """Summary of an ``ImportSummary``: rows, upsert counts, links, dates, missing values."""
    links = s.links
    if s.removed:
        absent = f"{s.removed} stored patients not in the file removed (--replace)"
    else:
        absent = f"{s.kept} stored patients not in the file kept (--replace deletes them)"
    lines = [
        f"Imported clinical table {s.file} into {s.db} in {s.seconds:.1f} s",
        f"  rows         {s.rows_read} read: {s.inserted} inserted, {s.updated} updated, "
        f"{s.unchanged} unchanged",
        f"  absent       {absent}",
        f"  clinical     {s.clinical_rows} patients in the database (FRAX stored in percent; "
        f"file read as {s.frax_scale})",
        f"  linked       {links.linked} patients to their {s.index_scan} selected scan",
        f"  no scan      {links.no_scan} patients without a selected scan",
        f"  no patient   {links.scans_without_patient} selected scans "
        f"({links.patients_without_clinical} PatientIDs) without a clinical row",
        f"  scan dates   {links.date_disagreements} patients whose scan_date is more than "
        f"{s.tolerance_days} days from the index scan's StudyDate",
    ]
    lines += [
        f"               e.g. {pid}: scan_date {sd}, StudyDate {st} ({gap:+d} days)"
        for pid, sd, st, gap in links.examples
    ]
    missing = ", ".join(f"{k} {v}" for k, v in s.missing.items() if v) or "none"
    lines.append(f"  missing      {missing} (optional columns; complete-case in evaluation)")
    if s.dropped_identifiers:
        lines.append(
            f"  dropped      {', '.join(s.dropped_identifiers)} (direct identifiers, never stored)"
        )
    if s.extra_columns:
        lines.append(f"  extra        {', '.join(s.extra_columns)} (kept in clinical.extra)")
    shown = [w for w in s.warnings if w.rule not in ("identifier_dropped",)]
    if shown:
        lines.append(f"  warnings     {len(shown)}")
        lines += [f"    {w}" for w in shown[:max_warnings]]
        if len(shown) > max_warnings:
            lines.append(f"    ... and {len(shown) - max_warnings} more (in the JSON log)")
    return "\n".join(lines)
