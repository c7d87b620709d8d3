"""Every sentence the watch skill says to members, in English and Simplified Chinese, in one place.

Templates are the English text (with ``{fields}``); ``ZH`` maps each to its translation. When the shared
translation catalogs (gettext) reach this code base, these move there unchanged: the English strings are the
message ids. ``language_of`` picks the reader's language: the group's ``language`` setting when it names
one, else the script of the message being answered (Han characters mean Chinese), else of the group's name.
"""

from __future__ import annotations

import re

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_ZH_NAMES = {"zh", "zh-cn", "zh_cn", "zh-hans", "chinese", "中文", "简体中文", "汉语", "普通话", "cn"}
_EN_NAMES = {"en", "en-us", "en-gb", "english", "英文", "英语"}
# Mentions, commands and links say nothing about the language someone writes in.
_NOISE = re.compile(r"[@＠]\S+|(?:^|\s)/[\w-]+|https?://\S+")


def language_of(text: str, setting: str = "", fallback: str = "") -> str:
    """``"zh"`` or ``"en"``: the group's language setting if it names one of them, else the text's script,
    else (a bare command says nothing) the script of ``fallback`` (the group's name)."""
    wanted = setting.strip().casefold()
    if wanted in _ZH_NAMES:
        return "zh"
    if wanted in _EN_NAMES:
        return "en"
    for candidate in (text, fallback):
        candidate = _NOISE.sub(" ", candidate)
        han, latin = len(_HAN.findall(candidate)), len(_LATIN.findall(candidate))
        if han or latin >= 2:
            return "zh" if han and han * 3 >= latin else "en"
    return "en"


def say(lang: str, template: str, /, **fields: object) -> str:
    """``template`` in ``lang`` with its fields filled in (values are inserted as they are)."""
    text = ZH.get(template, template) if lang == "zh" else template
    return text.format(**fields) if fields else text


def join(lang: str, names: list[str]) -> str:
    if lang == "zh":
        return "、".join(names)
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


# Command descriptions (the command list and /help show them).
WATCH_DESCRIPTION = "Watch or listen together: share a video, audio file or link with /watch"
WATCH_USAGE = "/watch [link] [only-me] · /watch end"
RECAP_DESCRIPTION = "What we have watched so far, in short"

STARTED_PLAYER = (
    "🎬 {name} started {activity} {title} together. The player is open on the group's page; {who}."
)
STARTED_FOLLOW = "🎬 Following {title}."
ACTIVITY_WATCH = "watching"
ACTIVITY_LISTEN = "listening to"
EVERYONE_CONTROLS = "everyone can play, pause and seek"
STARTER_CONTROLS = "only {name} controls playback"
LINES_LOADED = (
    "{count} subtitle lines loaded: ask me “what did she just say?” or “what happened at {example}?”."
)
NO_LINES = (
    "There are no subtitles, so I can't follow what is said. Share an SRT, VTT, ASS or LRC file to add them."
)
TRANSCRIBING = "No subtitles came with it: I'm transcribing the audio and will say when the lines are ready."
TRANSCRIBED = "📝 The transcript of {title} is ready: {count} lines. Ask me what was said at any moment."
TRANSCRIBE_FAILED = "I couldn't transcribe {title}, so I can't follow what is said in it."
SUBTITLES_ADDED = "📝 Added {count} subtitle lines from {file} to {title}."
SUBTITLES_UNREADABLE = "I couldn't read the subtitles in {file}: no timed lines found."
USAGE = (
    "Share a video or audio file, or a link to one, with /watch (add “only-me” if only you should control "
    "playback). /watch end ends the session; /recap sums up what was watched."
)
NOTHING_RUNNING = (
    "Nothing is being watched here right now. Start with /watch and a video, audio file or link."
)
NOTHING_WATCHED = "Nothing has been watched here yet."
ONLY_STARTER = "Only {name}, who started it, controls playback."
ONLY_STARTER_ENDS = "Only {name}, who started it, can end the session."
ONLY_STARTER_CHANGES = "Only {name}, who started it, decides who controls playback."
SESSION_GONE = "That session has ended."
NOW_EVERYONE = "Everyone can control playback now."
NOW_STARTER = "Only {name} controls playback now."
NO_SUBTITLES_FOR = "I have no subtitles for {title}, so I can't tell what was said."
NO_POSITION = (
    "There's no shared player here, so I don't know where you are in {title}: ask about a moment, "
    "like “what did they say at {example}?”."
)
JUST_NOW_HEAD = "Just now in {title} (at {position}):"
AT_HEAD = "Around {position} in {title}:"
NOTHING_SAID = "Nothing is said around {position} in {title}."
RECAP_HEAD = "📺 {title}: {watched} watched so far."
RECAP_LINES = "Lines so far:"
DIGEST_HEAD = "🎬 {title} — watched together, {watched}, started by {starter} at {time}."
DIGEST_WITH = "With {names}."
DIGEST_MORE = "With {names} and {count} more."
DIGEST_LINES = "Some lines:"
DIGEST_TALK = "What the group said:"
SHARED_HEAD = "📝 {title}: {count} lines, {length} long."
OF_DURATION = "{watched} of {duration}"
NO_MODEL_NOTE = "(No language model is configured, so I quote the subtitles.)"

