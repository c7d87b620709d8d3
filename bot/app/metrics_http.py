"""``GET /metrics`` on a port of its own (aiohttp), for a bot whose adapters serve no HTTP (an adapter that
serves HTTP, such as the web group, offers the metrics on its own port instead).

It binds to ``metrics.host`` (loopback by default; any other address needs ``metrics.access_token``, checked
by the config) and, with a token, answers only requests that carry it (``Authorization: Bearer <token>`` or
``?token=``), as the web group's API does.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp.web import Application, AppRunner, Request, Response, TCPSite, json_response

from bot.errors import AdapterConfigError
from bot.ports import MetricsSource

log = logging.getLogger("paibot.metrics")


def authorised(request: Request, token: str) -> bool:
    """Whether ``request`` carries ``token`` (always, when there is none)."""
    if not token:
        return True
    auth = request.headers.get("Authorization", "")
    given = [auth[7:].strip() if auth.lower().startswith("bearer ") else "", request.query.get("token", "")]
    return any(g and hmac.compare_digest(g.encode(), token.encode()) for g in given)


class MetricsServer:
    def __init__(self, source: MetricsSource, host: str, port: int, token: str = "") -> None:
        self._source = source
        self._host = host
        self._port = port
        self._token = token
        self._runner: AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = Application()
        app.router.add_get("/metrics", self._metrics)
        runner = AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = TCPSite(runner, self._host, self._port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise AdapterConfigError(
                f"the metrics cannot be served on {self._host}:{self._port} ({exc.strerror or exc}); "
                "change metrics.port, or set metrics.enabled: false"
            ) from exc
        self._runner = runner
        port = self._port
        for address in runner.addresses:  # the real port, also for port 0
            if isinstance(address, tuple) and len(address) >= 2:
                port = int(address[1])
                break
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.url = f"http://{host}:{port}/metrics"
        log.info("metrics served at %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: Request) -> Response:
        if not authorised(request, self._token):
            return json_response({"error": "an access token is required (Authorization: Bearer <token>)"},
                                     status=401)
        body = await self._source.render()
        return Response(body=body, headers={"Content-Type": self._source.content_type})


# --------------------------------------------------------------------------- where a running bot serves them

STATUS_FILE = "metrics.json"


def write_status_file(data_dir: Path, url: str, token_from: str) -> None:
    """Note where the running bot serves its metrics (``<data_dir>/metrics.json``, for ``paibot status``):
    the URL and which config section's ``access_token`` guards it. No secret is written."""
    path = data_dir / STATUS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "token_from": token_from, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)


def read_status_file(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_status_file(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / STATUS_FILE).unlink()
