"""Images: captions searchable in memory (vision model), local edits of a replied image, generative edits."""

from __future__ import annotations

import base64
import io
import json

import pytest
from aiohttp import web
from PIL import Image

from bot.config import parse_settings
from bot.errors import LLMFatal, LLMRateLimited
from bot.events import ReplyRef
from bot.ports import SearchFilters
from bot.providers.litellm_images import LiteLLMImageGenerator
from bot.skills.image_ops import EditRequest, ImageRejected, apply_edit, parse_edit, request_from_args
from tests.doc_factory import make_image
from tests.fakes import ScriptedLLM, tool_call
from tests.media_world import attach, file_att, live_message, media_world  # noqa: F401

IMAGES = ("bot.skills.images",)
RED, BLUE = (255, 0, 0), (0, 0, 255)
VISION = "llm: {vision: true, retry_base_s: 0.01, retry_max_s: 0.01}\n"


def result_image(out) -> Image.Image:
    (f,) = out.files
    return Image.open(io.BytesIO(f.data)).convert("RGB")


async def post_photo(w, name="photo.png", data=None, chat="g1", msg_id=None):
    msg = attach(live_message("look", chat=chat, author="bob", name="Bob", msg_id=msg_id),
                 file_att(w.adapter, name, data or make_image(), "image/png", kind="image"))
    await w.say(msg)
    return msg


async def ask(w, text, photo, **kw):
    await w.say(live_message(text, reply_to=ReplyRef(photo.id, "look"), **kw))
    return w.adapter.sent[-1]


async def test_black_and_white_on_a_replied_photo_without_any_model(media_world):
    w = await media_world(IMAGES)
    photo = await post_photo(w)
    out = await ask(w, "@Pai make this black and white", photo)
    assert out.text == "Here it is, in black and white." and out.reply_to != photo.id
    (f,) = out.files
    assert f.mime == "image/png" and f.name == "photo-grayscale.png"
    img = Image.open(io.BytesIO(f.data))
    assert img.mode == "L" and img.size == (40, 20)
    assert img.getpixel((2, 2)) == 76 and img.getpixel((38, 2)) == 29  # red and blue as luminance


async def test_rotate_flip_and_crop_by_pixels(media_world):
    w = await media_world(IMAGES)
    photo = await post_photo(w)
    rotated = result_image(await ask(w, "@Pai rotate it", photo))
    assert rotated.size == (20, 40)
    assert rotated.getpixel((10, 2)) == RED and rotated.getpixel((10, 38)) == BLUE  # clockwise: left -> top
    left = result_image(await ask(w, "@Pai rotate left", photo))
    assert left.getpixel((10, 2)) == BLUE and left.getpixel((10, 38)) == RED
    flipped = result_image(await ask(w, "@Pai mirror this", photo))
    assert flipped.getpixel((2, 10)) == BLUE and flipped.getpixel((38, 10)) == RED
    square = result_image(await ask(w, "@Pai crop", photo))
    assert square.size == (20, 20) and square.getpixel((2, 10)) == RED and square.getpixel((18, 10)) == BLUE
    half = result_image(await ask(w, "@Pai crop the left half", photo))
    assert half.size == (20, 20) and set(half.getdata()) == {RED}


async def test_caption_adds_a_band_with_dark_text_under_the_image(media_world):
    w = await media_world(IMAGES)
    photo = await post_photo(w, data=make_image(200, 100))
    out = await ask(w, '@Pai add a caption "Team day 2026"', photo)
    img = result_image(out)
    assert img.width == 200 and img.height > 100
    assert img.getpixel((5, 5)) == RED  # the photo is untouched above the band
    band = [img.getpixel((x, y)) for x in range(200) for y in range(100, img.height)]
    assert (255, 255, 255) in band and any(sum(p) < 200 for p in band)  # white band, dark text on it


async def test_edit_command_works_as_a_reply_and_explains_itself_without_one(media_world):
    w = await media_world(IMAGES)
    photo = await post_photo(w)
    out = await ask(w, "/edit flip vertically", photo)
    img = result_image(out)
    assert img.size == (40, 20) and img.getpixel((2, 2)) == RED
    await w.say(live_message("/edit rotate"))
    assert w.adapter.sent[-1].files == () and "Reply to an image" in w.adapter.sent[-1].text


async def test_an_edit_request_without_an_image_goes_to_the_normal_answer(media_world):
    llm = ScriptedLLM(["Which picture do you mean?"])
    w = await media_world(IMAGES, llm=llm)
    await w.say(live_message("@Pai rotate the schedule so Bob is on Monday"))
    assert [o.text for o in w.adapter.sent] == ["Which picture do you mean?"]


