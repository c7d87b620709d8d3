"""Watching together in the core: sessions, player control, subtitles into memory, questions about moments,
recaps and digests, with and without a model, on a platform with a player and on one without.

The clock is manual: "two minutes of film later" is ``clock.advance(120)``. The player platform is a fake
adapter with the ``WatchHost`` role that records what the core shows its players.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bot.errors import WatchRefused
from bot.events import Message, PersonRef, ReplyRef
from bot.ports import WatchCommand, WatchView
from tests.fakes import ScriptedLLM, make_message
from tests.media_factory import make_audio, make_srt, make_video, make_vtt
from tests.media_world import FetchingAdapter, attach, file_att
from tests.skill_world import ADMIN, World, say, world_fixture  # noqa: F401


class PlayerPlatform(FetchingAdapter):
    """A platform with synchronised players: it keeps the control it is handed and what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.control: Any = None
        self.shown: list[WatchView] = []

    def host_watch(self, control: Any) -> None:
        self.control = control

    async def show_watch(self, view: WatchView) -> None:
        self.shown.append(view)


def member(user: str) -> PersonRef:
    return PersonRef("fake", user, user.capitalize())


def msg(text: str, author: str = "alice", **kw: Any) -> Message:
    return make_message(text, author=author, mentions_me="@Pai" in text, **kw)


async def start(world: World, llm: Any = None, *, player: bool = True):
    adapter = PlayerPlatform() if player else FetchingAdapter()
    app, _, memory = await world.start(llm, adapter=adapter)
    return app, adapter, memory


def watch_skill(app: Any) -> Any:
    return app.skill("watch")


def subtitle_records(memory: Any) -> list[Any]:
    return sorted((r for r in memory.records.values() if "start" in r.meta), key=lambda r: r.meta["start"])


async def share_film(world: World, app: Any, adapter: FetchingAdapter, tmp_path: Path, text: str = "/watch",
                     author: str = "alice", subs: bool = True) -> list[str]:  # fmt: skip
    video = make_video(tmp_path / "harbour.webm", 42)
    atts = [file_att(adapter, "harbour.webm", video.read_bytes(), "video/webm", kind="video")]
    if subs:
        atts.append(file_att(adapter, "harbour.vtt", make_vtt(), "text/vtt"))
    return await say(app, adapter, attach(msg(text, author), *atts))


# --------------------------------------------------------------------------- with a synchronised player


async def test_a_session_starts_plays_in_sync_and_pai_says_what_was_just_said(world, tmp_path):
    app, adapter, memory = await start(world)
    replies = await share_film(world, app, adapter, tmp_path)
    assert "started watching harbour.webm together" in replies[0] and "10 subtitle lines" in replies[0]
    control = adapter.control
    chat = adapter.shown[-1].chat
    view = await control.current(chat)
    assert view.title == "harbour.webm" and view.cues == 10 and view.playback["duration"] == pytest.approx(42)
    assert view.media is not None and view.media.kind == "video"

    await control.control(chat, member("bob"), WatchCommand("play", 0.0, view.session))
    world.clock.advance(14.2)
    late = await control.current(chat)  # someone opening the page now starts where the others are
    assert late.playback["playing"]
    from bot.skills.watch.sync import Playback

    assert Playback.from_dict(late.playback).position_at(control.now()) == pytest.approx(14.2)

    (answer,) = await say(app, adapter, msg("@Pai 刚才他说了什么？", "carol"))
    assert "《harbour.webm》刚才（0:14）" in answer
    assert "[0:13] 我把钥匙放在灯塔里了。" in answer and "[0:09] Tie the boat to the old pier." in answer
    assert "Nobody leaves" not in answer  # 0:17 has not been said yet
    (answer,) = await say(app, adapter, msg("@Pai what happened at 0:26?", "bob"))
    assert (
        answer.startswith("Around 0:26 in harbour.webm:") and "[0:25] Raise the red flag at noon." in answer
    )

    # The lines are in memory, in chunks with their media times and session.
    recs = subtitle_records(memory)
    assert recs and recs[0].meta["session"] == view.session and recs[0].author_id == "alice"
    assert "[0:13] 我把钥匙放在灯塔里了。" in " ".join(r.text for r in recs)


