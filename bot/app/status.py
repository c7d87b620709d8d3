"""``paibot status``: the figures of the running bot, read from its own ``/metrics``.

The bot notes where it serves its metrics in ``<data_dir>/metrics.json`` (``bot.app.metrics_http``); this
reads them from there with the access token of the config section named there, and prints them for a
person (or, with ``--json``, every sample as one JSON object per line). Same figures as Prometheus sees.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from typing import Any

from bot.app.metrics_http import read_status_file
from bot.config import Settings

Samples = dict[str, list[tuple[dict[str, str], float]]]


def status(settings: Settings, *, as_json: bool = False, timeout_s: float = 10.0) -> int:
    where = read_status_file(settings.data_path)
    if where is None or not where.get("url"):
        print(f"paibot is not running with this data directory ({settings.data_path}), or serves no metrics "
              "(metrics.enabled: false)")
        return 1
    token = _token(settings, str(where.get("token_from", "")))
    try:
        text = asyncio.run(_fetch(str(where["url"]), token, timeout_s))
    except (OSError, asyncio.TimeoutError, RuntimeError) as exc:
        print(f"paibot (pid {where.get('pid')}) does not answer at {where['url']}: {exc}")
        return 1
    samples = parse(text)
    if as_json:
        for name, rows in samples.items():
            for labels, value in rows:
                print(json.dumps({"name": name, "labels": labels, "value": value}, ensure_ascii=False))
        return 0
    print(f"paibot (pid {where.get('pid')}), metrics at {where['url']}")
    for line in summary(samples):
        print(line)
    return 0


def _token(settings: Settings, section: str) -> str:
    """The ``access_token`` of ``section`` ("metrics", "adapters.web", ...)."""
    node: Any = settings
    for part in filter(None, section.split(".")):
        node = getattr(node, part, None)
        if node is None:
            return ""
    return str(getattr(node, "access_token", "") or "")


async def _fetch(url: str, token: str, timeout_s: float) -> str:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        async with http.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            return await resp.text()


def parse(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), float(sample.value)))
    return out


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in samples.get(name, [])}


def _one(samples: Samples, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def quantile(samples: Samples, name: str, q: float, **match: str) -> float | None:
    """The ``q`` quantile of a histogram (the label sets that ``match``, together), interpolated within its
    bucket as Prometheus' ``histogram_quantile`` does; None without observations."""
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in samples.get(f"{name}_bucket", []):
        if all(labels.get(k) == v for k, v in match.items()):
            buckets[float(labels["le"])] += value
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] == 0:
        return None
    total = buckets[edges[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if math.isinf(edge):
                return lower  # beyond the last finite bucket: its upper edge is all we know
            return lower + (edge - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = edge, count
    return lower


def summary(s: Samples) -> list[str]:
    def per(name: str, label: str) -> str:
        items = _by(s, name, label)
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(items.items())) or "none"

    lines = [
        f"messages received: {per('paibot_messages_received_total', 'platform')}",
        f"messages sent: {per('paibot_messages_sent_total', 'platform')}",
    ]
    answers = _one(s, "paibot_answer_latency_seconds_count")
    p50, p95 = quantile(s, "paibot_answer_latency_seconds", 0.5), quantile(s, "paibot_answer_latency_seconds", 0.95)
    if answers and p50 is not None and p95 is not None:
        lines.append(f"answers: {answers:.0f}, latency p50 about {p50:.1f} s, p95 about {p95:.1f} s")
    else:
        lines.append("answers: none yet")
    lines.append(
        f"lanes: {_one(s, 'paibot_lanes_active'):.0f} active, {_one(s, 'paibot_events_in_flight'):.0f} in flight, "
        f"{_one(s, 'paibot_lane_queue_depth'):.0f} queued (deepest {_one(s, 'paibot_lane_queue_deepest'):.0f})"
    )
    waits = [(lane, quantile(s, "paibot_lane_wait_seconds", 0.95, lane=lane)) for lane in ("quiet", "backlog")]
    if any(w is not None for _, w in waits):
        lines.append("lane wait p95: " + ", ".join(f"{lane} about {w:.2f} s" for lane, w in waits if w is not None))
    lines.append(
        f"inbox: {_one(s, 'paibot_inbox_pending'):.0f} pending, {_one(s, 'paibot_inbox_dead_letters'):.0f} dead "
        f"letters ({_one(s, 'paibot_dead_letters_total'):.0f} since the start)"
    )
    lines.append(f"memory index lag: {_one(s, 'paibot_memory_index_lag'):.0f} records")
    calls = _by(s, "paibot_model_calls_total", "model")
    for model, n in sorted(calls.items()):
        kinds = {labels.get("kind"): v for labels, v in s.get("paibot_model_tokens_total", [])
                 if labels.get("model") == model}  # fmt: skip
        cost = _by(s, "paibot_model_cost_usd_total", "model").get(model, 0.0)
        lines.append(f"model {model}: {n:.0f} calls, {kinds.get('prompt', 0):.0f} prompt and "
                     f"{kinds.get('completion', 0):.0f} completion tokens, {cost:.4f} USD since the start")
    lines.append(f"today (UTC): {_one(s, 'paibot_tokens_today'):.0f} tokens, {_one(s, 'paibot_cost_usd_today'):.4f} USD")
    lines.append(f"refusals: {per('paibot_refusals_total', 'reason')}")
    return lines
