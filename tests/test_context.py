"""Context assembly: who said what and when, quoted replies, recalled memories, the token budget."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bot.context import build_prompt, estimate_tokens
from bot.events import ReplyRef
from bot.ports import MemoryHit, MemoryRecord
from tests.fakes import make_message

UTC = ZoneInfo("UTC")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def rec(i: int, author: str, text: str, reply_to: str | None = None, minutes: int | None = None) -> MemoryRecord:
    return MemoryRecord(id=f"r{i}", pai="g", chat_key="g", author_id=author.lower(), author_name=author,
                        text=text, sent_at=T0 + timedelta(minutes=minutes if minutes is not None else i),
                        reply_to_id=reply_to)


def test_recent_turns_carry_author_time_and_the_quoted_message():
    recent = [rec(1, "Alice", "Pizza tonight?"), rec(2, "Bob", "Yes, at Luigi's", reply_to="r1")]
    trigger = make_message("@Pai what did Bob say?", name="Carol", reply_to=ReplyRef("r2", "Yes, at Luigi's"))
    parts = build_prompt(system="sys", trigger=trigger, question="what did Bob say?", recent=recent, hits=[],
                         tz=UTC, budget_tokens=4000)
    text = parts.render()[1]["content"]
    assert "[2026-11-01 09:01] Alice: Pizza tonight?" in text
    assert '[2026-11-01 09:02] Bob (replying to Alice: "Pizza tonight?"): Yes, at Luigi\'s' in text
    assert "Carol is asking you: what did Bob say?" in text
    assert '(replying to someone: "Yes, at Luigi\'s")' in text


def test_recalled_hits_are_shown_apart_in_time_order_without_duplicating_recent_ones():
    recent = [rec(10, "Dan", "hello", minutes=100)]
    hits = [MemoryHit(rec(3, "Eve", "venue is the Blue Hall", minutes=3), 0.9),
            MemoryHit(rec(1, "Fay", "Blue Hall books out fast", minutes=1), 0.5),
            MemoryHit(recent[0], 0.4)]
    parts = build_prompt(system="s", trigger=make_message("@Pai venue?"), question="venue?", recent=recent,
                         hits=hits, tz=UTC, budget_tokens=4000)
    assert [line.split("] ")[1][:3] for line in parts.recalled] == ["Fay", "Eve"]
    assert len(parts.recent) == 1


def test_budget_keeps_the_request_and_the_newest_turns():
    recent = [rec(i, "Al", f"message number {i} " + "blah " * 30) for i in range(200)]
    parts = build_prompt(system="s", trigger=make_message("@Pai sum up"), question="sum up", recent=recent,
                         hits=[], tz=UTC, budget_tokens=1500)
    assert parts.tokens() <= 1500
    assert "message number 199" in parts.recent[-1]
    assert "message number 0 " not in "\n".join(parts.recent)
    assert "sum up" in parts.request


def test_cjk_is_counted_per_character():
    assert estimate_tokens("你好世界") >= 4
