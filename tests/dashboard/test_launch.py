"""`vfrisk dashboard`: binding rules, sign-in detection, pseudonyms, and a real server start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dashboard.ids import key_path, load_key, pseudonymize
from dashboard.launch import auth_configured, check_host, streamlit_command
from dashboard.settings import settings_from_config
from engine.cli import main
from engine.config import load_config
from engine.errors import VfriskError

AUTH = """[auth]
redirect_uri = "https://vfrisk.example.org/oauth2callback"
cookie_secret = "0123456789abcdef"
client_id = "vfrisk"
client_secret = "s3cret"
server_metadata_url = "https://id.example.org/.well-known/openid-configuration"
"""


def _settings(secrets):  # noqa: ANN001, ANN202
    import dataclasses

    return dataclasses.replace(settings_from_config(load_config(None)), auth_secrets=secrets)


def test_network_address_needs_sign_in(tmp_path) -> None:
    secrets = tmp_path / "secrets.toml"
    s = _settings(secrets)
    assert check_host("127.0.0.1", s) is False
    with pytest.raises(VfriskError) as exc:
        check_host("0.0.0.0", s)
    assert exc.value.code == "unsafe_host" and str(secrets) in exc.value.message
    secrets.write_text(AUTH.replace('client_secret = "s3cret"\n', ""))
    assert not auth_configured(secrets)  # incomplete provider
    secrets.write_text(AUTH)
    assert auth_configured(secrets)
    assert check_host("0.0.0.0", s) is True
    cmd = streamlit_command("0.0.0.0", 8600, s, True)
    assert cmd[cmd.index("--secrets.files") + 1] == str(secrets.absolute())
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == str(s.max_upload_mb)


def test_named_provider_sections_count_as_sign_in(tmp_path) -> None:
    secrets = tmp_path / "s.toml"
    secrets.write_text(
        '[auth]\nredirect_uri = "u"\ncookie_secret = "c"\n[auth.google]\nclient_id = "i"\n'
        'client_secret = "s"\nserver_metadata_url = "m"\n'
    )
    assert auth_configured(secrets)


def test_cli_refuses_an_open_address_without_sign_in(empty_db, tmp_path, capsys) -> None:
    log = str(tmp_path / "log.jsonl")
    assert main(["--log-file", log, "dashboard", "--db", str(empty_db), "--host", "0.0.0.0"]) == 2
    assert "[unsafe_host]" in capsys.readouterr().err
    assert main(["--log-file", log, "dashboard", "--db", str(tmp_path / "no.duckdb")]) == 2
    assert "[db_not_found]" in capsys.readouterr().err


def test_pseudonyms_are_keyed_and_stable(tmp_path) -> None:
    db = tmp_path / "x.duckdb"
    path = key_path(db)
    key = load_key(path)
    assert load_key(path) == key and oct(path.stat().st_mode & 0o777) == "0o600"
    a = pseudonymize(["VF001", None, "VF002"], key)
    assert a[1] is None and a[0] != a[2] and a[0].startswith("P-")
    assert pseudonymize(["VF001"], key) == a[:1]
    assert pseudonymize(["VF001"], b"another key") != a[:1]


def test_the_server_starts_on_localhost(scored_db, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "VFRISK_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--log-file", str(tmp_path / "l.jsonl"),
         "dashboard", "--db", str(scored_db.db), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, ok = time.monotonic() + 60, False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health") as r:
                    ok = r.status == 200
                    break
            except OSError:
                time.sleep(0.3)
        assert ok, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as r:
            assert b"<html" in r.read().lower()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
