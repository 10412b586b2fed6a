"""The dashboard in a real browser: every page, a filter, the worklist export, uploads."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.e2e

PAGES = {
    "": "Overview",
    "survival": "Survival by risk group",
    "calibration": "Calibration",
    "comparison": "Model vs FRAX",
    "worklist": "Follow-up worklist",
    "score_scan": "Score a scan",
    "data_quality": "Data quality",
}
TIMEOUT = 60_000


def _sql(db, sql: str, params: list | None = None) -> list[tuple]:  # noqa: ANN001
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _settled(page) -> None:  # noqa: ANN001
    """Wait until Streamlit has finished running the script, the rerun the last input
    asked for included.

    The app marks its state on its root (``data-test-script-state``: running,
    rerunRequested, notRunning). The status widget used before shows "Running" only for
    slow runs, so a click could land while a quick rerun replaced the page (a lost
    worklist download in CI).
    """
    page.wait_for_selector('[data-testid="stApp"]', timeout=TIMEOUT)
    page.wait_for_timeout(250)  # the last input's rerun request has reached the app
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=TIMEOUT
    )


def _open(browser, server, path: str):  # noqa: ANN001, ANN202
    page = browser.new_page(accept_downloads=True)
    page.goto(f"{server.url}/{path}", timeout=TIMEOUT)
    # exact: "Calibration" would also match the page's "Stored calibration metrics" heading
    page.get_by_role("heading", name=PAGES[path], exact=True).wait_for(timeout=TIMEOUT)
    _settled(page)
    return page


def test_every_page_renders_without_an_exception(browser, server) -> None:
    for path in PAGES:
        page = _open(browser, server, path)
        assert page.locator('[data-testid="stException"]').count() == 0, path
        assert page.get_by_text("SYNTHETIC", exact=False).first.is_visible()
        page.close()


def test_a_sidebar_filter_changes_the_counts(browser, server) -> None:
    page = _open(browser, server, "")
    total = _sql(server.db, "SELECT count(*) FROM clinical")[0][0]
    men = _sql(server.db, "SELECT count(*) FROM clinical WHERE sex = 'M'")[0][0]
    page.get_by_text(f"{total:,} patients after the filters").wait_for(timeout=TIMEOUT)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('[data-testid="stMultiSelect"]').filter(has_text="Sex").click()
    page.get_by_role("option", name="M", exact=True).click()
    page.get_by_text(f"{men:,} patients after the filters").wait_for(timeout=TIMEOUT)
    page.close()


def test_worklist_export_holds_the_matching_rows_and_is_audited(browser, server) -> None:
    page = _open(browser, server, "worklist")
    cut = 0.0
    box = page.get_by_label("5-year risk at least")
    box.fill(f"{cut:.2f}")
    box.press("Enter")
    _settled(page)
    expected = _sql(server.db, "SELECT count(*) FROM predictions WHERE risk_5y >= ?", [cut])[0][0]
    before = _sql(server.db, "SELECT count(*) FROM audit WHERE action = 'export_worklist'")[0][0]
    with page.expect_download(timeout=TIMEOUT) as dl:
        page.get_by_role("button", name="Export worklist CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert len(rows) == expected > 0
    risks = [float(r["risk_5y"]) for r in rows]
    assert risks == sorted(risks, reverse=True)
    truth = sorted(r[0] for r in _sql(server.db, "SELECT risk_5y FROM predictions"))
    assert sorted(risks) == pytest.approx(truth)
    assert all(r["patient"].startswith("P-") for r in rows)  # pseudonyms by default
    audit = _sql(
        server.db,
        "SELECT who, n_rows FROM audit WHERE action = 'export_worklist' ORDER BY exported_at",
    )
    assert len(audit) == before + 1 and audit[-1][1] == expected
    page.close()


def _series_zip(db) -> tuple[bytes, str]:  # noqa: ANN001
    uid = _sql(db, "SELECT series_uid FROM predictions ORDER BY series_uid LIMIT 1")[0][0]
    paths = [r[0] for r in _sql(db, "SELECT path FROM instances WHERE series_uid = ?", [uid])]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, p in enumerate(paths):
            z.write(p, f"series/{i:04d}.dcm")
    return buf.getvalue(), uid


def _upload(page, name: str, blob: bytes) -> None:  # noqa: ANN001
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": "application/zip", "buffer": blob}]
    )


def test_uploading_a_scan_shows_the_risk_vfrisk_score_wrote(browser, server) -> None:
    blob, uid = _series_zip(server.db)
    r5 = _sql(server.db, "SELECT risk_5y FROM predictions WHERE series_uid = ?", [uid])[0][0]
    page = _open(browser, server, "score_scan")
    _upload(page, "series.zip", blob)
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="5-year risk")
    metric.wait_for(timeout=TIMEOUT)
    value = metric.locator('[data-testid="stMetricValue"]').inner_text()
    assert value == f"{r5:.3f}"
    page.close()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"zeros": bytes(64 << 20)}, "zip bomb"),
        ({"ok": b"1", "../../evil.dcm": b"2"}, "path traversal"),
    ],
)
def test_a_hostile_zip_is_refused_clearly(browser, server, members, message) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    page = _open(browser, server, "score_scan")
    _upload(page, "hostile.zip", buf.getvalue())
    page.locator('[data-testid="stAlert"]').filter(has_text=message).wait_for(timeout=TIMEOUT)
    assert page.get_by_text("Refused", exact=False).first.is_visible()
    page.close()
