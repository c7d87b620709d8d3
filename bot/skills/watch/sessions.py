"""The running watch sessions of every group, and the ``WatchControl`` the web group's players talk to.

One lock per group orders every change of its session (start, member commands, end), so two members
pressing play and pause at once end in one of the two states, seen identically by every player. Every
change is written to the store before it is shown, then pushed to the platforms that host players
(``bot.ports.WatchHost``). The clock is the injected one: playback positions are anchored to
``clock.now()`` and the adapter answers the players' pings with the same clock (``now``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from bot.errors import WatchRefused
from bot.events import ChatRef, PersonRef
from bot.i18n import N_, Translator
from bot.ports import WatchCommand, WatchHost, WatchView
from bot.services import Services
from bot.skills.watch.cues import Cue
from bot.skills.watch.store import Session, WatchStore
from bot.skills.watch.sync import BadCommand, Playback

log = logging.getLogger("paibot.skills.watch")

CUE_CACHE = 16  # sessions whose lines stay in memory (the running ones and the last asked about)
MAX_PARTICIPANTS = 500

# Said both by /watch and by the players' controls (marked here, translated where they are said).
NOTHING_RUNNING = N_(
    "Nothing is being watched here right now. Start with /watch and a video, audio file or link."
)
ONLY_STARTER_ENDS = N_("Only {name}, who started it, can end the session.")

EndHook = Callable[[Session, str], Awaitable[None]]  # (the ended session, who ended it) -> post the digest


def new_session_id() -> str:
    return secrets.token_urlsafe(9)


class WatchSessions:
    """Sessions by group, cached over the store; implements ``bot.ports.WatchControl``."""

    def __init__(self, services: Services, store: WatchStore) -> None:
        self.s = services
        self.store = store
        self._running: dict[str, Session | None] = {}
        self._cues: OrderedDict[str, list[Cue]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._hosted: set[int] = set()  # adapters (by id) that have this control
        self.on_end: EndHook | None = None  # set by the skill: posts the digest of a session a player ended

    # ----------------------------------------------------------------- reading

    def now(self) -> float:
        return self.s.clock.now().timestamp()

    def lock(self, group_key: str) -> asyncio.Lock:
        return self._locks.setdefault(group_key, asyncio.Lock())

    async def running(self, group_key: str) -> Session | None:
        if group_key not in self._running:
            self._running[group_key] = await self.store.running(group_key)
        return self._running[group_key]

    async def latest(self, group_key: str) -> Session | None:
        return await self.running(group_key) or await self.store.latest(group_key)

    async def cues_of(self, session: Session) -> list[Cue]:
        found = self._cues.get(session.id)
        if found is None:
            found = await self.store.cues(session.id)
            self._cues[session.id] = found
            while len(self._cues) > CUE_CACHE:
                self._cues.popitem(last=False)
        self._cues.move_to_end(session.id)
        return found

    # ----------------------------------------------------------------- changing (callers hold the lock)

    async def put(self, session: Session) -> Session:
        """Store a new or changed session (the group's running one unless it has ended)."""
        await self.store.save(session)
        self._running[session.group_key] = session if session.running else None
        return session

    async def add_cues(self, session: Session, cues: list[Cue], source: str, owner_id: str) -> int:
        count = await self.store.add_cues(session.id, cues, source, owner_id)
        self._cues.pop(session.id, None)
        return count

    def forget_cached(self, group_key: str, session_ids: list[str]) -> None:
        self._running.pop(group_key, None)
        for sid in session_ids:
            self._cues.pop(sid, None)

    # ----------------------------------------------------------------- players (WatchControl)

    async def current(self, chat: ChatRef) -> WatchView | None:
        session = await self.running(chat.key)
        if session is None or not session.player:
            return None
        return await self.view(session)

    async def cues(self, chat: ChatRef, session: str) -> list[tuple[float, float, str]]:
        found = await self.latest(chat.key)
        if found is None or found.id != session:
            found = await self.store.get(session)
            if found is None or found.group_key != chat.key:  # never another group's lines
                return []
        return [(c.start, c.end, c.text) for c in await self.cues_of(found)]

    async def control(self, chat: ChatRef, member: PersonRef, command: WatchCommand) -> WatchView:
        """Apply a member's player command (see ``bot.ports.WatchControl``). A refusal says why in the
        group's language."""
        ended: Session | None = None
        t = await self.s.translator(chat.key)
        async with self.lock(chat.key):
            session = await self.running(chat.key)
            if session is None or not session.player or (command.session and command.session != session.id):
                raise WatchRefused(
                    t._("That session has ended.") if command.session else t._(NOTHING_RUNNING)
                )
            starter = member.user_id == session.starter_id
            if command.action == "end":
                if session.control == "starter" and not starter:
                    raise WatchRefused(t._(ONLY_STARTER_ENDS, name=session.starter_name))
                ended = await self.end(session, member.display_name)
                changed = ended
            else:
                changed = await self.put(self._changed(session, member, command, starter, t))
        if ended is not None and self.on_end is not None:
            await self.on_end(ended, member.display_name)
        view = await self.view(changed)
        await self.show(view)
        return view

    def _changed(
        self, session: Session, member: PersonRef, command: WatchCommand, starter: bool, t: Translator
    ) -> Session:
        now = self.now()
        if command.action == "control":
            if not starter:
                who = session.starter_name
                raise WatchRefused(
                    t._("Only {name}, who started it, decides who controls playback.", name=who)
                )
            if command.value not in ("all", "starter"):
                raise WatchRefused("control must be 'all' or 'starter'")
            return self._bump(session, member, now, control=str(command.value))
        if command.action == "duration":
            if session.playback.duration is not None:
                return session  # the first player to know it says it; the others agree or are ignored
        elif session.control == "starter" and not starter:
            who = session.starter_name
            raise WatchRefused(t._("Only {name}, who started it, controls playback.", name=who))
        try:
            playback = session.playback.apply(command.action, now, command.value)
        except BadCommand as exc:
            raise WatchRefused(str(exc)) from exc
        return self._bump(session, member, now, playback=playback)

    def _bump(self, session: Session, member: PersonRef, now: float, **changes: object) -> Session:
        participants = session.participants
        if member.user_id not in participants and len(participants) < MAX_PARTICIPANTS:
            participants = {**participants, member.user_id: member.display_name}
        return dataclasses.replace(
            session,
            seq=session.seq + 1,
            furthest=session.watched_to(now),
            participants=participants,
            **changes,  # type: ignore[arg-type]
        )

    async def end(self, session: Session, by: str) -> Session:
        """End a session (the caller holds the group's lock): paused where it got to, shown as ended."""
        now = self.now()
        done = dataclasses.replace(
            session,
            playback=session.playback.pause(now),
            furthest=session.watched_to(now),
            seq=session.seq + 1,
            ended_at=self.s.clock.now(),
        )
        log.info("watch session %s in %s ended", session.id, session.group_key)  # no member names in logs
        return await self.put(done)

    # ----------------------------------------------------------------- showing

    async def view(self, session: Session) -> WatchView:
        return WatchView(
            session=session.id, chat=session.chat, title=session.title, kind=session.kind, media=session.media,
            link=session.link, starter_id=session.starter_id, starter_name=session.starter_name,
            control=session.control, playback=session.playback.to_dict(), seq=session.seq,
            cues=len(await self.cues_of(session)), ended=not session.running,
        )  # fmt: skip

    def host_of(self, chat: ChatRef) -> WatchHost | None:
        adapter = self.s.adapters.get(chat.platform)
        if not isinstance(adapter, WatchHost):
            return None
        if id(adapter) not in self._hosted:  # connected after start-up (a platform that was down)
            self._hosted.add(id(adapter))
            adapter.host_watch(self)
        return adapter

    async def show(self, view: WatchView) -> None:
        host = self.host_of(view.chat)
        if host is None:
            return
        try:
            await host.show_watch(view)
        except Exception:  # best effort by contract; players catch up from ``current``
            log.warning("could not show the watch session of %s", view.chat.key, exc_info=True)

    def attach(self) -> None:
        """Hand this control to every connected adapter that hosts players (after the adapters started;
        one that connects later gets it the first time a session of its platform is started or shown)."""
        for adapter in self.s.adapters.values():
            if isinstance(adapter, WatchHost) and id(adapter) not in self._hosted:
                self._hosted.add(id(adapter))
                adapter.host_watch(self)


def start_playback(duration: float | None, now: float) -> Playback:
    return Playback(position=0.0, at=now, duration=duration)
