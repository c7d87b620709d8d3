"""Importers for the chat exports of Chinese networks: the QQ message manager's ``.txt`` and the CSV that
the common WeChat export tools write (``localId, CreateTime, IsSender, StrContent, NickName, Sender``).

Both hold local wall-clock times without a zone: the caller passes the zone (``--tz``, default UTC+08:00).
Like ``memory.importers``, each reader yields ``MemoryRecord``s or ``ImportProblem``s in file order and
raises ``MemoryError_`` only for a file it cannot read as that format at all (saying what it expected).

Identity: a record's id is ``qq:`` / ``wechat:`` and a digest of its time, author and text (plus how many
identical messages came before it in the same second), so importing the same file again, or a later export
that contains it, adds nothing twice. Authors are the platform ids where the export has them: the QQ
number, which is what the ``onebot`` adapter uses for members (``author_id`` ``"123456789"``), and the
WeChat id (``wxid_...``) for WeChat, which no adapter sees (personal WeChat has no bot interface; WeCom ids
differ). Message ids of the live adapters cannot be derived from an export: history imported for a period
the bot also recorded live is kept twice.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

from bot.errors import MemoryError_
from bot.ports import MemoryRecord
from memory.importers import ImportProblem

FORMATS = ("qq", "wechat")
DEFAULT_TZ = "+08:00"
WECHAT_COLUMNS = ("localId", "CreateTime", "IsSender", "StrContent", "NickName", "Sender")
QQ_SYSTEM = "10000"  # the QQ number of system notices (joins, recalls)
WECHAT_KINDS = {"3": "[图片]", "34": "[语音]", "43": "[视频]", "47": "[表情]", "49": "[文件]"}

_QQ_HEADER = re.compile(
    r"^(\d{4}-\d{1,2}-\d{1,2}) (\d{1,2}:\d{2}:\d{2}) (.*?)(?:\((\d{4,12})\)|<([^<>\s]+)>)\s*$"
)


def parse_tz(value: str | None) -> tzinfo:
    """``+08:00`` / ``-05:30`` / ``UTC`` / an IANA name (``Asia/Shanghai``)."""
    text = (value or DEFAULT_TZ).strip()
    m = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?", text)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise MemoryError_(f"--tz {text!r} is not a UTC offset")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    if text.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MemoryError_(f"--tz {text!r} is neither a UTC offset like +08:00 nor a time zone name") from exc


def describe_tz(value: str | None) -> str:
    text = (value or DEFAULT_TZ).strip()
    return f"UTC{text}" if text[:1] in "+-" else text


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    for encoding in ("utf-8-sig", "gb18030"):  # exports from Chinese Windows are often GB18030
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MemoryError_(f"{path} is neither UTF-8, UTF-16 nor GB18030 text")


class _Ids:
    """Stable record ids: a digest of time, author and text, with the count of identical ones before."""

    def __init__(self, prefix: str, group_key: str) -> None:
        self._prefix, self._group = prefix, group_key
        self._seen: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, when: datetime, author_id: str, text: str) -> str:
        key = (when.isoformat(), author_id, text)
        n = self._seen[key]
        self._seen[key] += 1
        raw = "\x1f".join((self._group, *key, str(n))).encode()
        return f"{self._prefix}:{hashlib.sha256(raw).hexdigest()[:20]}"


def _record(
    pai: str, chat: str, rid: str, author_id: str, author: str, text: str, when: datetime
) -> MemoryRecord:
    return MemoryRecord(
        id=rid, pai=pai, chat_key=chat, author_id=author_id, author_name=author, text=text, sent_at=when
    )


# --------------------------------------------------------------------------- QQ message manager .txt


def read_qq(path: Path, group_key: str, pai: str, tz: tzinfo) -> Iterator[MemoryRecord | ImportProblem]:
    """A ``.txt`` export of one chat from QQ's message manager (消息管理器 -> 导出消息记录 -> txt)."""
    lines = _read_text(path).splitlines()
    objects = [ln for ln in lines if ln.startswith("消息对象:") or ln.startswith("消息对象：")]
    if not any(_QQ_HEADER.match(ln) for ln in lines[:400]) and not objects:
        raise MemoryError_(
            f"{path} does not look like a QQ message manager export (.txt): expected lines like "
            "'2024-03-01 20:15:01 昵称(123456789)' followed by the message"
        )
    if len(objects) > 1:
        raise MemoryError_(f"{path} holds {len(objects)} chats; export the one group you want to import")
    ids = _Ids("qq", group_key)
    current: tuple[int, datetime, str, str] | None = None  # (line number, time, author id, name)
    body: list[str] = []

    def flush() -> Iterator[MemoryRecord | ImportProblem]:
        if current is None:
            return
        n, when, author_id, name = current
        text = "\n".join(body).strip()
        if author_id == QQ_SYSTEM:
            return  # joins, recalls and other notices are not conversation
        if not text:
            yield ImportProblem(f"line {n}", "a message without text")
            return
        yield _record(pai, group_key, ids(when, author_id, text), author_id, name or author_id, text, when)

    for n, line in enumerate(lines, 1):
        m = _QQ_HEADER.match(line)
        if m is None:
            if current is not None:
                body.append(line)
            continue
        yield from flush()
        body = []
        try:
            naive = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S")
        except ValueError:
            current = None
            yield ImportProblem(f"line {n}", f"not a date and time: {m.group(1)} {m.group(2)}")
            continue
        name = re.sub(r"^【[^】]*】", "", m.group(3)).strip()
        current = (n, naive.replace(tzinfo=tz).astimezone(timezone.utc), m.group(4) or m.group(5), name)
    yield from flush()


