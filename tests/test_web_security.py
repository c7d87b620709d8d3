"""The web group's defences: access token, loopback-only binding, hostile hosts and origins, bad input."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import aiohttp
import pytest

from adapters.web.adapter import WebAdapter, create_adapter
from adapters.web.http import MAX_BODY_BYTES
from adapters.web.members import StoredMember
from bot.config import parse_settings
from bot.errors import AdapterConfigError
from bot.ports import AdapterEnv
from tests.test_web_api import RecordingSink, new_group
from tests.web_members import member_headers

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
async def web(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    sink = RecordingSink()
    await adapter.start(sink)
    async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
        yield adapter, sink, http
    await adapter.stop()


@pytest.fixture
async def locked(tmp_path):
    """An adapter that requires ``TOKEN``."""
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0, access_token=TOKEN)
    await adapter.start(RecordingSink())
    yield adapter
    await adapter.stop()


# --------------------------------------------------------------------------- access token


async def test_with_a_token_configured_the_api_refuses_requests_without_it(locked):
    async with aiohttp.ClientSession(base_url=locked.base_url) as http:
        for method, path in (("GET", "/api/info"), ("POST", "/api/groups"), ("GET", "/api/groups/123456")):
            resp = await http.request(method, path, json={"name": "x"})
            assert resp.status == 401, path
            refused = await resp.json()
            assert "token" in refused["error"] and refused["need"] == "token"  # the page shows its token screen
        wrong = await http.get("/api/info", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401


async def test_the_token_is_accepted_as_bearer_header_or_query(locked):
    async with aiohttp.ClientSession(base_url=locked.base_url) as http:
        assert (await http.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
        assert (await http.get(f"/api/info?token={TOKEN}")).status == 200


async def test_the_page_trades_a_token_in_the_url_for_a_cookie(locked):
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=locked.base_url, cookie_jar=jar) as http:
        page = await http.get("/", allow_redirects=False)
        assert page.status == 200  # the page itself is public; it asks for the token when the API says 401
        resp = await http.get(f"/?token={TOKEN}", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/"
        assert "HttpOnly" in resp.headers["Set-Cookie"] and "SameSite=Strict" in resp.headers["Set-Cookie"]
        assert (await http.get("/api/info")).status == 200  # the cookie now authorises the API
        group = await new_group(http)
        assert group["number"].isdigit()


async def test_the_websocket_needs_the_token_too(locked):
    async with aiohttp.ClientSession(base_url=locked.base_url) as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        group = await (await http.post("/api/groups", json={"name": "g"}, headers=headers)).json()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"/api/groups/{group['address']}/ws")
        assert refused.value.status == 401
        ws = await http.ws_connect(f"/api/groups/{group['address']}/ws?token={TOKEN}")
        assert (await ws.receive_json())["type"] == "hello"
        await ws.close()


# --------------------------------------------------------------------------- exposure


def test_a_non_loopback_address_without_a_token_is_refused(tmp_path):
    with pytest.raises(AdapterConfigError, match="access_token"):
        WebAdapter(bot_name="Pai", data_dir=tmp_path, host="0.0.0.0")
    WebAdapter(bot_name="Pai", data_dir=tmp_path, host="0.0.0.0", access_token=TOKEN)  # fine with one


def test_create_adapter_double_checks_the_exposure_rule(tmp_path):
    settings = parse_settings(f"bot: {{data_dir: '{tmp_path}'}}\n")
    exposed = dataclasses.replace(settings.adapters.web, host="192.168.1.5")
    env = AdapterEnv(bot_name="Pai", data_dir=Path(tmp_path), max_attachment_bytes=12345)
    with pytest.raises(AdapterConfigError):
        create_adapter(exposed, env)
    adapter = create_adapter(settings.adapters.web, env)
    caps = adapter.capabilities
    assert adapter.name == "web" and caps.edit and caps.files and caps.polls
    assert adapter.attachments.max_bytes == 12345  # the core's limit is the upload limit


async def test_a_port_already_in_use_is_an_operator_facing_config_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=port)
        with pytest.raises(AdapterConfigError, match="port"):
            await adapter.start(RecordingSink())
        await adapter.stop()


async def test_requests_naming_a_foreign_host_are_refused(web):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the API."""
    _, _, http = web
    resp = await http.get("/api/info", headers={"Host": "evil.example:8765"})
    assert resp.status == 403
    assert (await http.get("/api/info", headers={"Host": "localhost"})).status == 200


