"""Webhook mode: the fake Telegram POSTs updates to the adapter; 200 only after the inbox committed."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from adapters.telegram.config import WebhookSettings
from bot.errors import AdapterConfigError
from tests.fake_telegram import FakeTelegram, RecordingSink, make_adapter

GROUP = -1001234567890
ALICE = FakeTelegram.user(42, "Alice")
SECRET = "hook-secret-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def fake():
    server = await FakeTelegram().start()
    yield server
    await server.close()


@pytest.fixture
def hook():
    port = free_port()
    return WebhookSettings(
        enabled=True, listen="127.0.0.1", port=port, url_path="tg/hook",
        webhook_url=f"http://127.0.0.1:{port}/tg/hook", secret_token=SECRET,
    )


async def test_updates_arrive_by_webhook_and_are_acknowledged_after_commit(fake, tmp_path, hook):
    sink = RecordingSink()
    sink.fail_next = 1  # the first commit fails: Telegram must get a non-200 and deliver it again
    adapter = make_adapter(fake, tmp_path, webhook=hook)
    await adapter.start(sink)
    try:
        assert fake.webhook["url"] == hook.webhook_url and fake.webhook["secret_token"] == SECRET
        assert fake.webhook["max_connections"] == 1
        await fake.message(GROUP, ALICE, "first by hook")
        await fake.message(GROUP, ALICE, "second by hook")
        msgs = await sink.wait_for(2)
        await fake.wait_until(lambda: not fake.updates)
    finally:
        await adapter.stop()
    assert [m.text for m in msgs] == ["first by hook", "second by hook"]
    deliveries = [p for m, p in fake.calls if m == "webhook"]
    assert [d["ok"] for d in deliveries] == [False, True, True]
    assert not any(m == "getUpdates" for m, _ in fake.calls)


async def test_a_request_without_the_secret_is_refused(fake, tmp_path, hook):
    sink = RecordingSink()
    adapter = make_adapter(fake, tmp_path, webhook=hook)
    await adapter.start(sink)
    try:
        update = {"update_id": 99, "message": {"message_id": 1, "date": 1793534400, "text": "forged",
                                               "chat": {"id": GROUP, "type": "supergroup", "title": "x"},
                                               "from": ALICE}}
        async with aiohttp.ClientSession() as http:
            async with http.post(hook.webhook_url, json=update) as resp:
                assert resp.status == 403
            async with http.post(hook.webhook_url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}) as r:
                assert r.status == 403
            async with http.post(hook.webhook_url, data=b"not json",
                                 headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
                assert r.status == 200  # malformed: acknowledged and skipped
    finally:
        await adapter.stop()
    assert sink.messages == []


async def test_webhook_without_public_url_is_a_config_error(fake, tmp_path, hook):
    bad = WebhookSettings(enabled=True, listen="127.0.0.1", port=hook.port, url_path="tg")
    adapter = make_adapter(fake, tmp_path, webhook=bad)
    with pytest.raises(AdapterConfigError, match="webhook_url"):
        await adapter.start(RecordingSink())