async def test_with_a_model_the_lines_around_the_moment_are_in_the_prompt(world, tmp_path):
    llm = ScriptedLLM(["She said she left the key in the lighthouse (0:13)."])
    app, adapter, _ = await start(world, llm)
    await share_film(world, app, adapter, tmp_path)
    control, chat = adapter.control, adapter.shown[-1].chat
    view = await control.current(chat)
    await control.control(chat, member("alice"), WatchCommand("seek", 10.0, view.session))
    await control.control(chat, member("alice"), WatchCommand("play", None, view.session))
    world.clock.advance(4.5)
    calls = len(llm.calls)
    (answer,) = await say(app, adapter, msg("@Pai what did she just say?", "bob"))
    assert answer == "She said she left the key in the lighthouse (0:13)."
    prompt = llm.calls[calls]["messages"][-1]["content"]
    assert "[0:13] 我把钥匙放在灯塔里了。" in prompt and "[0:09] Tie the boat" in prompt
    assert "Raise the red flag" not in prompt and "untrusted" in prompt.lower()


async def test_only_the_starter_controls_when_they_choose_and_can_open_it_to_everyone(world, tmp_path):
    app, adapter, _ = await start(world)
    await share_film(world, app, adapter, tmp_path, "/watch only-me")
    control, chat = adapter.control, adapter.shown[-1].chat
    view = await control.current(chat)
    assert view.control == "starter"
    with pytest.raises(WatchRefused, match="Only Alice"):
        await control.control(chat, member("bob"), WatchCommand("play", 0.0, view.session))
    with pytest.raises(WatchRefused):
        await control.control(chat, member("bob"), WatchCommand("control", "all", view.session))
    await control.control(chat, member("alice"), WatchCommand("control", "all", view.session))
    after = await control.control(chat, member("bob"), WatchCommand("rate", 1.5, view.session))
    assert after.playback["rate"] == 1.5 and after.seq > view.seq
    with pytest.raises(WatchRefused):
        await control.control(chat, member("bob"), WatchCommand("rate", 99, view.session))
    with pytest.raises(WatchRefused):  # a player still showing an older session
        await control.control(chat, member("bob"), WatchCommand("play", 0.0, "old-session"))


async def test_ending_from_a_player_posts_a_digest_and_memory_keeps_what_was_watched(world, tmp_path):
    app, adapter, memory = await start(world)
    await share_film(world, app, adapter, tmp_path)
    control, chat = adapter.control, adapter.shown[-1].chat
    view = await control.current(chat)
    await control.control(chat, member("bob"), WatchCommand("play", 0.0, view.session))
    world.clock.advance(5)
    await say(app, adapter, msg("the storm scene is great", "bob", sent_at=world.clock.now()))
    world.clock.advance(-5)
    world.clock.advance(30)
    sent = len(adapter.sent)
    ended = await control.control(chat, member("bob"), WatchCommand("end", None, view.session))
    assert ended.ended and await control.current(chat) is None
    digest = adapter.sent[sent].text
    assert digest.startswith("🎬 harbour.webm — watched together, 0:30 of 0:42, started by Alice")
    assert "With Bob." in digest and "Some lines:" in digest and "Bob: the storm scene is great" in digest
    (watched,) = [r for r in memory.records.values() if r.id.endswith("#watch")]
    assert "harbour.webm" in watched.text and "up to 0:30 of 0:42" in watched.text
    assert watched.author_id == "alice" and watched.meta["session"] == view.session
    (recap,) = await say(app, adapter, msg("/recap", "carol"))
    assert recap.startswith("📺 harbour.webm: 0:30 of 0:42 watched so far.") and "[0:25]" in recap
    assert "[0:33]" not in recap


async def test_a_session_that_stood_at_its_end_ends_by_itself(world, tmp_path):
    app, adapter, _ = await start(world)
    await share_film(world, app, adapter, tmp_path)
    control, chat = adapter.control, adapter.shown[-1].chat
    view = await control.current(chat)
    await control.control(chat, member("alice"), WatchCommand("play", 0.0, view.session))
    world.clock.advance(42 + 60)
    skill = watch_skill(app)
    assert await skill.run_due(world.clock.now()) == 0  # at the end, within the grace period
    world.clock.advance(120)
    assert await skill.run_due(world.clock.now()) == 1
    assert adapter.shown[-1].ended and "watched together, 0:42 of 0:42" in adapter.sent[-1].text


async def test_watch_as_a_reply_to_a_shared_video_and_subtitles_added_later(world, tmp_path):
    app, adapter, _ = await start(world)
    video = make_video(tmp_path / "clip.webm", 20)
    shared = attach(
        msg("look at this"), file_att(adapter, "clip.webm", video.read_bytes(), "video/webm", kind="video")
    )
    assert await say(app, adapter, shared) == []
    (started,) = await say(app, adapter, msg("/watch Clip night", "bob", reply_to=ReplyRef(shared.id)))
    assert "Bob started watching Clip night together" in started and "no subtitles" in started
    (added,) = await say(app, adapter, attach(msg("subs"), file_att(adapter, "clip.srt", make_srt(), "")))
    assert added == "📝 Added 10 subtitle lines from clip.srt to Clip night."
    assert adapter.shown[-1].cues == 10


