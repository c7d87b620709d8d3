"""The web group's side of watching together, over real HTTP and WebSockets on loopback: uploads with their
own size limit, media streamed with range requests (206), the session's state and lines, clock pings, and
player commands carried to the core and back to every socket of the group."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.config import parse_settings
from tests.media_factory import make_video, make_vtt
from tests.web_members import author_id_of, member_headers


@pytest.fixture
async def paibot(tmp_path):
    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "limits: {max_attachment_bytes: 200000}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0, max_media_bytes: 3000000}}\n"
    )
    app = App(settings)
    await app.start()
    try:
        yield app, app.services.adapters["web"].base_url
    finally:
        await app.stop()


async def post_files(http: aiohttp.ClientSession, address: str, text: str, files: list[tuple[str, bytes, str]],
                     author: str = "Alice") -> aiohttp.ClientResponse:  # fmt: skip
    form = aiohttp.FormData()
    form.add_field("text", text)
    for name, data, mime in files:
        form.add_field("file", data, filename=name, content_type=mime)
    return await http.post(f"/api/groups/{address}/messages", data=form, headers=await member_headers(http, author))


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), 10)
        if msg.get("type") == kind:
            return msg


async def test_a_shared_video_is_a_session_its_media_seeks_and_commands_reach_every_player(paibot, tmp_path):
    app, url = paibot
    film = make_video(tmp_path / "harbour.webm", 42).read_bytes()
    async with aiohttp.ClientSession(base_url=url) as http:
        alice_key = await member_headers(http, "Alice")
        group = await (await http.post("/api/groups", json={"name": "Movie night"}, headers=alice_key)).json()
        address = group["address"]
        current = await (await http.get(f"/api/groups/{address}/watch")).json()
        assert current == {"watch": None, "available": True}
        resp = await post_files(
            http,
            address,
            "/watch",
            [("harbour.webm", film, "video/webm"), ("harbour.vtt", make_vtt(), "text/vtt")],
        )
        assert resp.status == 200, await resp.text()
        posted = await resp.json()
        assert [f["kind"] for f in posted["files"]] == ["video", "file"]
        await app.drain(30)
        watch = (await (await http.get(f"/api/groups/{address}/watch")).json())["watch"]
        assert watch["title"] == "harbour.webm" and watch["cues"] == 10 and watch["kind"] == "video"
        assert watch["media_url"] == f"/api/media/{posted['files'][0]['id']}" and watch["control"] == "all"

        # Range requests: a player seeking asks for the middle of the file and gets exactly that.
        part = await http.get(watch["media_url"], headers={"Range": "bytes=1000-1999"})
        assert part.status == 206 and part.headers["Content-Range"] == f"bytes 1000-1999/{len(film)}"
        assert await part.read() == film[1000:2000] and part.headers["Content-Type"] == "video/webm"
        assert part.headers["X-Content-Type-Options"] == "nosniff"
        whole = await http.get(watch["media_url"])
        assert whole.status == 200 and await whole.read() == film
        vtt_id = posted["files"][1]["id"]
        assert (await http.get(f"/api/media/{vtt_id}")).status == 404  # not a media file: downloads only

        cues = (await (await http.get(f"/api/groups/{address}/watch/{watch['session']}/cues")).json())["cues"]
        assert cues[3] == [13.0, 15.5, "我把钥匙放在灯塔里了。"]

        bob_key = await member_headers(http, "Bob")
        ws_url = f"/api/groups/{address}/ws"
        async with http.ws_connect(ws_url, headers=alice_key) as alice, \
                http.ws_connect(ws_url, headers=bob_key) as bob, http.ws_connect(ws_url) as stranger:  # fmt: skip
            await alice.send_json({"type": "clock", "t": 123.5})
            pong = await next_of(alice, "clock")
            assert pong["t"] == 123.5 and abs(pong["server"] - app.services.clock.now().timestamp()) < 5
            await bob.send_json({"type": "watch", "action": "seek", "value": 12.0, "session": watch["session"]})
            seen_by_alice = (await next_of(alice, "watch"))["watch"]
            seen_by_bob = (await next_of(bob, "watch"))["watch"]
            assert seen_by_alice == seen_by_bob and seen_by_alice["playback"]["position"] == 12.0
            await bob.send_json({"type": "watch", "action": "jump"})
            assert (await next_of(bob, "watch_refused"))["error"]
            await bob.send_json({"type": "watch", "action": "play", "session": "stale"})
            assert "ended" in (await next_of(bob, "watch_refused"))["error"]
            # A player acts as the member its socket belongs to: no key, or another member's id, is refused.
            await stranger.send_json({"type": "watch", "action": "pause", "session": watch["session"],
                                      "author_id": author_id_of(http, "Alice")})  # fmt: skip
            assert (await next_of(stranger, "watch_refused"))["reason"] == "member"
            await bob.send_json({"type": "watch", "action": "pause", "session": watch["session"],
                                 "author_id": author_id_of(http, "Alice")})  # fmt: skip
            assert (await next_of(bob, "watch_refused"))["reason"] == "member"
            state = (await (await http.get(f"/api/groups/{address}/watch")).json())["watch"]
            assert state["playback"] == seen_by_bob["playback"]  # neither refusal moved the player


async def test_media_uploads_have_their_own_limit_and_one_per_message(paibot, tmp_path):
    _, url = paibot
    film = make_video(tmp_path / "small.webm", 6).read_bytes()
    assert 200_000 < 3_000_000
    async with aiohttp.ClientSession(base_url=url) as http:
        created = await http.post("/api/groups", json={"name": "Limits"}, headers=await member_headers(http, "Alice"))
        address = (await created.json())["address"]
        big_doc = b"x" * 250_000  # over the file limit, under the media limit: still refused
        assert (await post_files(http, address, "doc", [("notes.txt", big_doc, "text/plain")])).status == 413
        padded = film + b"\0" * (250_000 - len(film))  # a video over the file limit: fine
        assert (await post_files(http, address, "film", [("small.webm", padded, "video/webm")])).status == 200
        huge = film + b"\0" * 3_100_000
        assert (await post_files(http, address, "film", [("big.webm", huge, "video/webm")])).status == 413
        two = [("a.webm", film, "video/webm"), ("b.webm", film, "video/webm")]
        assert (await post_files(http, address, "two", two)).status == 413


async def test_with_the_watch_skill_turned_off_the_page_is_told_there_is_nothing_to_start(tmp_path):
    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "skills: {watch: {enabled: false}}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0}}\n"
    )
    app = App(settings)
    await app.start()
    try:
        async with aiohttp.ClientSession(base_url=app.services.adapters["web"].base_url) as http:
            address = (await (await http.post("/api/groups", json={"name": "No films"})).json())["address"]
            current = await (await http.get(f"/api/groups/{address}/watch")).json()
            assert current == {"watch": None, "available": False}
    finally:
        await app.stop()


async def test_a_socket_flooding_player_commands_is_slowed_down():
    """The bucket in isolation, with a manual clock: a burst passes, a flood does not, time refills it."""
    from adapters.web.live import LiveHub
    from adapters.web.watch import COMMAND_BURST, COMMANDS_PER_S, WebWatch

    now = [0.0]
    relay = WebWatch(LiveHub(), "web", clock=lambda: now[0])
    class Socket:  # anything weakly referenceable stands in for a socket here
        pass

    ws, other = Socket(), Socket()
    passed = [relay._allowed(ws) for _ in range(50)]  # noqa: SLF001 - the bucket is the unit under test
    assert passed.count(True) == COMMAND_BURST and relay._allowed(other)  # noqa: SLF001
    now[0] += 1.0
    assert [relay._allowed(ws) for _ in range(10)].count(True) == COMMANDS_PER_S  # noqa: SLF001


async def test_forget_me_deletes_the_media_and_subtitles_a_member_uploaded_and_her_session(paibot, tmp_path):
    app, url = paibot
    film = make_video(tmp_path / "harbour.webm", 8).read_bytes()
    async with aiohttp.ClientSession(base_url=url) as http:
        alice = await member_headers(http, "Alice")
        group = await (await http.post("/api/groups", json={"name": "Film club"}, headers=alice)).json()
        number, address = group["number"], group["address"]
        files = [("harbour.webm", film, "video/webm"), ("harbour.vtt", make_vtt(), "text/vtt")]
        posted = await (await post_files(http, address, "/watch", files)).json()
        await app.drain(30)
        watch = (await (await http.get(f"/api/groups/{address}/watch")).json())["watch"]
        assert watch is not None and (await http.get(watch["media_url"])).status == 200
        on_disk = sorted((tmp_path / "data" / "web_files").rglob("*"))
        assert any(p.is_file() and p.read_bytes() == film for p in on_disk)
        await app.services.memory.flush()
        assert await app.services.memory.search(f"web:{number}", "钥匙 灯塔", 10)  # the subtitles are in memory

        forgot = await http.post(f"/api/groups/{address}/messages", json={"text": "/forget-me"}, headers=alice)
        assert forgot.status == 200
        await app.drain(30)
        assert (await http.get(watch["media_url"])).status == 404
        for f in posted["files"]:
            assert (await http.get(f"/api/files/{f['id']}")).status == 404
        left = [p for p in (tmp_path / "data" / "web_files").rglob("*") if p.is_file()]
        assert not any(p.read_bytes() in (film, make_vtt()) for p in left)
        assert (await (await http.get(f"/api/groups/{address}/watch")).json())["watch"] is None
        lines = await app.services.memory.search(f"web:{number}", "钥匙 灯塔", 10)  # the subtitles' words
        assert [h.record.id for h in lines] == []
