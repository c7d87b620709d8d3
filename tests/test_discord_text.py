"""Discord text rules: splitting at 2000 characters, mass-ping neutralising, nonces."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.discord.text import neutralize_mass_pings, nonce_for, split_message, text_poll


def test_short_text_is_one_part_and_blank_text_none() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("  \n ") == []


def test_prefers_paragraphs_then_lines_then_words() -> None:
    para = "a" * 1200
    assert split_message(f"{para}\n\n{para}") == [para, para]
    words = ("word " * 900).strip()
    parts = split_message(words)
    assert all(len(p) <= 2000 and not p.startswith(" ") and not p.endswith(" ") for p in parts)
    assert " ".join(parts) == words


def test_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "```python\n" + "\n".join(f"x = {i}" for i in range(400)) + "\n```"
    parts = split_message(code)
    assert len(parts) >= 2
    assert parts[0].endswith("\n```") and parts[1].startswith("```python\n")
    assert all(p.count("```") % 2 == 0 for p in parts)


@given(st.text(alphabet=st.characters(blacklist_characters="`"), max_size=7000))
def test_every_part_fits_and_nothing_but_whitespace_is_lost(text: str) -> None:
    parts = split_message(text)
    assert all(0 < len(p) <= 2000 for p in parts)
    assert "".join("".join(p.split()) for p in parts) == "".join(text.split())


def test_mass_pings_are_neutralised_but_lookalike_words_are_not() -> None:
    out = neutralize_mass_pings("@everyone and @here, listen")
    assert "@everyone " not in out and "@here" not in out
    assert neutralize_mass_pings("@hereford") == "@hereford"


def test_nonces_are_short_deterministic_and_distinct_per_part() -> None:
    key = "discord:123456789012345678901"
    assert nonce_for(key, 0) == nonce_for(key, 0) and nonce_for(key, 0) != nonce_for(key, 1)
    assert len(nonce_for(key, 0)) <= 25


def test_text_poll_lists_options() -> None:
    assert text_poll("Where?", ("park", "beach")).splitlines()[1:] == ["1. park", "2. beach"]
