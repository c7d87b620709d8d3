"""The web group's defences against a hostile client: bot-name lookalikes, strict JSON bodies, per-client
limits on posts, new members, new groups, sockets (open at once and opened per minute), socket messages and
lookups of groups that do not exist (storage quotas: ``adapters.web.quota``). Pure logic with an injected
clock; ``adapters.web.http`` calls it.

A *client* is the IP address a request comes from (``request.remote``), or, behind a reverse proxy the
operator trusts (``adapters.web.trust_forwarded_for``), the last address in ``X-Forwarded-For`` (the one the
proxy saw); an IPv6 client is its /64 network (one host commonly holds a whole /64). Nicknames, member keys
and browser state cost nothing to make, so they are not what is limited.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bot.i18n import N_, Text

# --------------------------------------------------------------------------- bot-name lookalikes

_WORDS = re.compile(r"[^\W_]+")
# Letters that neither NFKC nor the confusables table fold to ASCII but read as one in a nickname.
_EXTRA = str.maketrans({"ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ȷ": "j"})


def skeleton(text: str) -> str:
    """What ``text`` looks like, reduced: NFKC (full-width and mathematical letters), no invisible format
    characters (zero-width spaces and joiners, bidi marks, soft hyphens), no combining marks, every
    character that Unicode's confusables table says looks like a Latin letter replaced by that letter
    (Cyrillic "Р", Greek "Ρ", ...; confusable-homoglyphs), case folded."""
    from confusable_homoglyphs import confusables

    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if unicodedata.category(c) not in ("Cf", "Mn", "Me", "Cc"))  # fmt: skip
    out = []
    for c in text:
        if not c.isascii():
            found = confusables.is_confusable(c, preferred_aliases=["latin"], greedy=True) or []
            latin = [h["c"] for f in found for h in f["homoglyphs"] if h["n"].startswith("LATIN")]
            c = latin[0] if latin else c
        out.append(c)
    return "".join(out).translate(_EXTRA).casefold()


def looks_like(nickname: str, names: Iterable[str]) -> str | None:
    """The bot name ``nickname`` would pass for, or None. A nickname passes for a name when, reduced to
    their skeletons, one of its words is the name, or all its words run together are ("P.a.i", "Pai (AI
    member)", "Рai", "Pa\\u200bi" all pass for "Pai"; "Paige" and "派大星" do not pass for "Pai" and "派")."""
    words = _WORDS.findall(skeleton(nickname))
    joined = "".join(words)
    for name in names:
        target = "".join(_WORDS.findall(skeleton(name)))
        if target and (target in words or joined == target):
            return name
    return None


# --------------------------------------------------------------------------- strict JSON

MAX_DEPTH = 32
MAX_INT_DIGITS = 30


class BadJson(ValueError):
    """A body that is not acceptable JSON; its message says why (for a 400)."""


def strict_json(raw: bytes) -> Any:
    """Parse a request body: UTF-8 JSON nested at most ``MAX_DEPTH`` deep, integers of at most
    ``MAX_INT_DIGITS`` digits, no NaN or Infinity, no unpaired surrogates in strings. Raises ``BadJson``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if _too_deep(text):
        raise BadJson(f"the body is nested more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(text, parse_int=_int, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise BadJson(f"the body is not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise BadJson(str(exc) if isinstance(exc, BadJson) else "the body is not acceptable JSON") from exc
    _check_strings(data)
    return data


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BadJson(f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON number")


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than ``MAX_DEPTH`` (checked before parsing, so a deep
    body costs no recursion)."""
    depth = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            _no_surrogates(v)
        elif isinstance(v, dict):
            for k, item in v.items():
                _no_surrogates(k)
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)


