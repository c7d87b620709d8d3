"""Cross-cutting policies as middleware chains, as python-telegram-bot and aiogram do.

A middleware is an async callable ``(subject, call_next)``: it may look at or change the subject, skip
``call_next`` (nothing inner runs then) or act after it returns. ``chain`` nests a list of them, outermost
first, around a handler. The member runs three chains (``bot.member``), assembled by the composition root
from ``bot.middlewares``:

    gates      Turn         after the policy decided, before anything that may cost: may this message be
                            answered now?  quiet hours -> rate limits -> daily budget
    answering  Turn         around producing an answer (a command, or the model): the typing indicator
    replies    ReplyDraft   around claiming and sending a reply (``bot.delivery``): the welcome note
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.events import Message

T = TypeVar("T")
Handler = Callable[[T], Awaitable[None]]
Middleware = Callable[[T, Handler[T]], Awaitable[None]]
Hook = Callable[[], Awaitable[Any]]


def chain(middlewares: Sequence[Middleware[T]], handler: Handler[T]) -> Handler[T]:
    """``handler`` wrapped in ``middlewares``, the first one outermost."""

    def wrap(middleware: Middleware[T], inner: Handler[T]) -> Handler[T]:
        async def run(subject: T) -> None:
            await middleware(subject, inner)

        return run

    for middleware in reversed(middlewares):
        handler = wrap(middleware, handler)
    return handler


async def _no_typing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a gate refused to answer now, and whether to tell the member (once per window, not every time)."""

    reason: str  # a key of bot.limits.REFUSALS
    notify: bool = False


@dataclass
class Turn:
    """One message on its way through the member, after the policy decided whether to speak."""

    message: Message
    pai: str
    decision: Any  # bot.policy.Decision; a gate may replace it (quiet hours)
    reply_to_me: bool
    refusal: Refusal | None = None  # set by a gate: no answer now (observers may still ingest)
    may_record: bool = True  # False when the author opted out here: nothing of the message may be kept
    # Set by the typing middleware while an answer is produced: ends the indicator sooner (a streamed
    # answer's first message is on screen).
    stop_typing: Hook = _no_typing

    @property
    def may_answer(self) -> bool:
        return self.refusal is None


@dataclass
class ReplyDraft:
    """A reply about to be claimed in the ledger and sent. ``notes`` are appended to the text (each after
    a blank line); ``on_claimed`` hooks run once the ledger has the reply, before it is sent; a streamed reply
    whose first message failed runs ``on_released`` when it gives its claim back."""

    message: Message
    text: str
    extra: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)
    on_claimed: list[Hook] = field(default_factory=list)
    on_released: list[Hook] = field(default_factory=list)

    @property
    def full_text(self) -> str:
        return self.text + self.suffix

    @property
    def suffix(self) -> str:
        return "".join(f"\n\n{note}" for note in self.notes)
