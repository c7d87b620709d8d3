"""Observability: the Prometheus metrics of a running App, on a port of their own or on the web group's
port (with its access token), ``paibot status`` reading them, the memory's index lag, and JSON logs.
Real HTTP over loopback, a scripted model, the real inbox."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime

import aiohttp
import pytest

from bot.app import App
from bot.app.logsetup import setup_logging
from bot.app.metrics_http import read_status_file
from bot.app.status import parse, quantile, status, summary
from bot.config import parse_settings
from bot.errors import ConfigError
from bot.events import Message
from bot.ports import MemoryRecord
from tests.web_members import member_headers
from tests.fakes import ScriptedLLM
from tests.security.obedient import build_app, msg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(url: str, token: str = "") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


def value(samples, name: str, **labels: str) -> float:
    return sum(v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items()))


async def test_the_metrics_count_messages_answers_refusals_and_tokens_on_a_port_of_their_own(tmp_path):
    llm = ScriptedLLM(["first answer", "second answer", "third answer"])
    port = free_port()
    extra = (f"metrics: {{port: {port}}}\n"
             "limits: {member_per_minute: 2, group_per_minute: 100, daily_tokens_per_group: 0}\n")
    app, adapter = await build_app(tmp_path, llm, extra=extra)
    try:
        where = read_status_file(app.settings.data_path)
        assert where is not None and where["url"] == f"http://127.0.0.1:{port}/metrics"
        for i in range(3):  # the third is past the member's window: refused, and told so
            await adapter.inject(msg(app, f"@Pai question {i}?", author="ann"))
        await adapter.inject(msg(app, "just chatting", author="bob", mentions_me=False))
        await app.drain()
        code, text = await scrape(where["url"])
        assert code == 200
        s = parse(text)
        assert value(s, "paibot_messages_received_total", platform="fake") == 4
        assert value(s, "paibot_messages_sent_total", platform="fake") == 3  # two answers and one refusal
        assert value(s, "paibot_answer_latency_seconds_count", platform="fake") == 3
        assert value(s, "paibot_refusals_total", reason="member rate") == 1
        assert value(s, "paibot_model_calls_total") == 2
        assert value(s, "paibot_model_tokens_total", kind="prompt") > 0
        assert value(s, "paibot_tokens_today") == value(s, "paibot_model_tokens_total")
        assert value(s, "paibot_lane_queue_depth") == 0 and value(s, "paibot_events_in_flight") == 0
        assert value(s, "paibot_inbox_pending") == 0 and value(s, "paibot_inbox_dead_letters") == 0
        lane_waits = value(s, "paibot_lane_wait_seconds_count", lane="quiet") + value(
            s, "paibot_lane_wait_seconds_count", lane="backlog")
        assert lane_waits == 4
        print("metrics:", *summary(s), sep="\n  ")
    finally:
        await app.stop()
    assert read_status_file(app.settings.data_path) is None  # a stopped bot leaves no address behind


async def test_dead_letters_are_counted(tmp_path):
    app, adapter = await build_app(tmp_path, None, extra=f"metrics: {{port: {free_port()}}}\n")
    try:
        assert app.worker is not None

        async def failing(event: Message) -> None:
            raise RuntimeError("a handler bug")

        app.worker._handler = failing
        await adapter.inject(msg(app, "@Pai this breaks?"))
        await app.drain(timeout=30)
        s = parse((await scrape(read_status_file(app.settings.data_path)["url"]))[1])
        assert value(s, "paibot_dead_letters_total") == 1 and value(s, "paibot_inbox_dead_letters") == 1
    finally:
        await app.stop()


async def test_a_token_guards_the_metrics_port(tmp_path):
    port = free_port()
    app, _ = await build_app(tmp_path, None, extra=f"metrics: {{port: {port}, access_token: s3cret-metrics}}\n")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert (await scrape(url))[0] == 401
        assert (await scrape(url, "wrong"))[0] == 401
        code, text = await scrape(url, "s3cret-metrics")
        assert code == 200 and "paibot_lanes_active" in text
    finally:
        await app.stop()


def web_settings(tmp_path, token: str = ""):
    web = f"{{enabled: true, host: 127.0.0.1, port: 0, access_token: '{token}'}}" if token else \
        "{enabled: true, host: 127.0.0.1, port: 0}"
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        f"adapters: {{web: {web}}}\nmetrics: {{port: {free_port()}}}\n"
    )


async def test_with_the_web_group_on_the_metrics_are_on_its_port_under_its_token(tmp_path):
    app = App(web_settings(tmp_path, token="web-token-123"), llm=ScriptedLLM(["hi"]))
    await app.start()
    try:
        assert app._metrics_server is None  # no port of their own while the web group serves them
        web = app.services.adapters["web"]
        where = read_status_file(app.settings.data_path)
        assert where["url"] == f"{web.local_url}/metrics" and where["token_from"] == "adapters.web"
        assert (await scrape(where["url"]))[0] == 401
        code, text = await scrape(where["url"], "web-token-123")
        assert code == 200 and "paibot_lanes_active" in text
    finally:
        await app.stop()


async def test_paibot_status_prints_the_running_bots_figures(tmp_path, capsys):
    import asyncio

    app = App(web_settings(tmp_path), llm=ScriptedLLM(["an answer"]))
    await app.start()
    try:
        web = app.services.adapters["web"]
        async with aiohttp.ClientSession(base_url=web.local_url) as http:
            group = await (await http.post("/api/groups", json={"name": "Status"})).json()
            posted = await http.post(f"/api/groups/{group['address']}/messages", json={"text": "@Pai hi?"},
                                     headers=await member_headers(http, "Ann"))
            assert posted.status == 200, await posted.text()
        await app.drain()
        # the command runs its own event loop, as on the command line
        code = await asyncio.to_thread(status, app.settings)
        out = capsys.readouterr().out
        assert code == 0
        assert "messages received: web 1" in out and "messages sent: web 1" in out
        assert "answers: 1," in out and "lanes: 0 active" in out
        code = await asyncio.to_thread(status, app.settings, as_json=True)
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {"name": "paibot_messages_received_total", "labels": {"platform": "web"}, "value": 1.0} in rows
    finally:
        await app.stop()
    assert status(app.settings) == 1  # not running any more
    assert "not running" in capsys.readouterr().out


def test_histogram_quantiles_interpolate_within_buckets():
    text = "\n".join([
        "# TYPE x histogram",
        'x_bucket{le="1.0"} 0', 'x_bucket{le="2.0"} 50', 'x_bucket{le="4.0"} 100', 'x_bucket{le="+Inf"} 100',
        "x_count 100", "x_sum 250",
    ]) + "\n"
    s = parse(text)
    assert quantile(s, "x", 0.5) == pytest.approx(2.0)
    assert quantile(s, "x", 0.75) == pytest.approx(3.0)
    assert quantile(parse("# TYPE y histogram\ny_count 0\n"), "y", 0.5) is None


async def test_the_memory_reports_its_index_lag(tmp_path):
    from memory import open_memory

    settings = parse_settings(f"bot: {{data_dir: '{tmp_path}'}}\nmemory: {{embedding: offline}}\n")
    store = await open_memory(settings)
    try:
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(5):
            await store.record(MemoryRecord(id=f"m{i}", pai="fake:g", chat_key="fake:g", author_id="a",
                                            author_name="Ann", text=f"note {i}", sent_at=t0))
        assert 0 <= await store.index_lag() <= 5
        await store.flush()
        assert await store.index_lag() == 0
    finally:
        await store.close()


def test_metrics_and_log_settings_are_checked():
    with pytest.raises(ConfigError) as info:
        parse_settings("metrics: {host: 0.0.0.0, port: 9464}\n")
    assert info.value.path == "metrics.access_token"
    parse_settings("metrics: {host: 0.0.0.0, port: 9464, access_token: abcdef}\n")
    with pytest.raises(ConfigError) as info:
        parse_settings("log_format: xml\n")
    assert info.value.path == "log_format"


def test_json_logs_are_one_object_per_line_with_secrets_redacted(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", ["tok-SECRET-42"], fmt="json")
        log = logging.getLogger("paibot.test")
        log.info("connected with %s", "tok-SECRET-42")
        try:
            raise RuntimeError("refused tok-SECRET-42")
        except RuntimeError:
            log.exception("start failed")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert [(r["level"], r["logger"], r["message"]) for r in lines] == [
        ("INFO", "paibot.test", "connected with ***"), ("ERROR", "paibot.test", "start failed")]
    assert "RuntimeError: refused ***" in lines[1]["exc_info"] and "SECRET" not in json.dumps(lines)
