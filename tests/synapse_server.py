"""A real Synapse homeserver on loopback, for the Matrix adapter's end-to-end tests.

``make test`` installs a pinned ``matrix-synapse`` into ``.synapse-venv`` (its own environment, so its pinned
dependencies never mix with paibot's). The ``synapse`` fixture below (session-scoped: the suite starts one
homeserver) writes a throw-away ``homeserver.yaml`` into a temporary directory, starts
``.synapse-venv/bin/python -m synapse.app.homeserver`` as a subprocess, waits until
``/_matrix/client/versions`` answers, and kills it at teardown.

The configuration is built for tests: an SQLite ``:memory:`` database, ``bcrypt_rounds: 4``, every rate
limit raised, no federation listener, no URL previews, no key servers, no stats reporting, registration
closed to the public and open only through the shared-secret admin API (``register``).

``tests/conftest.py`` offers the fixture to every test module (do not import it into a module: that would
define a second fixture, and start a second homeserver, for that module). Tests sharing the homeserver
register their users under unique names (``server.unique("alice")``). A test that needs a homeserver of
its own, started when it chooses (``running_synapse(workdir, port)``), does not use the fixture.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SYNAPSE_PYTHON = REPO / ".synapse-venv" / "bin" / "python"
SERVER_NAME = "paibot.test"
STARTUP_TIMEOUT_S = 120.0

_GENEROUS = {"per_second": 10_000, "burst_count": 10_000}


@dataclass(frozen=True)
class MatrixUser:
    """An account registered on the test homeserver."""

    user_id: str
    password: str
    access_token: str
    device_id: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


@dataclass
class SynapseServer:
    """A running homeserver: its client-server base URL and a way to register accounts."""

    base_url: str
    server_name: str
    shared_secret: str
    workdir: Path
    startup_s: float = 0.0
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def unique(self, prefix: str) -> str:
        """A localpart no other test in this session uses."""
        return f"{prefix}{next(self._names)}"

    def register(self, localpart: str, *, password: str | None = None, admin: bool = False,
                 displayname: str | None = None) -> MatrixUser:
        """Register an account through the shared-secret admin API (``/_synapse/admin/v1/register``)."""
        password = password or secrets.token_urlsafe(12)
        url = f"{self.base_url}/_synapse/admin/v1/register"
        nonce = _http_json("GET", url)["nonce"]
        signed = "\x00".join((nonce, localpart, password, "admin" if admin else "notadmin"))
        mac = hmac.new(self.shared_secret.encode(), signed.encode(), digestmod=hashlib.sha1)
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname:
            body["displayname"] = displayname
        out = _http_json("POST", url, body)
        return MatrixUser(out["user_id"], password, out["access_token"], out["device_id"])

    def log_tail(self, lines: int = 40) -> str:
        log = self.workdir / "homeserver.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _http_json(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signing_key() -> str:
    """A fresh ed25519 signing key in Synapse's file format: ``ed25519 <key id> <unpadded base64 seed>``."""
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}\n"


def homeserver_config(workdir: Path, port: int, shared_secret: str) -> dict[str, Any]:
    """The test homeserver's configuration (see the module docstring for why each choice)."""
    log_config = workdir / "log.yaml"
    log_config.write_text(yaml.safe_dump({
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "plain",
                              "filename": str(workdir / "homeserver.log")}},
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }))
    (workdir / "signing.key").write_text(_signing_key())
    return {
        "server_name": SERVER_NAME,
        "pid_file": str(workdir / "homeserver.pid"),
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": {"name": "sqlite3", "args": {"database": ":memory:"}},
        "log_config": str(log_config),
        "media_store_path": str(workdir / "media"),
        "signing_key_path": str(workdir / "signing.key"),
        "report_stats": False,
        "enable_metrics": False,
        "registration_shared_secret": shared_secret,
        "enable_registration": False,
        "bcrypt_rounds": 4,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "url_preview_enabled": False,
        "suppress_key_server_warning": True,
        "trusted_key_servers": [],
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "user_directory": {"enabled": False},
        "max_upload_size": "5M",
        "rc_message": _GENEROUS,
        "rc_registration": _GENEROUS,
        "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
        "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
        "rc_joins_per_room": _GENEROUS,
        "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
        "rc_admin_redaction": _GENEROUS,
        "rc_room_creation": _GENEROUS,
        "rc_media_create": _GENEROUS,
        "rc_profile": _GENEROUS,
        "rc_key_requests": _GENEROUS,
        "rc_delayed_event_mgmt": _GENEROUS,
        "rc_3pid_validation": _GENEROUS,
        "rc_reports": _GENEROUS,
    }


def _wait_until_up(proc: subprocess.Popen[bytes], base_url: str, workdir: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"synapse exited with {proc.returncode}:\n{_tail(workdir)}")
        try:
            _http_json("GET", f"{base_url}/_matrix/client/versions", timeout=2.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"synapse did not answer within {STARTUP_TIMEOUT_S:.0f}s:\n{_tail(workdir)}")


def _tail(workdir: Path) -> str:
    parts = []
    for name in ("stderr.log", "homeserver.log"):
        p = workdir / name
        if p.exists():
            parts.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:]))
    return "\n".join(parts)


@contextlib.contextmanager
def running_synapse(workdir: Path, port: int | None = None) -> Iterator[SynapseServer]:
    """A Synapse listening on ``port`` (a free one when None) until the block ends. Tests that need the
    homeserver to come up late (an outage at the bot's start) choose the port first and enter this later."""
    port = port or free_port()
    secret = secrets.token_hex(16)
    config_path = workdir / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(homeserver_config(workdir, port, secret)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    stderr = open(workdir / "stderr.log", "wb")  # noqa: SIM115 - closed at teardown
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(config_path)],
        cwd=workdir, env=env, stdout=stderr, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, base_url, workdir)
        server = SynapseServer(base_url, SERVER_NAME, secret, workdir, startup_s=time.monotonic() - started)
        print(f"\nsynapse up at {base_url} in {server.startup_s:.1f}s", file=sys.stderr)
        yield server
    finally:
        proc.kill()
        proc.wait(timeout=30)
        stderr.close()


def require_synapse() -> None:
    """Skip (loudly) when ``.synapse-venv`` is missing."""
    if not SYNAPSE_PYTHON.exists():
        msg = (f"SKIPPING the Matrix end-to-end tests: no Synapse at {SYNAPSE_PYTHON}; run `make synapse` "
               "(or `make test`, which installs it)")
        print(f"\n*** {msg}", file=sys.stderr)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """One real Synapse for the whole session (skipped, loudly, when ``.synapse-venv`` is missing)."""
    require_synapse()
    with running_synapse(tmp_path_factory.mktemp("synapse")) as server:
        yield server
