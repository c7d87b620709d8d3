"""``ImageGenerator`` over litellm's image edit API (``litellm.aimage_edit``): generative image edits.

The litellm module is *injected* by the composition root (which already loads it quietly for the chat model),
so this module imports no vendor library and the core stays free of it::

    from bot.providers.litellm_llm import load_litellm
    from bot.providers.litellm_images import LiteLLMImageGenerator
    SkillResources(data_dir, image_generator=LiteLLMImageGenerator(settings.llm, load_litellm()))

only when ``llm.image_model`` is set. ``api_base``/``api_key`` of the chat model are reused when the image
model has the same provider prefix (``openai/...``). Provider errors become ``bot.errors`` LLM errors by HTTP
status: 429 -> ``LLMRateLimited``, 408/409/5xx and connection problems -> ``LLMRetryable``, other 4xx ->
``LLMFatal``. The API key never appears in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
from typing import Any

from bot.config import LLMSettings
from bot.errors import LLMError, LLMFatal, LLMRateLimited, LLMRetryable, LLMTimeout

log = logging.getLogger("paibot.skills.images")

_MAX_DETAIL = 200


class LiteLLMImageGenerator:
    """``bot.skills.images.ImageGenerator`` through ``litellm.aimage_edit`` (b64 JSON answers only: a URL
    answer would mean downloading from wherever the provider says, which we do not do)."""

    def __init__(self, settings: LLMSettings, litellm: Any, timeout_s: float | None = None) -> None:
        self._settings = settings
        self._litellm = litellm
        self._timeout = timeout_s or max(settings.timeout_s, 120.0)

    def _endpoint(self) -> dict[str, Any]:
        s = self._settings
        same_provider = s.model.split("/", 1)[0] == s.image_model.split("/", 1)[0]
        out: dict[str, Any] = {}
        if same_provider and s.api_base:
            out["api_base"] = s.api_base
        if same_provider and s.api_key:
            out["api_key"] = s.api_key
        return out

    async def edit(self, image: bytes, mime: str, prompt: str) -> bytes:
        ext = "jpg" if "jpeg" in mime else mime.rsplit("/", 1)[-1] or "png"
        upload = io.BytesIO(image)
        upload.name = f"image.{ext}"  # litellm's multipart upload wants a named file object (not a tuple)
        try:
            resp = await asyncio.wait_for(
                self._litellm.aimage_edit(
                    image=upload, prompt=prompt,
                    model=self._settings.image_model, timeout=self._timeout, **self._endpoint(),
                ),
                self._timeout + 5,
            )  # fmt: skip
        except TimeoutError as exc:
            raise LLMTimeout("the image model timed out") from exc
        except Exception as exc:
            raise self._translate(exc) from exc
        try:
            b64 = resp.data[0].b64_json
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMFatal("the image model returned no image") from exc
        if not b64:
            raise LLMFatal("the image model returned a URL instead of image data")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise LLMFatal("the image model returned malformed image data") from exc

    def _translate(self, exc: Exception) -> LLMError:
        status = getattr(exc, "status_code", None)
        detail = str(exc)
        if self._settings.api_key:
            detail = detail.replace(self._settings.api_key, "***")
        detail = f"{type(exc).__name__}: {detail[:_MAX_DETAIL]}"
        if status == 429:
            return LLMRateLimited(detail)
        if isinstance(status, int) and 400 <= status < 500 and status not in (408, 409):
            return LLMFatal(detail)
        return LLMRetryable(detail)
