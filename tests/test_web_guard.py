"""The web group's defences, as pure logic (adapters.web.guard): lookalikes of the bot's name, strict JSON,
per-client limits with a manual clock. The HTTP wiring is tested over loopback in test_web_hostile.py."""

from __future__ import annotations

import json

import pytest

from adapters.web.guard import MAX_DEPTH, BadJson, ClientLimits, ClientRules, looks_like, skeleton, strict_json

NAMES = ("Pai", "派", "派派")


@pytest.mark.parametrize("nickname", [
    "Pai", "pai", "PAI", "Pa\u200bi", "P\u200dai", "\u200ePai\u200f", "Рai", "Ρаі", "Pai (AI member)",
    "Pai_bot", "P.a.i", "Ｐａｉ", "𝐏𝐚𝐢", "Pái", "the real Pai", "派", "派 (AI)", "派派", "Paı",
])
def test_lookalikes_of_the_bot_are_caught(nickname):
    assert looks_like(nickname, NAMES) is not None, skeleton(nickname)


@pytest.mark.parametrize("nickname", [
    "Paige", "Paimon", "Alice", "派大星", "小派", "Pal", "Bob Pa", "Pa", "Pie", "パイ",
])
def test_other_nicknames_pass(nickname):
    assert looks_like(nickname, NAMES) is None, skeleton(nickname)


def test_strict_json_accepts_ordinary_bodies():
    body = {"author": "Ann 🐱", "text": "hello\nworld \u4f60\u597d", "reply_to": 12, "nested": [[{"a": 1.5}]]}
    assert strict_json(json.dumps(body).encode()) == body
    assert strict_json(json.dumps(body, ensure_ascii=False).encode()) == body


@pytest.mark.parametrize("raw, why", [
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "nested"),
    (b'{"reply_to": ' + b"9" * 5000 + b"}", "digits"),
    (b'{"reply_to": -' + b"1" * 40 + b"}", "digits"),
    (b'{"text": "\\ud800"}', "surrogate"),
    (b'{"\\udfff": "x"}', "surrogate"),
    (b'{"n": NaN}', "NaN"),
    (b'{"n": -Infinity}', "Infinity"),
    (b"\xff\xfe{}", "UTF-8"),
    (b'{"text": "unterminated', "not valid JSON"),
])
def test_strict_json_refuses_what_would_crash_or_mislead(raw, why):
    with pytest.raises(BadJson) as info:
        strict_json(raw)
    assert why in str(info.value)


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = "[" * 1000 + '"]]]\\""'
    assert strict_json(json.dumps({"t": text}).encode()) == {"t": text}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_socket_messages_are_limited_per_client_whatever_the_socket():
    clock = Clock()
    limits = ClientLimits(ClientRules(socket_messages_per_s=2, socket_burst=10), clock)
    allowed = sum(limits.socket_message("10.0.0.9") for _ in range(100))  # ~100 typing messages at once
    assert allowed == 10
    assert limits.socket_message("10.0.0.8")  # another client is not affected
    clock.t += 1.0
    assert sum(limits.socket_message("10.0.0.9") for _ in range(10)) == 2


def test_sockets_per_client_are_capped_and_freed_on_close():
    limits = ClientLimits(ClientRules(sockets=3), Clock())
    assert [limits.open_socket("a") for _ in range(5)] == [True, True, True, False, False]
    limits.close_socket("a")
    assert limits.open_socket("a") and not limits.open_socket("a")


def test_new_groups_per_client_per_hour():
    clock = Clock()
    limits = ClientLimits(ClientRules(groups_per_hour=5), clock)
    assert sum(limits.new_group("a") for _ in range(1000)) == 5
    clock.t += 720  # a fifth of an hour: one more
    assert sum(limits.new_group("a") for _ in range(10)) == 1


def test_forgotten_clients_are_bounded():
    limits = ClientLimits(ClientRules(), Clock(), max_clients=100)
    for i in range(10_000):
        limits.post(f"10.{i // 256}.{i % 256}.1")
    assert len(limits._posts) == 100


def test_misses_are_counted_and_then_every_lookup_is_refused():
    clock = Clock()
    limits = ClientLimits(ClientRules(misses_per_hour=60), clock)
    for _ in range(60):
        assert limits.may_look_up("a")
        limits.missed("a")
    assert not limits.may_look_up("a")  # found or not: the refusal comes before the lookup
    assert limits.may_look_up("b")
    clock.t += 60  # one more a minute
    assert limits.may_look_up("a")
    limits.missed("a")
    assert not limits.may_look_up("a")


def test_zero_means_no_limit():
    limits = ClientLimits(ClientRules(sockets=0, socket_messages_per_s=0, posts_per_s=0, groups_per_hour=0,
                                      misses_per_hour=0), Clock())
    for _ in range(1000):
        assert limits.open_socket("a") and limits.socket_message("a") and limits.post("a")
        assert limits.new_group("a") and limits.may_look_up("a")
        limits.missed("a")