async def test_forget_me_removes_the_sessions_and_lines_a_member_shared(world, tmp_path):
    app, adapter, memory = await start(world)
    await share_film(world, app, adapter, tmp_path)
    assert subtitle_records(memory)
    await say(app, adapter, msg("/forget-me"))
    assert subtitle_records(memory) == []
    skill = watch_skill(app)
    chat = adapter.shown[-1].chat
    assert await adapter.control.current(chat) is None and adapter.shown[-1].ended
    assert await skill.sessions.store.latest(chat.key) is None


async def test_retention_removes_ended_sessions_through_the_one_retention_pass(world, tmp_path):
    """The group's retention_days reaches watch sessions the way it reaches memory: the privacy skill's
    hourly pass and the Forgetter, not a purge of the watch skill's own."""
    app, adapter, _ = await start(world)
    await share_film(world, app, adapter, tmp_path)
    control, chat = adapter.control, adapter.shown[-1].chat
    view = await control.current(chat)
    await control.control(chat, member("alice"), WatchCommand("end", None, view.session))
    (ok,) = await say(app, adapter, msg("/settings retention_days 30", ADMIN))
    assert ok == "retention_days is now 30 days."
    store = watch_skill(app).sessions.store
    privacy = app.skill("privacy")
    world.clock.advance(3600)
    await privacy.loop.tick()
    assert (await store.latest(chat.key)).id == view.session  # an hour old: kept
    world.clock.advance(31 * 86400)
    await privacy.loop.tick()
    assert await store.latest(chat.key) is None


async def test_nothing_an_opted_out_member_shares_is_kept_and_their_questions_are_answered(world, tmp_path):
    app, adapter, memory = await start(world)
    await say(app, adapter, msg("/optout", "bob"))  # (what was kept before stays until /forget-me)
    await share_film(world, app, adapter, tmp_path, subs=False)  # Alice starts a session without subtitles
    srt = file_att(adapter, "harbour.srt", make_srt(), "")
    assert await say(app, adapter, attach(msg("subs", "bob"), srt)) == []
    chat = adapter.shown[-1].chat
    session = await watch_skill(app).sessions.running(chat.key)
    assert await watch_skill(app).sessions.cues_of(session) == [] and "bob" not in session.participants
    assert subtitle_records(memory) == []
    (added,) = await say(app, adapter, attach(msg("subs", "carol"), srt))
    assert added == "📝 Added 10 subtitle lines from harbour.srt to harbour.webm."
    (answer,) = await say(app, adapter, msg("@Pai what did they say at 0:13?", "bob"))
    assert "[0:13] 我把钥匙放在灯塔里了。" in answer


# --------------------------------------------------------------------------- without a player


async def test_an_edited_caption_of_a_shared_subtitle_file_does_not_start_the_session_again(world):
    app, adapter, _ = await start(world, player=False)
    shared = attach(msg("tonight"), file_att(adapter, "harbour.srt", make_srt(), ""))
    (digest,) = await say(app, adapter, shared)
    assert digest.startswith("🎬 Following harbour.srt.")
    session = await watch_skill(app).sessions.running(shared.chat.key)
    # Telegram, Discord and Matrix repeat the message's files in an edit of its caption.
    edit = dataclasses.replace(shared, event_id=f"{shared.event_id}:edit", text="tonight, at 9", edited=True)
    assert await say(app, adapter, edit) == []
    again = await watch_skill(app).sessions.running(shared.chat.key)
    assert again is not None and again.id == session.id


async def test_subtitles_shared_on_a_chat_platform_get_a_digest_and_timestamped_answers(world, tmp_path):
    app, adapter, memory = await start(world, player=False)
    (digest,) = await say(
        app, adapter, attach(msg("tonight's film"), file_att(adapter, "harbour.srt", make_srt(), ""))
    )
    assert digest.startswith("🎬 Following harbour.srt.")
    assert "📝 harbour.srt: 10 lines, 0:39 long." in digest and "what happened at 0:21" in digest
    assert len(subtitle_records(memory)) == 1
    (answer,) = await say(app, adapter, msg("@Pai what did they say at 0:13?", "bob"))
    assert "[0:13] 我把钥匙放在灯塔里了。" in answer and "Raise the red flag" not in answer
    (answer,) = await say(app, adapter, msg("@Pai what did she just say?", "bob"))
    assert "no shared player" in answer
    (answer,) = await say(app, adapter, msg("@Pai 12分钟的时候说了什么", "bob"))
    # The group mostly writes English, so Pai answers in English (docs/i18n.md); the Chinese time is read.
    assert "Around 12:00 in harbour.srt:" in answer and "[0:37] The end of the voyage." in answer
    # A day later the session has been put away: a time in a question is no longer about the film.
    world.clock.advance(13 * 3600)
    assert await watch_skill(app).run_due(world.clock.now()) == 1
    world.clock.advance(13 * 3600)
    (later,) = await say(app, adapter, msg("@Pai what did they say at 0:13?", "bob"))
    assert not later.startswith("Around 0:13")


