"""Re-runs read only new or changed files; removed files leave the index."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from engine.config import load_config
from engine.index import rules_from_config
from engine.store import Store


def _hashes(db: Path) -> pd.Series:
    return (
        Store(db)
        .query("SELECT series_uid, content_hash FROM series ORDER BY series_uid")
        .set_index("series_uid")["content_hash"]
    )


def _selected_folder(db: Path) -> tuple[str, Path]:
    row = Store(db).query(
        "SELECT series_uid, min(path) AS path FROM instances JOIN series USING (series_uid) "
        "WHERE selected GROUP BY 1 ORDER BY 1 LIMIT 1"
    )
    return row.series_uid[0], Path(row.path[0]).parent


def test_unchanged_rerun_reads_nothing(archive_copy: Path, tmp_path: Path, indexer) -> None:  # noqa: ANN001
    db = tmp_path / "db.duckdb"
    first = indexer(archive_copy, db, workers=2)
    before = Store(db).query("SELECT * EXCLUDE (indexed_at) FROM series ORDER BY series_uid")
    second = indexer(archive_copy, db, workers=2)
    assert first.new == first.files_seen > 0
    assert (second.new, second.changed, second.removed) == (0, 0, 0)
    assert second.unchanged == first.files_seen and second.batches == 0
    after = Store(db).query("SELECT * EXCLUDE (indexed_at) FROM series ORDER BY series_uid")
    pd.testing.assert_frame_equal(before, after)
    runs = Store(db).query("SELECT status, counts FROM runs ORDER BY started_at")
    assert runs.status.tolist() == ["ok", "ok"]


def test_touch_add_and_delete_change_only_that_series(
    archive_copy: Path,
    tmp_path: Path,
    indexer,  # noqa: ANN001
) -> None:
    db = tmp_path / "db.duckdb"
    indexer(archive_copy, db)
    h0 = _hashes(db)
    uid, folder = _selected_folder(db)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    series_files = (
        Store(db)
        .query("SELECT path FROM instances WHERE series_uid = ? ORDER BY position", [uid])
        .path.tolist()
    )

    # touch one slice: only its series' hash changes, one file re-read
    st = os.stat(series_files[3])
    os.utime(series_files[3], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    s = indexer(archive_copy, db)
    assert (s.changed, s.new, s.removed) == (1, 0, 0)
    h1 = _hashes(db)
    assert h1[uid] != h0[uid]
    assert (h1.drop(uid) == h0.drop(uid)).all()

    # add a copy of a slice (a new file, same SOP instance): new hash, duplicate counted
    shutil.copy2(series_files[4], folder / "extra_copy")
    s = indexer(archive_copy, db)
    assert (s.new, s.changed) == (1, 0)
    h2 = _hashes(db)
    assert h2[uid] != h1[uid] and (h2.drop(uid) == h1.drop(uid)).all()
    n = Store(db).query("SELECT n_instances, n_duplicates, n_slices FROM series WHERE "
                        "series_uid = ?", [uid])  # fmt: skip
    assert n.n_duplicates[0] == 1

    # delete the copy and a middle slice: the series loses one slice and shows a gap
    (folder / "extra_copy").unlink()
    Path(series_files[10]).unlink()
    s = indexer(archive_copy, db)
    assert s.removed == 2 and s.new == s.changed == 0
    row = Store(db).query("SELECT * FROM series WHERE series_uid = ?", [uid]).iloc[0]
    assert row.n_instances == len(series_files) - 1 and row.n_duplicates == 0
    assert row.max_gap_mm > row.slice_spacing_mm
    inst = Store(db).query("SELECT count(*) AS n FROM instances WHERE series_uid = ?", [uid])
    assert inst.n[0] == len(series_files) - 1
    assert len(files) >= len(series_files)

    # delete the whole series: it leaves the index and another is selected or none
    shutil.rmtree(folder)
    s = indexer(archive_copy, db)
    assert uid not in set(_hashes(db).index)


def test_config_override_changes_rule_and_reason(
    archive_copy: Path,
    tmp_path: Path,
    indexer,  # noqa: ANN001
) -> None:
    db = tmp_path / "db.duckdb"
    indexer(archive_copy, db)
    assert Store(db).query("SELECT count(*) AS n FROM series WHERE selected").n[0] == 5
    override = tmp_path / "strict.toml"
    override.write_text("[eligibility]\nmin_slices = 500\n")
    rules = rules_from_config(load_config(override))
    assert rules.min_slices == 500
    s = indexer(archive_copy, db, rules)  # unchanged files: only the decisions change
    assert s.new == s.changed == 0
    assert s.selected == 0 and s.excluded.get("too_few_slices", 0) >= 5
    reasons = Store(db).query("SELECT reason FROM series WHERE reason_code = 'too_few_slices'")
    assert reasons.reason.str.contains("at least 500 are needed").all()
