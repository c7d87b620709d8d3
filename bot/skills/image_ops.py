"""Local image edits with Pillow, and the deterministic parser that turns a request into one.

Pure and blocking (the images skill runs ``apply_edit`` and ``vision_jpeg`` on a worker thread). Images are
opened lazily and refused past ``MAX_PIXELS`` before any pixel is decoded, so a decompression bomb costs
nothing. Supported edits (``EditRequest.op``):

    grayscale                         "black and white", "b&w", "greyscale", "黑白"
    rotate   degrees (clockwise)      "rotate", "rotate left", "rotate 180", "旋转"
    flip     direction                "flip", "mirror", "flip vertically", "翻转"
    crop     mode                     "crop" (centre square), "crop 50%", "crop the left half", "裁剪"
    caption  text                     'add a caption "Team day 2026"', '加上文字「你好」'
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

from bot.errors import PaibotError
from bot.i18n import N_, Text

MAX_PIXELS = 40_000_000
VISION_MAX_SIDE = 1024


class ImageRejected(PaibotError):
    """An image that will not be edited (unreadable, too large, unknown edit)."""


@dataclass(frozen=True, slots=True)
class EditRequest:
    op: str
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> Text:
        a = self.args
        if self.op == "rotate":
            return Text(N_("rotated {degrees}° clockwise"), degrees=a.get("degrees", 90))
        if self.op == "flip":
            if a.get("direction", "horizontal") == "vertical":
                return Text(N_("flipped vertically"))
            return Text(N_("flipped horizontally"))
        if self.op == "crop":
            return Text(N_("cropped ({mode})"), mode=a.get("mode", "square"))
        if self.op == "caption":
            return Text(N_("with a caption"))
        if self.op == "grayscale":
            return Text(N_("in black and white"))
        return Text(N_("edited ({op})"), op=self.op)


@dataclass(frozen=True, slots=True)
class EditedImage:
    data: bytes
    mime: str
    ext: str


# --------------------------------------------------------------------------- parsing

_QUOTED = r"[\"“'‘「『](.+?)[\"”'’」』]"
_CAPTION = re.compile(
    r"(?:caption|text|label|文字|配文|标题)\s*(?:saying|that says|reading|with|of|:|：)?\s*" + _QUOTED, re.I
)
_CAPTION_BARE = re.compile(r"\bcaption\s*(?:saying|that says|reading|:)?\s+(.+)$", re.I)
_GRAY = re.compile(r"black\s*(?:and|&|n)\s*white|\bb\s*&\s*w\b|\bgr[ae]y\s*-?scale\b|\bmonochrome\b|黑白|灰度")
_ROTATE = re.compile(r"\brotate\b|\bturn\b.*\b(?:left|right|degrees|°)|旋转|转一下", re.I)
_FLIP = re.compile(r"\bflip\b|\bmirror\b|翻转|镜像", re.I)
_CROP = re.compile(r"\bcrop\b|\btrim\b|裁剪|裁切|剪裁", re.I)
_COUNTER = re.compile(r"\bleft\b|counter-?clockwise|anti-?clockwise|逆时针|向左", re.I)
_VERTICAL = re.compile(r"vertical|upside[\s-]*down|top\s+to\s+bottom|上下|垂直", re.I)
_HALF = re.compile(r"\b(left|right|top|bottom)\s+half\b|([左右上下])半", re.I)
_HALF_ZH = {"左": "left", "右": "right", "上": "top", "下": "bottom"}


def parse_edit(text: str) -> EditRequest | None:
    """The edit a request asks for, or None when it asks for none of the supported ones."""
    text = text.strip()
    m = _CAPTION.search(text)
    if m is None and re.search(r"\bcaption\b", text, re.I):
        m = _CAPTION_BARE.search(text)
    if m is not None:
        caption = m.group(1).strip().strip("\"“”'‘’「」『』")
        return EditRequest("caption", {"text": caption[:200]}) if caption else None
    if _GRAY.search(text.lower()):
        return EditRequest("grayscale")
    if _ROTATE.search(text):
        deg_m = re.search(r"(\d{2,3})\s*(?:°|deg|degrees|度)?", text)
        degrees = int(deg_m.group(1)) if deg_m else 90
        if degrees not in (90, 180, 270):
            return None
        if _COUNTER.search(text):
            degrees = (360 - degrees) % 360
        return EditRequest("rotate", {"degrees": degrees})
    if _FLIP.search(text):
        return EditRequest("flip", {"direction": "vertical" if _VERTICAL.search(text) else "horizontal"})
    if _CROP.search(text):
        half = _HALF.search(text)
        if half:
            return EditRequest("crop", {"mode": (half.group(1) or _HALF_ZH[half.group(2)]).lower()})
        pct = re.search(r"(\d{1,2})\s*%", text)
        if pct and 10 <= int(pct.group(1)) <= 95:
            return EditRequest("crop", {"mode": "center", "percent": int(pct.group(1))})
        return EditRequest("crop", {"mode": "square"})
    return None


def request_from_args(args: dict[str, Any]) -> EditRequest:
    """An ``EditRequest`` from the ``edit_image`` tool's JSON arguments; raises ``ImageRejected``."""
    op = str(args.get("operation", "")).strip().lower().replace(" ", "_")
    op = {"black_and_white": "grayscale", "greyscale": "grayscale", "gray": "grayscale", "mirror": "flip"}.get(op, op)
    if op == "grayscale":
        return EditRequest("grayscale")
    if op == "rotate":
        degrees = args.get("degrees", 90)
        if not isinstance(degrees, int) or degrees % 360 not in (90, 180, 270):
            raise ImageRejected(Text(N_("rotate takes degrees 90, 180 or 270 (clockwise)")))
        return EditRequest("rotate", {"degrees": degrees % 360})
    if op == "flip":
        direction = "vertical" if str(args.get("direction", "")).lower().startswith("v") else "horizontal"
        return EditRequest("flip", {"direction": direction})
    if op == "crop":
        mode = str(args.get("mode", "square")).lower()
        if mode not in ("square", "center", "left", "right", "top", "bottom"):
            raise ImageRejected(Text(N_("crop mode is one of square, center, left, right, top, bottom")))
        percent = args.get("percent", 80)
        if not isinstance(percent, int) or not 10 <= percent <= 95:
            raise ImageRejected(Text(N_("crop percent is a whole number from 10 to 95")))
        return EditRequest("crop", {"mode": mode, "percent": percent})
    if op == "caption":
        text = str(args.get("text", "")).strip()
        if not text:
            raise ImageRejected(Text(N_("caption needs a text")))
        return EditRequest("caption", {"text": text[:200]})
    raise ImageRejected(Text(N_("unknown operation {op} (grayscale, rotate, flip, crop, caption)"), op=repr(op)))