async def test_a_corrupt_image_gets_a_short_refusal_and_nothing_crashes(media_world):
    w = await media_world(IMAGES)
    photo = await post_photo(w, name="broken.png", data=b"\x89PNG\r\n\x1a\nnot really")
    out = await ask(w, "@Pai make this black and white", photo)
    assert out.files == () and out.text.startswith("I couldn't edit broken.png")
    assert await w.services.state.dead_letters() == []


def vision_script(captions):
    seen_urls = []

    def script(messages, tools):
        user = messages[-1]["content"]
        if isinstance(user, list):
            url = next(p["image_url"]["url"] for p in user if p.get("type") == "image_url")
            seen_urls.append(url)
            return captions.pop(0)
        return "It is the whiteboard photo Bob posted."

    return script, seen_urls


async def test_with_a_vision_model_posted_images_get_a_searchable_caption(media_world):
    script, urls = vision_script(["A whiteboard listing the sprint plan: launch on Tuesday, demo Friday."])
    llm = ScriptedLLM(script)
    w = await media_world(IMAGES, llm=llm, real_memory=True, extra=VISION)
    photo = await post_photo(w, name="IMG_0042.jpg", data=make_image(3000, 1500, "JPEG"))
    assert w.adapter.sent == []
    assert urls[0].startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    assert max(sent.size) == 1024  # scaled down before it went to the model
    hits = await w.memory.search("fake:g1", "whiteboard sprint plan", k=3, filters=SearchFilters(kinds=("caption",)))
    (hit,) = hits
    assert hit.record.id == f"{photo.id}#img" and hit.record.author_name == "Bob"
    assert hit.record.text.startswith("IMG_0042.jpg: A whiteboard") and hit.record.meta["image"] == "IMG_0042.jpg"
    await w.say(live_message("@Pai where is the photo of the whiteboard?", author="alice", name="Alice"))
    assert "Bob: [image] IMG_0042.jpg: A whiteboard listing the sprint plan" in llm.prompts[-1]


async def test_captioning_stops_when_the_groups_daily_budget_is_spent(media_world):
    script, urls = vision_script(["first caption", "second caption"])
    w = await media_world(IMAGES, llm=ScriptedLLM(script), extra=VISION + "limits: {daily_tokens_per_group: 10}")
    await post_photo(w)
    await post_photo(w)
    assert len(urls) == 1
    assert [r.text for r in w.memory.records.values() if r.kind == "caption"] == ["photo.png: first caption"]


async def test_without_vision_images_cost_no_model_call_and_stay_a_note(media_world):
    llm = ScriptedLLM(["never"])
    w = await media_world(IMAGES, llm=llm)
    photo = await post_photo(w)
    assert llm.calls == [] and w.adapter.fetches == []
    assert w.memory.records[("fake:g1", photo.id)].text == "look [image: photo.png]"


async def test_edit_image_tool_posts_the_result_and_acts_only_on_this_chats_reply(media_world):
    llm = ScriptedLLM([tool_call("edit_image", json.dumps({"operation": "rotate", "degrees": 180,
                                                            "chat": "fake:B", "message_id": "secret"})), "Done!"])
    w = await media_world(IMAGES, llm=llm)
    photo = await post_photo(w)
    await w.say(live_message("@Pai could you turn this upside down please", reply_to=ReplyRef(photo.id, "look")))
    edited, answer = w.adapter.sent
    img = result_image(edited)
    assert img.getpixel((2, 2)) == BLUE and img.getpixel((38, 2)) == RED
    assert answer.text == "Done!"
    # In another chat, a reply to a message id that only exists elsewhere finds no image.
    await post_photo(w, chat="B", msg_id="secret")
    llm2 = ScriptedLLM([tool_call("edit_image", json.dumps({"operation": "grayscale"})), "ok"])
    w.services.brain._llm = llm2
    await w.say(live_message("@Pai please do the thing", chat="C", reply_to=ReplyRef("secret", "")))
    tool_result = next(m for m in llm2.calls[1]["messages"] if m.get("role") == "tool")["content"]
    assert tool_result.startswith("error: the user did not reply to an image")
    assert all(not o.files for o in w.adapter.sent if o.chat.chat_id == "C")


