"""Discord adapter: the AI member in Discord servers, through discord.py.

``create_adapter(cfg, env)`` builds a :class:`DiscordAdapter` from its section ``adapters.discord``;
``invite_url(cfg)`` is the OAuth2 URL that adds the bot to a server with the scopes and permissions it
needs (``paibot invite discord``).

Lifecycle: ``start`` is one connection attempt (the contract is in ``bot.supervisor``): a fresh client logs
in, registers the core's slash commands, opens the gateway and returns once READY. Discord unreachable
(refused, DNS, timeout, 5xx) is ``PlatformUnavailable`` naming the URL; a rejected token (HTTP 401, gateway
close 4004) is ``CredentialsRejected``; close code 4014 is ``AdapterConfigError`` naming the portal switch.
Once connected, discord.py resumes the session after the drops it can ride out. When it cannot reconnect
(Discord is down), ``connection_lost`` (``bot.ports.ConnectionWatch``) reports it and the supervisor makes
new ``start`` attempts with its capped, jittered backoff (at most 60 s apart; discord.py's own reconnect
backoff grows to ~17 minutes); sends meanwhile raise ``PlatformUnavailable``. On every READY/RESUMED it
backfills each readable channel after its durable cursor (see ``adapters.discord.sync``), so nothing said
meanwhile is missed. ``stop`` closes the client; it is idempotent.

Sending: Discord replies (``fail_if_not_exists=False``), split at 2000 characters, mass pings neutralised
and disabled through ``AllowedMentions`` (only the replied-to user and the core's explicit
``mention_user_ids`` may be pinged), link embeds suppressed, a nonce derived from ``idempotency_key`` with
``enforce_nonce`` so a retried send is not duplicated. Slash commands are deferred at once and answered by
editing the deferred response, with follow-ups for further parts.

Endpoint overrides (``api_base``, ``gateway_url``) apply to this adapter's client only; see
``adapters.discord.client`` for why the process-wide ``Route.BASE`` is left alone.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Any

import aiohttp
import discord
from discord.http import Route

from adapters.discord.client import UNREACHABLE, PaibotClient, gateway_error, login_error
from adapters.discord.convert import deletion_event, message_from_discord, message_from_interaction
from adapters.discord.registration import application_id_of, invite_permissions, invite_url, slash_command_payload
from adapters.discord.sync import ChannelSync
from adapters.discord.text import MAX_MESSAGE_CHARS, neutralize_mass_pings, nonce_for, split_message, text_poll
from adapters.discord.config import DiscordAdapterSettings
from bot.errors import AdapterConfigError, ConfigError, DeliveryError, PaibotError, PlatformUnavailable
from bot.events import Attachment, ChatRef, Message, Outgoing, PersonRef, SentRef
from bot.ports import AdapterEnv, Capabilities, IntakeSink

log = logging.getLogger("paibot.discord")

__all__ = ["DiscordAdapter", "create_adapter", "invite_url", "invite_permissions", "application_id_of",
           "slash_command_payload"]

EMPTY_CONTENT_HELP = (
    "Discord delivers messages with empty text that do not mention the bot: the MESSAGE CONTENT INTENT is "
    "not in effect, so paibot cannot remember what the group says. Switch on 'Message Content Intent' under "
    "Bot -> Privileged Gateway Intents at https://discord.com/developers/applications."
)
INTERACTION_TTL_S = 14 * 60  # interaction tokens live 15 minutes
CONNECTION_TASKS = ("discord-gateway", "discord-wait-ready", "discord-backfill")  # one connection's tasks
_JUMP = re.compile(r"/channels/(?:\d+|@me)/(\d+)/(\d+)")


class DiscordAdapter:
    """A ``ChatAdapter`` (and ``AttachmentFetcher``, ``AdminChecker``) for Discord."""

    name = "discord"
    capabilities = Capabilities(max_text_length=MAX_MESSAGE_CHARS, edit=True, polls=True, files=True,
                                threads=True, reactions=False, typing=True, links=True,
                                idempotent_sends=True)

    def __init__(self, cfg: DiscordAdapterSettings, env: AdapterEnv, *, guild_ready_timeout: float = 2.0,
                 ready_timeout_s: float = 60.0) -> None:
        self._cfg = cfg
        self._env = env
        self._guild_ready_timeout = guild_ready_timeout
        self._ready_timeout_s = ready_timeout_s
        self._client: PaibotClient | None = None
        self._sync: ChannelSync | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._interactions: dict[str, tuple[str, float]] = {}  # interaction id -> (token, expires at)
        self._webhook_msgs: OrderedDict[str, str] = OrderedDict()  # message id -> interaction token
        self._authors: OrderedDict[str, str] = OrderedDict()  # message id -> author id (for reply pings)
        self._warned_empty = False
        self._stopping = False
        self._gateway: asyncio.Task[Any] | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self, sink: IntakeSink) -> None:
        """One connection attempt; raises as the module docstring says and leaves nothing open when it
        fails, so it may be called again (also after ``connection_lost`` returned)."""
        self._stopping = False
        self._sync = ChannelSync(sink, self._convert, self._cfg.backfill_limit)
        self._gateway = await self._connect()

    async def connection_lost(self) -> Exception:
        """``bot.ports.ConnectionWatch``: returns once the gateway connection has ended and discord.py could
        not get it back, with the client closed: ``PlatformUnavailable`` (Discord went away) or a refusal
        (``CredentialsRejected`` for close code 4004, ``AdapterConfigError``)."""
        gateway = self._gateway
        if gateway is None:
            raise RuntimeError("the Discord adapter is not connected")
        await asyncio.wait({gateway})
        self._ready.clear()  # sends wait (PlatformUnavailable) until connected again
        problem = self._gateway_failure(gateway)
        if self._client is not None:
            await self._close(self._client)
        return problem

    async def _connect(self) -> asyncio.Task[Any]:
        """Log in with a fresh client, register the slash commands, open the gateway and wait for READY.
        Returns the task running the gateway; on failure closes the client and raises."""
        self._ready = asyncio.Event()
        client = PaibotClient(self, api_base=self._cfg.api_base, gateway_url=self._cfg.gateway_url,
                              guild_ready_timeout=self._guild_ready_timeout)
        self._client = client
        try:
            await self._login(client)
            await self._register_commands(client)
            # reconnect=False: when discord.py cannot reconnect, the task ends (it still resumes by itself
            # after the drops the gateway asks for), and connection_lost says so.
            gateway = self._spawn(client.connect(reconnect=False), "discord-gateway")
            waiter = self._spawn(self._ready.wait(), "discord-wait-ready")
            done, _ = await asyncio.wait({gateway, waiter}, timeout=self._ready_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                log.info("discord: connected as %s (id %s)", client.user, getattr(client.user, "id", "?"))
                return gateway
            waiter.cancel()
            if gateway in done:
                raise self._gateway_failure(gateway)
            raise PlatformUnavailable(f"Discord's gateway at {self._gateway_url()} was not ready within "
                                      f"{self._ready_timeout_s:.0f}s")
        except BaseException:
            await self._close(client)
            raise

    async def _login(self, client: PaibotClient) -> None:
        try:
            await asyncio.wait_for(client.login(self._cfg.token), self._ready_timeout_s)
        except (discord.LoginFailure, discord.HTTPException, *UNREACHABLE) as exc:
            raise login_error(exc, self._cfg.api_base or Route.BASE) from exc

    def _gateway_failure(self, task: asyncio.Task[Any]) -> PaibotError:
        return gateway_error(task.exception() if not task.cancelled() else None, self._gateway_url())

    def _gateway_url(self) -> str:
        return self._cfg.gateway_url or str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)

    async def _close(self, client: PaibotClient) -> None:
        """Close one connection's client and end its tasks (its backfills too: the next connection redoes
        them)."""
        if not client.is_closed():
            await client.close()
        await self._cancel(lambda t: t.get_name().startswith(CONNECTION_TASKS))

    async def stop(self) -> None:
        self._stopping = True
        client, self._client = self._client, None
        if client is not None and not client.is_closed():
            await client.close()
        await self._cancel(lambda t: True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _cancel(self, which: Any) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current and which(t)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _register_commands(self, client: discord.Client) -> None:
        payload = slash_command_payload(self._env.commands)
        if not payload or client.application_id is None:
            return
        try:
            await client.http.bulk_upsert_global_commands(client.application_id, payload)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("discord: could not register slash commands (%s); @mentions still work", exc)

    def _require(self) -> PaibotClient:
        client = self._client
        if client is not None and client.user is not None and self._ready.is_set() and not client.is_closed():
            return client
        if self._stopping or self._sync is None:
            raise DeliveryError("discord adapter is not running")
        raise PlatformUnavailable("discord: not connected to the gateway (reconnecting)")

    # ----------------------------------------------------------------- events from the client

    def _my_role_ids(self, msg: discord.Message) -> set[int]:
        guild = msg.guild
        if guild is None or guild.me is None:
            return set()
        me_id = guild.me.id
        return {r.id for r in guild.me.roles if r.tags is not None and r.tags.bot_id == me_id}

    def _convert(self, msg: discord.Message, edit: bool = False) -> Message:
        me_id = self._require().user.id  # type: ignore[union-attr]
        event = message_from_discord(msg, me_id=me_id, my_role_ids=self._my_role_ids(msg), edit=edit)
        self._remember(self._authors, event.id, event.author.user_id)
        self._check_content(msg, event)
        return event

    def _check_content(self, msg: discord.Message, event: Message) -> None:
        if self._warned_empty or event.text or event.mentions_me or event.is_direct or event.from_me:
            return
        if msg.type in (discord.MessageType.default, discord.MessageType.reply) and not (
                msg.attachments or msg.embeds or msg.stickers or msg.poll or msg.message_snapshots):
            self._warned_empty = True
            log.warning("discord: %s", EMPTY_CONTENT_HELP)

    async def on_ready(self) -> None:
        self._ready.set()
        self._spawn(self._backfill_all(), "discord-backfill")

    async def on_resumed(self) -> None:
        self._spawn(self._backfill_all(), "discord-backfill")

    async def on_disconnect(self) -> None:
        if self._sync is not None:
            self._sync.unsync_all()

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self._spawn(self._backfill_all(), "discord-backfill")

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        if isinstance(channel, discord.TextChannel):
            self._spawn(self._backfill_one(channel), f"discord-backfill-{channel.id}")

    async def on_message(self, message: discord.Message) -> None:
        if self._sync is None or self._client is None:
            return
        if await self._sync.deliver_live(message):
            self._spawn(self._backfill_one(message.channel), f"discord-backfill-{message.channel.id}")

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        client, sync = self._client, self._sync
        msg = payload.message
        if client is None or sync is None or client.user is None or msg.edited_at is None:
            return
        if msg.author.id == client.user.id:
            return  # our own streaming edits are not news
        await sync.deliver_unordered([self._convert(msg, edit=True)])

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        client, sync = self._client, self._sync
        if client is None or sync is None or client.user is None:
            return
        await sync.deliver_unordered([deletion_event(payload, client.user.id)])

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.application_command or self._sync is None:
            return
        client = self._require()
        # Acknowledge within Discord's 3 seconds: "thinking..." until the core answers.
        await client.http.request(Route("POST", "/interactions/{interaction_id}/{interaction_token}/callback",
                                        interaction_id=interaction.id, interaction_token=interaction.token),
                                  json={"type": 5})
        self._interactions[str(interaction.id)] = (interaction.token, time.monotonic() + INTERACTION_TTL_S)
        self._remember(self._authors, str(interaction.id), str(interaction.user.id))
        await self._sync.deliver_unordered([message_from_interaction(interaction)])

    def _readable_channels(self) -> list[Any]:
        client = self._client
        if client is None:
            return []
        out: list[Any] = []
        for guild in client.guilds:
            me = guild.me
            for ch in [*guild.text_channels, *guild.threads]:
                perms = ch.permissions_for(me)
                if perms.view_channel and perms.read_message_history:
                    out.append(ch)
        return out

    async def _backfill_all(self) -> None:
        channels = self._readable_channels()
        for ch in channels:
            await self._backfill_one(ch)
        if self._sync is not None:
            self._sync.passes += 1

    async def _backfill_one(self, channel: Any) -> None:
        if self._sync is None:
            return
        try:
            await self._sync.backfill(channel)
        except (discord.HTTPException, aiohttp.ClientError, OSError, PlatformUnavailable) as exc:
            log.warning("discord: backfill of channel %s failed (%s); retried on the next reconnect",
                        channel.id, exc)

    # ----------------------------------------------------------------- sending

    async def send(self, out: Outgoing) -> SentRef:
        client = self._require()
        pending = self._interactions.get(out.reply_to or "")
        if pending is not None and pending[1] > time.monotonic() and not out.files and out.poll is None:
            del self._interactions[out.reply_to or ""]
            return await self._send_interaction(client, out, pending[0])
        try:
            return await self._send_channel(client, out)
        except discord.DiscordServerError as exc:  # 5xx: safe to repeat, every part carries its nonce
            raise PlatformUnavailable(f"discord answered {exc.status}") from exc
        except discord.HTTPException as exc:
            raise DeliveryError(f"discord refused the message ({exc.status}): {exc.text[:200]}") from exc
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise PlatformUnavailable(f"discord unreachable: {exc}") from exc

    def _allowed_mentions(self, out: Outgoing) -> discord.AllowedMentions:
        ids = list(dict.fromkeys(out.mention_user_ids))
        replied = self._authors.get(out.reply_to or "")
        if replied is not None:
            ids.insert(0, replied)
        users = [discord.Object(int(i)) for i in dict.fromkeys(ids) if str(i).isdigit()]
        return discord.AllowedMentions(everyone=False, roles=False, users=users, replied_user=True)

    async def _send_channel(self, client: PaibotClient, out: Outgoing) -> SentRef:
        target = int(out.thread or out.chat.chat_id)
        channel = client.get_channel(target) or client.get_partial_messageable(target)
        parts = split_message(neutralize_mass_pings(out.text)) if out.text.strip() else []
        extras_alone = not parts
        if extras_alone:
            parts = [""]
        reference = None
        if out.reply_to and out.reply_to.isdigit():
            reference = discord.MessageReference(message_id=int(out.reply_to), channel_id=target,
                                                 fail_if_not_exists=False)
        allowed = self._allowed_mentions(out)
        sent: list[discord.Message] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            kwargs: dict[str, Any] = {"allowed_mentions": allowed, "suppress_embeds": True}
            if part:
                kwargs["content"] = part
            if i == 0 and reference is not None:
                kwargs["reference"] = reference
            if out.idempotency_key:
                kwargs["nonce"] = nonce_for(out.idempotency_key, i)
            if last and out.files:
                kwargs["files"] = [discord.File(io.BytesIO(f.data), filename=f.name) for f in out.files[:10]]
            if last and out.poll is not None:
                sent.append(await self._send_poll(channel, out, kwargs))
                continue
            sent.append(await channel.send(**kwargs))
        for m in sent:
            self._remember(self._authors, str(m.id), str(client.user.id))  # type: ignore[union-attr]
        first = sent[0]
        return SentRef(out.chat, str(first.id), url=first.jump_url, part_ids=tuple(str(m.id) for m in sent),
                       sent_at=first.created_at)

    async def _send_poll(self, channel: Any, out: Outgoing, kwargs: dict[str, Any]) -> discord.Message:
        assert out.poll is not None
        hours = max(1, min(768, math.ceil((out.poll.close_after_s or 86400) / 3600)))
        poll = discord.Poll(question=out.poll.question[:300], duration=timedelta(hours=hours),
                            multiple=out.poll.multiple)
        for option in out.poll.options[:10]:
            poll.add_answer(text=option[:55])
        try:
            return await channel.send(poll=poll, **kwargs)
        except discord.HTTPException as exc:
            if exc.status not in (400, 403):
                raise
            log.warning("discord: native poll refused (%s); sending it as text", exc.status)
            text = neutralize_mass_pings(text_poll(out.poll.question, out.poll.options))
            kwargs = {**kwargs, "content": ((kwargs.get("content") or "") + "\n\n" + text).strip()[:MAX_MESSAGE_CHARS]}
            if "nonce" in kwargs:
                kwargs["nonce"] = nonce_for(out.idempotency_key + ":textpoll", 0)
            return await channel.send(**kwargs)

    async def _send_interaction(self, client: PaibotClient, out: Outgoing, token: str) -> SentRef:
        """Answer a deferred slash command: edit the deferred response, follow up with further parts."""
        app_id = client.application_id
        parts = split_message(neutralize_mass_pings(out.text)) or ["\u2026"]
        allowed = self._allowed_mentions(out).to_dict()
        flags = discord.MessageFlags(suppress_embeds=True).value
        ids: list[str] = []
        url = ""
        try:
            for i, part in enumerate(parts):
                body = {"content": part, "allowed_mentions": allowed, "flags": flags}
                if i == 0:
                    route = Route("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                                  webhook_id=app_id, webhook_token=token)
                else:
                    route = Route("POST", "/webhooks/{webhook_id}/{webhook_token}",
                                  webhook_id=app_id, webhook_token=token)
                data = await client.http.request(route, json=body)
                ids.append(str(data["id"]))
                self._remember(self._webhook_msgs, str(data["id"]), token)
                if i == 0:
                    url = self._jump_url(client, int(data["channel_id"]), int(data["id"]),
                                         str(data.get("guild_id") or ""))
        except discord.HTTPException as exc:
            raise DeliveryError(f"discord refused the command answer ({exc.status})") from exc
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise DeliveryError(f"discord unreachable: {exc}") from exc
        return SentRef(out.chat, ids[0], url=url, part_ids=tuple(ids))

    @staticmethod
    def _jump_url(client: PaibotClient, channel_id: int, message_id: int, guild_id: str = "") -> str:
        channel = client.get_channel(channel_id)
        guild = getattr(channel, "guild", None)
        gid = str(guild.id) if guild is not None else (guild_id or "@me")
        return f"https://discord.com/channels/{gid}/{channel_id}/{message_id}"

    async def edit(self, ref: SentRef, text: str) -> None:
        client = self._require()
        content = neutralize_mass_pings(text)[:MAX_MESSAGE_CHARS] or "\u2026"
        allowed = discord.AllowedMentions(everyone=False, roles=False, users=False, replied_user=False)
        token = self._webhook_msgs.get(ref.message_id)
        try:
            if token is not None:
                route = Route("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                              webhook_id=client.application_id, webhook_token=token, message_id=ref.message_id)
                await client.http.request(route, json={"content": content, "allowed_mentions": allowed.to_dict()})
                return
            match = _JUMP.search(ref.url)
            channel_id = int(match.group(1)) if match else int(ref.chat.chat_id)
            partial = client.get_partial_messageable(channel_id).get_partial_message(int(ref.message_id))
            await partial.edit(content=content, allowed_mentions=allowed)
        except discord.HTTPException as exc:
            raise DeliveryError(f"discord refused the edit ({exc.status})") from exc
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise DeliveryError(f"discord unreachable: {exc}") from exc

    async def delete(self, ref: SentRef) -> None:
        """``bot.ports.MessageDeleter``: delete the bot's message (every part); one already gone is fine."""
        client = self._require()
        match = _JUMP.search(ref.url)
        channel_id = int(match.group(1)) if match else int(ref.chat.chat_id)
        for mid in dict.fromkeys((ref.message_id, *ref.part_ids)):
            if not mid.isdigit():
                continue
            try:
                await client.http.delete_message(channel_id, int(mid))
            except discord.NotFound:
                continue
            except discord.DiscordServerError as exc:
                raise PlatformUnavailable(f"discord answered {exc.status}") from exc
            except discord.HTTPException as exc:
                raise DeliveryError(f"discord refused to delete a message ({exc.status})") from exc
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                raise PlatformUnavailable(f"discord unreachable: {exc}") from exc

    async def typing(self, chat: ChatRef) -> None:
        client = self._client
        if client is None:
            return
        try:
            await client.http.send_typing(int(chat.chat_id))
        except (discord.HTTPException, aiohttp.ClientError, OSError, ValueError) as exc:
            log.debug("discord: typing indicator failed: %s", exc)

    # ----------------------------------------------------------------- optional roles

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        """Download an attachment's bytes; refuses (``DeliveryError``) past ``max_bytes``."""
        limit = min(max_bytes, self._env.max_attachment_bytes)
        if att.size > limit:
            raise DeliveryError(f"attachment {att.name} is {att.size} bytes, over the {limit}-byte limit")
        if not att.source.startswith(("https://", "http://")):
            raise DeliveryError(f"attachment {att.name} has no downloadable url")
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        buf = bytearray()
        try:
            async with self._http.get(att.source) as resp:
                if resp.status != 200:
                    raise DeliveryError(f"attachment download failed with HTTP {resp.status}")
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    buf.extend(chunk)
                    if len(buf) > limit:
                        raise DeliveryError(f"attachment {att.name} exceeds the {limit}-byte limit")
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"attachment download failed: {exc}") from exc
        return bytes(buf)

    async def is_chat_admin(self, chat: ChatRef, user: PersonRef) -> bool:
        """Whether ``user`` may manage the server the channel belongs to (Administrator or Manage Server)."""
        client = self._client
        if client is None or not chat.chat_id.isdigit() or not user.user_id.isdigit():
            return False
        channel = client.get_channel(int(chat.chat_id))
        guild = getattr(channel, "guild", None)
        if guild is None:
            return False
        member = guild.get_member(int(user.user_id))
        if member is None:
            try:
                member = await guild.fetch_member(int(user.user_id))
            except (discord.HTTPException, aiohttp.ClientError):
                return False
        perms = member.guild_permissions
        return bool(perms.administrator or perms.manage_guild)

    @staticmethod
    def _remember(cache: OrderedDict[str, str], key: str, value: str, cap: int = 5000) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > cap:
            cache.popitem(last=False)


def create_adapter(cfg: DiscordAdapterSettings, env: AdapterEnv) -> DiscordAdapter:
    """The factory of the ``discord`` plugin (``adapters.discord``)."""
    if not cfg.token:
        raise ConfigError("adapters.discord.token", "discord needs a bot token")
    return DiscordAdapter(cfg, env)