ZH: dict[str, str] = {
    WATCH_DESCRIPTION: "一起看、一起听：用 /watch 分享视频、音频文件或链接",
    WATCH_USAGE: "/watch [链接] [only-me] · /watch end",
    RECAP_DESCRIPTION: "简单回顾到目前为止看了什么",
    STARTED_PLAYER: "🎬 {name}发起了一起{activity}《{title}》。播放器已在群聊页面打开；{who}。",
    STARTED_FOLLOW: "🎬 正在跟进《{title}》。",
    ACTIVITY_WATCH: "看",
    ACTIVITY_LISTEN: "听",
    EVERYONE_CONTROLS: "所有人都可以播放、暂停和拖动进度",
    STARTER_CONTROLS: "只有{name}可以控制播放",
    LINES_LOADED: "已载入 {count} 句字幕：可以问我“刚才她说了什么？”或“{example} 的时候发生了什么？”。",
    NO_LINES: "没有字幕，所以我没法跟上说了什么。分享一个 SRT、VTT、ASS 或 LRC 文件就能加上。",
    TRANSCRIBING: "没有附带字幕：我正在转写音频，字幕准备好了会告诉大家。",
    TRANSCRIBED: "📝《{title}》的转写好了：共 {count} 句。随时可以问我某个时刻说了什么。",
    TRANSCRIBE_FAILED: "我没能转写《{title}》，所以没法跟上里面说了什么。",
    SUBTITLES_ADDED: "📝 已从 {file} 给《{title}》加上 {count} 句字幕。",
    SUBTITLES_UNREADABLE: "我读不了 {file} 里的字幕：没有找到带时间的台词。",
    USAGE: "用 /watch 分享视频、音频文件或链接（加上“only-me”就只有你能控制播放）。/watch end 结束，/recap 回顾看过的内容。",
    NOTHING_RUNNING: "这里现在没有在一起看的内容。用 /watch 加上视频、音频文件或链接开始吧。",
    NOTHING_WATCHED: "这里还没有一起看过任何内容。",
    ONLY_STARTER: "只有发起人{name}可以控制播放。",
    ONLY_STARTER_ENDS: "只有发起人{name}可以结束。",
    ONLY_STARTER_CHANGES: "只有发起人{name}可以决定谁来控制播放。",
    SESSION_GONE: "这一场已经结束了。",
    NOW_EVERYONE: "现在所有人都可以控制播放。",
    NOW_STARTER: "现在只有{name}可以控制播放。",
    NO_SUBTITLES_FOR: "《{title}》没有字幕，我说不出说了什么。",
    NO_POSITION: "这里没有同步播放器，我不知道你看到《{title}》的哪里了：可以问某个时刻，比如“{example} 的时候说了什么？”。",
    JUST_NOW_HEAD: "《{title}》刚才（{position}）：",
    AT_HEAD: "《{title}》{position} 前后：",
    NOTHING_SAID: "《{title}》在 {position} 前后没有台词。",
    RECAP_HEAD: "📺《{title}》：目前看到 {watched}。",
    RECAP_LINES: "到目前为止的台词：",
    DIGEST_HEAD: "🎬《{title}》一起看完啦：{watched}，由{starter}在 {time} 发起。",
    DIGEST_WITH: "一起看的有{names}。",
    DIGEST_MORE: "一起看的有{names}等 {count} 人。",
    DIGEST_LINES: "几句台词：",
    DIGEST_TALK: "大家聊了：",
    SHARED_HEAD: "📝《{title}》：共 {count} 句，时长 {length}。",
    OF_DURATION: "{watched} / {duration}",
    NO_MODEL_NOTE: "（没有配置语言模型，所以我直接引用字幕。）",
}
