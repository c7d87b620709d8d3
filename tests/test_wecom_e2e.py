"""WeCom end to end through the real core: a fake WeCom -> the wecom plugin built from config.yaml -> App
(inbox, member pipeline, memory) with a scripted model that streams. A group @mention gets its answer shown
while it is written, in the stream WeCom refreshes, and the stream ends with the whole answer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.app import App
from bot.config import parse_settings
from tests.fake_wecom import FakeWeCom
from tests.fakes import ScriptedLLM

GROUP = "wrkSFfCgBBBB"
ANSWER = (
    "周报已经汇总好了：销售部完成率百分之九十二，研发部上线了两个版本，"
    "客服部满意度提升三个点，下周重点是年终盘点和预算。"
)


async def test_a_wecom_mention_gets_a_streamed_answer(tmp_path: Path) -> None:
    fake = FakeWeCom()
    waited = False

    async def let_wecom_see_it() -> None:
        # After the first piece of the model's answer, wait until a WeCom refresh showed it: the member
        # sees the answer being written (synchronised on what WeCom saw, not on time).
        nonlocal waited
        if not waited:
            waited = True
            (conv,) = fake.conversations.values()
            await wait(lambda: any(s and s != ANSWER for s in conv.shown), 20)

    llm = ScriptedLLM([ANSWER], chunk_chars=45, between_chunks=let_wecom_see_it)
    settings = parse_settings(
        f"bot: {{name: 派, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "llm: {stream: true}\n"
        "adapters:\n"
        "  web: {enabled: false}\n"
        f"  wecom: {{enabled: true, token: {fake.token}, encoding_aes_key: {fake.aes}, port: 0}}\n"
    )
    app = App(settings, llm=llm)
    await app.start()
    try:
        adapter: Any = app.services.adapters["wecom"]  # type: ignore[union-attr]
        await fake.start(adapter.where)
        conv = await fake.send(fake.message("@派 这周的周报汇总一下", chat=GROUP, user="zhaoliu"))
        await asyncio.wait_for(conv.done.wait(), 30)
        assert conv.finished and conv.shown[-1] == ANSWER
        partial = [s for s in conv.shown if s and s != ANSWER]
        assert partial and all(ANSWER.startswith(p) for p in partial)  # shown while written, never wrong
        assert llm.calls[0].get("stream") and "这周的周报汇总一下" in llm.prompts[0]
        assert conv.responses == []  # the stream carried it all
    finally:
        await app.stop()
        await fake.close()


async def wait(cond: Any, timeout: float) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)
