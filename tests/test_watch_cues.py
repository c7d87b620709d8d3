"""Subtitles and lyrics into cues: SRT, WebVTT, ASS, LRC, Chinese encodings, tracks inside media files."""

from __future__ import annotations

import pytest

from bot.skills.watch.cues import (
    Cue,
    SubtitleError,
    fmt_ts,
    parse_lrc,
    parse_subtitles,
    subtitle_format,
    to_webvtt,
    window,
)
from bot.skills.watch.embedded import probe, read_embedded
from tests.media_factory import film_cues, make_lrc, make_srt, make_video, make_vtt


def test_webvtt_with_header_notes_identifiers_settings_and_voices():
    cues = parse_subtitles(make_vtt(), "vtt")
    assert cues == film_cues()
    voiced = b"WEBVTT\n\nSTYLE\n::cue { color: red }\n\n1\n00:01.000 --> 00:02.000\n<v Alice>Hi <i>you</i>\n"
    assert parse_subtitles(voiced, "vtt") == [Cue(1.0, 2.0, "Hi you")]


def test_srt_in_utf8_and_in_gbk_loses_its_styling():
    assert parse_subtitles(make_srt(), "srt") == film_cues()
    chinese = [Cue(1.0, 2.0, "你好，船长。"), Cue(3.0, 4.0, "风暴要来了")]
    assert parse_subtitles(make_srt(chinese, encoding="gbk"), "srt") == chinese
    assert parse_subtitles(make_srt(chinese, encoding="utf-16"), "srt") == chinese


def test_ass_fansub_dialogue_without_override_tags_or_comments():
    ass = (
        "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize\nStyle: Default,Arial,20\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
        "Dialogue: 0,0:00:01.00,0:00:03.00,Default,,0,0,0,,{\\an8}你好\\N世界\n"
        "Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,translator note\n"
    )
    assert parse_subtitles(ass.encode(), "ass") == [Cue(1.0, 3.0, "你好 世界")]


def test_lrc_lyrics_with_repeated_lines_and_an_offset():
    lrc = make_lrc([(0.5, "第一句"), (4.25, "Second line")]) + b"[00:08.00][00:12.00]Chorus\n[offset:500]\n"
    cues = parse_lrc(lrc.decode())
    assert [(c.start, c.text) for c in cues] == [
        (0.0, "第一句"),
        (3.75, "Second line"),
        (7.5, "Chorus"),
        (11.5, "Chorus"),
    ]
    assert cues[0].end == 3.75 and cues[-1].end == 16.5


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage", b"just some text\nwithout times\n"])
def test_files_without_timed_lines_are_refused(data):
    for fmt in ("srt", "vtt", "lrc"):
        with pytest.raises(SubtitleError):
            parse_subtitles(data, fmt)


def test_formats_times_and_windows():
    assert subtitle_format("Movie.ZH.SRT") == "srt" and subtitle_format("x.bin", "text/vtt") == "vtt"
    assert subtitle_format("song.lrc") == "lrc" and subtitle_format("notes.txt") is None
    assert (fmt_ts(750), fmt_ts(3723), fmt_ts(5.9)) == ("12:30", "1:02:03", "0:05")
    assert [c.text for c in window(film_cues(), 10.0, 14.0)] == [
        "Tie the boat to the old pier.",
        "我把钥匙放在灯塔里了。",
    ]
    assert parse_subtitles(to_webvtt(film_cues()).encode(), "vtt") == film_cues()


def test_a_subtitle_track_inside_a_media_file_is_read(tmp_path):
    media = make_video(tmp_path / "film.mkv", 6, subtitles=make_srt())
    info = probe(media)
    assert info.has_video and info.subtitle_tracks == 1
    assert read_embedded(media) == film_cues()
    plain = make_video(tmp_path / "plain.webm", 2)
    assert read_embedded(plain) == [] and probe(plain).duration == pytest.approx(2.0)
