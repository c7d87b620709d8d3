"""Intake policy: messages from groups the operator did not list, and direct messages from people the
operator did not allow, cost no model call, are not recorded, fetch no file and get no answer.

Each probe is a message that would otherwise make the bot work: a mention, a command, a question, an
image (a vision model would caption it), a PDF (it would be parsed into memory), a keyword.
"""

from __future__ import annotations

from typing import Any

from bot.events import Attachment
from tests.doc_factory import make_image, make_pdf
from tests.security.obedient import FileAdapter, ObedientLLM, build_app, msg, said

POLICY = (
    'access: {allowed_groups: ["fake:beta"], allowed_users: ["fake:bob", "fake:alice"],'
    ' blocked_users: ["fake:troll"]}\n'
    "triggers: {keywords: [pizza]}\n"
    "limits: {member_per_minute: 1000, group_per_minute: 1000, daily_tokens_per_group: 1000000}\n"
    "llm: {model: obedient, vision: true, retry_base_s: 0.01, retry_max_s: 0.01}\n"
)
IMAGE = Attachment("image", "cat.png", "image/png", 100, source="img")
PDF = Attachment("file", "notes.pdf", "application/pdf", 100, source="pdf")
TEXTS = ("@Pai hello?", "/summary", "/ask what's up?", "/remind in 2h stretch", "pizza tonight?", "Pai, help",
         "/search anything", "/poll a? | b | c")


class CountingFiles(FileAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.files.update({"img": make_image(), "pdf": make_pdf(["some notes"])})
        self.fetched = 0

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        self.fetched += 1
        return await super().fetch_attachment(att, max_bytes)


def probes(app: Any) -> list[Any]:
    out = []
    for text in TEXTS:
        for attachments in ((), (IMAGE,), (PDF,), (IMAGE, PDF)):
            # an unlisted group, whoever writes there (an allowed user and the operator's admin included)
            for author in ("bob", "boss", "carol"):
                out.append(msg(app, text, chat="zulu", author=author, attachments=attachments))
            # direct messages from people not on the allow-list, and from a blocked member
            for author in ("stranger", "troll", "mallory"):
                out.append(msg(app, text, chat=f"dm-{author}", author=author, is_direct=True,
                               attachments=attachments))
    return out


async def check(app: Any, adapter: CountingFiles, llm: ObedientLLM, items: list[Any]) -> int:
    for m in items:
        await said(app, adapter, m)
    memory = app.services.memory
    recorded = sum(1 for (pai, _) in memory.records if pai != "fake:beta")
    return len(llm.calls) + recorded + len(adapter.sent) + adapter.fetched


async def test_unlisted_groups_and_strangers_direct_messages_cost_nothing(tmp_path):
    llm = ObedientLLM()
    adapter = CountingFiles()
    app, _ = await build_app(tmp_path, llm, extra=POLICY, adapter=adapter)
    try:
        items = probes(app)
        costs = await check(app, adapter, llm, items)
        print(f"intake policy: {len(llm.calls)} model calls, {costs} costs in total (calls, records, replies, "
              f"file fetches) for {len(items)} messages from unlisted groups and strangers")
        assert (len(llm.calls), costs) == (0, 0)
        # Positive control: the same kinds of message from an allowed member in the listed group do cost.
        await said(app, adapter, msg(app, "@Pai what is in this picture?", author="bob", attachments=(IMAGE,)))
        assert len(llm.calls) >= 2 and adapter.fetched == 1 and adapter.sent  # caption, answer
    finally:
        await app.stop()


async def test_with_direct_messages_off_even_allowed_users_cost_nothing_in_private(tmp_path):
    llm = ObedientLLM()
    adapter = CountingFiles()
    extra = POLICY.replace("blocked_users", "allow_direct_messages: false, blocked_users")
    app, _ = await build_app(tmp_path, llm, extra=extra, adapter=adapter)
    try:
        items = [msg(app, text, chat="dm-bob", author="bob", is_direct=True, attachments=(IMAGE, PDF))
                 for text in TEXTS]
        costs = await check(app, adapter, llm, items)
        print(f"direct messages off: {costs} costs for {len(items)} direct messages from an allowed user")
        assert costs == 0
    finally:
        await app.stop()
