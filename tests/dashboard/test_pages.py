"""AppTest of every page: empty database, the scored sample cohort, and filter changes.

Every count a page shows is checked against an independent SQL count written here.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = Path(APP).parent / "pages"
PAGE_FILES = [
    "overview.py", "survival.py", "calibration.py", "comparison.py", "worklist.py",
    "score_scan.py", "data_quality.py",
]  # fmt: skip


def _app(db: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("VFRISK_DASHBOARD_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=120)
    return at


def _sql(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("page", PAGE_FILES)
def test_every_page_runs_on_an_empty_database(page, empty_db, app_env, monkeypatch) -> None:
    at = _app(empty_db, monkeypatch)
    at.run()
    at.switch_page(str(PAGES / page)).run()
    assert not at.exception, at.exception
    text = " ".join(i.value for i in at.info) + " ".join(e.value for e in at.error)
    assert "vfrisk" in text  # the empty state names the command to run


def test_missing_database_says_which_command_creates_it(tmp_path, app_env, monkeypatch) -> None:
    at = _app(tmp_path / "none.duckdb", monkeypatch)
    at.run()
    assert not at.exception
    assert any("vfrisk index" in e.value for e in at.error)


@pytest.mark.parametrize("page", PAGE_FILES)
def test_every_page_runs_on_the_scored_sample(page, scored_db, app_env, monkeypatch) -> None:
    at = _app(scored_db.db, monkeypatch)
    at.run()
    at.switch_page(str(PAGES / page)).run()
    assert not at.exception, at.exception
    # a filter change on every page
    at.sidebar.multiselect(key="f_sex").set_value(["F"]).run()
    assert not at.exception, at.exception


def _table_with(at: AppTest, column: str):  # noqa: ANN202
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column}")


def test_overview_counts_equal_sql(scored_db, app_env, monkeypatch) -> None:
    db = scored_db.db
    at = _app(db, monkeypatch)
    at.run()
    assert not at.exception, at.exception
    funnel = _table_with(at, "eligible")
    assert int(funnel["series"].sum()) == _sql(db, "SELECT count(*) FROM series")[0][0]
    assert int(funnel["selected"].sum()) == _sql(
        db, "SELECT count(*) FROM series WHERE selected")[0][0]  # fmt: skip
    assert int(funnel["scored"].sum()) == _sql(db, "SELECT count(*) FROM predictions")[0][0]
    demo = _table_with(at, "female")
    assert int(demo.loc[demo["site"] == "all", "patients"].iloc[0]) == _sql(
        db, "SELECT count(*) FROM clinical")[0][0]  # fmt: skip
    at.multiselect(key="f_sex").set_value(["M"]).run()
    demo = _table_with(at, "female")
    assert int(demo.loc[demo["site"] == "all", "patients"].iloc[0]) == _sql(
        db, "SELECT count(*) FROM clinical WHERE sex = 'M'")[0][0]  # fmt: skip
    assert int(demo.loc[demo["site"] == "all", "female"].iloc[0]) == 0
    # the choice survives a page switch (shared filters)
    at.switch_page(str(PAGES / "data_quality.py")).run()
    assert at.multiselect(key="f_sex").value == ["M"]


def test_overview_shows_the_card_stored_with_the_model(
    scored_db, app_env, monkeypatch, tmp_path
) -> None:
    import json
    import shutil

    from models.card import NOTICE

    db = tmp_path / "copy.duckdb"  # the session's database stays as it is
    shutil.copy(scored_db.db, db)
    at = _app(db, monkeypatch)
    at.run()
    assert not at.exception, at.exception
    # the fixture's model was scored without a card beside its checkpoint
    (box,) = [e for e in at.expander if scored_db.model_id in e.label]
    assert not box.markdown and "No model card" in box.info[0].value
    card = json.loads((PAGES.parents[1] / "models/weights/fracture_net.card.json").read_text())

    def overview_with(stored: dict):  # noqa: ANN202 - the page and the model's expander
        con = duckdb.connect(str(db))
        try:
            con.execute("UPDATE models SET card = ?", [json.dumps(stored)])
        finally:
            con.close()
        at = _app(db, monkeypatch)
        at.run()
        assert not at.exception, at.exception
        (box,) = [e for e in at.expander if scored_db.model_id in e.label]
        return at, box

    _, box = overview_with(card)
    text = " ".join(m.value for m in box.markdown)
    assert NOTICE in text and card["command"] in text and card["model_id"] in text
    # a card of another format is named as such; the page goes on
    at, box = overview_with({"model_id": "x"})
    assert "cannot be shown" in box.warning[0].value and at.dataframe


def test_worklist_count_equals_sql(scored_db, app_env, monkeypatch) -> None:
    db = scored_db.db
    at = _app(db, monkeypatch)
    at.run()
    at.switch_page(str(PAGES / "worklist.py")).run()
    assert not at.exception, at.exception
    for cut in (0.0, float(_sql(db, "SELECT median(risk_5y) FROM predictions")[0][0])):
        at.number_input(key="wl_risk").set_value(round(cut, 2)).run()
        assert not at.exception, at.exception
        expected = _sql(db, "SELECT count(*) FROM predictions WHERE risk_5y >= ?", [round(cut, 2)])
        shown = int(at.metric[0].value.replace(",", ""))
        assert shown == expected[0][0]
    # pseudonyms by default; no raw patient id on the page
    ids = {r[0] for r in _sql(db, "SELECT patient_id FROM clinical")}
    table = _table_with(at, "patient")
    assert not ids & set(table["patient"]) and all(p.startswith("P-") for p in table["patient"])
    at.toggle(key="wl_show_ids").set_value(True).run()
    table = _table_with(at, "patient")
    assert set(table["patient"]) <= ids
    audit = _sql(db, "SELECT action, n_rows FROM audit")
    assert ("show_identifiers", 0) in audit


def test_data_quality_counts_equal_sql(scored_db, app_env, monkeypatch) -> None:
    db = scored_db.db
    at = _app(db, monkeypatch)
    at.run()
    at.switch_page(str(PAGES / "data_quality.py")).run()
    assert not at.exception, at.exception
    excl = _table_with(at, "reason_code")
    assert (
        int(excl["series"].sum())
        == _sql(db, "SELECT count(*) FROM series WHERE NOT selected")[0][0]
    )
    failures = [df.value for df in at.dataframe if "stage" in df.value.columns]
    assert int(failures[0]["series"].sum()) == _sql(db, "SELECT count(*) FROM failures")[0][0]
    canal = _table_with(at, "offset_hu")  # the HU calibration check per scanner
    read = _sql(db, "SELECT count(canal_hu) FROM biomarkers WHERE present")[0][0]
    assert int(canal["levels_read"].sum()) == read > 0


def _series_zip(scored_db) -> tuple[bytes, str]:  # noqa: ANN001
    import io
    import zipfile

    (uid,) = _sql(scored_db.db, "SELECT series_uid FROM predictions ORDER BY series_uid LIMIT 1")[0]
    paths = [
        r[0] for r in _sql(scored_db.db, "SELECT path FROM instances WHERE series_uid = ?", [uid])
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, p in enumerate(paths):
            z.write(p, f"series/{i:04d}")
    return buf.getvalue(), uid


def test_uploaded_scan_gets_the_risk_that_scoring_wrote(scored_db, app_env, monkeypatch) -> None:
    blob, uid = _series_zip(scored_db)
    at = _app(scored_db.db, monkeypatch)
    at.run()
    at.switch_page(str(PAGES / "score_scan.py")).run()
    at.file_uploader(key="up_files").set_value(("series.zip", blob, "application/zip")).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    p, r5 = _sql(scored_db.db, "SELECT p_fracture, risk_5y FROM predictions WHERE series_uid = ?",
                 [uid])[0]  # fmt: skip
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Detection probability (prevalent fracture)"] == f"{p:.3f}"
    assert metrics["5-year risk"] == f"{r5:.3f}"
    assert metrics["Model"] == scored_db.model_id
    risk = _table_with(at, "risk")
    assert float(risk["risk"].iloc[4]) == pytest.approx(r5, abs=1e-6)
    # nothing was written
    assert _sql(scored_db.db, "SELECT count(*) FROM predictions")[0][0] == 3


def test_a_zip_bomb_upload_is_refused_on_the_page(scored_db, app_env, monkeypatch) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros", bytes(64 << 20))
    at = _app(scored_db.db, monkeypatch)
    at.run()
    at.switch_page(str(PAGES / "score_scan.py")).run()
    at.file_uploader(key="up_files").set_value(("bomb.zip", buf.getvalue(), "application/zip"))
    at.run()
    assert not at.exception, at.exception
    assert any("zip bomb" in e.value for e in at.error)


_WRITER = """
import sys, time
from engine.store import Store
from engine.store.dashboard_tables import insert_audit
store = Store(sys.argv[1])
for i in range(int(sys.argv[2])):
    with store.write() as con:
        insert_audit(con, action="export_worklist", who=f"writer{i}", filters={}, rows=i)
    time.sleep(0.05)
