"""Pais made from chat: /pai create, join, accept, reject, leave; stored in the state database."""

from __future__ import annotations

import pytest

from tests.pai_world import World, world

ONLY = "skills: {intro: {enabled: false}, summary: {enabled: false}, reminders: {enabled: false}, " \
       "polls: {enabled: false}, files: {enabled: false}, images: {enabled: false}, factcheck: {enabled: false}}\n"


@pytest.fixture
async def w(tmp_path):
    async for made in world(tmp_path, extra=ONLY, skills=None):
        yield made


async def made_pai(w: World) -> tuple[str, str]:
    await w.post(w.alpha, "/pai create Family", chat="g1", author="alice")
    pai = w.app.services.pais.pai_for("alpha:g1")
    assert pai is not None
    assert f"派号 {pai.number}" in w.alpha.to("g1")[-1] or pai.number in w.alpha.to("g1")[-1]
    assert pai.invite in w.alpha.to("g1")[-1]
    return pai.number, pai.invite


async def test_two_groups_on_two_platforms_become_one_conversation(w: World):
    number, code = await made_pai(w)
    await w.post(w.beta, f"/pai join {code}", chat="g2", author="bob")
    assert "Asked to join" in w.beta.to("g2")[-1]
    notice = w.alpha.to("g1")[-1]
    assert "asks to join" in notice and "/pai accept 1" in notice
    await w.post(w.alpha, "/pai accept 1", chat="g1", author="alice")
    assert "has joined" in w.alpha.to("g1")[-1]
    assert "has joined" in w.beta.to("g2")[-1] and "passed on" in w.beta.to("g2")[-1]
    # from now on they talk together, and share one memory
    await w.post(w.alpha, "hello beta", chat="g1", author="carol", name="Carol")
    await w.post(w.beta, "hello alpha", chat="g2", author="dan", name="Dan")
    assert w.beta.to("g2")[-1] == "[AL] Carol: hello beta"
    assert w.alpha.to("g1")[-1] == "[BE] Dan: hello alpha"
    said = [r.text for r in sorted(w.memory.records.values(), key=lambda r: r.sent_at)
            if r.pai == f"pai:#{number}" and not r.is_bot and not r.text.startswith("/")]
    assert said == ["hello beta", "hello alpha"]
    await w.post(w.beta, "/pai", chat="g2", author="dan")
    shown = w.beta.to("g2")[-1]
    assert "Family" in shown and number in shown and "(AL)" in shown and "(BE)" in shown
    assert code not in shown  # the invite code is for admins


async def test_the_pai_survives_a_restart(tmp_path):
    async for w in world(tmp_path, extra=ONLY, skills=None):
        number, code = await made_pai(w)
        await w.post(w.beta, f"/pai join {code}", chat="g2", author="bob")
        await w.post(w.alpha, "/pai accept 1", chat="g1", author="alice")
    async for w in world(tmp_path, extra=ONLY, skills=None):
        assert w.app.services.pai_of("beta:g2") == f"pai:#{number}"
        await w.post(w.alpha, "still here", chat="g1", author="carol", name="Carol")
        assert w.beta.to("g2")[-1] == "[AL] Carol: still here"


async def test_only_admins_create_join_and_leave_and_only_the_owner_accepts(w: World):
    await w.post(w.alpha, "/pai create Nope", chat="g1", author="mallory")
    assert "Only admins" in w.alpha.to("g1")[-1]
    _, code = await made_pai(w)
    await w.post(w.beta, f"/pai join {code}", chat="g2", author="mallory")
    assert "Only admins" in w.beta.to("g2")[-1]
    await w.post(w.beta, f"/pai join {code}", chat="g2", author="bob")
    await w.post(w.beta, "/pai accept 1", chat="g2", author="bob")  # bob does not own the pai
    assert "Only the owner" in w.beta.to("g2")[-1]
    await w.post(w.alpha, "/pai reject 1", chat="g1", author="alice")
    assert "declined" in w.beta.to("g2")[-1]
    await w.post(w.alpha, "/pai accept 1", chat="g1", author="alice")
    assert "no open request" in w.alpha.to("g1")[-1]


