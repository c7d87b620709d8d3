"""Output safety on every platform: hostile Markdown/HTML, a 100,000-character answer, zero-width and RTL
characters and mass pings are delivered safely; model-written links get no preview.

Telegram and Discord go through their unmodified SDKs against the fake servers; Matrix through the adapter's
send path with the homeserver call recorded (Synapse delivery itself is covered by test_matrix_synapse.py);
the web group through its HTTP API.
"""

from __future__ import annotations

import html
import re
from typing import Any

import aiohttp

from adapters.discord.text import MAX_MESSAGE_CHARS
from adapters.matrix.adapter import MatrixAdapter
from adapters.telegram.text import utf16_len
from adapters.web.adapter import WebAdapter
from adapters.matrix.config import MatrixAdapterSettings
from bot.events import ChatRef, Outgoing
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram, RecordingSink, make_adapter
from tests.test_discord_adapter import make_adapter as make_discord_adapter

ZW = "\u200b\u200c\u200d\u2060\ufeff"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> <a href=\"javascript:alert(1)\">x</a>",
    "**bold** __under__ [click](javascript:alert(1)) [ok](https://evil.example/\"onmouseover=alert(1))",
    "```\n@everyone </code></pre><script>x</script>\n``` `inline <b>` ~~strike~~ # heading",
    "@everyone @here @room @Everyone @ROOM ＠everyone @\u200beveryone",
    f"zero{ZW}width and {BIDI}rtl\u202eoverride\u202c gnp.exe",
    "MarkdownV2 specials _*[]()~`>#+-=|{}.!\\ and HTML entities &amp; &lt;b&gt; &#x3C;script&#x3E;",
    "links https://phish.example/login and [docs](https://evil.example/x) www.example.com",
    "\x00nul \x1b[31mansi\x1b[0m \r\n crlf \t tab",
)
LONG = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 36 for i in range(100))[:100_000]
DISCORD_PING = re.compile(r"@(everyone|here)\b")


def squash(text: str) -> str:
    """Text compared modulo whitespace at part boundaries and the zero-width breaks inserted into pings."""
    return re.sub(r"\s+", " ", text.replace("\u200b", "").replace("\u2060", "")).strip()


async def test_telegram_gets_plain_text_intact_split_and_without_previews(tmp_path):
    fake = await FakeTelegram().start()
    chat = fake.chat(-1009)
    adapter = make_adapter(fake, tmp_path)
    await adapter.start(RecordingSink())
    try:
        texts = [*HOSTILE, LONG]
        for text in texts:
            fake.sent.clear()
            await adapter.send(Outgoing(ChatRef("telegram", str(chat.id)), text))
            params = [m["_params"] for m in fake.sent]
            assert all(p.get("link_preview_options") == {"is_disabled": True} for p in params)
            assert all("parse_mode" not in p for p in params)  # plain text: nothing is interpreted
            parts = fake.texts_to(chat.id)
            assert all(utf16_len(p) <= 4096 for p in parts)
            assert squash(" ".join(parts)) == squash(text.replace("\x00", "")) or squash(" ".join(parts)) == squash(text)
        print(f"telegram: {len(texts)} hostile texts delivered intact, plain, unpreviewed; "
              f"the 100,000-character answer in {len(fake.sent)} parts")
    finally:
        await adapter.stop()
        await fake.close()


async def test_discord_never_pings_everyone_and_suppresses_embeds(tmp_path):
    fake = FakeDiscord()
    await fake.start()
    adapter = make_discord_adapter(fake, tmp_path)
    await adapter.start(RecordingSink())
    try:
        user = fake.add_user("alice")
        chat = ChatRef("discord", str(fake.general))
        texts = [*HOSTILE, LONG]
        for text in texts:
            before = len(fake.sent_by_bot())
            await adapter.send(Outgoing(chat, text, mention_user_ids=(user["id"],)))
            posts = [r.json for r in fake.requests_to("POST", r"/channels/\d+/messages")][-(len(
                fake.sent_by_bot()) - before):]
            made = fake.sent_by_bot()[before:]
            for body in posts:
                allowed = body["allowed_mentions"]
                assert "everyone" not in allowed.get("parse", []) and "roles" not in allowed.get("parse", [])
                assert body["flags"] & 4  # SUPPRESS_EMBEDS
                assert not DISCORD_PING.search(body["content"])  # Discord's mass pings are case-sensitive
                assert len(body["content"]) <= MAX_MESSAGE_CHARS
            assert not any(m.get("mention_everyone") for m in made)
            assert squash(" ".join(b["content"] for b in posts)) == squash(text)
        print(f"discord: {len(texts)} hostile texts, 0 mass pings, embeds suppressed on every part; "
              f"100,000 characters in {-(-len(LONG) // MAX_MESSAGE_CHARS)}+ parts")
    finally:
        await adapter.stop()
        await fake.stop()


class RecordingMatrix(MatrixAdapter):
    """The Matrix adapter's send path with the homeserver call recorded instead of made."""

    def __init__(self) -> None:
        super().__init__(MatrixAdapterSettings(enabled=True, homeserver="http://127.0.0.1:9", user_id="@pai:hs",
                                               password="x"))
        self.contents: list[dict[str, Any]] = []

    def _ready(self) -> Any:  # type: ignore[override]
        return object()

    async def _put(self, client: Any, room_id: str, content: dict[str, Any], key: str, part: int) -> str:
        self.contents.append(content)
        return f"$e{len(self.contents)}"


_SAFE_TAG = re.compile(r"</?(strong|em|del|code|pre|br|a)(\s+(class|href)=\"[^\"<>]*\")?\s*/?>")


