"""The inbox is a queue, not an archive: what the intake policy refuses never reaches the disk (only its id,
so a redelivery is recognised), and what it admits loses its payload once handled. The reply ledger keeps a
reply's text only until it is sent.

Refused: groups not on ``access.allowed_groups``, direct messages from people who may not use the bot, and
messages of a member who opted out (``/optout``) unless they may need an answer (a command, a mention).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.events import Attachment
from tests.fakes import FakeAdapter
from tests.security import disk
from tests.security.obedient import build_app, msg

POLICY = (
    'access: {allowed_groups: ["fake:beta"], allowed_users: ["fake:bob", "fake:ann"], blocked_users: ["fake:troll"]}\n'
)


def inbox(data: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(data / "paibot.db") as conn:
        return conn.execute("SELECT event_id, status, payload FROM inbox ORDER BY seq").fetchall()


async def test_refused_events_leave_only_their_id_and_handled_ones_lose_their_payload(tmp_path):
    adapter = FakeAdapter()
    app, _ = await build_app(tmp_path, extra=POLICY, memory="real", adapter=adapter)
    refused: list[str] = []
    kept = disk.marker("kept")
    try:
        for chat, author, direct in (("zulu", "bob", False), ("zulu", "boss", False), ("dm-troll", "troll", True),
                                     ("dm-stranger", "stranger", True)):
            word = disk.marker("refused")
            refused.append(word)
            sent = msg(app, f"@Pai {word} please", chat=chat, author=author, is_direct=direct,
                       attachments=(Attachment("file", f"{word}.pdf", "application/pdf", 10, "x"),))
            assert await adapter.inject(sent) == 1
            assert await adapter.inject(sent) == 0  # the id is kept: a redelivery is recognised
        await adapter.inject(msg(app, f"@Pai {kept} is served", author="bob"))
        await app.drain()
        rows = inbox(tmp_path)
        assert [status for _, status, _ in rows] == ["refused"] * 4 + ["done"]
        assert all(payload == "" for _, _, payload in rows)
        with sqlite3.connect(tmp_path / "paibot.db") as conn:
            assert conn.execute("SELECT count(*) FROM replies WHERE payload != ''").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM replies WHERE state = 'sent'").fetchone() == (1,)
    finally:
        await app.stop()
    disk.settle(tmp_path)
    hits = disk.find(tmp_path, [*refused, kept])
    print(f"\nrefused groups and strangers: {len(refused)} markers, hits on disk: "
          f"{[h for h in hits if h[1] != kept]}; the served group's marker found in {sorted({h[0] for h in hits})}")
    assert [h for h in hits if h[1] != kept] == []
    assert any(name == "memory.sqlite3" for name, m in hits if m == kept)  # the scan does see content


async def test_an_opted_out_member_is_answered_but_nothing_of_hers_is_kept(tmp_path):
    adapter = FakeAdapter()
    app, _ = await build_app(tmp_path, memory="real", adapter=adapter)
    chatter, question = disk.marker("chatter"), disk.marker("question")
    try:
        await adapter.inject(msg(app, "/optout", author="ann", mentions_me=False))
        await app.drain()
        assert await adapter.inject(msg(app, f"just {chatter} among friends", author="ann", mentions_me=False)) == 1
        await adapter.inject(msg(app, f"@Pai what is {question}?", author="ann"))
        await adapter.inject(msg(app, "/optin", author="ann", mentions_me=False))
        await app.drain()
        statuses = [status for _, status, _ in inbox(tmp_path)]
        assert statuses == ["done", "refused", "done", "done"]
        assert "I record your messages in this group again" in adapter.sent[-1].text
        assert len(adapter.sent) == 3  # optout, the question, optin: she is still answered
    finally:
        await app.stop()
    disk.settle(tmp_path)
    assert disk.find(tmp_path, [chatter, question]) == []
