"""The web group adapter's JSON API over real loopback HTTP, with a recording inbox in place of the core."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from adapters.web.adapter import WebAdapter
from bot.events import ChatRef, Message, Outgoing
from bot.errors import DeliveryError
from tests.web_members import member_headers


class RecordingSink:
    """An ``IntakeSink`` that remembers what it was given (deduplicated like the real inbox) and can be told
    to refuse. ``on_submit`` runs inside ``submit`` before it returns, to observe the adapter mid-flight."""

    def __init__(self) -> None:
        self.events: list[Message] = []
        self.fail: Exception | None = None
        self.on_submit = None

    async def submit(
        self, events: Sequence[Message], *, cursor_key: str | None = None, cursor: str | None = None
    ) -> int:
        if self.on_submit is not None:
            self.on_submit(events)
        if self.fail is not None:
            raise self.fail
        known = {e.event_id for e in self.events}
        new = [e for e in events if e.event_id not in known]
        self.events.extend(new)
        return len(new)

    async def cursor(self, key: str) -> str | None:
        return None

    async def seen(self, event_id: str) -> bool:
        return any(e.event_id == event_id for e in self.events)


def db_rows(data_dir: Path) -> list[tuple]:
    """The messages table as another process would see it (a fresh connection)."""
    con = sqlite3.connect(str(data_dir / "web.db"))
    try:
        return con.execute("SELECT id, grp, author_name, text, delivered FROM messages ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.fixture
async def web(tmp_path):
    """A started adapter on a free port; yields (adapter, sink, http session)."""
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    sink = RecordingSink()
    await adapter.start(sink)
    async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
        yield adapter, sink, http
    await adapter.stop()


async def new_group(http: aiohttp.ClientSession, name: str = "Hikers") -> dict:
    resp = await http.post("/api/groups", json={"name": name})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def post(http: aiohttp.ClientSession, group: str, text: str, author: str = "Alice", **extra) -> dict:
    resp = await http.post(f"/api/groups/{group}/messages", json={"text": text, **extra},
                           headers=await member_headers(http, author))
    assert resp.status == 200, await resp.text()
    return await resp.json()


# --------------------------------------------------------------------------- groups


async def test_a_new_group_has_a_six_digit_number_and_an_invite_that_resolves_to_it(web):
    adapter, _, http = web
    group = await new_group(http, "Weekend hikers")
    assert group["number"].isdigit() and len(group["number"]) == 6
    assert group["name"] == "Weekend hikers"
    assert group["invite_url"] == f"{adapter.base_url}/join/{group['invite']}"
    by_address = await (await http.get(f"/api/groups/{group['address']}")).json()
    by_invite = await (await http.get(f"/api/invites/{group['invite']}")).json()
    assert by_address["number"] == by_invite["number"] == group["number"]


async def test_unknown_groups_and_invites_are_404_with_a_json_error(web):
    _, _, http = web
    for path in ("/api/groups/999999", "/api/groups/nope", "/api/groups/" + "A" * 22, "/api/invites/not-an-invite",
                 "/api/numbers/999999"):
        resp = await http.get(path)
        assert resp.status == 404
        assert "error" in await resp.json()


async def test_every_page_route_serves_the_single_page(web):
    _, _, http = web
    group = await new_group(http)
    for path in ("/", f"/g/{group['address']}", f"/g/{group['number']}", f"/join/{group['invite']}"):
        resp = await http.get(path)
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "/static/app.js" in await resp.text()
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert (await http.get("/static/app.js")).content_type == "text/javascript"
    assert (await http.get("/static/../web.py")).status == 404


# --------------------------------------------------------------------------- posting


async def test_a_message_is_durable_and_in_the_inbox_before_the_poster_gets_200(web, tmp_path):
    _, sink, http = web
    group = await new_group(http)
    seen_during_submit: list[list[tuple]] = []
    sink.on_submit = lambda events: seen_during_submit.append(db_rows(tmp_path))

    msg = await post(http, group["address"], "@pai hello there")

    # While the inbox was committing, the message was already on disk, but not yet visible.
    assert seen_during_submit == [[(msg["id"], group["number"], "Alice", "@pai hello there", 0)]]
    # After the 200: in the inbox, and delivered on disk.
    assert db_rows(tmp_path) == [(msg["id"], group["number"], "Alice", "@pai hello there", 1)]
    [event] = sink.events
    assert event.event_id == f"web:{group['number']}:{msg['id']}"
    assert event.id == str(msg["id"])
    assert event.chat == ChatRef("web", group["number"], title="Hikers")
    assert event.author.display_name == "Alice" and not event.author.is_bot
    assert event.mentions_me and not event.is_direct and not event.from_me
    assert event.url.endswith(f"/g/{group['address']}#m{msg['id']}")
    assert event.sent_at.tzinfo is not None


async def test_when_the_inbox_refuses_the_poster_gets_503_and_the_message_is_withdrawn(web, tmp_path):
    _, sink, http = web
    group = await new_group(http)
    sink.fail = OSError("disk full")
    resp = await http.post(f"/api/groups/{group['address']}/messages", json={"text": "lost?"},
                           headers=await member_headers(http, "Al"))
    assert resp.status == 503
    assert "try again" in (await resp.json())["error"]
    assert db_rows(tmp_path) == []
    listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
    assert listed["messages"] == []
    sink.fail = None
    assert (await post(http, group["address"], "second try"))["text"] == "second try"


async def test_a_retry_with_the_same_nonce_is_stored_and_submitted_once(web):
    _, sink, http = web
    group = await new_group(http)
    first = await post(http, group["address"], "once", nonce="n-1")
    again = await post(http, group["address"], "once", nonce="n-1")
    assert first["id"] == again["id"]
    assert len(sink.events) == 1


async def test_mentions_of_the_bot_are_detected_case_insensitively_and_whole_word(web):
    adapter, sink, http = web
    group = await new_group(http)
    for text in ("@Pai hi", "hey @PAI, you there?", "@Paisley hi", "pai without at", "mail me@pai.example"):
        await post(http, group["address"], text)
    assert [e.mentions_me for e in sink.events] == [True, True, False, False, False]
    assert adapter.mentions_bot("@pai") and not adapter.mentions_bot("@pai_bot")


async def test_authors_keep_a_stable_id_apart_from_their_nickname(web):
    _, sink, http = web
    group = await new_group(http)
    await post(http, group["address"], "one", author="Alice")
    me = await (await http.get("/api/members/me", headers=await member_headers(http, "Alice"))).json()
    renamed = await http.patch("/api/members/me", json={"nickname": "Alice B."}, headers=await member_headers(http, "Alice"))
    assert renamed.status == 200 and (await renamed.json())["author_id"] == me["author_id"]
    await post(http, group["address"], "two", author="Alice")
    await post(http, group["address"], "three", author="Bob")
    await post(http, group["address"], "four", author="bob")
    ids = [e.author.user_id for e in sink.events]
    assert ids[0] == ids[1] == me["author_id"]
    assert len({ids[0], ids[2], ids[3]}) == 3  # a nickname is not an identity: two "bob"s are two people
    assert [e.author.display_name for e in sink.events] == ["Alice", "Alice B.", "Bob", "bob"]


# --------------------------------------------------------------------------- listing


async def test_after_lists_only_newer_messages_in_order_and_pages_with_has_more(web):
    _, _, http = web
    group = await new_group(http)
    other = await new_group(http, "Other")
    ids = [(await post(http, group["address"], f"m{i}"))["id"] for i in range(5)]
    await post(http, other["address"], "elsewhere")
    base = f"/api/groups/{group['address']}/messages"

    newer = await (await http.get(f"{base}?after={ids[1]}")).json()
    assert [m["text"] for m in newer["messages"]] == ["m2", "m3", "m4"] and not newer["has_more"]
    page = await (await http.get(f"{base}?after=0&limit=2")).json()
    assert [m["id"] for m in page["messages"]] == ids[:2] and page["has_more"]
    latest = await (await http.get(f"{base}?limit=2")).json()
    assert [m["text"] for m in latest["messages"]] == ["m3", "m4"]
    assert (await (await http.get(f"{base}?after={ids[-1]}")).json())["messages"] == []


async def test_messages_survive_a_restart(tmp_path):
    first = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await first.start(RecordingSink())
    async with aiohttp.ClientSession(base_url=first.base_url) as http:
        group = await new_group(http)
        await post(http, group["address"], "remember me")
    await first.stop()
    await first.stop()  # idempotent

    second = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await second.start(RecordingSink())
    try:
        async with aiohttp.ClientSession(base_url=second.base_url) as http:
            listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
        assert [m["text"] for m in listed["messages"]] == ["remember me"]
    finally:
        await second.stop()


async def test_a_message_left_pending_by_a_crash_is_handed_to_the_inbox_at_start(tmp_path):
    from adapters.web.store import WebStore

    store = WebStore(tmp_path / "web.db")
    group = store.create_group("Crashy")
    pending, _ = store.add_message(group.number, "u-1234", "Alice", "@Pai did you get this?", delivered=False)
    store.close()

    sink = RecordingSink()
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await adapter.start(sink)
    try:
        assert [e.event_id for e in sink.events] == [f"web:{group.number}:{pending.id}"]
        assert sink.events[0].mentions_me
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            listed = await (await http.get(f"/api/groups/{group.address}/messages")).json()
        assert [m["id"] for m in listed["messages"]] == [pending.id]
    finally:
        await adapter.stop()


# --------------------------------------------------------------------------- the bot's side


async def test_the_bots_reply_is_listed_marked_as_bot_with_its_quote_and_a_link(web):
    adapter, sink, http = web
    group = await new_group(http)
    asked = await post(http, group["address"], "@Pai what's up?")
    out = Outgoing(ChatRef("web", group["number"]), "Not much!", reply_to=str(asked["id"]),
                   idempotency_key=sink.events[0].event_id)
    ref = await adapter.send(out)

    assert ref.url == f"{adapter.base_url}/g/{group['address']}#m{ref.message_id}"
    listed = await (await http.get(f"/api/groups/{group['address']}/messages?after={asked['id']}")).json()
    [reply] = listed["messages"]
    assert reply["id"] == int(ref.message_id)
    assert reply["is_bot"] and reply["author"] == "Pai" and reply["text"] == "Not much!"
    assert reply["reply_to"] == {"id": asked["id"], "author": "Alice", "is_bot": False, "text": "@Pai what's up?",
                                 "removed": False, "image": None}


async def test_send_is_idempotent_on_the_idempotency_key(web, tmp_path):
    adapter, _, http = web
    group = await new_group(http)
    out = Outgoing(ChatRef("web", group["number"]), "only once", idempotency_key="web:1:1")
    first = await adapter.send(out)
    second = await adapter.send(out)
    assert second.message_id == first.message_id and second.url == first.url
    assert [r[3] for r in db_rows(tmp_path)] == ["only once"]
    other = await adapter.send(Outgoing(ChatRef("web", group["number"]), "another", idempotency_key="web:1:2"))
    assert other.message_id != first.message_id


async def test_a_long_reply_is_split_at_the_limit_and_every_part_is_stored(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0, max_text_length=50)
    await adapter.start(RecordingSink())
    try:
        group = await adapter.create_group("Split")
        text = " ".join(f"word{i}" for i in range(30))
        ref = await adapter.send(Outgoing(ChatRef("web", group.number), text, idempotency_key="k"))
        assert len(ref.part_ids) > 1 and ref.message_id == ref.part_ids[0]
        parts = [r[3] for r in db_rows(tmp_path)]
        assert all(len(p) <= 50 for p in parts) and " ".join(parts) == text
        again = await adapter.send(Outgoing(ChatRef("web", group.number), text, idempotency_key="k"))
        assert again.part_ids == ref.part_ids and len(db_rows(tmp_path)) == len(parts)
    finally:
        await adapter.stop()


async def test_edit_changes_only_the_bots_own_messages(web):
    adapter, _, http = web
    group = await new_group(http)
    human = await post(http, group["address"], "mine")
    ref = await adapter.send(Outgoing(ChatRef("web", group["number"]), "draft"))
    await adapter.edit(ref, "final answer")
    listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
    bot = listed["messages"][-1]
    assert (bot["text"], bot["edited"]) == ("final answer", False)  # a streamed answer is not "edited"
    with pytest.raises(DeliveryError):
        await adapter.edit(ref.__class__(ref.chat, str(human["id"])), "hijack")


async def test_sending_to_a_group_that_does_not_exist_is_a_delivery_error(web):
    adapter, _, _ = web
    with pytest.raises(DeliveryError):
        await adapter.send(Outgoing(ChatRef("web", "000000"), "hello?"))


async def test_a_reply_to_the_bot_carries_the_quoted_text_and_the_bot_as_author(web):
    adapter, sink, http = web
    group = await new_group(http)
    ref = await adapter.send(Outgoing(ChatRef("web", group["number"]), "Shall I remind you?"))
    await post(http, group["address"], "yes please", reply_to=int(ref.message_id))
    reply = sink.events[-1].reply_to
    assert reply is not None and reply.message_id == ref.message_id
    assert reply.text == "Shall I remind you?"
    assert reply.author is not None and reply.author.is_bot and reply.author.display_name == "Pai"


async def test_a_reply_to_a_message_of_another_group_is_refused(web):
    _, _, http = web
    a, b = await new_group(http, "A"), await new_group(http, "B")
    elsewhere = await post(http, a["address"], "in A")
    resp = await http.post(f"/api/groups/{b['address']}/messages", json={"text": "hi", "reply_to": elsewhere["id"]},
                           headers=await member_headers(http, "Eve"))
    assert resp.status == 400 and "reply_to" in (await resp.json())["error"]


async def test_a_store_from_before_addresses_gives_each_group_one_and_keeps_its_number_and_history(tmp_path):
    con = sqlite3.connect(str(tmp_path / "web.db"))  # the tables as they were before groups had addresses
    con.executescript("""
        CREATE TABLE groups (number TEXT PRIMARY KEY, name TEXT NOT NULL, invite TEXT NOT NULL UNIQUE,
                             created_at TEXT NOT NULL);
        CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, grp TEXT NOT NULL REFERENCES groups(number),
            author_id TEXT NOT NULL, author_name TEXT NOT NULL, is_bot INTEGER NOT NULL DEFAULT 0, text TEXT NOT NULL,
            sent_at TEXT NOT NULL, reply_to INTEGER, edited INTEGER NOT NULL DEFAULT 0,
            delivered INTEGER NOT NULL DEFAULT 1, nonce TEXT, idem_key TEXT);
        INSERT INTO groups VALUES ('482913', 'Hikers', 'old-invite-0123456789ab', '2026-01-02T03:04:05+00:00');
        INSERT INTO groups VALUES ('100200', 'Cooks', 'old-invite-ba9876543210', '2026-01-02T03:04:05+00:00');
        INSERT INTO messages (grp, author_id, author_name, text, sent_at)
            VALUES ('482913', 'm-ann', 'Ann', 'the lake trail on Saturday', '2026-01-02T04:00:00+00:00');
    """)
    con.close()
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await adapter.start(RecordingSink())
    try:
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            found = await (await http.get("/api/numbers/482913")).json()  # old groups still admit by number
            group = await (await http.get(f"/api/groups/{found['address']}")).json()
            assert group["number"] == "482913" and group["key"] == "web:482913" and group["join_by_number"]
            assert group["invite"] == "old-invite-0123456789ab" and len(group["address"]) >= 22
            listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
            assert [m["text"] for m in listed["messages"]] == ["the lake trail on Saturday"]
            other = await (await http.get("/api/numbers/100200")).json()
            assert other["address"] != group["address"]
            sent = await adapter.send(Outgoing(ChatRef("web", "482913"), "Saturday it is"))  # the core's key
            assert sent.url.startswith(f"{adapter.base_url}/g/{group['address']}#m")
    finally:
        await adapter.stop()
    from adapters.web.store import WebStore

    again = WebStore(tmp_path / "web.db")  # opening it again changes nothing
    try:
        reopened = again.group("482913")
        assert reopened is not None and reopened.address == group["address"]
    finally:
        again.close()