# --------------------------------------------------------------------------- pixels


def _open(data: bytes) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageRejected(Text(N_("not a readable image"))) from exc
    if img.width * img.height > MAX_PIXELS:
        raise ImageRejected(Text(N_("the image is {width}x{height}, over the {limit}-pixel limit"), width=img.width,
                                 height=img.height, limit=MAX_PIXELS))
    try:
        img.load()
    except (OSError, ValueError) as exc:
        raise ImageRejected(Text(N_("not a readable image"))) from exc
    return img


def apply_edit(data: bytes, req: EditRequest) -> EditedImage:
    """Apply one edit; PNG stays PNG, everything else becomes JPEG (or PNG when it has transparency)."""
    from PIL import Image, ImageOps

    img = _open(data)
    source_format = img.format
    img = ImageOps.exif_transpose(img)
    if req.op == "grayscale":
        out = ImageOps.grayscale(img)
    elif req.op == "rotate":
        turn = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
        out = img.transpose(turn[int(req.args.get("degrees", 90))])
    elif req.op == "flip":
        vertical = req.args.get("direction") == "vertical"
        out = ImageOps.flip(img) if vertical else ImageOps.mirror(img)
    elif req.op == "crop":
        out = img.crop(crop_box(img.width, img.height, str(req.args.get("mode", "square")),
                                int(req.args.get("percent", 80))))  # fmt: skip
    elif req.op == "caption":
        out = add_caption(img, str(req.args.get("text", "")))
    else:
        raise ImageRejected(Text(N_("unknown edit {op}"), op=repr(req.op)))
    return _encode(out, source_format)


def crop_box(w: int, h: int, mode: str, percent: int = 80) -> tuple[int, int, int, int]:
    if mode == "left":
        return 0, 0, max(1, w // 2), h
    if mode == "right":
        return w // 2, 0, w, h
    if mode == "top":
        return 0, 0, w, max(1, h // 2)
    if mode == "bottom":
        return 0, h // 2, w, h
    if mode == "square" and w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return left, top, left + side, top + side
    cw, ch = max(1, w * percent // 100), max(1, h * percent // 100)
    left, top = (w - cw) // 2, (h - ch) // 2
    return left, top, left + cw, top + ch


def add_caption(img: Any, text: str) -> Any:
    """A white band under the image with the text in black, wrapped to the image's width."""
    from PIL import Image, ImageDraw, ImageFont

    base = img.convert("RGB")
    size = max(12, base.width // 18)
    font = ImageFont.load_default(size=size)
    measure = ImageDraw.Draw(base)
    lines: list[str] = []
    for word in text.split() if " " in text else list(text):
        sep = " " if " " in text else ""
        trial = f"{lines[-1]}{sep}{word}" if lines else word
        if lines and measure.textlength(trial, font=font) <= base.width - 2 * (size // 2):
            lines[-1] = trial
        else:
            lines.append(word)
    line_h = int(size * 1.3)
    band = line_h * max(1, len(lines)) + size // 2
    out = Image.new("RGB", (base.width, base.height + band), (255, 255, 255))
    out.paste(base, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        x = max(size // 2, (base.width - int(draw.textlength(line, font=font))) // 2)
        draw.text((x, base.height + size // 4 + i * line_h), line, fill=(0, 0, 0), font=font)
    return out


def _encode(img: Any, source_format: str | None) -> EditedImage:
    buf = io.BytesIO()
    if source_format == "PNG" or img.mode in ("RGBA", "LA", "P"):
        img.save(buf, "PNG")
        return EditedImage(buf.getvalue(), "image/png", "png")
    img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).save(buf, "JPEG", quality=90)
    return EditedImage(buf.getvalue(), "image/jpeg", "jpg")


def vision_jpeg(data: bytes, max_side: int = VISION_MAX_SIDE) -> bytes:
    """The image scaled down to ``max_side`` and re-encoded as JPEG, to send to a vision model cheaply."""
    from PIL import ImageOps

    img = ImageOps.exif_transpose(_open(data)).convert("RGB")
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()
