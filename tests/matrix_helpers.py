"""Test doubles for the Matrix tests: a recording intake sink and a scripted human on a real homeserver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from nio import AsyncClient, AsyncClientConfig, ErrorResponse, MessageDirection, RoomCreateResponse

from bot.events import Message
from tests.synapse_server import MatrixUser, SynapseServer

WAIT_S = 30.0


class RecordingSink:
    """An in-memory ``IntakeSink``: deduplicates by event id, keeps cursors, counts submits."""

    def __init__(self) -> None:
        self.events: dict[str, Message] = {}
        self.order: list[Message] = []
        self.cursors: dict[str, str] = {}
        self.duplicates = 0

    async def submit(self, events: Sequence[Message], *, cursor_key: str | None = None,
                     cursor: str | None = None) -> int:
        new = 0
        for e in events:
            if e.event_id in self.events:
                self.duplicates += 1
                continue
            self.events[e.event_id] = e
            self.order.append(e)
            new += 1
        if cursor_key is not None and cursor is not None:
            self.cursors[cursor_key] = cursor
        return new

    async def cursor(self, key: str) -> str | None:
        return self.cursors.get(key)

    async def seen(self, event_id: str) -> bool:
        return event_id in self.events

    def texts(self, room_id: str) -> list[str]:
        return [m.text for m in self.order if m.chat.chat_id == room_id]

    async def wait_for(self, pred: Callable[[Message], bool], n: int = 1) -> list[Message]:
        """The recorded messages matching ``pred`` once there are at least ``n`` (fails after WAIT_S)."""
        async def until() -> list[Message]:
            while True:
                hits = [m for m in self.order if pred(m)]
                if len(hits) >= n:
                    return hits
                await asyncio.sleep(0.1)

        return await asyncio.wait_for(until(), WAIT_S)


class Human:
    """A person on the homeserver, driven through an unmodified nio client."""

    def __init__(self, server: SynapseServer, user: MatrixUser) -> None:
        self.user = user
        self.client = AsyncClient(server.base_url, user.user_id, device_id=user.device_id,
                                  config=AsyncClientConfig(encryption_enabled=False))
        self.client.access_token = user.access_token
        self.client.user_id = user.user_id

    async def close(self) -> None:
        await self.client.close()

    async def create_room(self, *, invite: Sequence[str] = (), name: str = "Group", encrypted: bool = False,
                          is_direct: bool = False) -> str:
        state = [{"type": "m.room.encryption", "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
        resp = await self.client.room_create(name=name, invite=list(invite), initial_state=state,
                                             is_direct=is_direct)
        assert isinstance(resp, RoomCreateResponse), resp
        return resp.room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        resp = await self.client.room_invite(room_id, user_id)
        assert not isinstance(resp, ErrorResponse), resp

    async def join(self, room_id: str) -> None:
        resp = await self.client.join(room_id)
        assert not isinstance(resp, ErrorResponse), resp

    async def send(self, room_id: str, content: dict[str, Any]) -> str:
        resp = await self.client.room_send(room_id, "m.room.message", content)
        assert not isinstance(resp, ErrorResponse), resp
        return str(resp.event_id)

    async def say(self, room_id: str, text: str, **extra: Any) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": text, **extra})

    async def membership(self, room_id: str, user_id: str) -> str:
        resp = await self.client.room_get_state_event(room_id, "m.room.member", user_id)
        if isinstance(resp, ErrorResponse):
            return ""
        return str(getattr(resp, "content", {}).get("membership", ""))

    async def wait_membership(self, room_id: str, user_id: str, membership: str) -> None:
        async def until() -> None:
            while await self.membership(room_id, user_id) != membership:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(until(), WAIT_S)

    async def history(self, room_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The room's latest events, oldest first (raw dicts)."""
        resp = await self.client.room_messages(room_id, start="", direction=MessageDirection.back,
                                               limit=limit)
        assert not isinstance(resp, ErrorResponse), resp
        return [e.source for e in reversed(resp.chunk)]

    async def wait_events(self, room_id: str, pred: Callable[[dict[str, Any]], bool], n: int = 1,
                          ) -> list[dict[str, Any]]:
        async def until() -> list[dict[str, Any]]:
            while True:
                hits = [e for e in await self.history(room_id) if pred(e)]
                if len(hits) >= n:
                    return hits
                await asyncio.sleep(0.2)

        return await asyncio.wait_for(until(), WAIT_S)


def sent_by(user_id: str, msgtype: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def pred(e: dict[str, Any]) -> bool:
        content = e.get("content") or {}
        return (e.get("type") == "m.room.message" and e.get("sender") == user_id
                and (msgtype is None or content.get("msgtype") == msgtype))

    return pred
