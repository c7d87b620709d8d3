"""Telegram text rules (UTF-16 lengths, splitting, links) and flow control (backoff, pacing), without I/O."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.telegram.flow import Backoff, ChatPacer, Pacing
from adapters.telegram.text import escape_markdown_v2, message_link, split_text, truncate, utf16_len, utf16_slice
from tests.fakes import ManualClock


def test_utf16_len_counts_astral_characters_twice():
    assert utf16_len("abc") == 3
    assert utf16_len("😀") == 2
    assert utf16_len("中文") == 2
    assert utf16_len("𠀀") == 2  # CJK extension B


def test_utf16_slice_addresses_text_like_telegram_entities():
    text = "😀 @bot hi"
    assert utf16_slice(text, 3, 4) == "@bot"
    assert utf16_slice(text, 50, 4) == ""  # out of range: empty, never an exception
    assert utf16_slice(text, -1, 2) == ""


def test_split_prefers_paragraphs_then_lines_then_words():
    para = "a" * 60
    assert split_text(f"{para}\n\n{para}", 100) == [para, para]
    words = " ".join(["word"] * 40)  # 199 chars
    parts = split_text(words, 100)
    assert all(p.endswith("word") for p in parts) and " ".join(parts) == words


def test_split_cuts_hard_when_there_is_no_boundary_and_never_halves_an_emoji():
    assert split_text("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]
    parts = split_text("😀" * 101, 100)
    assert [utf16_len(p) for p in parts] == [100, 100, 2]


def test_split_of_blank_text_is_empty():
    assert split_text("  \n\n ") == []
    assert split_text("short") == ["short"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \n.😀中")), max_size=600), st.integers(min_value=2, max_value=120))
def test_split_properties(text, limit):
    parts = split_text(text, limit)
    assert all(0 < utf16_len(p) <= limit for p in parts)
    assert all(p == p.strip() for p in parts)
    # Nothing but whitespace at the cuts is lost, and the order is kept.
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


def test_truncate_marks_the_cut():
    assert truncate("hello", 10) == "hello"
    assert truncate("hello world", 8) == "hello w…"
    assert utf16_len(truncate("😀" * 10, 7)) <= 7


def test_message_links():
    assert message_link(-1001234567890, 5) == "https://t.me/c/1234567890/5"
    assert message_link(-1001234567890, 5, thread_id=3) == "https://t.me/c/1234567890/3/5"
    assert message_link(-1001234567890, 5, "public_group") == "https://t.me/public_group/5"
    assert message_link(-4242, 5) == "" and message_link(42, 5) == ""


def test_markdown_v2_escape_covers_every_reserved_character():
    assert escape_markdown_v2("a_b*c[d](e)~`>#+-=|{}.!\\") == "a\\_b\\*c\\[d\\]\\(e\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\"


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets():
    b = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 2.0 <= delays[2] <= 4.0
    assert all(4.0 <= d <= 8.0 for d in delays[4:])
    b.reset()
    assert b.next_delay() <= 1.0


async def test_pacer_spaces_messages_per_chat_and_caps_a_group_per_minute():
    clock = ManualClock()
    pacer = ChatPacer(clock, Pacing(chat_interval_s=1.0, group_per_minute=20, global_per_second=30))
    for _ in range(25):
        await pacer.wait_slot(-100, is_group=True)
    # 1 s apart for the first 20, then the 21st waits until the first leaves the one-minute window.
    assert clock.slept[:19] == [1.0] * 19
    assert sum(clock.slept) >= 60.0


async def test_pacer_hold_delays_the_chat_for_a_flood_wait_only():
    clock = ManualClock()
    pacer = ChatPacer(clock, Pacing(chat_interval_s=0.0, group_per_minute=0, global_per_second=0))
    pacer.hold(1, 5.0)
    await pacer.wait_slot(2, is_group=False)
    assert clock.slept == []
    await pacer.wait_slot(1, is_group=False)
    assert clock.slept == [5.0]


async def test_pacer_turns_are_first_come_first_served():
    pacer = ChatPacer(ManualClock())
    order: list[int] = []

    async def take(i: int) -> None:
        async with pacer.turn(7):
            await asyncio.sleep(0)
            order.append(i)

    await asyncio.gather(*(take(i) for i in range(10)))
    assert order == list(range(10))
