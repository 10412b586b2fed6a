"""`vfrisk train` end to end on a generated development cohort (tiny network, 2 epochs)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.anatomy.inputs import ModelInputs
from engine.cli import main
from engine.config import load_config
from engine.errors import VfriskError
from models.card import NOTICE
from models.checkpoint import load_checkpoint
from models.inference import predict
from models.train import TrainRequest, train

# A tiny network and run: the command, not the model, is under test here.
TINY = {"width": 8, "depth": [1, 1], "triplets_per_level": 2, "epochs": 2, "batch_size": 8,
        "min_events": 2, "workers": 2}  # fmt: skip


def _toml(values: dict[str, object]) -> str:
    return "[train]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """16 development patients (seed 11: 5 prevalent, 4 incident fractures < 5 y)."""
    root = tmp_path_factory.mktemp("train")
    out, db = root / "cohort", root / "vf.duckdb"
    assert main(["synth", str(out), "--patients", "16", "--sites", "dev:1", "--seed", "11",
                 "--resolution", "low", "--workers", "2"]) == 0  # fmt: skip
    assert main(["index", str(out / "archive"), "--db", str(db), "--no-progress"]) == 0
    assert main(["import-clinical", str(out / "clinical.csv"), "--db", str(db)]) == 0
    config = root / "tiny.toml"
    config.write_text(_toml(TINY))
    return {"root": root, "cohort": out, "db": db, "config": config}


def _config(cohort: dict[str, Path], **overrides: object) -> Path:
    path = cohort["root"] / f"tiny-{'-'.join(sorted(overrides))}.toml"
    path.write_text(_toml({**TINY, **overrides}))
    return path


def test_train_writes_a_checkpoint_that_loads_and_a_card(
    cohort: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "weights" / "tiny.pt"
    argv = ["--config", str(cohort["config"]), "train", "--db", str(cohort["db"]),
            "--out", str(out), "--seed", "3", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Checkpoint written to" in printed and "epoch   1" in printed
    ck = load_checkpoint(out)
    assert ck.config.width == 8 and ck.config.task == "multitask"
    assert ck.metadata["epoch"] in (1, 2) and ck.metadata["seeds"] == {"train": 3}
    assert ck.metadata["command"].startswith("vfrisk --config")
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["notice"] == NOTICE and card["model_id"] == ck.model_id
    assert card["checkpoint_bytes"] == out.stat().st_size
    assert card["command"] == ck.metadata["command"] and "--seed 3" in card["command"]
    cohort_info = card["data"]["cohort"]
    assert cohort_info["request"]["seed"] == 11 and cohort_info["request"]["patients"] == 16
    assert card["reproduce"][0].startswith(f"vfrisk synth {cohort['cohort']} --patients 16")
    assert "--seed 11" in card["reproduce"][0] and card["reproduce"][-1] == card["command"]
    dev = card["data"]["patients_with_inputs"]["dev"]
    assert (dev["patients"], dev["prevalent"], dev["incident_5y"]) == (16, 5, 4)
    val = card["metrics"]["internal_validation"]
    assert val["n"] >= 3 and 0.0 <= val["c_index"]["estimate"] <= 1.0
    assert 0.0 <= val["detection_auroc"]["estimate"] <= 1.0
    assert set(val["td_auc"]) <= {"2y", "3y", "5y"}
    assert card["metrics"]["external"] == {}
    assert card["training"]["device"] == "cpu" and card["training"]["train_seconds"] > 0
    assert card["configuration"]["train"]["seed"] == 3
    md = out.with_suffix(".card.md").read_text()
    assert NOTICE in md and ck.model_id in md and "vfrisk synth" in md
    # the HU reference the intensity branch calibrates against, as the network holds it
    reference = card["configuration"]["canal_reference_hu"]
    assert list(reference) == ["T12", "L1", "L2", "L3", "L4"]
    lo, hi = card["configuration"]["preprocessing"]["hu_window"]
    held = [lo + v * (hi - lo) for v in ck.model.canal_reference.tolist()]  # patch values
    assert all(v is None or abs(v - h) < 0.1 for v, h in zip(reference.values(), held, strict=True))
    assert any(v is not None and -20 < v < 80 for v in reference.values())  # fluid, cord
    assert "HU calibration" in md


def test_same_seed_gives_identical_weights_on_cpu(cohort: dict[str, Path], tmp_path: Path) -> None:
    config = load_config(_config(cohort))
    base = TrainRequest.from_config(config, db=cohort["db"], device="cpu", seed=5)
    runs = [
        train(dataclasses.replace(base, out=tmp_path / f"{name}.pt"), config, log=lambda _: None)
        for name in ("a", "b")
    ]
    assert runs[0].model_id == runs[1].model_id
    other = train(
        dataclasses.replace(base, out=tmp_path / "c.pt", seed=6), config, log=lambda _: None
    )
    assert other.model_id != runs[0].model_id


def test_weight_average_is_what_is_selected_and_saved(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    config = load_config(_config(cohort, ema_decay=0.9))
    request = TrainRequest.from_config(config, db=cohort["db"], device="cpu", seed=5)
    assert request.ema_decay == 0.9
    runs = [
        train(dataclasses.replace(request, out=tmp_path / f"{name}.pt"), config, log=lambda _: None)
        for name in ("a", "b")
    ]
    assert runs[0].model_id == runs[1].model_id  # deterministic with the average too
    plain = train(
        dataclasses.replace(request, out=tmp_path / "plain.pt", ema_decay=0.0),
        config,
        log=lambda _: None,
    )
    assert plain.model_id != runs[0].model_id  # the saved weights are the average
    card = json.loads((tmp_path / "a.card.json").read_text())
    assert card["configuration"]["train"]["ema_decay"] == 0.9
    assert "weights averaged (EMA decay 0.9)" in (tmp_path / "a.card.md").read_text()
    assert "EMA" not in (tmp_path / "plain.card.md").read_text()
    for bad in (1.0, -0.1):
        with pytest.raises(VfriskError) as err:
            TrainRequest.from_config(config, db=cohort["db"], ema_decay=bad)
        assert err.value.code == "bad_argument" and "ema_decay" in err.value.message


def test_thick_slice_views_are_prepared_once_kept_out_of_the_database_and_trained_on(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    import duckdb

    config = load_config(_config(cohort, epochs=1))
    cache = tmp_path / "cache"
    base = TrainRequest.from_config(
        config, db=cohort["db"], device="cpu", seed=5, out=tmp_path / "a.pt", cache_dir=cache,
        thick_mm=0.0,
    )  # fmt: skip
    assert not base.augmentation.thick

    def biomarker_rows() -> int:
        with duckdb.connect(str(cohort["db"]), read_only=True) as con:
            return con.execute("SELECT count(*) FROM biomarkers").fetchone()[0]

    plain = train(base, config, log=lambda _: None)
    rows = biomarker_rows()
    never = dataclasses.replace(
        base, out=tmp_path / "b.pt",
        augmentation=dataclasses.replace(base.augmentation, thick_mm=5.0, thick_p=0.0),
    )  # fmt: skip
    assert train(never, config, log=lambda _: None).model_id == plain.model_id
    assert not list(cache.glob("*thick*"))

    lines: list[str] = []
    thick = dataclasses.replace(
        base,
        out=tmp_path / "c.pt",
        augmentation=dataclasses.replace(base.augmentation, thick_mm=5.0),
    )
    result = train(thick, config, log=lines.append)
    assert "  16 of 16 patients with a thick view" in [line.split(",")[0] for line in lines]
    assert len(list(cache.glob("*.thick5.*.npz"))) == 16
    assert biomarker_rows() == rows  # the views are not scans of the archive
    assert result.model_id != plain.model_id
    assert result.card["configuration"]["train"]["augmentation"]["thick_mm"] == 5.0
    assert "thick-slice views of about 5 mm, p 0.5" in result.card_md.read_text()
    # a second run reuses the views
    lines.clear()
    again = train(dataclasses.replace(thick, out=tmp_path / "d.pt"), config, log=lines.append)
    assert again.model_id == result.model_id


def test_kfold_pools_out_of_fold_predictions(cohort: dict[str, Path], tmp_path: Path) -> None:
    config = load_config(_config(cohort, epochs=1))
    req = TrainRequest.from_config(
        config, db=cohort["db"], device="cpu", folds=2, out=tmp_path / "k.pt"
    )
    result = train(req, config, log=lambda _: None)
    assert result.val_metrics["n"] == 16  # every patient scored once, out of fold
    assert [f["fold"] for f in result.card["training"]["folds"]] == [1, 2]


@pytest.mark.gpu
def test_cuda_training_with_bf16_autocast_gives_a_checkpoint_that_scores_on_cpu(
    cohort: dict[str, Path], tmp_path: Path, make_inputs: Callable[..., ModelInputs]
) -> None:
    config = load_config(cohort["config"])
    req = TrainRequest.from_config(config, db=cohort["db"], device="cuda", seed=3,
                                   out=tmp_path / "cuda.pt")  # fmt: skip
    result = train(req, config, log=lambda _: None)
    assert result.card["training"]["device"] == "cuda"
    ck = load_checkpoint(tmp_path / "cuda.pt")
    assert not any(t.is_cuda for t in ck.model.state_dict().values())
    inputs = [make_inputs(s) for s in range(6)]
    cpu = predict(ck.model, inputs, batch_size=4)
    gpu = predict(ck.model.to("cuda"), inputs, batch_size=4)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.p_fracture == pytest.approx(b.p_fracture, abs=2e-2)
        assert np.allclose(a.risk, b.risk, atol=2e-2)


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_clear_errors_on_bad_input(
    cohort: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "x.pt")]
    err = _error(["train", "--db", str(tmp_path / "missing.duckdb"), *out], capsys)
    assert "[db_not_found]" in err and "missing.duckdb" in err

    bare = tmp_path / "bare.duckdb"  # indexed, no clinical table imported
    assert main(["index", str(cohort["cohort"] / "archive"), "--db", str(bare),
                 "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    err = _error(["train", "--db", str(bare), *out], capsys)
    assert "[no_clinical_data]" in err and "import-clinical" in err

    nowhere = _config(cohort, sites=["nowhere"])
    err = _error(["--config", str(nowhere), "train", "--db", str(cohort["db"]), *out], capsys)
    assert "[no_training_data]" in err and "nowhere" in err and "dev" in err

    strict = _config(cohort, min_events=1000)
    err = _error(["--config", str(strict), "train", "--db", str(cohort["db"]), *out], capsys)
    assert "[too_few_events]" in err and "1000" in err
    assert not (tmp_path / "x.pt").exists()
