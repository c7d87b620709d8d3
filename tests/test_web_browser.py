"""The web group's page in a real headless Chromium (the OS package, driven by playwright), through the real
core: pick a nickname, create a group, send ``@Pai hello``, see the bot's reply; join by invite link; reply
by clicking; hostile text stays text.

Skipped, loudly, when no Chromium binary is installed (``apt-get install chromium``). Playwright's own
browser download is never used.
"""

from __future__ import annotations

import os
import shutil
import warnings

import aiohttp
import pytest

from bot.app import App
from bot.config import parse_settings
from tests.fakes import ScriptedLLM
from tests.web_members import member_headers

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("PAIBOT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def skip_loudly(reason: str) -> None:
    warnings.warn(f"BROWSER TESTS SKIPPED: {reason}", stacklevel=2)
    pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")


@pytest.fixture
async def browser():
    path = chromium_path()
    if path is None:
        skip_loudly("no Chromium binary found (install the Debian package: apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_loudly("playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def paibot(tmp_path):
    """A running App with the web group on a free port and a scripted model; yields (app, base url, llm)."""
    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0}}\n"
    )
    llm = ScriptedLLM(["Hi Alice! Nice to meet you all.", "You're welcome, Bob!"])
    app = App(settings, llm=llm)
    await app.start()
    assert app.services is not None
    try:
        yield app, app.services.adapters["web"].base_url, llm
    finally:
        await app.stop()


async def test_create_a_group_say_hello_to_pai_and_see_the_reply(browser, paibot, tmp_path):
    _, url, llm = paibot
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await page.goto(url + "/")
    await page.fill("#nick-input", "Alice")
    await page.click("#nick-form button[type=submit]")
    await page.fill("#create-name", "Weekend hikers")
    await page.click("#create-button")

    await page.wait_for_selector("#chat-screen:not([hidden])")
    number = (await page.text_content("#group-number") or "").strip()
    assert number.isdigit() and len(number) == 6
    assert page.url.endswith(f"/g/{number}")
    assert "/join/" in (await page.text_content("#banner-link") or "")

    await page.fill("#text", "@Pai hello")
    await page.press("#text", "Enter")
    mine = page.locator(".msg.mine").first
    await mine.wait_for()
    assert "@Pai hello" in (await mine.text_content() or "")

    bot = page.locator(".msg.from-bot").first
    await bot.wait_for()
    text = await bot.text_content() or ""
    assert "Hi Alice! Nice to meet you all." in text and "AI member" in text
    assert "@Pai hello" in (await bot.locator(".quote").text_content() or "")
    assert "Alice" in llm.prompts[0] and "hello" in llm.prompts[0]
    await page.screenshot(path=str(tmp_path / "web-group.png"))


async def test_a_second_person_joins_by_invite_link_sees_the_chat_live_and_replies_by_clicking(browser, paibot):
    app, url, llm = paibot
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "Book club"})).json()
        await http.post(f"/api/groups/{group['number']}/messages", json={"text": "@Pai hi!"},
                        headers=await member_headers(http, "Alice"))
    await app.drain(30)

    bob = await browser.new_page()
    await bob.goto(group["invite_url"])
    await bob.fill("#nick-modal-input", "Bob")
    await bob.click("#nick-modal-form button[type=submit]")
    await bob.wait_for_selector("text=Hi Alice! Nice to meet you all.")
    assert bob.url.endswith(f"/g/{group['number']}")  # the invite link resolved to the group

    # A message posted elsewhere appears without reloading.
    async with aiohttp.ClientSession(base_url=url) as http:
        await http.post(f"/api/groups/{group['number']}/messages", json={"text": "Chapter 3?"},
                        headers=await member_headers(http, "Carol"))
    await bob.wait_for_selector("text=Chapter 3?")

    # Click the bot's message to reply to it; the reply alone (no @mention) makes the bot answer.
    await bob.click(".msg.from-bot")
    assert not await bob.locator("#reply-bar").is_hidden()
    await bob.fill("#text", "thanks!")
    await bob.press("#text", "Enter")
    await bob.wait_for_selector("text=You're welcome, Bob!")
    async with aiohttp.ClientSession(base_url=url) as http:
        listed = await (await http.get(f"/api/groups/{group['number']}/messages")).json()
    thanks = next(m for m in listed["messages"] if m["text"] == "thanks!")
    assert thanks["author"] == "Bob" and thanks["reply_to"]["is_bot"]


async def test_hostile_text_is_shown_as_text_and_never_runs(browser, paibot):
    _, url, _ = paibot
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold?</b>'
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "<i>Evil</i> group"})).json()
        await http.post(f"/api/groups/{group['number']}/messages", json={"text": hostile},
                        headers=await member_headers(http, "<b>Mallory</b>"))
    page = await browser.new_page()
    await page.goto(f"{url}/g/{group['number']}")
    await page.fill("#nick-modal-input", "Alice")
    await page.click("#nick-modal-form button[type=submit]")
    message = page.locator(".msg .text").first
    await message.wait_for()
    assert await message.text_content() == hostile
    assert await page.locator("#messages img, #messages script, #messages b:has-text('bold?')").count() == 0
    assert await page.text_content("#group-name") == "<i>Evil</i> group"
    assert await page.evaluate("window.pwned === undefined")


