"""Configuration: documented defaults, user overrides, and refusals naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import VfriskError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VFRISK_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_load_and_match_the_reference_preprocessing() -> None:
    config = load_config()
    assert config.source is None
    # Kong et al. (REFERENCE.md): 1 x 1 x 3 mm, crop 24 x 128 x 224, resize 32 x 64 x 112.
    assert config["preprocessing"]["spacing_zyx_mm"] == [3.0, 1.0, 1.0]
    assert config["preprocessing"]["crop_zyx"] == [24, 128, 224]
    assert config["preprocessing"]["network_zyx"] == [32, 64, 112]
    assert config["eligibility"]["max_slice_thickness_mm"] == 5.0


def test_user_file_overrides_a_subset(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[eligibility]\nmin_slices = 40\n[storage]\nlock_timeout_s = 5\n")
    config = load_config(path)
    assert config["eligibility"]["min_slices"] == 40
    assert config["storage"]["lock_timeout_s"] == 5.0
    assert config["eligibility"]["max_slice_thickness_mm"] == 5.0
    assert config.hash() != load_config(None).hash()


def test_local_vfrisk_toml_and_env_var_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "vfrisk.toml").write_text("[synth]\nseed = 3\n")
    assert load_config()["synth"]["seed"] == 3
    other = tmp_path / "other.toml"
    other.write_text("[synth]\nseed = 9\n")
    monkeypatch.setenv("VFRISK_CONFIG", str(other))
    assert load_config()["synth"]["seed"] == 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[eligibility]\nmin_slice = 3\n", "unknown key eligibility.min_slice"),
        ('[eligibility]\nmin_slices = "many"\n', "eligibility.min_slices = 'many'"),
        ("[eligibility]\nsoft_kernels = [1, 2]\n", "eligibility.soft_kernels"),
        ("[eligibility\n", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(VfriskError) as err:
        load_config(path)
    assert err.value.code == "bad_config"
    assert expected in err.value.message and str(path) in err.value.message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VfriskError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