# --------------------------------------------------------------------------- WeChat export CSV


def read_wechat(path: Path, group_key: str, pai: str, tz: tzinfo) -> Iterator[MemoryRecord | ImportProblem]:
    """The CSV of WeChat export tools: one row per message, columns ``localId, CreateTime, IsSender,
    StrContent, NickName, Sender`` (others, like ``Type``, are read when present). ``CreateTime`` is Unix
    seconds or a local ``YYYY-MM-DD HH:MM:SS``."""
    reader = csv.DictReader(_read_text(path).splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in WECHAT_COLUMNS if c not in columns]
    if missing:
        raise MemoryError_(
            f"{path} is not a WeChat export CSV: it lacks the column(s) {', '.join(missing)} "
            f"(expected {', '.join(WECHAT_COLUMNS)})"
        )
    ids = _Ids("wechat", group_key)
    for n, row in enumerate(reader, 2):
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        try:
            when = _wechat_time(row["CreateTime"], tz)
        except ValueError:
            yield ImportProblem(f"row {n}", f"CreateTime is not a time: {row['CreateTime']!r}")
            continue
        kind = row.get("Type", "1").strip() or "1"
        if kind == "10000":
            continue  # system notices
        text = row["StrContent"].strip() if kind == "1" else WECHAT_KINDS.get(kind, "")
        if not text:
            yield ImportProblem(f"row {n}", "a message without text")
            continue
        own = row["IsSender"].strip() == "1"
        author_id = row["Sender"].strip() or ("me" if own else row["NickName"].strip())
        if not author_id:
            yield ImportProblem(f"row {n}", "no Sender or NickName")
            continue
        name = row["NickName"].strip() or author_id
        yield _record(pai, group_key, ids(when, author_id, text), author_id, name, text, when)


def _wechat_time(value: str, tz: tzinfo) -> datetime:
    value = value.strip()
    if value.isdigit():
        seconds = int(value)
        if seconds > 10**11:  # milliseconds
            seconds //= 1000
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).astimezone(timezone.utc)


# --------------------------------------------------------------------------- entry points


def guess(path: Path) -> str | None:
    """``qq`` or ``wechat`` when the file looks like one of them, else None."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError:
        return None
    for encoding in ("utf-8-sig", "utf-16", "gb18030"):
        try:
            text = head.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    if "消息记录" in text or "消息对象" in text or any(_QQ_HEADER.match(ln) for ln in text.splitlines()[:50]):
        return "qq"
    first = text.splitlines()[0] if text else ""
    if all(c in first for c in ("CreateTime", "StrContent")):
        return "wechat"
    return None


def read(
    path: Path, fmt: str, group_key: str, pai: str, tz: str | None
) -> Iterator[MemoryRecord | ImportProblem]:
    if fmt not in FORMATS:
        raise MemoryError_(f"unknown chat export format {fmt!r} (use one of {', '.join(FORMATS)})")
    zone = parse_tz(tz)
    try:
        yield from (read_qq if fmt == "qq" else read_wechat)(path, group_key, pai, zone)
    except OSError as exc:
        raise MemoryError_(f"cannot read {path}: {exc}") from exc
