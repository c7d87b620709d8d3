"""Live updates of the web group over its WebSocket: what a page sees without polling."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from adapters.web.adapter import WebAdapter
from bot.events import ChatRef, Outgoing
from tests.test_web_api import RecordingSink, new_group, post
from tests.web_members import member_headers


@pytest.fixture
async def web(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await adapter.start(RecordingSink())
    async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
        yield adapter, http
    await adapter.stop()


async def next_event(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict:
    """The next pushed event of ``kind`` (others are skipped); fails rather than hangs."""
    while True:
        data = await asyncio.wait_for(ws.receive_json(), 10)
        if data["type"] == kind:
            return data


async def test_a_page_sees_messages_the_bots_typing_replies_and_edits_live(web):
    adapter, http = web
    group = await new_group(http)
    number = group["number"]
    ws = await http.ws_connect(f"/api/groups/{group['address']}/ws")
    hello = await next_event(ws, "hello")
    assert hello == {"type": "hello", "group": number, "bot_name": "Pai"}

    asked = await post(http, group["address"], "@Pai ping")
    pushed = await next_event(ws, "message")
    assert pushed["message"]["id"] == asked["id"] and pushed["message"]["text"] == "@Pai ping"

    await adapter.typing(ChatRef("web", number))
    assert await next_event(ws, "typing") == {"type": "typing", "name": "Pai", "is_bot": True}

    ref = await adapter.send(Outgoing(ChatRef("web", number), "pong", reply_to=str(asked["id"])))
    reply = (await next_event(ws, "message"))["message"]
    assert reply["is_bot"] and reply["text"] == "pong" and reply["reply_to"]["id"] == asked["id"]

    await adapter.edit(ref, "pong!")
    edited = (await next_event(ws, "edit"))["message"]
    assert (edited["id"], edited["text"], edited["edited"]) == (int(ref.message_id), "pong!", False)  # live update
    await ws.close()


async def test_pushes_stay_inside_their_group(web):
    adapter, http = web
    a, b = await new_group(http, "A"), await new_group(http, "B")
    ws_a = await http.ws_connect(f"/api/groups/{a['address']}/ws")
    ws_b = await http.ws_connect(f"/api/groups/{b['address']}/ws")
    await next_event(ws_a, "hello")
    await next_event(ws_b, "hello")
    await post(http, a["address"], "only for A")
    await post(http, b["address"], "only for B")
    assert (await next_event(ws_a, "message"))["message"]["text"] == "only for A"
    assert (await next_event(ws_b, "message"))["message"]["text"] == "only for B"
    await ws_a.close()
    await ws_b.close()


async def test_a_persons_typing_reaches_the_others_but_not_themselves(web):
    _, http = web
    group = await new_group(http)
    url = f"/api/groups/{group['address']}/ws"
    alice = await http.ws_connect(url, headers=await member_headers(http, "Alice"))
    bob = await http.ws_connect(url)
    await next_event(alice, "hello")
    await next_event(bob, "hello")
    await bob.send_json({"type": "typing", "name": "Carol"})  # a socket without a member: nobody is typing
    await alice.send_str("this is not json")
    await alice.send_json({"type": "typing", "name": "Mallory"})  # shown under her own nickname
    assert await next_event(bob, "typing") == {"type": "typing", "name": "Alice", "is_bot": False}
    # Alice's next event is the message, not her own typing.
    await post(http, group["address"], "hi", author="Alice")
    assert (await asyncio.wait_for(alice.receive_json(), 10))["type"] == "message"
    await alice.close()
    await bob.close()


async def test_a_closed_page_is_forgotten_and_does_not_hold_up_posting(web):
    adapter, http = web
    group = await new_group(http)
    ws = await http.ws_connect(f"/api/groups/{group['address']}/ws")
    await next_event(ws, "hello")
    assert adapter.hub.count(group["number"]) == 1
    await ws.close()
    assert (await post(http, group["address"], "anyone there?"))["text"] == "anyone there?"
    for _ in range(100):  # the server notices the close on its own schedule
        if adapter.hub.count(group["number"]) == 0:
            break
        await asyncio.sleep(0.05)
    assert adapter.hub.count(group["number"]) == 0


async def test_stopping_the_adapter_closes_open_pages(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await adapter.start(RecordingSink())
    async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
        group = await new_group(http)
        ws = await http.ws_connect(f"/api/groups/{group['address']}/ws")
        await next_event(ws, "hello")
        await adapter.stop()
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_new_links_shut_out_whoever_holds_the_old_ones_and_keep_the_group(web, tmp_path):
    """An admin's "new links": the old address and invite find nothing, pages open on the group are told and
    disconnected, and the group keeps its number, history and chat key."""
    adapter, http = web
    alice, bob = await member_headers(http, "Alice"), await member_headers(http, "Bob")
    group = await (await http.post("/api/groups", json={"name": "Hikers"}, headers=alice)).json()
    old, path = group["address"], f"/api/groups/{group['address']}"
    said = await post(http, old, "the venue is the Blue Hall", author="Bob")
    watching = await http.ws_connect(f"{path}/ws", headers=bob)
    await next_event(watching, "hello")

    for bad in ({}, {"new_links": False}, {"new_links": "yes"}, {"new_links": True, "colour": "red"}):
        assert (await http.patch(path, json=bad, headers=alice)).status == 400, bad
    assert (await http.patch(path, json={"new_links": True})).status == 401
    refused = await http.patch(path, json={"new_links": True}, headers=bob)
    assert refused.status == 403 and "admins" in (await refused.json())["error"]
    assert (await http.get(path)).status == 200  # nothing changed for a refused request

    renewed = await http.patch(path, json={"new_links": True}, headers=alice)
    assert renewed.status == 200
    fresh = await renewed.json()
    assert fresh["address"] != old and fresh["invite"] != group["invite"] and fresh["admin"] is True
    assert (fresh["number"], fresh["key"], fresh["name"]) == (group["number"], group["key"], "Hikers")
    assert fresh["url"].endswith("/g/" + fresh["address"]) and fresh["invite_url"].endswith(fresh["invite"])

    assert await next_event(watching, "moved") == {"type": "moved"}  # no new address in it
    closing = await watching.receive()
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4001

    for gone in (path, f"{path}/messages", f"/api/invites/{group['invite']}"):
        assert (await http.get(gone)).status == 404, gone
    late = await http.post(f"{path}/messages", json={"text": "still here?"}, headers=bob)
    assert late.status == 404
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(f"{path}/ws", headers=bob)

    by_invite = await (await http.get(f"/api/invites/{fresh['invite']}")).json()
    assert by_invite["address"] == fresh["address"] and by_invite["admin"] is False
    history = await (await http.get(f"/api/groups/{fresh['address']}/messages")).json()
    assert [m["id"] for m in history["messages"]] == [said["id"]]
    back = await http.ws_connect(f"/api/groups/{fresh['address']}/ws", headers=bob)
    assert (await next_event(back, "hello"))["group"] == group["number"]
    await post(http, fresh["address"], "@Pai ping", author="Bob")
    assert (await next_event(back, "message"))["message"]["text"] == "@Pai ping"
    await back.close()

    from adapters.web.store import WebStore  # written to disk: a restarted bot knows only the new links

    await adapter.stop()
    reopened = WebStore(tmp_path / "web.db")
    try:
        assert reopened.group_by_address(old) is None and reopened.group_by_invite(group["invite"]) is None
        moved = reopened.group_by_address(fresh["address"])
        assert moved is not None and moved.number == group["number"]
    finally:
        reopened.close()