async def test_matrix_neutralises_room_pings_and_renders_only_safe_html():
    adapter = RecordingMatrix()
    chat = ChatRef("matrix", "!room:hs")
    for text in [*HOSTILE, LONG]:
        adapter.contents.clear()
        await adapter.send(Outgoing(chat, text, reply_to="$q", mention_user_ids=("matrix:@alice:hs",)))
        for i, content in enumerate(adapter.contents):
            assert not ROOM.search(content["body"])
            assert content["m.mentions"].get("room") is not True
            assert content["m.mentions"]["user_ids"] == (["@alice:hs"] if i == 0 else [])
            formatted = content.get("formatted_body", "")
            assert not ROOM.search(html.unescape(formatted))
            leftover = _SAFE_TAG.sub("", formatted)
            assert "<" not in leftover and ">" not in leftover, leftover[:200]  # every other < is escaped
            assert not re.search(r"href=\"(?!https?://|mailto:)", formatted)
            assert len(content["body"].encode()) <= 65_000
        assert squash(" ".join(c["body"] for c in adapter.contents)) == squash(text.replace("\x00", "")) or \
            squash(" ".join(c["body"] for c in adapter.contents)) == squash(text)
    print(f"matrix: {len(HOSTILE) + 1} hostile texts, 0 room pings, only safe HTML, intentional mentions only")


ROOM = re.compile(r"@room\b", re.IGNORECASE)


async def test_the_web_group_stores_and_serves_text_verbatim_as_json(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await adapter.start(RecordingSink())
    try:
        group = await adapter.create_group("Hostile")
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            for i, text in enumerate([*HOSTILE, LONG]):
                await adapter.send(Outgoing(ChatRef("web", group.number), text, idempotency_key=f"k{i}"))
            resp = await http.get(f"/api/groups/{group.address}/messages?limit=500")
            assert resp.status == 200 and resp.content_type == "application/json"
            assert resp.headers.get("X-Content-Type-Options") == "nosniff"
            listed = [m["text"] for m in (await resp.json())["messages"]]
        joined = squash(" ".join(listed))
        assert all(squash(t.replace("\x00", "")) in joined or squash(t) in joined for t in HOSTILE)
        page = (await _static(adapter, "app.js")) + (await _static(adapter, "media.js"))
        assert len(page) > 1000, "the page's scripts were not served where expected"
        assert "innerHTML" not in page and "insertAdjacentHTML" not in page  # text goes in as text nodes
        print(f"web: {len(HOSTILE) + 1} hostile texts served verbatim as JSON (nosniff), rendered as text")
    finally:
        await adapter.stop()


async def _static(adapter: WebAdapter, name: str) -> str:
    async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
        resp = await http.get(f"/static/{name}")
        return await resp.text() if resp.status == 200 else ""


QQ_HOSTILE = (
    *HOSTILE,
    "[CQ:at,qq=all] 全体注意 [CQ:image,file=http://evil.example/x.jpg] [CQ:reply,id=1]",
    "&#91;CQ:at,qq=all&#93; &amp; escaped look-alikes",
)


async def test_qq_gets_every_answer_as_text_segments_never_a_cq_code_or_at_all():
    from adapters.onebot.adapter import OneBotAdapter
    from adapters.onebot.config import OneBotSettings
    from bot.ports import AdapterEnv
    from tests.fake_onebot import FakeOneBot
    from tests.fakes import ManualClock, RecordingInbox

    fake = FakeOneBot()
    fake.group(445566, "g")
    await fake.serve_ws()
    for fmt in ("array", "string"):
        cfg = OneBotSettings(
            enabled=True, url=fake.ws_url, send_interval_s=0, group_per_minute=0, message_format=fmt
        )
        adapter = OneBotAdapter(cfg, AdapterEnv("Pai", None), clock=ManualClock())
        await adapter.start(RecordingInbox())
        try:
            for text in (*QQ_HOSTILE, LONG):
                fake.sent.clear()
                out = Outgoing(ChatRef("onebot", "445566"), text, mention_user_ids=("all", "123"))
                await adapter.send(out)
                segs = [seg for m in fake.sent for seg in m.segments]
                assert {s["type"] for s in segs} <= {"text", "at"}
                assert all(s["data"]["qq"] == "123" for s in segs if s["type"] == "at")
                texts = [s["data"]["text"] for s in segs if s["type"] == "text"]
                assert all(len(t) <= cfg.message_limit + 1 for t in texts)
                got = " ".join(texts)
                assert squash(got) == squash(text)
        finally:
            await adapter.stop()
    await fake.close()
    print(f"qq: {len(QQ_HOSTILE)} hostile texts and the 100,000-character answer delivered as text segments "
          "in both message formats; no CQ code, no @全体成员")


async def test_wecom_answers_never_mention_anyone():
    from adapters.wecom.adapter import WeComAdapter
    from adapters.wecom.config import WeComSettings
    from bot.ports import AdapterEnv
    from tests.fake_wecom import FakeWeCom
    from tests.fakes import RecordingInbox

    fake = FakeWeCom()
    adapter = WeComAdapter(WeComSettings(enabled=True, token=fake.token, encoding_aes_key=fake.aes, port=0),
                           AdapterEnv("Pai", None))  # fmt: skip
    inbox = RecordingInbox()
    await adapter.start(inbox)
    await fake.start(adapter.where)
    try:
        for text in (*HOSTILE, "<@all> 开会 <@zhangsan>"):
            conv = await fake.send(fake.message("@Pai hi", chat="wrkX"))
            event = inbox.events[f"wecom:{conv.msgid}"]
            await adapter.send(Outgoing(event.chat, text, reply_to=event.id))
            await conv.done.wait()
            assert "<@" not in conv.shown[-1]
    finally:
        await adapter.stop()
        await fake.close()
