"""The core's ports: small Protocols that adapters, the memory and the LLM implement.

The core imports none of the implementations; the composition root (``bot.app``) wires them together.
Each docstring is the contract: what an implementation must do, must not do, and may raise.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from bot.events import Attachment, ChatRef, Message, Outgoing, PersonRef, SentRef


# --------------------------------------------------------------------------- intake


class IntakeSink(Protocol):
    """Where an adapter delivers inbound events. Implemented by the core's durable inbox.

    ``submit`` returns only once the events (and the optional cursor) are committed to disk in one
    transaction; only then may the adapter acknowledge them to its platform (Telegram offset, Matrix
    ``next_batch``, Discord "last processed message"). Events already seen (same ``event_id``) are ignored,
    so replaying a batch after a crash is safe. Returns how many events were new.
    """

    async def submit(
        self, events: Sequence[Message], *, cursor_key: str | None = None, cursor: str | None = None
    ) -> int: ...

    async def cursor(self, key: str) -> str | None:
        """The last cursor committed under ``key`` (None if never)."""
        ...

    async def seen(self, event_id: str) -> bool:
        """Whether an event with this id was already committed."""
        ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_text_length: int = 4000
    edit: bool = False
    polls: bool = False
    files: bool = False
    threads: bool = False
    reactions: bool = False
    typing: bool = False
    links: bool = False
    # ``send`` delivers an Outgoing with the same ``idempotency_key`` (and text) at most once, even across a
    # restart (Matrix transaction ids, Discord nonces, durable send records): the core may then resend a
    # reply a crash interrupted, making replies exactly-once instead of at-most-once.
    idempotent_sends: bool = False
    # The largest file ``send`` delivers (bytes); 0: not stated (the core's ``limits.max_attachment_bytes``).
    max_file_bytes: int = 0
    # False when the bot may speak only in answer to a message addressed to it (the WeCom AI bot): nothing
    # unprompted is sent there (a pai's relayed copies and notices).
    unprompted: bool = True


@runtime_checkable
class ChatAdapter(Protocol):
    """One platform connection.

    ``start`` connects and begins delivering events to ``sink``; it returns once running (the adapter owns
    its own named background tasks). It is one connection attempt: it raises
    ``bot.errors.PlatformUnavailable`` (naming the URL, never a secret) when the platform cannot be reached,
    after releasing what it opened, and may then be called again (``bot.supervisor`` retries it with
    backoff); it raises ``bot.errors.AdapterConfigError`` (``CredentialsRejected`` for a refused token or
    password) with an operator-facing explanation when the platform refuses. ``stop`` stops intake, lets
    in-flight sends finish and closes connections; it must be idempotent. ``send`` delivers one ``Outgoing``
    (splitting it at the platform limit, sanitising mass pings and link previews) and returns the first
    part's ref; it raises ``bot.errors.DeliveryError`` when the platform refuses for good. Adapters never
    call the LLM, never touch memory, and never decide whether to speak.
    """

    name: str
    capabilities: Capabilities

    async def start(self, sink: IntakeSink) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, out: Outgoing) -> SentRef: ...

    async def edit(self, ref: SentRef, text: str) -> None:
        """Replace the text of a message the bot sent (only when ``capabilities.edit``)."""
        ...

    async def typing(self, chat: ChatRef) -> None:
        """Show a typing indicator for a few seconds (best effort; never raises)."""
        ...


class StreamFinisher(Protocol):
    """Optional adapter role for platforms where a streamed answer must be closed (WeCom's stream): a send
    with ``Outgoing.streaming`` opens it, edits update it, and ``finish_edit`` puts the final text in place
    and closes it; nothing follows. Raises like ``edit``. Where an adapter lacks it, the last edit is a
    plain ``edit``."""

    async def finish_edit(self, ref: SentRef, text: str) -> None: ...


class AttachmentFetcher(Protocol):
    """Optional adapter role: download an attachment's bytes, refusing (``DeliveryError``) past ``max_bytes``."""

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes: ...


class LocalAttachments(Protocol):
    """Optional adapter role: where an attachment's bytes already lie on this machine (the web group's
    uploads), so large media can be read in place instead of fetched into memory; None when they don't."""

    async def attachment_path(self, att: Attachment) -> Any: ...  # pathlib.Path | None


class SendJournal(Protocol):
    """Optional adapter role for platforms without idempotent sends: whether a send of ``out`` (same
    idempotency key and content) was ever attempted, i.e. whether a request may have reached the platform.
    False means nothing went out, so the core may send it after a crash without risking a duplicate."""

    async def delivery_attempted(self, out: Outgoing) -> bool: ...


class MessageDeleter(Protocol):
    """Optional adapter role: delete a message the bot sent (``ref`` as ``send`` returned it, every part).

    Used when a member deletes a message that was passed on to other groups of a pai (``bot.relay``) and
    when a member's words are forgotten. A message that is already gone counts as deleted (no error).
    Raises ``PlatformUnavailable`` when the platform cannot be reached (retried later) and
    ``DeliveryError`` when it refuses (the bot may not delete there): the copy then stays."""

    async def delete(self, ref: SentRef) -> None: ...


class DirectMessenger(Protocol):
    """Optional adapter role: write to one person privately (the platform's direct chat with them, opened
    if needed), for what only they may read (a one-time code, a sign-in link). Returns what ``send`` would.
    ``user`` is of this adapter's platform. Raises ``DeliveryError`` when the platform does not let the bot
    start that conversation (a Telegram user who never opened the bot), ``PlatformUnavailable`` as ``send``."""

    async def send_direct(self, user: PersonRef, text: str) -> SentRef: ...


class HostedRooms(Protocol):
    """Optional adapter role, for a platform the bot hosts itself (the web group): a pai may have a room
    there, and members of its other groups enter it as themselves through a one-time sign-in link.

    ``open_room(title)`` makes a new room and returns it. ``sign_in_link(room, member, ttl_s)`` returns a
    URL that works once, within ``ttl_s`` seconds: opening it gives the browser the platform's proof of
    being ``member`` (a user id of this platform and a display name, both chosen by the core: the web
    group's member key) and shows ``room``. From then on the platform must refuse anyone else posting as
    that user id. The link is a secret: the core sends it privately."""

    async def open_room(self, title: str) -> ChatRef: ...

    async def sign_in_link(self, room: ChatRef, member: PersonRef, ttl_s: float) -> str: ...


class ConnectionWatch(Protocol):
    """Optional adapter role, for an adapter that cannot get its platform back by itself once connected.

    ``connection_lost()`` returns once the running connection has ended for good, after releasing it, with
    what happened as an exception (returned, not raised): ``bot.errors.PlatformUnavailable`` when the
    platform went away (the supervisor makes new ``start`` attempts with backoff; replies wait meanwhile),
    an ``AdapterConfigError`` when the platform now refuses the adapter (it stops). It is awaited again after
    every successful ``start``; cancelling it must leave the connection alone."""

    async def connection_lost(self) -> Exception: ...


class AdminChecker(Protocol):
    """Optional adapter role: whether a user is an admin of a chat according to the platform's roles."""

    async def is_chat_admin(self, chat: ChatRef, user: PersonRef) -> bool: ...


@dataclass(frozen=True, slots=True)
class Grant:
    """What ``AdminGranter.grant_admin`` did: ``status`` is ``granted``, ``already`` (an admin before),
    ``unknown`` (nobody of that name posted in the chat) or ``ambiguous`` (several did)."""

    status: str
    name: str


class AdminGranter(Protocol):
    """Optional adapter role, for platforms whose chats keep their admins themselves (the web group): make
    the chat's member called ``name`` an admin. The core calls it only for a caller who is an admin."""

    async def grant_admin(self, chat: ChatRef, name: str) -> Grant: ...


# --------------------------------------------------------------------------- memory


# What a record is. Only members' content is evidence of what the group said: their statements, the chunks of
# files they posted and the captions of their images. Questions and requests put to the bot, commands and the
# bot's own messages are kept (a member may ask what Pai said), but search does not offer them as evidence.
STATEMENT, QUESTION, COMMAND, BOT, FILE, CAPTION = "statement", "question", "command", "bot", "file", "caption"
RECORD_KINDS = (STATEMENT, QUESTION, COMMAND, BOT, FILE, CAPTION)
EVIDENCE_KINDS = (STATEMENT, FILE, CAPTION)
UNCLASSIFIED = "message"  # a chat message whose kind the store derives from its text (imports, older data)


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """One remembered item of a pai: a chat message, a file chunk or an image caption."""

    id: str  # platform message id (file chunks: "<message id>#<n>")
    pai: str
    chat_key: str
    author_id: str
    author_name: str
    text: str
    sent_at: datetime
    kind: str = UNCLASSIFIED  # one of RECORD_KINDS, or UNCLASSIFIED for the store to classify
    reply_to_id: str | None = None
    url: str = ""
    is_bot: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemoryHit:
    record: MemoryRecord
    score: float


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Narrow a search. ``kinds`` empty means evidence: members' statements, files and captions, then their
    questions to the bot (ranked below statements, never a repeat of the query itself), and the bot's own
    messages only when the query names the bot. Given kinds are searched as asked, nothing else."""

    author_ids: tuple[str, ...] = ()
    author_names: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    kinds: tuple[str, ...] = ()


class MemoryStore(Protocol):
    """A pai's long-term memory. The ``pai`` always comes from the trusted event envelope.

    ``record`` is durable when it returns (the transcript is the source of truth; indexes may lag) and is
    idempotent on ``(pai, record.id)``. ``search`` never returns a record of another pai, ranks evidence as
    ``SearchFilters`` describes, and returns nothing ("not found") when no record passes its relevance
    floor. Implementations keep blocking work (SQLite, chromadb, embeddings) off the event loop.
    """

    async def record(self, rec: MemoryRecord) -> None: ...

    async def search(
        self, pai: str, query: str, k: int = 8, filters: SearchFilters | None = None
    ) -> list[MemoryHit]: ...

    async def recent(self, pai: str, n: int, before: datetime | None = None) -> list[MemoryRecord]:
        """The last ``n`` records of the pai in time order (oldest first)."""
        ...

    async def forget(self, pai: str, *, author_id: str | None = None, ids: Sequence[str] = ()) -> int:
        """Remove records (from the transcript and every index); returns how many were removed."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- forgetting


def passage_key(text: str) -> str:
    """How passages are compared when looking for quotes: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


QUOTE_WORDS = 5  # five words of hers in a row are a quote ...
QUOTE_TOKEN_CHARS = 10  # ... and so is one long token with a digit, "@" or "/" (a number, an address, a link)
QUOTE_CJK_CHARS = 6  # ... or six Chinese, Japanese or Korean characters in a row
_WORD = re.compile(r"\w+")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]{%d,}" % QUOTE_CJK_CHARS)
_TOKEN_EDGE = ".,;:!?()[]{}<>'\"“”‘’«»"


def quote_units(text: str) -> set[str]:
    """The pieces of a text that count as quoted when they appear in another one (see the constants above);
    two texts share a quote when their units intersect."""
    key = passage_key(text)
    words = _WORD.findall(key)
    units = {" ".join(words[i : i + QUOTE_WORDS]) for i in range(len(words) - QUOTE_WORDS + 1)}
    for token in key.split():
        token = token.strip(_TOKEN_EDGE)
        if len(token) >= QUOTE_TOKEN_CHARS and any(c.isdigit() or c in "@/" for c in token):
            units.add(token)
    for run in _CJK_RUN.findall(key):
        units.update(run[i : i + QUOTE_CJK_CHARS] for i in range(len(run) - QUOTE_CJK_CHARS + 1))
    return units


@dataclass(frozen=True, slots=True)
class Erasure:
    """What to forget in the chats ``chat_keys`` of the pai ``pai`` (``/forget-me``, ``paibot memory forget``,
    retention). Any of:

    * ``author_id``: everything the member with this (platform) id wrote there: her messages, her files and
      their text, captions of her images, her reminders, to-dos, polls and votes;
    * ``message_ids``: these messages (platform ids, as ``Message.id``) and what was derived from them;
    * ``before``: everything sent before this moment (retention). Live items (an active reminder, an open
      poll or to-do) stay while they are live.

    ``quotes`` (whole passages, made with ``passage_key``) and ``quote_units`` (their ``quote_units``) are
    what is being forgotten: a bot message that contains a passage or shares a unit with one, or that
    replies to a forgotten message, is redacted too, wherever the bot's messages are kept.
    """

    pai: str
    chat_keys: tuple[str, ...]
    author_id: str | None = None
    message_ids: tuple[str, ...] = ()
    before: datetime | None = None
    quotes: tuple[str, ...] = ()
    quote_units: frozenset[str] = frozenset()

    def quoted_in(self, text: str) -> bool:
        """Whether ``text`` quotes something being forgotten."""
        if not text or not (self.quotes or self.quote_units):
            return False
        if self.quote_units and not self.quote_units.isdisjoint(quote_units(text)):
            return True
        key = passage_key(text)
        return any(q in key for q in self.quotes)


class ContentEraser(Protocol):
    """Anything that keeps member content (the memory, the inbox, a skill's store, a platform's own store such
    as the web group) and can forget it. Every store that can hold member content implements this and is
    listed in SECURITY.md's data map.

    ``passages`` returns the texts the store holds that ``erasure`` forgets (her messages, file names,
    reminder texts), so quotes of them are found elsewhere; it is called on every eraser before any
    ``erase``. ``erase`` removes (or, where a placeholder must stay, redacts to nothing) what the erasure
    names, and bot messages that quote it; it is idempotent and returns counts by kind of item removed.
    Implementations keep blocking work off the event loop.
    """

    async def passages(self, erasure: Erasure) -> Sequence[str]: ...

    async def erase(self, erasure: Erasure) -> dict[str, int]: ...


# --------------------------------------------------------------------------- LLM


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model wrote it


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str = ""


class LanguageModel(Protocol):
    """One provider call. ``messages`` are OpenAI-style chat dicts. Raises only ``bot.errors.LLMError``
    subclasses (provider exceptions translated with ``raise ... from``); never retries by itself (the brain
    owns retries and fallbacks)."""

    async def complete(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[ToolSpec] = (),
        timeout_s: float = 60.0,
    ) -> Completion: ...


TextCallback = Callable[[str], Awaitable[None]]


@runtime_checkable
class StreamingLanguageModel(LanguageModel, Protocol):
    """Optional ``LanguageModel`` role: the same call, with the answer's text reported while it arrives.

    ``stream_complete`` returns the same ``Completion`` as ``complete`` would (text, tool calls assembled
    from their deltas, usage) and raises the same ``bot.errors.LLMError`` subclasses; a stream that ends
    before the provider finished it (a cut connection) is ``LLMRetryable``. While text arrives it awaits
    ``on_text(text_so_far)`` with the whole text so far (never a delta), in order; exceptions from
    ``on_text`` propagate unchanged. Models without this method are simply not streamed.
    """

    async def stream_complete(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[ToolSpec] = (),
        timeout_s: float = 60.0,
        on_text: TextCallback | None = None,
    ) -> Completion: ...


class TextSink(Protocol):
    """Where the brain shows an answer while the model writes it (a reply streamed by editing a message).

    ``update(text)`` gets the whole answer so far (not a delta), growing within one attempt. ``reset()``
    voids what was shown: a retry, a fallback model or a tool round follows, and the next ``update``
    starts from scratch. The sink decides what reaches the chat and when (throttling). Neither method may
    raise; a sink that cannot deliver logs and carries on, because the answer itself must not be lost.
    """

    async def update(self, text: str) -> None: ...

    async def reset(self) -> None: ...


# --------------------------------------------------------------------------- time


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...

    async def sleep(self, seconds: float) -> None: ...


# --------------------------------------------------------------------------- adapter wiring


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """A command the core understands, for platforms that register them (Telegram, Discord slash commands)."""

    name: str
    description: str
    usage: str = ""


class KeyValueStore(Protocol):
    """A small durable key-value store of one adapter (``AdapterEnv.store``), namespaced by the adapter's name:
    state that must outlive a restart but is not an intake cursor, such as a journal of sends.

    ``put`` commits before it returns. An entry put with ``ttl_s`` expires after that many seconds: from then
    on it reads as absent and the core deletes it, so a journal written once per reply does not grow without
    bound. Values are text (serialise to JSON). Another adapter's entries are never visible.
    """

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, *, ttl_s: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AdapterEnv:
    """What the composition root hands an adapter factory besides its own config section."""

    bot_name: str
    data_dir: Any  # pathlib.Path; an adapter keeps its files under it (e.g. ``<data_dir>/web_files``)
    bot_aliases: tuple[str, ...] = ()  # other names the bot answers to (``bot.aliases``)
    commands: tuple[CommandInfo, ...] = ()  # for platforms that register commands (menus, slash commands)
    max_attachment_bytes: int = 20 * 1024 * 1024
    command_prefixes: tuple[str, ...] = ("/",)  # ``triggers.command_prefixes``: the core's first is canonical
    store: KeyValueStore | None = None  # this adapter's durable key-value store (None: the adapter keeps none)
    # The bot's metrics, for an adapter that serves HTTP: it may offer them at ``GET /metrics`` (under its own
    # access rules) and then sets ``serves_metrics = True`` and ``metrics_url`` once listening.
    metrics: MetricsSource | None = None


# --------------------------------------------------------------------------- watching together


@dataclass(frozen=True, slots=True)
class WatchView:
    """A watch session as its players see it. ``playback`` is where it is: ``position`` media seconds at
    server time ``at`` (epoch seconds), moving at ``rate`` when ``playing``; ``duration`` once known (see
    ``bot.skills.watch.sync.Playback``). The media is an uploaded ``media`` file (the adapter serves it) or
    a ``link``. ``control`` is ``"all"`` (every member steers) or ``"starter"``. ``seq`` grows with every
    change, so a player can ignore a stale update."""

    session: str
    chat: ChatRef
    title: str
    kind: str  # "video" | "audio"
    media: Attachment | None
    link: str
    starter_id: str
    starter_name: str
    control: str
    playback: dict[str, Any]
    seq: int
    cues: int = 0  # how many subtitle lines the session has
    ended: bool = False


@dataclass(frozen=True, slots=True)
class WatchCommand:
    """One player command from a member: ``action`` is play, pause, seek, rate, duration, control or end;
    ``value`` the position (seconds), speed, duration or control mode it needs."""

    action: str
    value: Any = None
    session: str = ""  # the session the player was showing (a command for an ended one is refused)


class WatchControl(Protocol):
    """The core's side of watching together, used by an adapter that hosts synchronised players.

    ``now`` is the server clock the playback positions are anchored to (epoch seconds); players estimate
    their offset to it with pings the adapter answers with ``now()``. ``current`` is the chat's running
    session (None when none runs). ``control`` applies a member's command and returns the new view (which
    the core also shows to every player through ``WatchHost.show_watch``); it raises
    ``bot.errors.WatchRefused`` when the member may not give it. ``cues`` are the session's subtitle lines
    ``(start, end, text)`` in time order. The member's identity is the adapter's to vouch for.
    """

    def now(self) -> float: ...

    async def current(self, chat: ChatRef) -> WatchView | None: ...

    async def control(self, chat: ChatRef, member: PersonRef, command: WatchCommand) -> WatchView: ...

    async def cues(self, chat: ChatRef, session: str) -> list[tuple[float, float, str]]: ...


@runtime_checkable
class WatchHost(Protocol):
    """Optional adapter role: a platform with a synchronised player (the web group). ``host_watch`` hands it
    the core's ``WatchControl`` once, at start-up; ``show_watch`` shows every open player of the chat the
    new state of its session (``ended`` closes it). Best effort: never raises (a player that misses an
    update catches up from ``WatchControl.current``)."""

    def host_watch(self, control: WatchControl) -> None: ...

    async def show_watch(self, view: WatchView) -> None: ...


# --------------------------------------------------------------------------- tools (skills) and accounting


@dataclass(frozen=True, slots=True)
class ToolContext:
    """The trusted envelope a tool runs in. Taken from the inbound event, never from model output: a tool
    acts on ``pai`` / ``message.chat`` only, whatever group its arguments name."""

    message: Message
    pai: str
    caller_is_admin: bool = False  # the pipeline passes False: admin powers need an admin's own command


class ToolHandler(Protocol):
    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> str: ...


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    run: ToolHandler
    # Where the tool comes from, when it is outside paibot (e.g. "MCP weather/forecast"): an answer built on
    # it names the source in the chat.
    source: str = ""


class UsageLedger(Protocol):
    """Token and cost accounting (durable), by day: per group, per member across groups, bot-wide.

    ``add_usage`` counts one model call at once (the ``*_today`` figures include it when it returns) and
    never blocks on storage; ``member_key`` ("platform:user_id") is the member whose message the call
    answered, "" when none did (a reminder, a digest)."""

    def add_usage(self, group_key: str, model: str, usage: Usage, member_key: str = "") -> None: ...

    def tokens_today(self, group_key: str) -> int: ...

    def member_tokens_today(self, member_key: str) -> int: ...

    def bot_today(self) -> Usage: ...


# --------------------------------------------------------------------------- observability


class Telemetry(Protocol):
    """Figures the core reports while it works; the composition root turns them into metrics. Calls are
    cheap and synchronous, and never raise into the caller."""

    def answered(self, platform: str, seconds: float) -> None:
        """A reply reached its platform ``seconds`` after the message it answers was sent."""
        ...

    def refused(self, reason: str) -> None:
        """An answer was refused by a limit, a budget or the admission of new groups (``reason``)."""
        ...


class NoTelemetry:
    """The ``Telemetry`` of a core nobody watches."""

    def answered(self, platform: str, seconds: float) -> None:
        return None

    def refused(self, reason: str) -> None:
        return None


@runtime_checkable
class IndexLag(Protocol):
    """Optional role of a ``MemoryStore``: how far its search index is behind what it recorded."""

    async def index_lag(self) -> int:
        """Records recorded but not yet in the index (0 when it has caught up)."""
        ...


class MetricsSource(Protocol):
    """The bot's metrics in the Prometheus text exposition format, for whoever serves them over HTTP."""

    content_type: str

    async def render(self) -> bytes:
        """The current figures (pulled figures such as queue depths are read now)."""
        ...