async def test_a_wrong_code_and_a_second_pai_are_refused(w: World):
    await w.post(w.beta, "/pai join NOPE1234", chat="g2", author="bob")
    assert "no pai with that invite code" in w.beta.to("g2")[-1]
    await made_pai(w)
    await w.post(w.alpha, "/pai create Again", chat="g1", author="alice")
    assert "already in the pai" in w.alpha.to("g1")[-1]


async def test_leaving_stops_the_relay_and_the_owner_leaving_ends_the_pai(w: World):
    number, code = await made_pai(w)
    await w.post(w.beta, f"/pai join {code}", chat="g2", author="bob")
    await w.post(w.alpha, "/pai accept 1", chat="g1", author="alice")
    await w.post(w.beta, "/pai leave", chat="g2", author="bob")
    assert "has left" in w.beta.to("g2")[-1] and "has left" in w.alpha.to("g1")[-1]
    sent = len(w.beta.sent)
    await w.post(w.alpha, "anyone?", chat="g1", author="carol")
    assert len(w.beta.sent) == sent
    assert w.app.services.pai_of("beta:g2") == "beta:g2"  # its own memory again
    await w.post(w.beta, f"/pai join {code}", chat="g2", author="bob")
    await w.post(w.alpha, "/pai accept 2", chat="g1", author="alice")
    await w.post(w.alpha, "/pai leave", chat="g1", author="alice")
    assert "has ended" in w.alpha.to("g1")[-1] and "has ended" in w.beta.to("g2")[-1]
    assert w.app.services.pais.by_number(number) is None


async def test_a_pai_from_the_configuration_is_not_changed_from_chat(tmp_path):
    extra = ONLY + "pais: {conf: {groups: ['alpha:g1', 'beta:g2'], relay: true}}\n"
    async for w in world(tmp_path, extra=extra, skills=None):
        await w.post(w.alpha, "/pai leave", chat="g1", author="alice")
        assert "configuration" in w.alpha.to("g1")[-1]
        await w.post(w.alpha, "/pai", chat="g1", author="alice")
        assert "conf" in w.alpha.to("g1")[-1] and "(BE)" in w.alpha.to("g1")[-1]


async def test_web_opens_a_room_for_the_pai_and_sends_a_sign_in_link_privately(w: World):
    number, code = await made_pai(w)
    await w.post(w.alpha, "/signin", chat="g1", author="carol", name="Carol")
    assert "private message" in w.alpha.to("g1")[-1]
    [room] = w.home.rooms
    assert room.title == "Family"
    assert w.app.services.pai_of(room.key) == f"pai:#{number}"  # one more room of the pai
    [(user, text)] = w.alpha.direct
    assert user == "carol" and "https://home.example/signin/token1" in text
    [(signed_room, member)] = w.home.links
    assert signed_room == room and member.display_name == "Carol"
    people = w.app.services.people
    assert people.person_of(member.key) == people.person_of("alpha:carol")
    # the second time: the same room, the same web identity
    await w.post(w.alpha, "/signin", chat="g1", author="carol", name="Carol")
    assert len(w.home.rooms) == 1 and w.home.links[1][1].user_id == member.user_id
    # what is said in the room reaches the others
    await w.post(w.home, "hello from home", chat=room.chat_id, author=member.user_id, name="Carol")
    assert w.alpha.to("g1")[-1] == "[Home] Carol: hello from home"


async def test_web_outside_a_pai_says_how_to_make_one(w: World):
    await w.post(w.alpha, "/signin", chat="g1", author="carol")
    assert "not in a pai" in w.alpha.to("g1")[-1] and w.alpha.direct == []


async def test_the_memory_command_line_knows_the_pais_made_from_chat(tmp_path):
    from bot.pais import WithChatPais, chat_made_scopes

    async for w in world(tmp_path, extra=ONLY, skills=None):
        number, code = await made_pai(w)
        await w.post(w.beta, f"/pai join {code}", chat="g2", author="bob")
        await w.post(w.alpha, "/pai accept 1", chat="g1", author="alice")
        settings = w.app.settings
    scoped = WithChatPais(settings, chat_made_scopes(tmp_path / "paibot.db"))
    assert scoped.pai_of("beta:g2") == scoped.pai_of("alpha:g1") == f"pai:#{number}"
    assert scoped.pai_of("beta:other") == "beta:other" and scoped.data_path == settings.data_path
