"""The web group under attack, over real HTTP and WebSockets on loopback: malformed bodies get a JSON 4xx,
lookalike nicknames are refused when a member is made or renamed, one client's sockets and typing are capped, 1,000 new groups from one
client are refused past its limit, and storage quotas hold. The limits' clock is manual: nothing here
depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from adapters.web.adapter import WebAdapter
from adapters.web.guard import ClientLimits, ClientRules, WebGuard
from tests.test_web_api import RecordingSink, new_group
from tests.web_members import member_headers


class FrozenClock:
    """A clock that never moves: token buckets never refill, so a limit is exactly its burst."""

    def __call__(self) -> float:
        return 100.0


def guarded(tmp_path, rules: ClientRules, **kw) -> WebAdapter:
    guard = WebGuard(ClientLimits(rules, FrozenClock()), ("Pai", "派"))
    return WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0, guard=guard, **kw)


@pytest.fixture
async def web(tmp_path):
    adapter = guarded(tmp_path, ClientRules(sockets=3, socket_burst=20, post_burst=1000, groups_per_hour=5))
    sink = RecordingSink()
    await adapter.start(sink)
    async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
        yield adapter, sink, http
    await adapter.stop()


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for a condition the server reaches by itself (checked between its steps)."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


# --------------------------------------------------------------------------- malformed bodies

HOSTILE = [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"author": "Ann", "text": "hi", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"author": "Ann", "text": "hi", "reply_to": ' + b"9" * 4301 + b"}",
    b'{"author": "Ann", "text": "hi", "reply_to": ' + b"9" * 100_000 + b"}",
    b'{"author": "Ann", "text": "\\ud800 lone"}',
    b'{"author": "\\udc00", "text": "hi"}',
    b'{"author": "Ann", "text": "hi", "reply_to": NaN}',
    b'{"author": "Ann", "text": "hi", "reply_to": 1e999}',
    b'{"author": "Ann", "text": "hi", "reply_to": 1.5}',
    b'{"author": "Ann", "text": ["not", "text"]}',
    b'{"author": "Ann", "text": "hi", "nonce": {"a": 1}}',
    b"\xed\xa0\x80",
    b'"just a string"',
    b"",
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
async def test_every_malformed_body_gets_a_json_4xx_and_stores_nothing(web, body):
    adapter, sink, http = web
    group = await new_group(http)
    ann = await member_headers(http, "Ann")
    for path in (f"/api/groups/{group['address']}/messages", "/api/groups", "/api/members"):
        resp = await http.post(path, data=body, headers={"Content-Type": "application/json", **ann})
        assert 400 <= resp.status < 500, (resp.status, await resp.text())
        assert resp.content_type == "application/json" and "error" in await resp.json()
    assert sink.events == []
    assert (await (await http.get(f"/api/groups/{group['address']}/messages")).json())["messages"] == []
    ok = await http.post(f"/api/groups/{group['address']}/messages", json={"text": "still here"}, headers=ann)
    assert ok.status == 200  # and the server goes on serving


async def test_garbage_on_a_socket_is_ignored_and_the_socket_lives_on(web):
    _, _, http = web
    group = await new_group(http)
    # typing is shown under the socket's member's nickname (a "name" it sends is not read)
    ws = await http.ws_connect(f"/api/groups/{group['address']}/ws", headers=await member_headers(http, "Ann"))
    listener = await http.ws_connect(f"/api/groups/{group['address']}/ws")
    stranger = await http.ws_connect(f"/api/groups/{group['address']}/ws")  # no member key: nobody to show
    for sock in (ws, listener, stranger):
        assert (await sock.receive_json())["type"] == "hello"
    await stranger.send_str('{"type": "typing", "name": "Pai"}')
    for raw in ("[" * 3000, '{"type": "typing", "name": "\\ud800"}', '{"type": "typing", "name": "Ann"',
                "not json", '{"type": "typing"}'):
        await ws.send_str(raw)
    got = await listener.receive_json(timeout=10)
    assert got == {"type": "typing", "name": "Ann", "is_bot": False}  # only the well-formed one went out
    await stranger.close()
    await ws.close()
    await listener.close()


# --------------------------------------------------------------------------- lookalikes


@pytest.mark.parametrize("nickname", ["Pa\u200bi", "Рai", "Pai (AI member)", "ＰＡＩ", "派 (AI)"])
async def test_nicknames_that_look_like_the_bot_are_refused(web, nickname):
    _, sink, http = web
    resp = await http.post("/api/members", json={"nickname": nickname})
    assert resp.status == 400 and "looks like its name" in (await resp.json())["error"]
    renamed = await http.patch("/api/members/me", json={"nickname": nickname},
                               headers=await member_headers(http, "Ann"))  # fmt: skip
    assert renamed.status == 400 and "looks like its name" in (await renamed.json())["error"]
    assert sink.events == []
    print(f"lookalike {nickname!r}: refused")


async def test_ordinary_nicknames_pass(web):
    _, sink, http = web
    group = await new_group(http)
    for nickname in ("Paige", "派大星", "Alice"):
        resp = await http.post(f"/api/groups/{group['address']}/messages", json={"text": "hi"},
                               headers=await member_headers(http, nickname))
        assert resp.status == 200
    assert len(sink.events) == 3


# --------------------------------------------------------------------------- sockets and typing spam


async def test_one_client_cannot_hold_many_sockets_or_flood_typing(web):
    adapter, _, http = web
    group = await new_group(http)
    path = f"/api/groups/{group['address']}/ws"
    listener = await http.ws_connect(path)
    spammer = await http.ws_connect(path, headers=await member_headers(http, "Mallory"))
    third = await http.ws_connect(path)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(path)  # the fourth socket of this client
    assert refused.value.status == 429
    for ws in (listener, spammer, third):
        assert (await ws.receive_json())["type"] == "hello"
    await third.close()
    sent = 0
    with contextlib.suppress(ConnectionResetError):  # the server hangs up on the flood
        for i in range(1000):  # ~100 a second in the red-team run; here as fast as the socket takes them
            await spammer.send_str(json.dumps({"type": "typing", "name": f"Mallory {i}"}))
            sent += 1
    while (msg := await spammer.receive(timeout=30)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
        pass  # what was pushed to the spammer before the server hung up
    assert spammer.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION  # after 20 passed and 100 dropped in a row
    await spammer.close()
    limits = adapter.guard.limits
    await until(lambda: limits._sockets.get("127.0.0.1", 0) <= 1)  # the spammer's socket handled all it sent
    # a message after the spam: pushes to one socket keep their order, so everything before it has arrived
    await http.post(f"/api/groups/{group['address']}/messages", json={"text": "after"},
                    headers=await member_headers(http, "Ann"))
    seen = 0
    while (msg := await listener.receive_json(timeout=30))["type"] != "message":
        seen += msg["type"] == "typing"
    print(f"typing spam: {sent} of 1000 typing messages sent before the server hung up -> {seen} pushed to the "
          "group (burst 20)")
    assert seen == 20
    await listener.close()


# --------------------------------------------------------------------------- new groups, quotas


async def test_a_thousand_new_groups_from_one_client_are_refused_past_its_limit(web):
    _, _, http = web
    statuses = []
    for i in range(1000):
        resp = await http.post("/api/groups", json={"name": f"spam {i}"})
        statuses.append(resp.status)
        if resp.status != 201:
            assert resp.status == 429 and "groups" in (await resp.json())["error"]
    print(f"new groups: 1000 asked by one client -> {statuses.count(201)} created, {statuses.count(429)} refused")
    assert statuses.count(201) == 5 and statuses.count(429) == 995


async def test_group_numbers_cannot_be_enumerated(tmp_path):
    adapter = guarded(tmp_path, ClientRules(misses_per_hour=60))
    await adapter.start(RecordingSink())
    try:
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            group = await new_group(http)
            assert len(group["invite_url"].rsplit("/", 1)[1]) >= 22  # 128-bit invite (base64url)
            assert len(group["address"]) >= 22 and group["address"] in group["url"]  # 128-bit address
            probes = [str(n) for n in range(100000, 101001) if str(n) != group["number"]][:999]
            probes.append(group["number"])  # exists, but does not let people join by number: a miss like the rest
            codes = [(await http.get(f"/api/numbers/{number}")).status for number in probes]
            assert codes.count(404) == 60 and codes.count(429) == len(probes) - 60
            # past the limit, the real group is refused too: a 429 tells nothing about which groups exist
            assert (await http.get(f"/api/groups/{group['address']}")).status == 429
            resp = await http.get("/api/invites/guess")
            assert resp.status == 429 and "try again later" in (await resp.json())["error"]
            print(f"enumeration: {len(probes)} probes of group numbers -> 60 answered 404, the rest 429")
    finally:
        await adapter.stop()


async def test_posts_per_client_are_limited(tmp_path):
    adapter = guarded(tmp_path, ClientRules(post_burst=30))
    await adapter.start(RecordingSink())
    try:
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            group = await new_group(http)
            ann = await member_headers(http, "Ann")  # making a member counts as a post
            codes = [(await http.post(f"/api/groups/{group['address']}/messages",
                                      json={"text": f"m{i}"}, headers=ann)).status for i in range(100)]
            made = [(await http.post("/api/members", json={"nickname": f"sock puppet {i}"})).status for i in range(5)]
        assert codes.count(200) == 29 and codes.count(429) == 71
        assert made == [429] * 5  # new members come out of the same allowance
    finally:
        await adapter.stop()


async def test_storage_quotas_per_group_and_in_all(tmp_path):
    adapter = guarded(tmp_path, ClientRules(post_burst=10_000, groups_per_hour=100), quota_mb=(1, 2))
    await adapter.start(RecordingSink())
    try:
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            text = "x" * 7000
            groups = [await new_group(http) for _ in range(3)]
            ann = await member_headers(http, "Ann")
            kept = []
            for group in groups:
                n = 0
                while True:
                    resp = await http.post(f"/api/groups/{group['address']}/messages",
                                           json={"text": text}, headers=ann)
                    if resp.status != 200:
                        assert resp.status == 507
                        why = (await resp.json())["error"]
                        break
                    n += 1
                kept.append((n, why))
        print("storage:", kept)
        assert kept[0][0] == kept[1][0] == 149 and "This group" in kept[0][1]  # 1 MB of 7,000-byte messages
        assert kept[2][0] < 149 and "storage is full" in kept[2][1]  # 2 MB in all
    finally:
        await adapter.stop()


async def test_refusals_a_person_reads_come_in_their_language(web):
    _, _, http = web
    resp = await http.post("/api/members", json={"nickname": "Рai"},
                           headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert resp.status == 400 and "看起来像它的名字" in (await resp.json())["error"]
    resp = await http.post("/api/members?lang=en", json={"nickname": "Рai"})
    assert "looks like its name" in (await resp.json())["error"]


async def test_a_reconnect_storm_is_refused_before_any_lookup_and_reconnects_within_the_allowance_open(tmp_path):
    adapter = guarded(tmp_path, ClientRules(sockets=3, socket_opens_per_minute=30))
    await adapter.start(RecordingSink())
    lookups = 0
    find_group = adapter.find_group

    async def counted(address: str):  # type: ignore[no-untyped-def]
        nonlocal lookups
        lookups += 1
        return await find_group(address)

    adapter.find_group = counted  # type: ignore[method-assign]
    try:
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            group = await new_group(http)
            path = f"/api/groups/{group['address']}/ws"
            tabs = [await http.ws_connect(path) for _ in range(3)]  # three tabs of one browser
            await tabs[0].close()  # one tab's member picked a nickname: it reopens its socket as her
            tabs[0] = await http.ws_connect(path, headers=await member_headers(http, "Ann"))
            for ws in tabs:
                assert (await ws.receive_json())["type"] == "hello"
                await ws.close()
            await until(lambda: not adapter.guard.limits._sockets)
            opened = 4
            statuses = []
            for _ in range(200):  # a storm: open, drop, open again as fast as it can
                try:
                    ws = await http.ws_connect(path)
                except aiohttp.WSServerHandshakeError as exc:
                    statuses.append(exc.status)
                    continue
                opened += 1
                await ws.close()
                await until(lambda: not adapter.guard.limits._sockets)
            print(f"reconnect storm: 200 attempts -> {opened - 4} opened, {statuses.count(429)} refused (429)")
            assert opened == 30 and statuses == [429] * 174
            assert lookups == 30  # the refused ones cost no lookup of the group
    finally:
        await adapter.stop()


async def test_join_by_number_answers_like_no_group_until_an_admin_allows_it(tmp_path):
    adapter = guarded(tmp_path, ClientRules(misses_per_hour=60))
    await adapter.start(RecordingSink())
    try:
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            alice, bob = await member_headers(http, "Alice"), await member_headers(http, "Bob")
            created = await http.post("/api/groups", json={"name": "Hikers"}, headers=alice)
            group = await created.json()
            assert group["admin"] is True and group["join_by_number"] is False
            number = group["number"]
            free = next(str(n) for n in range(100000, 999999) if str(n) != number)
            closed, none = await http.get(f"/api/numbers/{number}"), await http.get(f"/api/numbers/{free}")
            assert closed.status == none.status == 404
            assert await closed.json() == await none.json()  # nothing tells an existing group from none
            assert {k: v for k, v in closed.headers.items() if k not in ("Date", "Content-Length")} == \
                   {k: v for k, v in none.headers.items() if k not in ("Date", "Content-Length")}
            assert closed.headers["Content-Length"] == none.headers["Content-Length"]
            assert (await http.get(f"/api/groups/{number}")).status == 404  # a number is no address

            path = f"/api/groups/{group['address']}"
            assert (await http.patch(path, json={"join_by_number": True})).status == 401  # no member key
            refused = await http.patch(path, json={"join_by_number": True}, headers=bob)
            assert refused.status == 403 and "admins" in (await refused.json())["error"]
            assert (await http.patch(path, json={"join_by_number": "yes"}, headers=alice)).status == 400
            assert (await (await http.get(path, headers=bob)).json())["admin"] is False

            allowed = await http.patch(path, json={"join_by_number": True}, headers=alice)
            assert allowed.status == 200 and (await allowed.json())["join_by_number"] is True
            found = await (await http.get(f"/api/numbers/{number}")).json()
            assert found == {"address": group["address"], "number": number, "name": "Hikers", "url": group["url"]}
            joined = await (await http.get(f"/api/groups/{found['address']}", headers=bob)).json()
            assert joined["invite_url"] == group["invite_url"] and joined["admin"] is False

            await http.patch(path, json={"join_by_number": False}, headers=alice)
            assert (await http.get(f"/api/numbers/{number}")).status == 404
    finally:
        await adapter.stop()


async def test_concurrent_uploads_never_pass_a_small_quota(tmp_path):
    adapter = guarded(tmp_path, ClientRules(post_burst=10_000), quota_mb=(1, 0))
    await adapter.start(RecordingSink())
    size = 200_000  # five fit in 1 MiB, six do not
    try:
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            group = await new_group(http)
            ann = await member_headers(http, "Ann")

            async def upload(i: int) -> int:
                form = aiohttp.FormData()
                form.add_field("text", f"file {i}")
                form.add_field("file", bytes([i]) * size, filename=f"f{i}.bin", content_type="application/octet-stream")
                resp = await http.post(f"/api/groups/{group['address']}/messages", data=form, headers=ann)
                assert resp.status in (200, 507), await resp.text()
                return resp.status

            stored = 0
            for _ in range(3):  # rounds of 12 at once: refused ones free what they reserved
                statuses = await asyncio.gather(*(upload(i) for i in range(12)))
                stored += statuses.count(200)
                print(f"quota: 12 concurrent uploads of {size} bytes -> {statuses.count(200)} stored, "
                      f"{statuses.count(507)} refused (507)")
        store = adapter._store
        assert store is not None and adapter._quota is not None
        used = store.bytes_used(group["number"])
        print(f"quota: {used} bytes stored of {2**20} allowed")
        assert stored == 5 and 5 * size < used <= 2**20  # never over, and what fits is stored
        assert adapter._quota.reserved() == 0  # every refused upload released what it had reserved
        leftovers = [p for p in (tmp_path / "web_files").rglob("*") if p.name.startswith(".tmp-")]
        assert leftovers == []
    finally:
        await adapter.stop()
