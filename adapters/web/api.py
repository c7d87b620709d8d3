"""What the web group's JSON API refuses and how it reads a request: ``ApiError`` (a status and a message a
person may read, translated) and the checks of names, texts and ids, JSON bodies, forms and the non-file
fields of a multipart upload. Nothing here knows groups or members (``adapters.web.http`` does)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from adapters.web.guard import BadJson, strict_json
from bot.i18n import Text

if TYPE_CHECKING:
    from aiohttp import BodyPartReader

MAX_BODY_BYTES = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024  # one non-file field of a multipart upload
CHUNK = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class ApiError(Exception):
    """A request the API refuses; becomes ``{"error": message}`` with ``status``. A ``Text`` message (one a
    person may read on the page) is translated into the request's language (``?lang=`` or
    ``Accept-Language``). A 401 says what it needs in ``need``: ``"token"`` (the server's access token) or
    ``"member"`` (a member key: none was sent, or the one sent no longer signs anyone in)."""

    def __init__(self, status: int, message: str | Text, *, need: str = "") -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message
        self.need = need

    def body(self, said: str) -> dict[str, str]:
        """The JSON answer, with ``said`` the message as the request's reader gets it."""
        return {"error": said, "need": self.need} if self.need else {"error": said}


def clean_line(value: Any, field: str, max_chars: int) -> str:
    """A one-line name: text, control characters removed, whitespace collapsed, 1..max_chars long."""
    if not isinstance(value, str):
        raise ApiError(400, f"'{field}' must be text")
    line = " ".join(_CONTROL.sub("", value).split())
    if not line:
        raise ApiError(400, f"'{field}' must not be empty")
    if len(line) > max_chars:
        raise ApiError(400, f"'{field}' is longer than {max_chars} characters")
    return line


def clean_text(value: Any, max_chars: int, *, allow_empty: bool = False) -> str:
    if value is None and allow_empty:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "'text' must be text")
    text = _CONTROL.sub("", value.replace("\r\n", "\n")).strip()
    if not text and not allow_empty:
        raise ApiError(400, "'text' must not be empty")
    if len(text) > max_chars:
        raise ApiError(413, f"'text' is longer than {max_chars} characters")
    return text


def parse_id(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise ApiError(400, f"'{field}' must be a message id")
    if isinstance(value, str) and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < 2**63:  # SQLite integers are 64-bit
        raise ApiError(400, f"'{field}' must be a message id (a whole number)")
    return value


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"request body is larger than {MAX_BODY_BYTES} bytes") from exc
    except (ConnectionError, EOFError) as exc:
        raise ApiError(400, "the request body was cut short") from exc
    try:
        data = strict_json(raw)
    except BadJson as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


async def chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def read_field(part: BodyPartReader) -> str:
    raw = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        raw += chunk
        if len(raw) > MAX_FIELD_BYTES:
            raise ApiError(413, f"the field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the field {part.name!r} is not UTF-8 text") from exc


def content_disposition(disposition: str, name: str) -> str:
    """``inline``/``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


async def read_form(request: web.Request) -> dict[str, Any]:
    try:
        posted = await request.post()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"request body is larger than {MAX_BODY_BYTES} bytes") from exc
    except ValueError as exc:
        raise ApiError(400, f"not a valid form: {exc}") from exc
    return {k: v for k, v in posted.items() if isinstance(v, str)}