# --------------------------------------------------------------------------- files, images and polls


def watch_console(page) -> list[str]:
    """Collects console errors (a CSP violation shows up here) for the test to assert on."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def open_group_as(browser, url: str, number: str, nick: str):
    page = await browser.new_page(viewport={"width": 1200, "height": 860})
    errors = watch_console(page)
    await page.goto(f"{url}/g/{number}")
    await page.fill("#nick-modal-input", nick)
    await page.click("#nick-modal-form button[type=submit]")
    await page.wait_for_selector("#chat-screen:not([hidden])")
    return page, errors


async def test_attach_a_document_and_an_image_see_them_and_get_the_image_back_edited(browser, paibot, tmp_path):
    from tests.doc_factory import make_image

    app, url, _ = paibot
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "Cabin trip"})).json()
    page, errors = await open_group_as(browser, url, group["number"], "Alice")

    hostile_name = '<img src=x onerror="window.pwned=1">.txt'
    await page.set_input_files("#file-input", files=[
        {"name": "contract.txt", "mimeType": "text/plain", "buffer": b"The deposit is 500 euros."},
        {"name": "lake.png", "mimeType": "image/png", "buffer": make_image(120, 80)},
        {"name": hostile_name, "mimeType": "text/html", "buffer": b"<script>alert(1)</script>"},
    ])  # fmt: skip
    tray = page.locator("#tray .tray-item")
    assert await tray.count() == 3
    assert "contract.txt" in (await tray.nth(0).text_content() or "")
    await page.fill("#text", "the contract and a photo")
    await page.screenshot(path=str(tmp_path / "web-tray.png"))
    await page.press("#text", "Enter")

    mine = page.locator(".msg.mine").first
    await mine.wait_for()
    await page.wait_for_selector("#tray", state="hidden")  # the tray empties once the upload is stored
    chips = mine.locator(".file-chip")
    assert await chips.count() == 2
    assert "contract.txt" in (await chips.nth(0).text_content() or "")
    assert await chips.nth(1).locator(".file-name").text_content() == hostile_name  # a name is only text
    thumb = mine.locator(".thumb img")
    await page.wait_for_function("img => img.complete && img.naturalWidth === 120", arg=await thumb.element_handle())

    # The image opens in the viewer; Escape closes it.
    await thumb.click()
    await page.wait_for_selector("#viewer:not([hidden])")
    assert "lake.png" in (await page.text_content("#viewer-name") or "")
    await page.screenshot(path=str(tmp_path / "web-viewer.png"))
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#viewer", state="hidden")

    # Reply to the photo asking for black and white: the bot's reply shows the edited image.
    await mine.locator(".text").click()
    await page.fill("#text", "@Pai make this black and white")
    await page.press("#text", "Enter")
    bot_img = page.locator(".msg.from-bot .thumb img").first
    await bot_img.wait_for()
    await page.wait_for_function("img => img.complete && img.naturalWidth === 120", arg=await bot_img.element_handle())
    await page.screenshot(path=str(tmp_path / "web-files.png"))
    assert await page.evaluate("window.pwned === undefined")
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


async def test_a_poll_is_drawn_with_buttons_and_a_click_votes_by_reply(browser, paibot, tmp_path):
    app, url, _ = paibot
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "Dinner"})).json()
        await http.post(f"/api/groups/{group['number']}/messages",
                        json={"text": "/poll Where do we eat? | Luigi's | Sushi Go for 30m"},
                        headers=await member_headers(http, "Carol"))
    await app.drain(30)
    page, errors = await open_group_as(browser, url, group["number"], "Bob")
    options = page.locator(".msg.from-bot .poll-option")
    await options.first.wait_for()
    assert await options.count() == 2
    assert "Poll #1: Where do we eat?" in (await page.text_content(".poll-question") or "")

    await options.nth(1).click()
    await page.wait_for_selector(".msg.mine .text:has-text('vote 2')")
    await page.wait_for_selector("text=Bob: Sushi Go")
    assert "chosen" in (await options.nth(1).get_attribute("class") or "")
    await page.screenshot(path=str(tmp_path / "web-poll.png"))
    assert not errors, errors


async def test_after_forget_me_her_messages_show_as_removed_live(browser, paibot):
    app, url, _ = paibot
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "Secrets"})).json()
    page, errors = await open_group_as(browser, url, group["number"], "Alice")
    await page.fill("#text", "my door code is 4711")
    await page.press("#text", "Enter")
    await page.wait_for_selector(".msg.mine .text:has-text('4711')")
    await page.fill("#text", "/forget-me")
    await page.press("#text", "Enter")
    await page.wait_for_selector(".msg.from-bot .text:has-text('Done: I removed')")
    await page.wait_for_selector(".msg.removed .removed-text:has-text('message removed')")
    assert "4711" not in (await page.text_content("#messages") or "")
    assert not errors, errors
