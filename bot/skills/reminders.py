"""Reminders: ``/remind``, ``/reminders``, ``/unremind`` and the ``set_reminder`` tool, fired by a background loop.

    /remind in 2h stand up              /remind tomorrow 9:00 call the venue
    /remind every weekday 9:30 standup  /remind 每天 9点 打卡      /remind 下周一 10点 例会
    /reminders                          /reminders cancel 3        /unremind 3

The command form is parsed deterministically (``bot.skills.timeparse``), so reminders work without a
model; with a model, "@Pai remind us Friday 3pm to submit the report" becomes a ``set_reminder`` call (ISO
time or natural text). Without a model, a mention that starts with "remind" / contains "提醒" is parsed the
same way. A reminder always belongs to the group it was set in (the trusted envelope), whatever a tool's
arguments say; cancelling one needs its owner or a group admin. Firing is exactly-once per occurrence (see
``bot.skills.reminder_store``); reminders also fire during quiet hours (a reminder is something members
asked for at that time). A reminder that came due while the bot was down fires once on start, marked late.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.commands import Command, CommandCall, Observation
from bot.events import Message, Outgoing
from bot.i18n import N_, Translator
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Tool, ToolContext, ToolSpec
from bot.services import Services
from bot.skills.duejobs import DueLoop
from bot.skills.reminder_store import Firing, GroupFull, ReminderStore
from bot.skills.skilldb import SkillDB
from bot.skills.timeparse import describe_rule, local_dt, next_occurrence, parse_when

log = logging.getLogger("paibot.skills.reminders")

USAGE = N_(
    "Usage: /remind <when> <what>, e.g. /remind in 2h stand up · /remind tomorrow 9:00 call the venue · "
    "/remind every day 9am standup · /remind 每天 9点 打卡"
)
_NATURAL = re.compile(r"^\s*(?:please\s+|pls\s+)?remind\b|提醒", re.I)
# A reminder for the whole group, not for whoever set it: it mentions nobody and says so.
_EVERYONE = re.compile(
    r"提醒(?:一下)?(?:大家|所有人|全体|各位|我们)|(?:叫|通知)(?:大家|所有人|全体)|[@＠](?:所有人|全体成员)"
    r"|\bremind\s+(?:us|everyone|everybody|all|the\s+(?:group|team))\b|\b(?:everyone|everybody)\b",
    re.I,
)
EVERYONE = "everyone"  # the ``source`` of such a reminder


def fmt_when(due: datetime, tz: ZoneInfo, now: datetime, t: Translator) -> str:
    local, today = due.astimezone(tz), now.astimezone(tz).date()
    if local.date() == today:
        return t._("today {time}", time=local.strftime("%H:%M"))
    if local.date() == today + timedelta(days=1):
        return t._("tomorrow {time}", time=local.strftime("%H:%M"))
    return t.datetime(local, "EEE yyyy-MM-dd HH:mm")


class ReminderSkill:
    def __init__(self, services: Services, db: SkillDB, *, poll_s: float = 1.0) -> None:
        self.s = services
        self.db = db
        self.store = ReminderStore(db)
        self.loop = DueLoop("reminders", self.run_due, services.clock, poll_s=poll_s, rng=services.rng)

    # ----------------------------------------------------------------- skill surface

    def commands(self) -> Iterable[Command]:
        return [
            Command(
                "remind", N_("Set a reminder for this group"), self._cmd_remind, usage=N_("/remind <when> <what>")
            ),
            Command(
                "reminders",
                N_("List this group's reminders (or cancel one)"),
                self._cmd_list,
                usage=N_("/reminders [cancel N]"),
            ),
            Command("unremind", N_("Cancel a reminder"), self._cmd_unremind, usage=N_("/unremind N")),
        ]

    def tools(self) -> Iterable[Tool]:
        return [
            Tool(
                ToolSpec(
                    "set_reminder",
                    "Set a reminder in this group. The bot posts it at that time and mentions "
                    "the member who asked.",
                    {
                        "type": "object",
                        "properties": {
                            "when": {
                                "type": "string",
                                "description": "ISO 8601 local time like 2026-11-06T15:00, "
                                "or natural text like 'Friday 3pm', 'in 2h', '每天早上9点'",
                            },
                            "text": {"type": "string", "description": "what to remind about"},
                            "repeat": {"type": "string", "enum": ["none", "daily", "weekdays", "weekly"]},
                            "for_everyone": {
                                "type": "boolean",
                                "description": "true when the whole group is to be reminded ('remind us', "
                                "'提醒大家'), false when only the asker is",
                            },
                        },
                        "required": ["when", "text"],
                    },
                ),
                self._tool_set,
            ),
            Tool(
                ToolSpec(
                    "list_reminders",
                    "List this group's active reminders.",
                    {"type": "object", "properties": {}},
                ),
                self._tool_list,
            ),
            Tool(
                ToolSpec(
                    "cancel_reminder",
                    "Cancel one of this group's reminders by its number.",
                    {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
                ),
                self._tool_cancel,
            ),
        ]

    def observers(self) -> list[Any]:
        return [self._observe]

    async def start(self) -> None:
        interrupted = await self.store.mark_interrupted()
        if interrupted:
            log.warning("%d reminder firing(s) were interrupted by a crash", interrupted)
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    # ----------------------------------------------------------------- creating

    async def create(
        self,
        msg: Message,
        spec: str,
        *,
        origin: str,
        rule_hint: str | None = None,
        text: str | None = None,
        everyone: bool | None = None,
    ) -> str:
        """Parse ``spec`` and store the reminder in ``msg``'s group; returns the member-facing answer."""
        key = msg.chat.key
        await self.s.load_group(key)
        t = await self.s.translator(key)
        tz, now = self.s.tz_for(key), self.s.clock.now()
        when = parse_when(spec, now, tz)
        if when is None:
            return t._("I couldn't tell when.") + " " + t._(USAGE)
        what = (text or when.text).strip()
        if not what:
            return t._("What should I remind you about?") + " " + t._(USAGE)
        rule = when.rule
        if rule is None and rule_hint in ("daily", "weekdays", "weekly"):
            local = when.due.astimezone(tz)
            head = f"weekly {local.weekday()}" if rule_hint == "weekly" else rule_hint
            rule = f"{head} {local:%H:%M}"
        if when.due <= now:
            return t._("That time has already passed.") + " " + t._(USAGE)
        if everyone is None:
            everyone = bool(_EVERYONE.search(spec))
        return await self._store(msg, what, when.due, rule, origin=origin, tz=tz, now=now, everyone=everyone)

    async def _store(
        self,
        msg: Message,
        what: str,
        due: datetime,
        rule: str | None,
        *,
        origin: str,
        tz: ZoneInfo,
        now: datetime,
        everyone: bool = False,
    ) -> str:
        await self.db.note_group(msg.chat)
        t = await self.s.translator(msg.chat.key)
        try:
            rem = await self.store.add(
                chat=msg.chat,
                thread=msg.thread,
                owner_id=msg.author.user_id,
                owner_name=msg.author.display_name,
                text=what,
                due=due,
                rule=rule,
                cap=self.s.settings.limits.reminders_per_group,
                now=now,
                origin=origin,
                source=EVERYONE if everyone else "",
            )
        except GroupFull as exc:
            log.info("reminder refused in %s: %s", msg.chat.key, exc)
            return t._("I can't add another reminder: this group has reached its limit of {cap} active "
                       "reminders. Cancel one with /reminders cancel N.",
                       cap=self.s.settings.limits.reminders_per_group)
        self.loop.wake()
        repeat = t._(" ({rule})", rule=describe_rule(rem.rule, t)) if rem.rule else ""
        if rem.source == EVERYONE:
            return t._("⏰ OK, I'll remind everyone: #{no} {when}{repeat}: {text}", no=rem.no,
                       when=fmt_when(rem.due, tz, now, t), repeat=repeat, text=rem.text)
        return t._("⏰ OK, reminder #{no} {when}{repeat}: {text}", no=rem.no, when=fmt_when(rem.due, tz, now, t),
                   repeat=repeat, text=rem.text)

    async def _cmd_remind(self, call: CommandCall) -> str:
        if not call.args:
            return (await self.s.translator(call.message.chat.key))._(USAGE)
        return await self.create(call.message, call.args, origin=f"cmd:{call.message.event_id}")

    async def _tool_set(self, args: dict[str, Any], ctx: ToolContext) -> str:
        msg = ctx.message  # the group is the envelope's, never an argument's
        when, text = str(args.get("when", "")).strip(), str(args.get("text", "")).strip()
        repeat = str(args.get("repeat") or "none")
        origin = f"tool:{msg.event_id}:{when}:{text}"
        await self.s.load_group(msg.chat.key)
        tz, now = self.s.tz_for(msg.chat.key), self.s.clock.now()
        at = _iso(when, tz)
        if at is None:
            return await self.create(msg, when, origin=origin, rule_hint=repeat, text=text or None,
                                     everyone=args.get("for_everyone") is True)
        if not text:
            return "error: text is required"
        rule = None
        if repeat in ("daily", "weekdays", "weekly"):
            local = at.astimezone(tz)
            head = f"weekly {local.weekday()}" if repeat == "weekly" else repeat
            rule = f"{head} {local:%H:%M}"
            if at <= now:
                at = next_occurrence(rule, now, tz)
        if at <= now:
            return "error: that time has already passed"
        everyone = args.get("for_everyone") is True
        return await self._store(msg, text, at, rule, origin=origin, tz=tz, now=now, everyone=everyone)

    # ----------------------------------------------------------------- listing and cancelling

    async def listing(self, group_key: str) -> str:
        await self.s.load_group(group_key)
        t = await self.s.translator(group_key)
        tz, now = self.s.tz_for(group_key), self.s.clock.now()
        items = await self.store.active(group_key)
        if not items:
            return t._("No reminders are set in this group. Set one with /remind in 2h stand up.")
        lines = [t._("Reminders in this group:")]
        for r in items:
            repeat = t._(" ({rule})", rule=describe_rule(r.rule, t)) if r.rule else ""
            lines.append(t._("#{no} {when}{repeat}: {text} — set by {owner}", no=r.no, when=fmt_when(r.due, tz, now, t),
                             repeat=repeat, text=r.text, owner=r.owner_name))
        lines.append(t._("Cancel one with /reminders cancel N."))
        return "\n".join(lines)

    async def cancel(self, group_key: str, no: int, user_id: str, is_admin: bool) -> str:
        rem = await self.store.get(group_key, no)
        t = await self.s.translator(group_key)
        if rem is None or rem.status != "active":
            return t._("There is no active reminder #{no} in this group.", no=no)
        if rem.owner_id != user_id and not is_admin:
            return t._("Only {owner} (who set it) or a group admin can cancel reminder #{no}; "
                       "an admin sends /reminders cancel {no}.", owner=rem.owner_name, no=no)
        await self.store.cancel(group_key, no)
        return t._("Cancelled reminder #{no}: {text}", no=no, text=rem.text)

    async def _cmd_list(self, call: CommandCall) -> str:
        m = re.match(r"^(?:cancel|delete|remove|取消|删除)\s*#?(\d+)$", call.args.strip(), re.I)
        if m:
            return await self.cancel(
                call.message.chat.key, int(m.group(1)), call.message.author.user_id, call.is_admin
            )
        return await self.listing(call.message.chat.key)

    async def _cmd_unremind(self, call: CommandCall) -> str:
        m = re.match(r"^#?(\d+)$", call.args.strip())
        if not m:
            return (await self.s.translator(call.message.chat.key))._("Usage: /unremind N (see /reminders for the numbers)")
        return await self.cancel(
            call.message.chat.key, int(m.group(1)), call.message.author.user_id, call.is_admin
        )

    async def _tool_list(self, args: dict[str, Any], ctx: ToolContext) -> str:
        return await self.listing(ctx.message.chat.key)

    async def _tool_cancel(self, args: dict[str, Any], ctx: ToolContext) -> str:
        try:
            no = int(args.get("number"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return "error: number must be an integer"
        return await self.cancel(ctx.message.chat.key, no, ctx.message.author.user_id, ctx.caller_is_admin)

    # ----------------------------------------------------------------- observing

    async def _observe(self, obs: Observation) -> str | None:
        await self.db.note_group(obs.message.chat)
        decision: Any = obs.decision
        if self.s.brain is not None or not decision.speak or decision.command:
            return None
        if decision.reason not in ("mention", "direct message", "reply to me") or not _NATURAL.search(
            decision.prompt
        ):
            return None
        return await self.create(obs.message, decision.prompt, origin=f"nl:{obs.message.event_id}")

    # ----------------------------------------------------------------- firing

    async def run_due(self, now: datetime) -> int:
        sent = await self._resolve_interrupted(now)
        for firing in await self.store.claim_retries(now):
            sent += await self._fire(firing, now)
        for rem in await self.store.candidates(now):
            if rem.chat.platform not in self.s.adapters:
                continue  # its platform is not connected (yet): leave it due, claim nothing
            await self.s.load_group(rem.group_key)
            firing = await self.store.claim(rem, now, self.s.tz_for(rem.group_key))
            if firing is not None:
                sent += await self._fire(firing, now)
        return sent

    async def _resolve_interrupted(self, now: datetime) -> int:
        """Resend firings a crash interrupted where the platform deduplicates sends; give up elsewhere."""
        sent = 0
        for f in await self.store.interrupted():
            adapter = self.s.adapters.get(f.reminder.chat.platform)
            if adapter is None:
                continue  # not connected yet: decide once it is
            if adapter.capabilities.idempotent_sends:
                await self.store.set_firing_state(f, "sending")
                sent += await self._fire(f, now)
            else:
                await self.store.set_firing_state(f, "unknown")
                log.warning("reminder %s in %s may not have been sent before a crash; not resending",
                            f.reminder.id, f.reminder.group_key)
        return sent

    def firing_text(self, f: Firing, t: Translator) -> str:
        rem = f.reminder
        tz = self.s.tz_for(rem.group_key)
        if rem.source.startswith("todo:"):
            text = t._("⏰ To-do due, {owner}: {text}", owner=rem.owner_name, text=rem.text)
        elif rem.source == EVERYONE:
            text = t._("⏰ Reminder for everyone: {text}", text=rem.text)
        else:
            text = t._("⏰ Reminder for {owner}: {text}", owner=rem.owner_name, text=rem.text)
        if f.late:
            local = f.due.astimezone(tz)
            at = (
                f"{local:%H:%M}"
                if local.date() == self.s.clock.now().astimezone(tz).date()
                else f"{local:%Y-%m-%d %H:%M}"
            )
            text += t._(" (late: was due {at})", at=at)
        return text

    async def _fire(self, f: Firing, now: datetime) -> int:
        rem = f.reminder
        out = Outgoing(
            chat=rem.chat,
            text=self.firing_text(f, await self.s.translator(rem.group_key)),
            thread=rem.thread,
            mention_user_ids=() if rem.source == EVERYONE else (rem.owner_id,),
            idempotency_key=f"reminder:{rem.id}:{int(f.due.timestamp())}",
        )
        try:
            ref = await self.s.send(out)
        except Exception as exc:  # the platform refused or is unreachable: retry this firing later
            delay = min(3600.0, 30.0 * 2**f.attempts)
            dead = await self.store.mark_failed(f, now, delay)
            log.warning(
                "reminder %s in %s could not be sent (%s)%s",
                rem.id,
                rem.group_key,
                type(exc).__name__,
                "; giving up" if dead else f"; retrying in {delay:.0f}s",
            )
            return 0
        await self.store.mark_sent(f, ref.message_id)
        return 1


def _iso(text: str, tz: ZoneInfo) -> datetime | None:
    """An ISO 8601 time (naive = the group's wall clock), or None."""
    if not re.match(r"^\d{4}-\d{2}-\d{2}([T ]\d{1,2}:\d{2}(:\d{2})?)?([+-]\d{2}:?\d{2}|Z)?$", text):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return local_dt(dt.date(), dt.time(), tz)
    return dt


def build(env: SkillEnv) -> SkillSet:
    skill = ReminderSkill(env.services, env.shared.db)
    return SkillSet([skill], [skill])


plugin = SkillPlugin(
    name="reminders",
    build=build,
    order=20,
    description="reminders in natural language (one-off and repeating)",
)
