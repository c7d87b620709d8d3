"""A fake SearXNG instance for tests (aiohttp on 127.0.0.1, a free port): ``GET /search?q=...&format=json``.

``results[keyword]`` lists the results served for queries containing that keyword (case-insensitive);
other queries get no results. ``status`` makes every request fail with that HTTP status. Every query is
recorded in ``queries``. A request without ``format=json`` gets 403, as a real instance with the JSON format
disabled does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web


class FakeSearxng:
    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.queries: list[str] = []
        self.status = 200
        self._runner: web.AppRunner | None = None
        self.url = ""

    def add(self, keyword: str, title: str, url: str, content: str = "") -> None:
        self.results.setdefault(keyword.lower(), []).append({"title": title, "url": url, "content": content,
                                                             "engine": "fake", "score": 1.0})

    async def start(self) -> FakeSearxng:
        app = web.Application()
        app.router.add_get("/search", self._search)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _search(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "")
        self.queries.append(q)
        if request.query.get("format") != "json":
            return web.Response(status=403, text="format not allowed")
        if self.status != 200:
            return web.Response(status=self.status, text="error")
        found = [r for key, rs in self.results.items() if key in q.lower() for r in rs]
        return web.json_response({"query": q, "number_of_results": len(found), "results": found})


@pytest_asyncio.fixture
async def fake_searxng() -> AsyncIterator[FakeSearxng]:
    server = await FakeSearxng().start()
    yield server
    await server.close()
