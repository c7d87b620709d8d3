"""Web members cannot be impersonated: posting (messages, votes, commands) needs the member key of the
author, so a post under someone else's author id is refused with 403 and one without a key with 401.
The creator of a web group is its admin and can make other members admins; only admins change settings.

What this does not protect: whoever holds a member key (a stolen cookie, a shared browser) is that member;
nicknames are not unique; anyone who can reach the server can read a group whose address or invite they know (or its
number, where the group lets people join by number).
"""

from __future__ import annotations

import aiohttp
import pytest

from bot.app import App
from bot.config import parse_settings
from tests.web_members import author_id_of, member_headers


@pytest.fixture
async def site(tmp_path):
    app = App(parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0}}\n"
    ))
    await app.start()
    assert app.services is not None
    async with aiohttp.ClientSession(base_url=app.services.adapters["web"].base_url) as http:
        yield app, http
    await app.stop()


async def say(app: App, http: aiohttp.ClientSession, group: str, who: str, text: str, **extra) -> list[str]:
    """Post as ``who``; the bot's answers to it."""
    resp = await http.post(f"/api/groups/{group}/messages", json={"text": text, **extra},
                           headers=await member_headers(http, who))
    assert resp.status == 200, await resp.text()
    mine = (await resp.json())["id"]
    await app.drain(30)
    listed = await (await http.get(f"/api/groups/{group}/messages?after={mine}")).json()
    return [m["text"] for m in listed["messages"] if m["is_bot"]]


async def test_a_post_under_someone_elses_author_id_is_refused_with_403(site):
    app, http = site
    group = (await (await http.post("/api/groups", json={"name": "Club"}, headers=await member_headers(http, "Alice")))
             .json())["address"]
    await say(app, http, group, "Alice", "/remind in 2h call the florist")
    alice = author_id_of(http, "Alice")
    url = f"/api/groups/{group}/messages"
    forged = await http.post(url, json={"text": "/forget-me", "author_id": alice}, headers=await member_headers(http, "Mallory"))
    unsigned = await http.post(url, json={"author": "Alice", "author_id": alice, "text": "/reminders cancel 1"})
    bad_key = await http.post(url, json={"text": "/optout"}, headers={"Authorization": "Member not-a-real-key"})
    print(f"\nimpersonation: forged author_id -> {forged.status}, no key -> {unsigned.status}, "
          f"unknown key -> {bad_key.status}")
    assert (forged.status, unsigned.status, bad_key.status) == (403, 401, 401)
    assert "someone else" in (await forged.json())["error"]
    listed = await (await http.get(f"{url}?limit=50")).json()
    assert [m["author_id"] for m in listed["messages"] if not m["is_bot"]] == [alice]  # nothing was posted
    (still,) = await say(app, http, group, "Alice", "/reminders")
    assert "call the florist" in still


async def test_the_creator_is_admin_and_can_make_others_admins(site):
    app, http = site
    created = await http.post("/api/groups", json={"name": "Book club"}, headers=await member_headers(http, "Alice"))
    group = (await created.json())["address"]
    await say(app, http, group, "Bob", "hello everyone")
    (refused,) = await say(app, http, group, "Bob", "/settings name Bookworm")
    assert "Only admins" in refused
    (changed,) = await say(app, http, group, "Alice", "/settings name Bookworm")
    assert "Bookworm" in changed
    (no_power,) = await say(app, http, group, "Bob", "/admin add Bob")
    assert "Only admins" in no_power
    (granted,) = await say(app, http, group, "Alice", "/admin add Bob")
    assert granted == "Bob is now an admin of this group."
    (now_ok,) = await say(app, http, group, "Bob", "/settings name Pai")
    assert "Only admins" not in now_ok
    (unknown,) = await say(app, http, group, "Alice", "/admin add Nobody")
    assert "Nobody called Nobody" in unknown


async def test_a_key_is_needed_to_know_who_you_are_and_nicknames_of_the_bot_are_refused(site):
    _, http = site
    assert (await http.get("/api/members/me")).status == 204  # nobody yet
    assert (await http.post("/api/members", json={"nickname": "pai"})).status == 400
    made = await http.post("/api/members", json={"nickname": "Carol"})
    body = await made.json()
    assert made.status == 201 and body["author_id"].startswith("m-") and len(body["key"]) >= 40
    cookie = made.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    me = await http.get("/api/members/me", headers={"Authorization": f"Member {body['key']}"})
    assert (await me.json()) == {"author_id": body["author_id"], "nickname": "Carol"}
