"""Web search behind a small port, and its first implementation: a SearXNG instance's JSON API.

``SearchProvider.search(query, n)`` returns at most ``n`` ``SearchResult``s (title, http(s) URL, snippet) or
raises ``SearchError``; it never retries by itself and never returns a result without a URL. Which provider
runs comes from config.yaml::

    search:
      provider: searxng          # "" = no web search: fact checks say they cannot verify
      url: http://127.0.0.1:8888 # the instance; its settings.yml must allow the json format
      max_results: 5

Results are untrusted web text: the fact-check skill shows them to the model as data and only ever cites
URLs that came from here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from bot.config import SearchSettings
from bot.errors import ConfigError, PaibotError

log = logging.getLogger("paibot.skills.search")


class SearchError(PaibotError):
    """The search provider failed or answered something unusable."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    title: str
    url: str
    snippet: str = ""


class SearchProvider(Protocol):
    async def search(self, query: str, n: int) -> list[SearchResult]: ...


class SearxngSearch:
    """``SearchProvider`` over ``GET <url>/search?q=...&format=json`` of a SearXNG instance."""

    def __init__(self, url: str, timeout_s: float = 10.0, max_results: int = 5) -> None:
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_results = max_results

    async def search(self, query: str, n: int) -> list[SearchResult]:
        params = {"q": query[:400], "format": "json"}
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as session:
                async with session.get(f"{self._url}/search", params=params) as resp:
                    if resp.status != 200:
                        raise SearchError(f"searxng answered HTTP {resp.status}")
                    body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise SearchError(f"searxng is unreachable: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise SearchError("searxng answered something that is not JSON") from exc
        return parse_results(body, n)


def parse_results(body: object, n: int) -> list[SearchResult]:
    """The usable results of a SearXNG JSON answer: http(s) URL required, title falls back to the URL."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise SearchError("searxng answered without a results list")
    out: list[SearchResult] = []
    seen: set[str] = set()
    for item in body["results"]:
        if not isinstance(item, dict):
            continue
        url = str(item.get("url") or "").strip()
        if not url.startswith(("https://", "http://")) or url in seen or any(c.isspace() for c in url):
            continue
        seen.add(url)
        title = " ".join(str(item.get("title") or url).split())[:200]
        snippet = " ".join(str(item.get("content") or "").split())[:500]
        out.append(SearchResult(title, url, snippet))
        if len(out) >= n:
            break
    return out


def build_search_provider(settings: SearchSettings) -> SearchProvider | None:
    """The configured provider, or None when ``search.provider`` is empty."""
    name = settings.provider.strip().lower()
    if not name:
        return None
    if name == "searxng":
        if not settings.url:
            raise ConfigError("search.url", "searxng needs the URL of its instance")
        return SearxngSearch(settings.url, max_results=settings.max_results)
    raise ConfigError("search.provider", f"unknown search provider {settings.provider!r} (known: searxng)")
