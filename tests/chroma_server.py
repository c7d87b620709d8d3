"""A real ``chroma run`` server on a free loopback port, for the memory contract suite's http backend.

Import the ``chroma_url`` fixture into a test module. When the server cannot start (no ``chroma`` binary,
a crash at start-up) the dependent tests are skipped with the reason and the server's output, never
silently passed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chroma_binary() -> str | None:
    here = Path(sys.executable).parent / "chroma"
    return str(here) if here.exists() else shutil.which("chroma")


def _heartbeat(url: str) -> bool:
    for path in ("/api/v2/heartbeat", "/api/v1/heartbeat"):
        try:
            with urllib.request.urlopen(url + path, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            continue
    return False


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _chroma_binary()
    if binary is None:
        pytest.skip("CHROMA SERVER TESTS SKIPPED: no `chroma` executable next to the interpreter or on PATH")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log_path = data / "server.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "CHROMA_TELEMETRY": "false"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _heartbeat(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            out = log_path.read_text(errors="replace")[-2000:]
            pytest.skip(f"CHROMA SERVER TESTS SKIPPED: `chroma run` did not come up on {url}:\n{out}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