async def test_a_media_file_with_its_own_subtitle_track_gets_a_digest_with_a_model(world, tmp_path):
    llm = ScriptedLLM(["A crew prepares for a storm and hides a key in the lighthouse."])
    app, adapter, _ = await start(world, llm, player=False)
    film = make_video(tmp_path / "harbour.mkv", 6, subtitles=make_srt())
    (digest,) = await say(
        app,
        adapter,
        attach(
            msg("film"), file_att(adapter, "harbour.mkv", film.read_bytes(), "video/x-matroska", kind="video")
        ),
    )
    assert "A crew prepares for a storm" in digest and "10 lines" in digest
    prompt = llm.calls[-1]["messages"][-1]["content"]
    assert "[0:01] Good morning, captain." in prompt
    plain = make_video(tmp_path / "plain.webm", 2)
    assert (
        await say(
            app,
            adapter,
            attach(
                msg("a clip"), file_att(adapter, "plain.webm", plain.read_bytes(), "video/webm", kind="video")
            ),
        )
        == []
    )


class FakeTranscriber:
    def __init__(self) -> None:
        self.paths: list[Path] = []

    def transcribe(self, path: Path) -> list[tuple[float, float, str]]:
        self.paths.append(path)
        return [(0.5, 2.0, "la la la"), (3.0, 5.0, "we sing along")]


async def test_audio_without_subtitles_is_transcribed_by_the_optional_backend(world, tmp_path):
    transcriber = FakeTranscriber()
    app, adapter, _ = await start(world, player=False)
    watch_skill(app).sources.transcriber = transcriber
    song = make_audio(tmp_path / "song.ogg", 6)
    replies = await say(
        app,
        adapter,
        attach(msg("our song"), file_att(adapter, "song.ogg", song.read_bytes(), "audio/ogg", kind="audio")),
    )
    assert "transcribing the audio" in replies[0]
    await adapter.wait_sent(2)
    assert (
        adapter.sent[-1].text
        == "📝 The transcript of song.ogg is ready: 2 lines. Ask me what was said at any moment."
    )
    assert transcriber.paths and transcriber.paths[0].suffix == ".ogg"
    (answer,) = await say(app, adapter, msg("@Pai what did they sing at 0:03?", "bob"))
    assert "[0:03] we sing along" in answer


async def test_watch_without_media_explains_itself_in_the_members_language(world):
    app, adapter, _ = await start(world, player=False)
    (usage,) = await say(app, adapter, msg("/watch"))
    assert "Share a video or audio file" in usage
    (nothing,) = await say(app, adapter, msg("/recap 我们看了什么"))
    assert nothing == "这里还没有一起看过任何内容。"


# --------------------------------------------------------------------------- the plugin and its settings


def test_watching_together_is_the_watch_plugin_and_its_settings_are_its_own_sections(capsys):
    from bot.app.cli import main
    from bot.config import parse_settings
    from bot.errors import ConfigError

    assert main(["plugins"]) == 0
    assert any(line.split()[:2] == ["watch", "enabled"] for line in capsys.readouterr().out.splitlines())
    s = parse_settings(
        "skills: {watch: {enabled: false}}\nadapters: {web: {max_media_bytes: 1000000}}\n", env={}
    )
    assert not s.skills.watch.enabled and s.adapters.web.max_media_bytes == 1_000_000
    with pytest.raises(ConfigError, match="adapters.web.max_media_bytes"):
        parse_settings("adapters: {web: {max_media_bytes: lots}}\n", env={})
    with pytest.raises(ConfigError, match="skills.watch.transcriptions"):
        parse_settings("skills: {watch: {transcriptions: {}}}\n", env={})


async def test_skills_watch_enabled_false_turns_watching_together_off(world, tmp_path):
    adapter = FetchingAdapter()
    app, _, memory = await world.start(extra="skills: {watch: {enabled: false}}\n", adapter=adapter)
    assert "watch" not in app.skill_sets
    assert app.registry.get("watch") is None and app.registry.get("recap") is None
    await share_film(world, app, adapter, tmp_path)
    assert subtitle_records(memory) == []
