"""Watching together on Discord, which has no player: end to end through the unmodified discord.py against
the fake Discord. A subtitle file shared in a channel gets a digest, and a question about a moment is
answered from the right lines (no model)."""

from __future__ import annotations

from pathlib import Path

from adapters.discord.adapter import DiscordAdapter
from bot.app import App
from bot.config import parse_settings
from bot.ports import AdapterEnv
from tests.fake_discord import FakeDiscord
from tests.media_factory import make_srt
from tests.test_discord_e2e import _wait_backfilled, fake, mention  # noqa: F401


async def test_a_subtitle_file_shared_in_a_discord_channel_gets_a_digest_and_timestamped_answers(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    settings = parse_settings(f"""
bot: {{name: Pai, data_dir: "{tmp_path}", welcome: false}}
adapters:
  web: {{enabled: false}}
  discord: {{enabled: true, token: "{fake.token}", api_base: "{fake.api_base}", gateway_url: "{fake.gateway_url}"}}
""")
    adapter = DiscordAdapter(settings.adapters.discord, AdapterEnv(bot_name="Pai", data_dir=tmp_path),
                             guild_ready_timeout=0.05, ready_timeout_s=20)  # fmt: skip
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    app = App(settings, adapters={"discord": adapter})
    await app.start()
    try:
        await _wait_backfilled(adapter)
        srt = ("harbour.srt", "application/x-subrip", make_srt())
        await fake.user_says(alice, "tonight's film", attachments=[srt])
        (digest,) = [m["content"] for m in await fake.wait_bot_messages(1)]
        assert digest.startswith("🎬 Following harbour.srt.") and "10 lines, 0:39 long" in digest

        await fake.user_says(bob, mention(fake, "what did they say at 0:13?"))
        answer = (await fake.wait_bot_messages(2))[-1]["content"]
        assert answer.startswith("Around 0:13 in harbour.srt:")
        assert "[0:13] 我把钥匙放在灯塔里了。" in answer and "Raise the red flag" not in answer
    finally:
        await app.stop()