class FakeImageGenerator:
    """An ``ImageGenerator`` fake: records prompts and returns a solid green PNG."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def edit(self, image: bytes, mime: str, prompt: str) -> bytes:
        Image.open(io.BytesIO(image)).verify()
        self.prompts.append(prompt)
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (0, 255, 0)).save(buf, "PNG")
        return buf.getvalue()


async def test_generative_edits_go_through_the_configured_generator(media_world):
    gen = FakeImageGenerator()
    w = await media_world(IMAGES, image_generator=gen)
    photo = await post_photo(w)
    out = await ask(w, "/edit make it look like a watercolour painting", photo)
    assert gen.prompts == ["make it look like a watercolour painting"]
    assert result_image(out).getpixel((0, 0)) == (0, 255, 0) and out.files[0].name == "photo-edited.png"
    # Deterministic edits never reach the generator.
    await ask(w, "/edit black and white", photo)
    assert len(gen.prompts) == 1


async def test_without_a_generator_free_form_edits_explain_what_is_possible(media_world):
    w = await media_world(IMAGES)
    photo = await post_photo(w)
    out = await ask(w, "/edit make it look like a watercolour painting", photo)
    assert out.files == () and "black and white" in out.text


# --------------------------------------------------------------------------- units


def test_parser_understands_english_and_chinese_requests():
    assert parse_edit("make this black and white") == EditRequest("grayscale")
    assert parse_edit("把这张图变成黑白") == EditRequest("grayscale")
    assert parse_edit("rotate 180") == EditRequest("rotate", {"degrees": 180})
    assert parse_edit("向左旋转") == EditRequest("rotate", {"degrees": 270})
    assert parse_edit("flip it upside down") == EditRequest("flip", {"direction": "vertical"})
    assert parse_edit("crop 50%") == EditRequest("crop", {"mode": "center", "percent": 50})
    assert parse_edit('add a caption "rotate me"') == EditRequest("caption", {"text": "rotate me"})
    assert parse_edit("加上文字「生日快乐」") == EditRequest("caption", {"text": "生日快乐"})
    assert parse_edit("make the grey cat blue") is None
    assert parse_edit("what is in this picture?") is None


def test_tool_arguments_are_validated():
    assert request_from_args({"operation": "black and white"}) == EditRequest("grayscale")
    with pytest.raises(ImageRejected):
        request_from_args({"operation": "rotate", "degrees": 45})
    with pytest.raises(ImageRejected):
        request_from_args({"operation": "delete_chat"})


def test_an_image_bomb_is_refused_before_decoding(monkeypatch):
    import bot.skills.image_ops as ops

    monkeypatch.setattr(ops, "MAX_PIXELS", 100)
    with pytest.raises(ImageRejected, match="pixel limit"):
        apply_edit(make_image(40, 20), EditRequest("grayscale"))


# --------------------------------------------------------------------------- litellm image API over HTTP


@pytest.fixture
async def fake_image_api():
    """A loopback server speaking the OpenAI images/edits wire protocol (multipart in, b64 JSON out)."""
    state = {"requests": [], "status": 200}

    async def edits(request: web.Request) -> web.Response:
        form = await request.post()
        state["requests"].append({"prompt": form.get("prompt"), "model": form.get("model"),
                                  "auth": request.headers.get("Authorization", ""),
                                  "image": form.get("image") or form.get("image[]")})  # fmt: skip
        if state["status"] != 200:
            kind = "rate_limit_error" if state["status"] == 429 else "invalid_request_error"
            return web.json_response({"error": {"message": kind, "type": kind, "code": None}}, status=state["status"])
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), (0, 128, 0)).save(buf, "PNG")
        return web.json_response({"created": 1, "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode()}]})

    app = web.Application()
    app.router.add_post("/v1/images/edits", edits)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state["base"] = f"http://127.0.0.1:{port}/v1"
    yield state
    await runner.cleanup()


async def test_litellm_image_generator_speaks_the_openai_images_api(fake_image_api):
    from bot.providers.litellm_llm import load_litellm

    settings = parse_settings(
        f"llm: {{model: openai/chat, image_model: openai/gpt-image-1, api_base: '{fake_image_api['base']}', "
        "api_key: sk-test-key-123}"
    ).llm
    gen = LiteLLMImageGenerator(settings, load_litellm(), timeout_s=20)
    out = await gen.edit(make_image(), "image/png", "make it green")
    assert Image.open(io.BytesIO(out)).getpixel((0, 0)) == (0, 128, 0)
    (req,) = fake_image_api["requests"]
    assert req["prompt"] == "make it green" and req["auth"] == "Bearer sk-test-key-123"
    fake_image_api["status"] = 429
    with pytest.raises(LLMRateLimited) as caught:
        await gen.edit(make_image(), "image/png", "again")
    assert "sk-test-key-123" not in str(caught.value)
    fake_image_api["status"] = 400
    with pytest.raises(LLMFatal):
        await gen.edit(make_image(), "image/png", "again")
