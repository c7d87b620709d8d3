"""Watching together on a chat platform without a player, end to end through the unmodified
python-telegram-bot against the fake Bot API: a shared subtitle file gets a digest, and a question about a
moment is answered from the right lines (no model)."""

from __future__ import annotations

from tests.fake_telegram import FakeTelegram
from tests.media_factory import make_srt
from tests.test_telegram_e2e import ALICE, BOB, GROUP, MENTION, fake, mention, say, settle, world  # noqa: F401


async def test_a_subtitle_file_shared_in_a_telegram_group_gets_a_digest_and_timestamped_answers(fake, world):
    app = await world(None)
    subs = make_srt()
    fake.add_file("subs1", subs, "documents/harbour.srt")
    document = {"file_id": "subs1", "file_unique_id": "s1", "file_name": "harbour.srt",
                "mime_type": "application/x-subrip", "file_size": len(subs)}  # fmt: skip
    _, uid = await say(fake, ALICE, "", document=document, caption="tonight's film")
    await settle(fake, app, uid)
    (digest,) = fake.texts_to(GROUP)
    assert digest.startswith("🎬 Following harbour.srt.") and "10 lines, 0:39 long" in digest

    question = f"{MENTION} what did they say at 0:13?"
    _, uid = await say(fake, BOB, question, entities=mention())
    await settle(fake, app, uid)
    answer = fake.texts_to(GROUP)[-1]
    assert answer.startswith("Around 0:13 in harbour.srt:")
    assert "[0:13] 我把钥匙放在灯塔里了。" in answer and "Raise the red flag" not in answer
    assert isinstance(fake, FakeTelegram)
