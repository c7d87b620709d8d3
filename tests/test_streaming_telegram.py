"""Streamed replies in Telegram: fake Bot API server <- unmodified python-telegram-bot <- the Telegram adapter
<- App with a streaming scripted model and ``llm.stream`` on."""

from __future__ import annotations

from adapters.telegram.text import utf16_len
from tests.fakes import ScriptedLLM
from tests.test_telegram_e2e import ALICE, MENTION, fake, mention, say, settle, world  # noqa: F401 - fixtures

STREAM_ON = "llm: {stream: true}\n"
ANSWER = (
    "The lake trail on Saturday: Bob drives, Carol brings lunch, and everyone meets at the station at nine. "
    "If it rains, the group goes to the museum instead."
)


async def test_a_streamed_answer_is_one_quoted_message_edited_into_the_whole_answer(fake, world):  # noqa: F811
    app = await world(ScriptedLLM([ANSWER], chunk_chars=12), STREAM_ON)
    asked, uid = await say(fake, ALICE, f"{MENTION} what is the plan?", entities=mention())
    await settle(fake, app, uid)
    (reply,) = fake.sent
    assert reply["reply_to_message"]["message_id"] == asked["message_id"]
    assert ANSWER.startswith(reply["_params"]["text"]) and len(reply["_params"]["text"]) < len(ANSWER)
    assert fake.edits and {e["message_id"] for e in fake.edits} == {reply["message_id"]}
    assert fake.edits[-1]["text"] == ANSWER


async def test_a_streamed_answer_past_telegrams_limit_continues_in_follow_ups_without_losing_text(
    fake, world  # noqa: F811
):
    paragraph = "Day {n} of the trip 🏔️: we walk along the ridge, eat by the 🌊 lake and sleep in the hut. "
    answer = "".join(paragraph.format(n=n) for n in range(120)).strip()  # ~10,000 characters, emoji included
    app = await world(ScriptedLLM([answer], chunk_chars=400), STREAM_ON)
    _, uid = await say(fake, ALICE, f"{MENTION} tell me everything", entities=mention())
    await settle(fake, app, uid)
    first, *follow_ups = fake.sent
    final_head = fake.edits[-1]["text"]
    assert fake.edits[-1]["message_id"] == first["message_id"]
    assert all(utf16_len(e["text"]) <= 4096 for e in fake.edits)
    assert len(follow_ups) >= 2 and all(utf16_len(m["_params"]["text"]) <= 4096 for m in follow_ups)
    shown = " ".join([final_head, *(m["_params"]["text"] for m in follow_ups)])
    assert shown.split() == answer.split()  # every word arrives once, in order
