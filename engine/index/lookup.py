"""Load an indexed series by its SeriesInstanceUID: the database finds the files."""

from __future__ import annotations

from engine.config import Config
from engine.errors import VfriskError
from engine.load import Volume, load_volume
from engine.store import Store
from engine.store.index_tables import series_files

__all__ = ["load_indexed_series"]


def load_indexed_series(store: Store, series_uid: str, config: Config) -> Volume:
    """The volume of one indexed series (DICOM files, zip members or a NIfTI file).

    Parameters
    ----------
    store : Store
        The database written by ``vfrisk index``.
    series_uid : str
        ``series.series_uid``.
    config : Config
        Its ``[loading]`` table gives the loader's gap and angle limits.

    Raises
    ------
    VfriskError
        ``series_not_found`` when the series is not indexed; the loader's codes otherwise.
    """
    with store.read() as con:
        paths = series_files(con, series_uid)
    if not paths:
        raise VfriskError(
            "series_not_found",
            f"series {series_uid} is not in {store.path}; run `vfrisk index` on its archive",
        )
    return load_volume(paths, **config["loading"])
