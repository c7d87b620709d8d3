"""Media made inside the tests: short videos and audio (PyAV), and subtitle files for them.

Nothing is downloaded or shipped: each test builds the few seconds of media it needs. Videos are WebM (VP9,
read by every Chromium) or Matroska with a SubRip subtitle track muxed in, to test reading embedded tracks.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from bot.skills.watch.cues import Cue

# Lines for the test film: one every 4 seconds, so "what did they say at 0:12?" has one right answer.
FILM_LINES: tuple[tuple[float, float, str], ...] = (
    (1.0, 3.5, "Good morning, captain."),
    (5.0, 7.5, "The storm is coming from the east."),
    (9.0, 11.5, "Tie the boat to the old pier."),
    (13.0, 15.5, "我把钥匙放在灯塔里了。"),
    (17.0, 19.5, "Nobody leaves before the tide turns."),
    (21.0, 23.5, "The lighthouse keeper knows the way."),
    (25.0, 27.5, "Raise the red flag at noon."),
    (29.0, 31.5, "We meet again at the harbour."),
    (33.0, 35.5, "Count the barrels twice."),
    (37.0, 39.5, "The end of the voyage."),
)


def film_cues() -> list[Cue]:
    return [Cue(a, b, t) for a, b, t in FILM_LINES]


def _stamp(t: float, sep: str) -> str:
    ms = int(round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def make_vtt(cues: Sequence[Cue] | None = None) -> bytes:
    cues = film_cues() if cues is None else cues
    blocks = [
        f"c{i}\n{_stamp(c.start, '.')} --> {_stamp(c.end, '.')} line:90%\n{c.text}"
        for i, c in enumerate(cues)
    ]
    return ("WEBVTT - test film\n\nNOTE made by the test\n\n" + "\n\n".join(blocks) + "\n").encode()


def make_srt(cues: Sequence[Cue] | None = None, encoding: str = "utf-8") -> bytes:
    cues = film_cues() if cues is None else cues
    blocks = [
        f"{i + 1}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n<i>{c.text}</i>"
        for i, c in enumerate(cues)
    ]
    return ("\n\n".join(blocks) + "\n").encode(encoding)


def make_lrc(lines: Sequence[tuple[float, str]]) -> bytes:
    def stamp(t: float) -> str:
        m, s = divmod(t, 60)
        return f"[{int(m):02d}:{s:05.2f}]"

    return (
        "[ti:Test song]\n[ar:Test]\n" + "\n".join(f"{stamp(t)}{text}" for t, text in lines) + "\n"
    ).encode()


def make_video(
    path: Path,
    seconds: float = 42.0,
    *,
    fps: int = 10,
    size: tuple[int, int] = (160, 90),
    subtitles: bytes | None = None,
    audio: bool = False,
) -> Path:
    """A WebM (or, with ``subtitles`` as SRT bytes, a Matroska file with that SubRip track) whose frames
    change colour every second and show a moving bar, so a screenshot shows where it is."""
    import av
    import numpy as np

    w, h = size
    out = av.open(str(path), "w", format="matroska" if subtitles else "webm")
    video = out.add_stream("libvpx-vp9", rate=fps)
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    video.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}  # a second for a minute of film
    video.bit_rate = 150_000
    sound = None
    if audio:
        sound = out.add_stream("libopus", rate=48000)
    sub_in = sub_stream = None
    if subtitles is not None:
        srt_path = path.with_suffix(".embedded.srt")
        srt_path.write_bytes(subtitles)
        sub_in = av.open(str(srt_path))
        sub_stream = out.add_stream_from_template(sub_in.streams.subtitles[0])
        sub_stream.metadata["language"] = "eng"
    frames = int(seconds * fps)
    for i in range(frames):
        arr = np.zeros((h, w, 3), np.uint8)
        second = i // fps
        arr[:, :] = ((second * 37) % 200 + 30, (second * 71) % 200 + 30, (second * 113) % 200 + 30)
        x = int((i % fps) / fps * w)
        arr[h // 3 : 2 * h // 3, x : x + 6] = 255
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, fps)
        for packet in video.encode(frame):
            out.mux(packet)
    for packet in video.encode():
        out.mux(packet)
    if sound is not None:
        _mux_tone(out, sound, seconds)
    if sub_in is not None and sub_stream is not None:
        for packet in sub_in.demux(sub_in.streams.subtitles[0]):
            if packet.dts is None:
                continue
            packet.stream = sub_stream
            out.mux(packet)
        sub_in.close()
    out.close()
    return path


def _mux_tone(out, stream, seconds: float) -> None:
    import av
    import numpy as np

    rate, n = 48000, 960
    t0 = 0
    while t0 < seconds * rate:
        t = (np.arange(n) + t0) / rate
        samples = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = t0
        for packet in stream.encode(frame):
            out.mux(packet)
        t0 += n
    for packet in stream.encode():
        out.mux(packet)


def make_audio(path: Path, seconds: float = 20.0) -> Path:
    """An Ogg/Opus tone: audio with no subtitles (for the transcription path)."""
    import av

    out = av.open(str(path), "w", format="ogg")
    stream = out.add_stream("libopus", rate=48000)
    _mux_tone(out, stream, seconds)
    out.close()
    return path