def _no_surrogates(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadJson("a string in the body holds an unpaired surrogate (\\ud800-\\udfff)") from exc


# --------------------------------------------------------------------------- per-client limits


@dataclass
class Bucket:
    """A token bucket: ``burst`` at once, then ``per_s`` a second."""

    per_s: float
    burst: float
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def has(self, now: float) -> bool:
        """Whether ``take`` would succeed now (nothing taken)."""
        return min(self.burst, self.tokens + (now - self.at) * self.per_s) >= 1


@dataclass(frozen=True)
class ClientRules:
    """What one client may do (the per-client keys of ``adapters.web``); 0 means no limit."""

    sockets: int = 20  # WebSockets open at once
    socket_opens_per_minute: int = 30  # WebSockets opened (reconnects included; this many at once, then evenly)
    socket_messages_per_s: float = 2.0  # what a client's sockets send (typing included), together
    socket_burst: int = 20
    posts_per_s: float = 1.0  # messages posted (what a person can type, and a paste now and then)
    post_burst: int = 30
    groups_per_hour: int = 5  # groups created
    members_per_hour: int = 120  # members made (nicknames picked)
    misses_per_hour: int = 60  # lookups of a group number or invite that does not exist


class ClientLimits:
    """Per-client counters, kept for at most ``max_clients`` recent clients (the least recent forgotten)."""

    def __init__(self, rules: ClientRules, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:  # fmt: skip
        self.rules = rules
        self._clock = clock
        self._max = max_clients
        self._posts: OrderedDict[str, Bucket] = OrderedDict()
        self._messages: OrderedDict[str, Bucket] = OrderedDict()
        self._groups: OrderedDict[str, Bucket] = OrderedDict()
        self._misses: OrderedDict[str, Bucket] = OrderedDict()
        self._members: OrderedDict[str, Bucket] = OrderedDict()
        self._opens: OrderedDict[str, Bucket] = OrderedDict()
        self._sockets: dict[str, int] = {}

    def _bucket(self, table: OrderedDict[str, Bucket], client: str, per_s: float, burst: float) -> Bucket:
        bucket = table.get(client)
        if bucket is None:
            bucket = table[client] = Bucket(per_s, burst, burst, self._clock())
            if len(table) > self._max:
                table.popitem(last=False)
        table.move_to_end(client)
        return bucket

    def _hourly(self, table: OrderedDict[str, Bucket], client: str, per_hour: int) -> Bucket:
        """A bucket of ``per_hour`` at once, refilled evenly over the hour."""
        return self._bucket(table, client, per_hour / 3600, per_hour)

    def post(self, client: str) -> bool:
        r = self.rules
        if not r.posts_per_s:
            return True
        return self._bucket(self._posts, client, r.posts_per_s, r.post_burst).take(self._clock())

    def new_group(self, client: str) -> bool:
        r = self.rules
        if not r.groups_per_hour:
            return True
        return self._hourly(self._groups, client, r.groups_per_hour).take(self._clock())

    def new_member(self, client: str) -> bool:
        r = self.rules
        if not r.members_per_hour:
            return True
        return self._hourly(self._members, client, r.members_per_hour).take(self._clock())

    def may_look_up(self, client: str) -> bool:
        """Whether the client may look a group up now: not while it has used up its misses. Checked before
        every lookup, found or not, so a refusal says nothing about whether the group exists."""
        r = self.rules
        if not r.misses_per_hour:
            return True
        return self._hourly(self._misses, client, r.misses_per_hour).has(self._clock())

    def missed(self, client: str) -> None:
        """Count a lookup of a group or invite that does not exist."""
        r = self.rules
        if r.misses_per_hour:
            self._hourly(self._misses, client, r.misses_per_hour).take(self._clock())

    def open_socket(self, client: str) -> bool:
        """Count a socket the client opens; False (and nothing counted) past ``sockets`` open at once or
        past ``socket_opens_per_minute`` (a reconnect storm costs a refusal each, never a lookup)."""
        r = self.rules
        if r.sockets and self._sockets.get(client, 0) >= r.sockets:
            return False
        if r.socket_opens_per_minute:
            per_minute = r.socket_opens_per_minute
            if not self._bucket(self._opens, client, per_minute / 60, per_minute).take(self._clock()):
                return False
        self._sockets[client] = self._sockets.get(client, 0) + 1
        return True

    def close_socket(self, client: str) -> None:
        left = self._sockets.get(client, 0) - 1
        if left > 0:
            self._sockets[client] = left
        else:
            self._sockets.pop(client, None)

    def socket_message(self, client: str) -> bool:
        r = self.rules
        if not r.socket_messages_per_s:
            return True
        bucket = self._bucket(self._messages, client, r.socket_messages_per_s, r.socket_burst)
        return bucket.take(self._clock())


# --------------------------------------------------------------------------- what http.py consults


def client_key(address: str) -> str:
    """What limits count by: an IPv4 address as it is, an IPv6 address as its /64 network (one host or home
    gets a whole /64, so counting single addresses would let it mint clients), anything else unchanged."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class WebGuard:
    """The HTTP layer's view of the defences above: who the client is, and what it may do now."""

    def __init__(
        self, limits: ClientLimits | None, names: Iterable[str], trust_forwarded_for: bool = False
    ) -> None:
        self.limits = limits
        self.names = tuple(n for n in names if n)
        self.trust_forwarded_for = trust_forwarded_for

    def client(self, remote: str | None, forwarded_for: str | None) -> str:
        address = remote or ""
        if self.trust_forwarded_for and forwarded_for:
            address = forwarded_for.split(",")[-1].strip() or address
        return client_key(address)

    def nickname_problem(self, nickname: str) -> Text | None:
        name = looks_like(nickname, self.names)
        if name is None:
            return None
        return Text(
            N_("The nickname {nickname} belongs to the bot or looks like its name ({name}); "
               "pick another one."),
            nickname=nickname, name=name,
        )
