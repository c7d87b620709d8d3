"""The web group's defences, as pure logic (adapters.web.guard): lookalikes of the bot's name, strict JSON,
per-client limits with a manual clock. The HTTP wiring is tested over loopback in test_web_hostile.py."""

from __future__ import annotations

import json

import pytest

from adapters.web.guard import (
    MAX_DEPTH,
    BadJson,
    ClientLimits,
    ClientRules,
    WebGuard,
    looks_like,
    skeleton,
    strict_json,
)
from adapters.web.quota import QuotaExceeded, StorageQuota

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
    limits = ClientLimits(ClientRules(sockets=0, socket_opens_per_minute=0, socket_messages_per_s=0, posts_per_s=0,
                                      groups_per_hour=0, members_per_hour=0, misses_per_hour=0), Clock())
    for _ in range(1000):
        assert limits.open_socket("a") and limits.socket_message("a") and limits.post("a")
        assert limits.new_group("a") and limits.new_member("a") and limits.may_look_up("a")
        limits.missed("a")


def test_a_reconnect_storm_is_cut_to_the_opens_per_minute_while_tabs_and_reconnects_still_open():
    clock = Clock()
    limits = ClientLimits(ClientRules(sockets=20, socket_opens_per_minute=30), clock)
    for _ in range(5):  # five tabs, each reopening its socket twice (a nickname picked, a network blip)
        for _ in range(3):
            assert limits.open_socket("a")
            limits.close_socket("a")
    opened = 0
    for _ in range(10_000):  # a script opening and closing as fast as it can
        if limits.open_socket("a"):
            opened += 1
            limits.close_socket("a")
    assert opened == 15  # what was left of the burst of 30, then nothing until time passes
    clock.t += 60
    assert sum(limits.open_socket("a") for _ in range(100)) == 20  # a minute later: 30 more, but 20 open at once
    assert limits.open_socket("b")  # another address is not affected


def test_new_members_per_client_per_hour():
    clock = Clock()
    limits = ClientLimits(ClientRules(members_per_hour=120), clock)
    assert sum(limits.new_member("a") for _ in range(1000)) == 120
    clock.t += 30  # one more every 30 s
    assert sum(limits.new_member("a") for _ in range(10)) == 1


@pytest.mark.parametrize("remote, forwarded, trusted, client", [
    ("203.0.113.7", None, False, "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", None, False, "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:1:2:3", None, False, "2001:db8:1:2::/64"),  # the same /64: the same client
    ("::ffff:198.51.100.4", None, False, "198.51.100.4"),
    ("10.0.0.1", "198.51.100.9, 192.0.2.1", False, "10.0.0.1"),  # a proxy's header is not trusted by default
    ("10.0.0.1", "198.51.100.9, 192.0.2.1", True, "192.0.2.1"),  # trusted: the address the proxy saw
    ("10.0.0.1", "2001:db8:9:9::5", True, "2001:db8:9:9::/64"),
    ("10.0.0.1", " ", True, "10.0.0.1"),
])
def test_a_client_is_an_ip_address_and_an_ipv6_client_its_64(remote, forwarded, trusted, client):
    assert WebGuard(None, (), trust_forwarded_for=trusted).client(remote, forwarded) == client


def test_quota_reservations_are_checked_and_counted_in_one_step():
    stored = {"g": 0}
    quota = StorageQuota(1000, 1500, lambda group: stored.get(group, 0) if group else sum(stored.values()))
    first = quota.reserve("g", 400)
    second = quota.reserve("g", 400)
    with pytest.raises(QuotaExceeded) as refused:
        quota.reserve("g", 400)  # 1,200 > 1,000 with the two in flight, though nothing is stored yet
    assert "This group has used its storage" in str(refused.value)
    second.use(600)  # more than it reserved (no length was known): it grows, while the quota allows
    with pytest.raises(QuotaExceeded):
        second.use(1)
    assert quota.reserved("g") == 1000 and second.used == 600
    second.release()  # its message failed: the space is free again
    first.use(300)
    first.keep()  # only what was written counts; the 100 it did not use are free again
    stored["g"] = 300
    assert quota.reserved() == 0
    third = quota.reserve("g", 700)
    third.use(700)
    third.keep()
    third.keep()  # settling twice changes nothing
    stored["g"] = 1000  # its message is in the store now
    with pytest.raises(QuotaExceeded):
        quota.reserve("g", 1)
    other = quota.reserve("h", 500)  # the total (1,500) is reached: 1,000 kept in g, 500 here
    with pytest.raises(QuotaExceeded) as full:
        quota.reserve("i", 1)
    assert "storage is full" in str(full.value)
    other.release()
    quota.reserve("i", 1).release()
    assert quota.reserved() == 0


def test_a_message_kept_while_the_store_is_measured_is_not_lost_from_the_count():
    stored = {"g": 0}

    def measure(group: str | None) -> int:
        before = stored["g"]  # this measurement reads the store before the other message's row is there
        if group == "g" and in_flight.used and stored["g"] == 0:
            stored["g"] = 600  # ... and meanwhile that message is written and kept
            in_flight.keep()
        return before

    quota = StorageQuota(1000, 0, measure)
    quota._stored["g"] = 0  # measured once already
    in_flight = quota.reserve("g", 600)
    in_flight.use(600)
    quota.reserve("g", 350).release()  # near the quota: measured again, while the 600 are kept
    with pytest.raises(QuotaExceeded):
        quota.reserve("g", 401)  # 600 + 401 > 1,000: the kept 600 still count
