"""Write a report as Markdown, HTML (self-contained, offline), CSV or JSON.

The format follows the output file's extension (:data:`FORMATS`). Markdown is what the
terminal shows; HTML embeds plotly.js and the figures of ``engine.report.figures`` (so it
opens offline); CSV is the long evaluation table; JSON holds the document, the context and
the long table. Small counts are suppressed in all of them.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pandas as pd

from engine.errors import VfriskError
from engine.report.document import Bullets, Document, Table, build_document
from engine.report.run import Report
from engine.report.suppress import suppressed_rows

__all__ = ["FORMATS", "check_output", "evaluation_csv_frame", "to_json", "to_markdown", "write"]

FORMATS = {".md": "markdown", ".html": "html", ".csv": "csv", ".json": "json"}


def check_output(path: Path) -> str:
    """The format of output file ``path`` by extension; ``unknown_output_format`` otherwise."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise VfriskError(
            "unknown_output_format",
            f"cannot write a report to {path}: the extension {Path(path).suffix or '(none)'!r} "
            f"is not one of {', '.join(FORMATS)} (Markdown, self-contained HTML, the long "
            "evaluation table as CSV, or JSON)",
        )
    return fmt


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(t: Table) -> list[str]:
    lines = [
        "| " + " | ".join(map(_md_cell, t.columns)) + " |",
        "|" + "|".join("---" for _ in t.columns) + "|",
    ]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in t.rows]
    return lines


def to_markdown(doc: Document) -> str:
    """The document as GitHub-flavoured Markdown."""
    lines = [f"# {doc.title}", "", f"> {doc.notice}", ""]
    lines += [*doc.header, ""]
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines += _md_table(block)
            elif isinstance(block, Bullets):
                lines += [f"- {item}" for item in block.items]
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th:first-child,td:first-child,td:nth-child(2){text-align:left}th{background:#f3f3f3}"
    ".notice{border-left:5px solid #c00;background:#fff3f3;padding:0.6em 1em}"
)


def _html_body(doc: Document) -> list[str]:
    parts = [f"<h1>{html.escape(doc.title)}</h1>", f'<p class="notice">{_inline(doc.notice)}</p>']
    parts += [f"<p>{_inline(line)}</p>" for line in doc.header]
    for section in doc.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                    for row in block.rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(block, Bullets):
                parts.append(
                    "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>"
                )
            else:
                parts.append(f"<p>{_inline(block)}</p>")
    return parts


def to_html(report: Report, doc: Document) -> str:
    """A self-contained HTML page: the document plus plotly figures, plotly.js inlined."""
    from plotly.offline import get_plotlyjs

    from engine.report.figures import report_figures

    parts = _html_body(doc)
    figures = report_figures(report)
    if figures:
        parts.append("<h2>Figures</h2>")
        for fig in figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(parts)
        + "</body></html>"
    )


def evaluation_csv_frame(report: Report) -> pd.DataFrame:
    """The long evaluation table as exported: run and model ids first, counts suppressed."""
    rows = suppressed_rows(report.evaluation, report.settings.min_cell_count)
    rows.insert(0, "model_id", report.model_id or "")
    rows.insert(0, "run_id", report.run_id)
    return rows


def _clean(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA:
        return None
    return value


def to_json(report: Report, doc: Document) -> str:
    """The report as JSON: document sections, context, long table (suppressed), notes."""
    from dataclasses import asdict

    c = report.cohort
    first, last = c.scan_dates
    sections = []
    for s in doc.sections:
        blocks = []
        for b in s.blocks:
            if isinstance(b, Table):
                blocks.append(
                    {"table": {"columns": list(b.columns), "rows": [list(r) for r in b.rows]}}
                )
            elif isinstance(b, Bullets):
                blocks.append({"bullets": list(b.items)})
            else:
                blocks.append({"text": b})
        sections.append({"title": s.title, "blocks": blocks})
    rows = evaluation_csv_frame(report)
    payload = {
        "title": doc.title,
        "notice": doc.notice,
        "synthetic": True,
        "run_id": report.run_id,
        "generated_at": report.generated_at,
        "context": {
            "db": c.db,
            "sites": list(c.sites),
            "scan_dates": [first, last],
            "cohort_rule": c.rule,
            "model": asdict(c.model) if c.model else None,
            "min_cell_count": report.settings.min_cell_count,
            "settings": asdict(report.settings),
        },
        "sections": sections,
        "evaluation": [
            {k: _clean(v) for k, v in rec.items()} for rec in rows.to_dict(orient="records")
        ],
        "notes": list(report.notes),
    }
    return json.dumps(payload, indent=1, default=str)


def write(report: Report, path: Path) -> Path:
    """Write ``report`` to ``path`` in the format of its extension; returns the path."""
    fmt = check_output(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        evaluation_csv_frame(report).to_csv(path, index=False)
        return path
    doc = build_document(report)
    text = {
        "markdown": lambda: to_markdown(doc),
        "html": lambda: to_html(report, doc),
        "json": lambda: to_json(report, doc),
    }[fmt]()
    path.write_text(text, encoding="utf-8")
    return path
