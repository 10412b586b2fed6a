"""Start the Streamlit server for ``vfrisk dashboard``, refusing unsafe addresses.

Binding: 127.0.0.1 by default. Another address exposes patient-level data to the network,
so it is refused unless Streamlit's OIDC sign-in (``st.login``) is configured: a secrets
file with an ``[auth]`` section (``redirect_uri``, ``cookie_secret`` and a provider's
``client_id``, ``client_secret``, ``server_metadata_url``). The app then shows nothing but
a sign-in button until the user has signed in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

from dashboard.settings import ENV_AUTH, ENV_CONFIG, ENV_DB, LOCAL_HOSTS, DashboardSettings
from engine.errors import VfriskError

__all__ = ["APP", "auth_configured", "check_host", "serve", "streamlit_command"]

#: The app file ``streamlit run`` executes.
APP = Path(__file__).with_name("app.py")
_AUTH_KEYS = ("redirect_uri", "cookie_secret")
_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")


def auth_configured(secrets: Path) -> bool:
    """Whether ``secrets`` holds an ``[auth]`` section Streamlit can sign users in with."""
    try:
        data = tomllib.loads(secrets.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return False
    auth = data.get("auth")
    if not isinstance(auth, dict) or not all(auth.get(k) for k in _AUTH_KEYS):
        return False
    providers = [auth] + [v for v in auth.values() if isinstance(v, dict)]
    return any(all(p.get(k) for k in _PROVIDER_KEYS) for p in providers)


def check_host(host: str, settings: DashboardSettings) -> bool:
    """Return whether sign-in is required; refuse a network address without it.

    Raises
    ------
    VfriskError
        ``unsafe_host`` when ``host`` is not local and no ``[auth]`` is configured.
    """
    if host in LOCAL_HOSTS:
        return False
    if not auth_configured(settings.auth_secrets):
        raise VfriskError(
            "unsafe_host",
            f"refusing to listen on {host}: the dashboard shows patient-level data and "
            f"no sign-in is configured ({settings.auth_secrets} has no complete [auth] "
            "section). Keep the default --host 127.0.0.1 (reach it through an SSH tunnel), "
            "or configure Streamlit OIDC sign-in as the README's dashboard section shows "
            "and point [dashboard] auth_secrets at it.",
        )
    return True


def streamlit_command(host: str, port: int, settings: DashboardSettings, auth: bool) -> list[str]:
    """The ``streamlit run`` command line (the same Python, headless, no telemetry)."""
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host,
        "--server.port", str(int(port)),
        "--server.headless", "true",
        "--server.maxUploadSize", str(settings.max_upload_mb),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    if auth:
        cmd += ["--secrets.files", str(settings.auth_secrets.absolute())]
    return cmd


def serve(
    db: Path,
    host: str,
    port: int,
    settings: DashboardSettings,
    config_file: Path | None,
) -> int:
    """Run the dashboard server until it stops (Ctrl-C); return its exit status.

    Raises
    ------
    VfriskError
        ``db_not_found`` when ``db`` does not exist; ``unsafe_host`` (see :func:`check_host`).
    """
    if not db.exists():
        raise VfriskError(
            "db_not_found",
            f"database {db} does not exist; create it with `vfrisk index ARCHIVE --db {db}` "
            "(or run `vfrisk demo`), or pass the right --db",
        )
    auth = check_host(host, settings)
    env = dict(os.environ)
    env[ENV_DB] = str(db.absolute())
    env[ENV_AUTH] = "1" if auth else "0"
    if config_file is not None:
        env[ENV_CONFIG] = str(Path(config_file).absolute())
    cmd = streamlit_command(host, port, settings, auth)
    print(f"vfrisk dashboard: http://{host}:{port} on {db} (Ctrl-C stops it)", flush=True)
    child = subprocess.Popen(cmd, env=env)

    def stop(signum: int, frame: object) -> None:  # a terminated CLI stops its server
        child.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait(timeout=30)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