async def test_cross_site_requests_are_refused(web):
    adapter, sink, http = web
    group = await new_group(http)
    key = await member_headers(http, "x")
    resp = await http.post(
        f"/api/groups/{group['address']}/messages",
        data='{"text": "csrf"}',
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain", **key},
    )
    assert resp.status == 403 and sink.events == []
    sandboxed = await http.post(
        f"/api/groups/{group['address']}/messages", json={"text": "hi"}, headers={"Origin": "null", **key}
    )
    assert sandboxed.status == 403 and sink.events == []
    same = await http.post(
        f"/api/groups/{group['address']}/messages",
        json={"text": "fine"},
        headers={"Origin": adapter.base_url, **key},
    )
    assert same.status == 200


async def test_behind_a_proxy_the_public_url_is_a_trusted_origin(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0, public_url="https://chat.example.org/")
    await adapter.start(RecordingSink())
    try:
        async with aiohttp.ClientSession(base_url=adapter.local_url) as http:
            group = await new_group(http)
            assert group["invite_url"].startswith("https://chat.example.org/join/")
            resp = await http.post(
                f"/api/groups/{group['address']}/messages",
                json={"text": "via the proxy"},
                headers={"Origin": "https://chat.example.org", **await member_headers(http, "x")},
            )
            assert resp.status == 200
            assert (await http.get("/api/info", headers={"Host": "chat.example.org"})).status == 200
            assert (await http.get("/api/info", headers={"Origin": "https://elsewhere.example"})).status == 403
    finally:
        await adapter.stop()


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"author": "Al", "text": "   "}', 400, "text"),
        (b'{"text": ["hi"]}', 400, "text"),
        (b'{"text": "hi", "reply_to": "abc"}', 400, "reply_to"),
        (b'{"text": "hi", "reply_to": true}', 400, "reply_to"),
        (b'{"text": "hi", "reply_to": 999999}', 400, "reply_to"),
        (b'{"text": "hi", "author_id": "bad id!"}', 403, "someone else"),
        (b'{"text": "hi", "author_id": "bot"}', 403, "someone else"),
        (b'{"text": "hi", "nonce": 7}', 400, "nonce"),
    ],
)
async def test_malformed_messages_get_a_clear_json_error_and_store_nothing(web, body, status, says):
    _, sink, http = web
    group = await new_group(http)
    resp = await http.post(f"/api/groups/{group['address']}/messages", data=body,
                           headers=await member_headers(http, "Al"))
    assert resp.status == status
    assert says in (await resp.json())["error"]
    assert sink.events == []


async def test_over_long_text_is_413_and_an_oversized_body_is_413_too(web):
    adapter, sink, http = web
    group = await new_group(http)
    url = f"/api/groups/{group['address']}/messages"
    key = await member_headers(http, "Al")
    long_text = await http.post(url, json={"text": "x" * (adapter.max_text_length + 1)}, headers=key)
    assert long_text.status == 413 and "longer than" in (await long_text.json())["error"]
    huge = await http.post(url, data=b'{"text": "' + b"y" * MAX_BODY_BYTES + b'"}', headers=key)
    assert huge.status == 413 and "error" in await huge.json()
    assert sink.events == []
    at_limit = await http.post(url, json={"text": "z" * adapter.max_text_length}, headers=key)
    assert at_limit.status == 200


@pytest.mark.parametrize(
    ("nickname", "says"),
    [(None, "nickname"), ("  ", "nickname"), (5, "nickname"), ("PAI", "belongs to the bot"), ("A" * 41, "nickname")],
)
async def test_bad_nicknames_get_a_clear_json_error(web, nickname, says):
    _, _, http = web
    resp = await http.post("/api/members", json={"nickname": nickname})
    assert resp.status == 400 and says in (await resp.json())["error"]


async def test_bad_group_names_and_query_parameters_are_400(web):
    _, _, http = web
    for body in ({}, {"name": ""}, {"name": "n" * 81}, {"name": None}):
        assert (await http.post("/api/groups", json=body)).status == 400
    group = await new_group(http)
    base = f"/api/groups/{group['address']}/messages"
    for query in ("after=abc", "after=-1", "limit=0", "limit=501", "limit=x"):
        resp = await http.get(f"{base}?{query}")
        assert resp.status == 400, query
        assert "error" in await resp.json()


async def test_control_characters_are_stripped_from_names_and_text(web):
    _, sink, http = web
    group = await new_group(http)
    resp = await http.post(
        f"/api/groups/{group['address']}/messages",
        json={"text": "line one\r\nline\x07 two"},
        headers=await member_headers(http, "Al\x00ice\x1b"),
    )
    assert resp.status == 200
    event = sink.events[0]
    assert event.author.display_name == "Alice" and event.text == "line one\nline two"


