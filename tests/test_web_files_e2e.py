"""Files, images and polls in the web group through the real core (``App`` with its default skills and real
memory): a posted document is read into the group's memory and answers questions, a replied image is edited
and posted back, a poll is opened natively and voted by reply."""

from __future__ import annotations

import io

import aiohttp
import pytest
from PIL import Image

from bot.app import App
from bot.config import parse_settings
from tests.doc_factory import make_image, make_pdf
from tests.fakes import ScriptedLLM
from tests.web_members import member_headers

CONTRACT = (
    "Rental agreement for the lake cabin.\n"
    "The deposit is 500 euros, paid on signing and refunded within 30 days after the keys are returned.\n"
    "Pets are allowed in the garden only."
)


@pytest.fixture
async def running(tmp_path):
    started: list[tuple[App, aiohttp.ClientSession]] = []

    async def build(llm):
        settings = parse_settings(
            f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
            "memory: {embedding: offline}\n"
            "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0}}\n"
        )
        app = App(settings, llm=llm)
        await app.start()
        assert app.services is not None
        http = aiohttp.ClientSession(base_url=app.services.adapters["web"].base_url)
        started.append((app, http))
        return app, http

    yield build
    for app, http in started:
        await http.close()
        await app.stop()


async def upload(http, group: str, name: str, data: bytes, mime: str, text: str = "", author: str = "Bob") -> dict:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("text", text)
    form.add_field("file", data, filename=name, content_type=mime)
    resp = await http.post(f"/api/groups/{group}/messages", data=form, headers=await member_headers(http, author))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post(http, group: str, text: str, author: str = "Alice", **extra) -> dict:
    resp = await http.post(f"/api/groups/{group}/messages", json={"text": text, **extra},
                           headers=await member_headers(http, author))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def bot_after(app: App, http, group: str, after: int) -> list[dict]:
    await app.drain(30)
    listed = await (await http.get(f"/api/groups/{group}/messages?after={after}")).json()
    return [m for m in listed["messages"] if m["is_bot"]]


async def new_group(http, name: str) -> str:
    return (await (await http.post("/api/groups", json={"name": name})).json())["address"]


async def test_a_posted_text_file_answers_questions_without_a_model(running):
    app, http = await running(None)
    address = await new_group(http, "Cabin")
    posted = await upload(http, address, "contract.txt", CONTRACT.encode(), "text/plain", "the cabin contract")
    assert await bot_after(app, http, address, posted["id"]) == []  # read silently
    asked = await post(http, address, "@Pai what does the contract say about the deposit?")

    [reply] = await bot_after(app, http, address, asked["id"])
    assert "500 euros" in reply["text"] and "contract.txt" in reply["text"]
    listing = await post(http, address, "/files")
    [files] = await bot_after(app, http, address, listing["id"])
    assert "contract.txt" in files["text"] and "Bob" in files["text"]


async def test_a_posted_pdf_is_in_the_models_prompt_when_asked_about_it(running):
    llm = ScriptedLLM(["The deposit is 500 euros, refunded within 30 days."])
    app, http = await running(llm)
    address = await new_group(http, "Cabin")
    await upload(http, address, "contract.pdf", make_pdf(CONTRACT.split("\n")), "application/pdf")
    asked = await post(http, address, "@Pai what does the contract say about the deposit?")

    [reply] = await bot_after(app, http, address, asked["id"])
    assert reply["text"] == "The deposit is 500 euros, refunded within 30 days."
    prompt = llm.prompts[-1]
    assert "contract.pdf" in prompt and "The deposit is 500 euros" in prompt


async def test_a_replied_image_comes_back_black_and_white(running):
    app, http = await running(None)
    address = await new_group(http, "Photos")
    photo = await upload(http, address, "beach.png", make_image(40, 20), "image/png", author="Alice")
    assert photo["files"][0]["kind"] == "image"
    asked = await post(http, address, "@Pai make this black and white", author="Bob", reply_to=photo["id"])

    [reply] = await bot_after(app, http, address, asked["id"])
    assert reply["reply_to"]["id"] == asked["id"]
    [edited] = reply["files"]
    assert edited["kind"] == "image" and edited["name"].startswith("beach")
    resp = await http.get(edited["url"])
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("image/")
    image = Image.open(io.BytesIO(await resp.read())).convert("RGB")
    assert image.size == (40, 20)
    left, right = image.getpixel((5, 10)), image.getpixel((35, 10))
    assert left[0] == left[1] == left[2] and right[0] == right[1] == right[2]  # grey: red = green = blue
    assert left != right  # red and blue became different greys, not one flat colour


async def test_a_poll_opens_natively_and_a_vote_by_reply_is_counted(running):
    app, http = await running(None)
    address = await new_group(http, "Dinner")
    asked = await post(http, address, "/poll Where do we eat? | Luigi's | Sushi Go for 30m")
    [poll_msg] = await bot_after(app, http, address, asked["id"])
    poll = poll_msg["poll"]
    assert poll["question"] == "Where do we eat?" and poll["options"] == ["Luigi's", "Sushi Go"]

    vote = await post(http, address, poll["vote_text"].format(n=2), author="Bob", reply_to=poll_msg["id"])
    assert await bot_after(app, http, address, vote["id"]) == []  # counted silently: no message per vote
    listed = await (await http.get(f"/api/groups/{address}/messages")).json()
    [tally] = [m for m in listed["messages"] if m["id"] == poll_msg["id"]]  # the poll message holds the tally
    assert "2. Sushi Go — 1" in tally["text"] and "1 vote so far" in tally["text"] and tally["poll"]
