"""Web group members for tests and scripts: a member key per nickname, made on first use.

The web group proves who posts with member keys (``POST /api/members`` then ``Authorization: Member <key>``).
``member_headers(http, "Alice")`` returns Alice's headers for this client session, creating her once; pass
``base`` when the session has no base URL. ``member_key(base_url, nickname)`` does the same without a
session (for blocking clients such as urllib).
"""

from __future__ import annotations

import json
import urllib.request
import weakref
from typing import Any

_by_session: weakref.WeakKeyDictionary[Any, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()


async def new_member(http: Any, nickname: str, base: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``{"author_id", "nickname", "key"}`` of a new member (fails the test unless the server made one)."""
    resp = await http.post(f"{base}/api/members", json={"nickname": nickname}, headers=headers or {})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def member_headers(http: Any, nickname: str, base: str = "", headers: dict[str, str] | None = None) -> dict[str, str]:
    """``Authorization: Member <key>`` of the member called ``nickname`` in this session (made on first use)."""
    known = _by_session.setdefault(http, {})
    if nickname not in known:
        member = await new_member(http, nickname, base, headers)
        known[nickname] = {"Authorization": f"Member {member['key']}", "X-Author-Id": member["author_id"]}
    return {"Authorization": known[nickname]["Authorization"]}


def author_id_of(http: Any, nickname: str) -> str:
    return _by_session[http][nickname]["X-Author-Id"]


def member_key(base_url: str, nickname: str, extra_headers: dict[str, str] | None = None) -> dict[str, str]:
    """Blocking: a new member's ``Authorization`` header."""
    req = urllib.request.Request(
        f"{base_url}/api/members", data=json.dumps({"nickname": nickname}).encode(), method="POST",
        headers={"Content-Type": "application/json", **(extra_headers or {})},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return {"Authorization": f"Member {json.loads(resp.read())['key']}"}