"""


def test_pages_keep_working_while_another_process_writes(scored_db, tmp_path, app_env,
                                                         monkeypatch) -> None:  # fmt: skip
    import shutil
    import subprocess
    import sys

    db = tmp_path / "busy.duckdb"
    shutil.copy(scored_db.db, db)
    writes = 30
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(writes)])
    at = _app(db, monkeypatch)
    at.run()
    try:
        while writer.poll() is None:
            at.switch_page(str(PAGES / "data_quality.py")).run()
            assert not at.exception, at.exception
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    at.run()  # the writes show up on the next rerun (cache keyed on the file's version)
    audit = _table_with(at, "export_id")
    assert int((audit["who"].str.startswith("writer")).sum()) == writes


def test_worklist_on_a_database_that_cannot_be_written(
    scored_db, tmp_path, app_env, monkeypatch, unwritable
) -> None:
    """A database on a read-only share: the pages read; the worklist names the key setting
    when its pseudonym key cannot be made beside the file, and identifiers stay hidden when
    their audit row cannot be written."""
    import shutil

    db = tmp_path / "archive" / "cohort.duckdb"
    db.parent.mkdir()
    shutil.copy(scored_db.db, db)
    ids = {r[0] for r in _sql(db, "SELECT patient_id FROM clinical")}
    with unwritable(db), unwritable(db.parent):
        at = _app(db, monkeypatch)
        at.run()
        for page in PAGE_FILES:
            at.switch_page(str(PAGES / page)).run()
            assert not at.exception, (page, at.exception)
        at.switch_page(str(PAGES / "worklist.py")).run()
        assert any(
            "pseudonym_key_unavailable" in e.value and "pseudonym_key_file" in e.value
            for e in at.error
        )
        config = tmp_path / "vfrisk.toml"
        config.write_text(f'[dashboard]\npseudonym_key_file = "{tmp_path / "key"}"\n')
        monkeypatch.setenv("VFRISK_CONFIG", str(config))
        at = _app(db, monkeypatch)
        at.run()
        at.switch_page(str(PAGES / "worklist.py")).run()
        assert not at.exception, at.exception
        assert any("cannot be written" in w.value for w in at.warning)
        assert at.toggle(key="wl_show_ids").disabled
        (export,) = [e for e in at.get("download_button") if e.proto.id.endswith("wl_export")]
        assert export.proto.disabled
        assert not ids & set(_table_with(at, "patient")["patient"])  # pseudonyms
    # the file turns read-only between the page's render and the click: no audit row, no
    # identifiers
    at = _app(db, monkeypatch)
    at.run()
    at.switch_page(str(PAGES / "worklist.py")).run()
    assert not at.toggle(key="wl_show_ids").disabled
    with unwritable(db), unwritable(db.parent):
        at.toggle(key="wl_show_ids").set_value(True).run()
        assert not at.exception, at.exception
        assert any("db_read_only" in e.value and "Identifiers" in e.value for e in at.error)
        assert not ids & set(_table_with(at, "patient")["patient"])
        assert not at.toggle(key="wl_show_ids").value