def test_the_page_never_builds_html_from_strings():
    """User text must reach the DOM as text only: no innerHTML and friends anywhere in the script."""
    static = Path(__file__).parents[1] / "adapters" / "web" / "static"
    for name in ("app.js", "watch.js"):
        script = (static / name).read_text(encoding="utf-8")
        for sink_name in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink_name not in script, name
    page = (Path(__file__).parents[1] / "adapters" / "web" / "static" / "index.html").read_text(encoding="utf-8")
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "").replace("http://…", "")
    assert "https://" not in page  # no CDN: the page works offline


def test_each_browser_signed_in_has_its_own_key_until_she_signs_the_others_out(tmp_path: Path) -> None:
    """Members found by key are kept in memory for the posts that follow, yet a rename, a retired key or a
    sign-out is seen at once. A sign-in link gives its browser a key of its own: the browsers signed in
    before stay signed in, up to KEYS_PER_MEMBER (a new one retires the oldest but the first), until she
    signs the others out."""
    from adapters.web.members import KEYS_PER_MEMBER
    from adapters.web.store import WebStore

    store = WebStore(tmp_path / "web.db")
    member, first = store.add_member("Alice")
    assert store.member_by_key(first) == store.known_member(first) == member
    store.rename_member(member.author_id, "Alicia")
    assert store.known_member(first) is None
    assert store.member_by_key(first).nickname == "Alicia"  # type: ignore[union-attr]
    group = store.create_group("g")

    def sign_in() -> str:
        signed = store.redeem_sign_in(store.issue_sign_in(member.author_id, "ignored", group.number, 60))
        assert signed is not None and (signed.author_id, signed.nickname) == (member.author_id, "Alicia")
        return signed.key

    keys = [first] + [sign_in() for _ in range(KEYS_PER_MEMBER - 1)]
    assert all(store.member_by_key(k) == StoredMember(member.author_id, "Alicia") for k in keys)
    newest = sign_in()  # one browser too many: the oldest extra key retires, the first one stays
    assert store.known_member(keys[1]) is None and store.member_by_key(keys[1]) is None
    assert all(store.member_by_key(k) is not None for k in [first, *keys[2:], newest])

    assert store.sign_out_others(member.author_id, keys[2]) == KEYS_PER_MEMBER - 1
    assert store.member_by_key(keys[2]) == StoredMember(member.author_id, "Alicia")
    assert all(store.member_by_key(k) is None for k in [first, *keys[3:], newest])
    assert store.sign_out_others(member.author_id, keys[2]) == 0
    other, other_key = store.add_member("Mallory")
    with pytest.raises(LookupError):  # a key of someone else signs nobody out
        store.sign_out_others(member.author_id, other_key)
    assert store.member_by_key(keys[2]) is not None and store.member_by_key(other_key) == other

    lone = store.redeem_sign_in(store.issue_sign_in("w-new", "Zoe", group.number, 60))  # a first sign-in
    assert lone is not None and store.member_by_key(lone.key) == StoredMember("w-new", "Zoe")
    store.close()
    reopened = WebStore(tmp_path / "web.db")  # on disk, not only in memory
    assert reopened.member_by_key(keys[2]) is not None and reopened.member_by_key(newest) is None
    reopened.close()


def test_posts_from_many_threads_share_commits_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    """Posting writes from several threads go to disk together (group commit); each call still gets its own
    message, a retry with a used nonce gets the first one back, and every message is stored once."""
    from concurrent.futures import ThreadPoolExecutor

    from adapters.web.store import WebStore

    store = WebStore(tmp_path / "web.db")
    group = store.create_group("g")

    def post(n: int) -> tuple[int, bool, str]:
        msg, created = store.add_message(group.number, "a", "Alice", f"text {n % 30}", nonce=f"n{n % 30}",
                                         delivered=False)  # fmt: skip
        store.mark_delivered(msg.id)
        return msg.id, created, msg.text

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(60)))
    assert sum(created for _, created, _ in results) == 30
    by_text = {text: mid for mid, _, text in results}
    assert all(by_text[text] == mid for mid, _, text in results)  # a retry found the first message
    stored, more = store.list_messages(group.number, None, 100)
    assert not more and sorted(m.id for m in stored) == sorted(by_text.values()) and store.pending() == []
    store.close()


def test_a_group_kept_in_memory_follows_a_change_of_joining_by_number(tmp_path: Path) -> None:
    from adapters.web.store import WebStore

    store = WebStore(tmp_path / "web.db")
    made = store.create_group("g")
    assert store.group_by_address(made.address) == store.known_group("address", made.address) == made
    store.set_join_by_number(made.number, True)
    assert store.known_group("address", made.address) is None
    assert store.group_by_address(made.address).join_by_number  # type: ignore[union-attr]
    store.close()
