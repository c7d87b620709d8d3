"""Watching together on Matrix, which has no player: end to end through a real Synapse on loopback, the
bot's Matrix adapter run by the App (no model), and a member posting through an unmodified nio client.

A subtitle file (``m.file``) or a video carrying a subtitle track (``m.video``) shared in a room gets a
digest, and a question about a moment ("what did they say at 0:13?", or in Chinese) is answered from the
lines around that moment only."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import UploadResponse

from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.sync import SyncOptions
from bot.app import App
from bot.config import parse_settings
from tests.matrix_helpers import WAIT_S, Human, sent_by
from tests.media_factory import make_srt, make_video, make_vtt
from tests.synapse_server import SynapseServer

pytestmark = [pytest.mark.slow, pytest.mark.synapse]


class Room:
    """One room on the homeserver with alice, bob and the bot (run by a real App), seen from alice's side."""

    def __init__(self, server: SynapseServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.bot = server.register(server.unique("pai"), displayname="Pai")
        alice = server.register(server.unique("alice"), displayname="Alice")
        bob = server.register(server.unique("bob"), displayname="Bob")
        self.alice, self.bob = Human(server, alice), Human(server, bob)
        self.app: App | None = None
        self.room_id = ""

    async def start(self) -> None:
        settings = parse_settings(f"""
bot: {{name: Pai, data_dir: "{self.tmp / 'data'}", welcome: false}}
adapters:
  web: {{enabled: false}}
  matrix: {{enabled: true, homeserver: "{self.server.base_url}", user_id: "{self.bot.user_id}",
           password: "{self.bot.password}", allowed_inviters: ["{self.alice.user.user_id}"]}}
""")
        cfg = settings.adapters.matrix
        adapter = MatrixAdapter(cfg, options=SyncOptions(sync_timeout_ms=2_000,
                                                         allowed_inviters=cfg.allowed_inviters))
        self.app = App(settings, adapters={"matrix": adapter})
        await self.app.start()
        self.room_id = await self.alice.create_room(invite=[self.bot.user_id, self.bob.user.user_id])
        await self.bob.join(self.room_id)
        await self.alice.wait_membership(self.room_id, self.bot.user_id, "join")

    async def close(self) -> None:
        if self.app is not None:
            await self.app.stop()
        await self.alice.close()
        await self.bob.close()

    async def share(self, who: Human, msgtype: str, name: str, mime: str, data: bytes,
                    caption: str = "") -> str:
        """Upload ``data`` to the homeserver and post it as a client does: the body is the file name, or
        the caption with the name in ``filename`` (media captions, Matrix 1.10)."""
        resp, _keys = await who.client.upload(io.BytesIO(data), content_type=mime, filename=name,
                                              filesize=len(data))
        assert isinstance(resp, UploadResponse), resp
        content: dict[str, Any] = {"msgtype": msgtype, "body": caption or name, "url": resp.content_uri,
                                   "info": {"mimetype": mime, "size": len(data)}}
        if caption:
            content["filename"] = name
        return await who.send(self.room_id, content)

    async def ask(self, who: Human, question: str) -> str:
        """A question addressed to the bot with a pill and an intentional mention, as Element sends it."""
        me = self.bot.user_id
        return await who.say(
            self.room_id, f"Pai: {question}", format="org.matrix.custom.html",
            formatted_body=f'<a href="https://matrix.to/#/{me}">Pai</a>: {question}',
            **{"m.mentions": {"user_ids": [me]}},
        )

    async def bot_says_after(self, event_id: str) -> str:
        """The body of the bot's first message after ``event_id`` (waits for it)."""
        async def until() -> str:
            while True:
                history = await self.alice.history(self.room_id)
                ids = [e.get("event_id") for e in history]
                if event_id in ids:
                    later = history[ids.index(event_id) + 1:]
                    said = [e for e in later if sent_by(self.bot.user_id)(e)]
                    if said:
                        return str(said[0]["content"]["body"])
                await asyncio.sleep(0.2)

        return await asyncio.wait_for(until(), WAIT_S)

    async def bot_messages(self) -> list[str]:
        return [e["content"]["body"] for e in await self.alice.history(self.room_id)
                if sent_by(self.bot.user_id)(e)]


@pytest.fixture
async def room(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[Room]:  # noqa: F811 - a fixture
    r = Room(synapse, tmp_path)
    try:
        await r.start()
        yield r
    finally:
        await r.close()


def the_lines_around_0_13(answer: str) -> None:
    assert "[0:13] 我把钥匙放在灯塔里了。" in answer
    assert "[0:09] Tie the boat to the old pier." in answer  # 4 s before
    assert "[0:17] Nobody leaves before the tide turns." in answer  # 6 s after
    for elsewhere in ("Good morning, captain.", "Raise the red flag", "The end of the voyage."):
        assert elsewhere not in answer


async def test_a_vtt_file_shared_in_a_matrix_room_gets_a_digest_and_timestamped_answers(room: Room) -> None:
    shared = await room.share(room.alice, "m.file", "harbour.vtt", "text/vtt", make_vtt())
    digest = await room.bot_says_after(shared)
    assert digest.startswith("🎬 Following harbour.vtt.") and "10 lines, 0:39 long" in digest

    asked = await room.ask(room.bob, "what did they say at 0:13?")
    answer = await room.bot_says_after(asked)
    assert answer.startswith("Around 0:13 in harbour.vtt:")
    the_lines_around_0_13(answer)

    asked = await room.ask(room.alice, "and at 0:26?")
    answer = await room.bot_says_after(asked)
    assert answer.startswith("Around 0:26 in harbour.vtt:") and "[0:25] Raise the red flag at noon." in answer
    assert "我把钥匙" not in answer
    assert len(await room.bot_messages()) == 3  # the digest and two answers, nothing else


async def test_a_video_with_a_subtitle_track_gets_a_digest_and_a_chinese_question_is_answered(
    room: Room, tmp_path: Path
) -> None:
    film = make_video(tmp_path / "harbour.mkv", 16, subtitles=make_srt()).read_bytes()
    shared = await room.share(room.alice, "m.video", "harbour.mkv", "video/x-matroska", film)
    digest = await room.bot_says_after(shared)
    assert digest.startswith("🎬 Following harbour.mkv.") and "10 lines" in digest

    asked = await room.ask(room.bob, "0:13 的时候他们说了什么？")
    answer = await room.bot_says_after(asked)
    assert answer.startswith("《harbour.mkv》0:13 前后：")  # asked in Chinese, answered in Chinese
    assert answer.endswith("（没有配置语言模型，所以我直接引用字幕。）")
    the_lines_around_0_13(answer)


async def test_a_subtitle_file_captioned_with_a_link_follows_the_linked_film(room: Room) -> None:
    # A client that does not know the type sends octet-stream: the .srt name is enough.
    shared = await room.share(room.alice, "m.file", "harbour.srt", "application/octet-stream", make_srt(),
                              caption="tonight's film: https://example.org/films/harbour.mp4")
    digest = await room.bot_says_after(shared)
    assert digest.startswith("🎬 Following harbour.mp4.") and "10 lines, 0:39 long" in digest

    # Correcting the caption (an m.replace repeating the file) does not start the film over.
    (event,) = [e for e in await room.alice.history(room.room_id) if e["event_id"] == shared]
    fixed = {**event["content"], "body": "tonight's film, at nine: https://example.org/films/harbour.mp4"}
    await room.alice.send(room.room_id, {**fixed, "body": "* " + fixed["body"], "m.new_content": fixed,
                                         "m.relates_to": {"rel_type": "m.replace", "event_id": shared}})

    asked = await room.ask(room.bob, "what did they say at 0:13?")
    answer = await room.bot_says_after(asked)
    assert answer.startswith("Around 0:13 in harbour.mp4:")
    the_lines_around_0_13(answer)
    assert len(await room.bot_messages()) == 2  # one digest, one answer
