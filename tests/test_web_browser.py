"""The web group's page in a real headless Chromium (the OS package, driven by playwright), through the real
core: pick a nickname, create a group, ask ``@Pai`` something, see the bot's reply; join by invite link; reply
by clicking; hostile text stays text.

Skipped, loudly, when no Chromium binary is installed (``apt-get install chromium``). Playwright's own
browser download is never used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import AsyncIterator
from typing import Any

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


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Any]:
    """A headless Chromium (``CHROMIUM_ARGS`` plus ``extra_args``), or the test skipped loudly without one."""
    path = chromium_path()
    if path is None:
        skip_loudly("no Chromium binary found (install the Debian package: apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_loudly("playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=path, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser():
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def paibot(tmp_path):
    """A running App with the web group on a free port and a scripted model; yields (app, base url, llm)."""
    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0, posts_per_s: 0}}\n"  # one client posts a lot
    )
    llm = ScriptedLLM(["Hi Alice! Nice to meet you all.", "You're welcome, Bob!"])
    app = App(settings, llm=llm)
    await app.start()
    assert app.services is not None
    try:
        yield app, app.services.adapters["web"].base_url, llm
    finally:
        await app.stop()


async def create_on_page(page, url: str, nickname: str, name: str) -> None:
    """Pick a nickname and create a group the way a person does on the home page; wait for its chat."""
    await page.goto(url + "/")
    await page.fill("#nick-input", nickname)
    await page.click("#nick-form button[type=submit]")
    await page.fill("#create-name", name)
    await page.click("#create-button")
    await page.wait_for_selector("#chat-screen:not([hidden])")


async def test_create_a_group_say_hello_to_pai_and_see_the_reply(browser, paibot, tmp_path):
    _, url, llm = paibot
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await create_on_page(page, url, "Alice", "Weekend hikers")
    number = (await page.text_content("#group-number") or "").strip()
    assert number.isdigit() and len(number) == 6
    address = page.url.rsplit("/g/", 1)[1]
    assert len(address) >= 22 and number not in address  # the address, not the number, is in the URL
    assert "/join/" in (await page.text_content("#banner-link") or "")

    await page.fill("#text", "@Pai hello, who is hiking on Saturday?")
    await page.press("#text", "Enter")
    mine = page.locator(".msg.mine").first
    await mine.wait_for()
    assert "@Pai hello, who is hiking" in (await mine.text_content() or "")

    bot = page.locator(".msg.from-bot").first
    await bot.wait_for()
    text = await bot.text_content() or ""
    assert "Hi Alice! Nice to meet you all." in text and "AI member" in text
    assert "@Pai hello, who is hiking" in (await bot.locator(".quote").text_content() or "")
    assert "Alice" in llm.prompts[0] and "hello" in llm.prompts[0]
    await page.screenshot(path=str(tmp_path / "web-group.png"))

    # Joining by number is off until the creator (the group's admin) turns it on; then the number leads in.
    bob = await browser.new_page()
    await bob.goto(url + "/")
    await bob.fill("#nick-input", "Bob")
    await bob.fill("#join-input", number)
    await bob.click("#join-button")
    await bob.wait_for_selector("text=No group lets people join with that number.")
    assert await page.locator("#number-joining").is_visible() and not await page.is_checked("#number-joining")
    await page.check("#number-joining")
    await page.wait_for_selector(f"text=Anyone who knows the number {number} can join now.")
    await bob.click("#join-button")
    await bob.wait_for_selector("#chat-screen:not([hidden])")
    assert bob.url.endswith(f"/g/{address}") and not await bob.locator("#number-toggle").is_visible()
    await bob.wait_for_selector("text=Hi Alice! Nice to meet you all.")


async def test_a_second_person_joins_by_invite_link_sees_the_chat_live_and_replies_by_clicking(browser, paibot):
    app, url, llm = paibot
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "Book club"})).json()
        await http.post(f"/api/groups/{group['address']}/messages", json={"text": "@Pai hi! Any good books?"},
                        headers=await member_headers(http, "Alice"))
    await app.drain(30)

    bob = await browser.new_page()
    await bob.goto(group["invite_url"])
    await bob.fill("#nick-modal-input", "Bob")
    await bob.click("#nick-modal-form button[type=submit]")
    await bob.wait_for_selector("text=Hi Alice! Nice to meet you all.")
    assert bob.url.endswith(f"/g/{group['address']}")  # the invite link resolved to the group

    # A message posted elsewhere appears without reloading.
    async with aiohttp.ClientSession(base_url=url) as http:
        await http.post(f"/api/groups/{group['address']}/messages", json={"text": "Chapter 3?"},
                        headers=await member_headers(http, "Carol"))
    await bob.wait_for_selector("text=Chapter 3?")

    # Click the bot's message to reply to it; the reply alone (no @mention) makes the bot answer.
    await bob.click(".msg.from-bot")
    assert not await bob.locator("#reply-bar").is_hidden()
    await bob.fill("#text", "thanks! which chapter is next?")
    await bob.press("#text", "Enter")
    await bob.wait_for_selector("text=You're welcome, Bob!")
    async with aiohttp.ClientSession(base_url=url) as http:
        listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
    thanks = next(m for m in listed["messages"] if m["text"] == "thanks! which chapter is next?")
    assert thanks["author"] == "Bob" and thanks["reply_to"]["is_bot"]


async def test_hostile_text_is_shown_as_text_and_never_runs(browser, paibot):
    _, url, _ = paibot
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold?</b>'
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "<i>Evil</i> group"})).json()
        await http.post(f"/api/groups/{group['address']}/messages", json={"text": hostile},
                        headers=await member_headers(http, "<b>Mallory</b>"))
    page = await browser.new_page()
    await page.goto(f"{url}/g/{group['address']}")
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


async def open_group_as(browser, url: str, address: str, nick: str, width: int = 1200):
    page = await browser.new_page(viewport={"width": width, "height": 860})
    errors = watch_console(page)
    await page.goto(f"{url}/g/{address}")
    await page.fill("#nick-modal-input", nick)
    await page.click("#nick-modal-form button[type=submit]")
    await page.wait_for_selector("#chat-screen:not([hidden])")
    await joined(page)
    return page, errors


async def test_attach_a_document_and_an_image_see_them_and_get_the_image_back_edited(browser, paibot, tmp_path):
    from tests.doc_factory import make_image

    app, url, _ = paibot
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "Cabin trip"})).json()
    page, errors = await open_group_as(browser, url, group["address"], "Alice")

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
    reply = page.locator(".msg.mine").nth(1)
    await reply.wait_for()
    quoted = reply.locator(".quote .quote-thumb")  # a reply to a photo shows the photo, not just its author
    await page.wait_for_function("img => img.complete && img.naturalWidth === 120", arg=await quoted.element_handle())
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
        await http.post(f"/api/groups/{group['address']}/messages",
                        json={"text": "/poll Where do we eat? | Luigi's | Sushi Go for 30m"},
                        headers=await member_headers(http, "Carol"))
    await app.drain(30)
    page, errors = await open_group_as(browser, url, group["address"], "Bob")
    options = page.locator(".msg.from-bot .poll-option")
    await options.first.wait_for()
    assert await options.count() == 2
    assert "Poll #1: Where do we eat?" in (await page.text_content(".poll-question") or "")

    await options.nth(1).click()
    await page.wait_for_selector(".msg.mine .text:has-text('vote 2')")
    # One tally, updated in place: the poll's own card shows the count; no message per vote.
    await page.wait_for_selector(".msg.from-bot .poll-option:nth-child(2) .poll-count:has-text('1')")
    assert await page.locator(".msg.from-bot").count() == 1
    assert "chosen" in (await options.nth(1).get_attribute("class") or "")
    await page.screenshot(path=str(tmp_path / "web-poll.png"))
    assert not errors, errors


async def test_after_forget_me_her_messages_show_as_removed_live(browser, paibot):
    app, url, _ = paibot
    async with aiohttp.ClientSession(base_url=url) as http:
        group = await (await http.post("/api/groups", json={"name": "Secrets"})).json()
    page, errors = await open_group_as(browser, url, group["address"], "Alice")
    await page.fill("#text", "my door code is 4711")
    await page.press("#text", "Enter")
    await page.wait_for_selector(".msg.mine .text:has-text('4711')")
    await page.fill("#text", "/forget-me")
    await page.press("#text", "Enter")
    await page.wait_for_selector(".msg.from-bot .text:has-text('Done: I removed')")
    await page.wait_for_selector(".msg.removed .removed-text:has-text('message removed')")
    assert "4711" not in (await page.text_content("#messages") or "")
    assert not errors, errors


# --------------------------------------------------------------------------- language, layout, citations


def shots(tmp_path) -> str:
    """Where screenshots go: ``PAIBOT_SCREENSHOTS`` when set (to look at them), else the test's own folder."""
    folder = os.environ.get("PAIBOT_SCREENSHOTS") or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    return folder


_KEYS: dict[tuple[str, str], dict[str, str]] = {}  # (server, nickname) -> that member's Authorization header


async def post(url: str, address: str, author: str, text: str, **extra) -> dict:
    async with aiohttp.ClientSession(base_url=url) as http:
        for _attempt in range(2):
            if (url, author) not in _KEYS:
                _KEYS[(url, author)] = await member_headers(http, author)
            resp = await http.post(f"/api/groups/{address}/messages", json={"text": text, **extra},
                                   headers=_KEYS[(url, author)])
            if resp.status != 401:
                break
            del _KEYS[(url, author)]  # a key of an earlier server on the same port
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def joined(page) -> None:
    """Wait until the nickname just submitted made this page a member (the modal closes then)."""
    try:
        await page.wait_for_selector("#nick-modal", state="hidden", timeout=60_000)
    except Exception as exc:
        raise AssertionError(f"the page did not become a member: {await page.text_content('#toast')!r}") from exc


async def new_group(url: str, name: str) -> dict:
    async with aiohttp.ClientSession(base_url=url) as http:
        return await (await http.post("/api/groups", json={"name": name})).json()


async def test_the_page_reads_chinese_when_the_browser_does_and_has_a_switch(browser, paibot, tmp_path):
    _, url, _ = paibot
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(url + "/")
    await page.wait_for_selector("#create-button:has-text('创建群')")
    assert await page.text_content("h1") == "有 AI 成员的群聊"
    assert "@Pai" in (await page.text_content(".hero p") or "")  # the {bot} slot kept its element
    assert await page.get_attribute("#nick-input", "placeholder") == "例如 小李"
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await page.screenshot(path=f"{shots(tmp_path)}/home-zh-1280.png")

    await page.click("#lang-switch")  # English, remembered
    await page.wait_for_selector("#create-button:has-text('Create group')")
    await page.reload()
    await page.wait_for_selector("#create-button:has-text('Create group')")
    assert not errors, errors
    await context.close()


async def test_a_streamed_answer_stays_in_view_while_it_grows(browser, tmp_path):
    from tests.fakes import ManualClock

    long_answer = " ".join(f"Sentence {i} of a long answer about the trip." for i in range(1, 40)) + " THE END."
    clock = ManualClock()

    async def tick() -> None:
        clock.advance(2)  # past the stream's edit interval: every piece is an edit the page has to follow

    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "llm: {stream: true}\ntriggers: {answer_within_minutes: 0}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0, posts_per_s: 0}}\n"  # one client posts a lot
    )
    app = App(settings, llm=ScriptedLLM([long_answer], chunk_chars=120, between_chunks=tick), clock=clock)
    await app.start()
    try:
        url = app.services.adapters["web"].base_url
        group = await new_group(url, "Trip")
        for i in range(30):
            await post(url, group["address"], "Carol", f"message {i} about the trip")
        await app.drain(30)
        page, errors = await open_group_as(browser, url, group["address"], "Alice", width=1280)
        await page.wait_for_selector("text=message 29 about the trip")
        await page.fill("#text", "@Pai tell us everything about the trip")
        await page.press("#text", "Enter")
        await page.wait_for_selector(".msg.from-bot .text:has-text('THE END.')")
        # A layout fact: the end of the answer is inside the scrolled box, not below the fold.
        gap = await page.evaluate("""() => {
            const box = document.getElementById('messages').getBoundingClientRect();
            const last = document.querySelector('#messages .msg:last-child').getBoundingClientRect();
            return last.bottom - box.bottom;
        }""")
        assert gap <= 1, f"the last message ends {gap}px below the visible part of the conversation"
        edited = await page.locator(".msg.from-bot .edited").count()
        assert edited == 0  # growing while it streams is not an edit
        await page.screenshot(path=f"{shots(tmp_path)}/streamed-1280.png")
        assert not errors, errors
    finally:
        await app.stop()


async def test_on_a_phone_the_invite_button_and_the_nickname_stay(browser, paibot, tmp_path):
    app, url, _ = paibot
    group = await new_group(url, "周末徒步群")
    await post(url, group["address"], "小王", "周六谁开车？")
    await post(url, group["address"], "小李", "@派 周六几点集合？")  # 派 is no alias in this test's config
    await post(url, group["address"], "阿强", "https://example.org/trail 这条路线不错")
    phone = await browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = await phone.new_page()
    await page.goto(f"{url}/g/{group['address']}")
    await page.fill("#nick-modal-input", "Alice")
    await page.click("#nick-modal-form button[type=submit]")
    await page.wait_for_selector("text=周六谁开车？")
    await joined(page)
    assert "复制邀请链接" in (await page.text_content("#invite-button") or "")
    for selector in ("#invite-button", "#me-name", "#group-name", "#send-button"):
        box = await page.locator(selector).bounding_box()
        assert box is not None and box["width"] > 0 and await page.locator(selector).is_visible(), selector
        assert 0 <= box["x"] and box["x"] + box["width"] <= 390, f"{selector} is cut off: {box}"
    assert await page.text_content("#me-name") == "Alice"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
    await page.screenshot(path=f"{shots(tmp_path)}/chat-390.png")
    desk = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    wide = await desk.new_page()
    await wide.goto(f"{url}/g/{group['address']}")
    await wide.fill("#nick-modal-input", "Bob")
    await wide.click("#nick-modal-form button[type=submit]")
    await wide.wait_for_selector("text=周六谁开车？")
    await wide.screenshot(path=f"{shots(tmp_path)}/chat-1280.png")
    await phone.close()
    await desk.close()


async def test_a_citation_link_jumps_to_the_cited_message_and_highlights_it(browser, tmp_path):
    import re

    def answer(messages, tools):  # the model cites the first message link the prompt gave it
        links = re.findall(r"\(link: (\S+)\)", messages[-1]["content"])
        return f"Alice booked it: {links[0]}" if links else "no link"

    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0, posts_per_s: 0}}\n"  # one client posts a lot
    )
    app = App(settings, llm=ScriptedLLM(answer))
    await app.start()
    try:
        url = app.services.adapters["web"].base_url
        group = await new_group(url, "Party")
        first = await post(url, group["address"], "Alice", "I booked Riverside Hall for the party")
        for i in range(40):
            await post(url, group["address"], "Carol", f"filler {i}")
        await app.drain(30)
        page, errors = await open_group_as(browser, url, group["address"], "Bob", width=1280)
        await page.fill("#text", "@Pai who booked the hall?")
        await page.press("#text", "Enter")
        link = page.locator(".msg.from-bot a.citation")
        await link.wait_for()
        assert (await link.get_attribute("href") or "").endswith(f"#m{first['id']}")
        await link.click()
        cited = page.locator(f"#m{first['id']}")
        await page.wait_for_function("el => el.classList.contains('flash')", arg=await cited.element_handle())
        await page.wait_for_function("""el => { const r = el.getBoundingClientRect(),
            b = document.getElementById('messages').getBoundingClientRect(); return r.top >= b.top && r.bottom <= b.bottom; }""",
            arg=await cited.element_handle())
        await page.screenshot(path=f"{shots(tmp_path)}/citation-1280.png")
        assert not errors, errors
    finally:
        await app.stop()


async def test_the_typing_line_clears_when_the_message_arrives(browser, paibot):
    _, url, _ = paibot
    group = await new_group(url, "Typing")
    page, _ = await open_group_as(browser, url, group["address"], "Alice")
    async with aiohttp.ClientSession(base_url=url) as http:
        carol = await member_headers(http, "Carol")
        async with http.ws_connect(f"/api/groups/{group['address']}/ws", headers=carol) as ws:
            await page.wait_for_function("() => true")
            await ws.send_json({"type": "typing"})
            await page.wait_for_selector("#typing:has-text('Carol')")
            await http.post(f"/api/groups/{group['address']}/messages", json={"text": "here I am"}, headers=carol)
            await page.wait_for_selector("text=here I am")
            assert (await page.text_content("#typing") or "").strip() == ""  # at once, not after a timeout


async def test_an_admin_makes_new_links_and_pages_on_the_old_address_are_shut_out(browser, paibot, tmp_path):
    """The admin's "New links" (a phone, in Chinese): her page moves to the new address with the new invite
    link shown; a page open on the old address is told and sent home; the old invite finds nothing."""
    _, url, _ = paibot
    phone = await browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    admin = await phone.new_page()
    await create_on_page(admin, url, "小王", "周末徒步群")
    old = admin.url.rsplit("/g/", 1)[1]
    old_invite = (await admin.text_content("#banner-link") or "").strip()
    await post(url, old, "小李", "集合地点在蓝色大厅")
    button = admin.locator("#new-links")
    assert "换新链接" in (await button.text_content() or "")
    box = await button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390, f"the button is cut off: {box}"
    assert await admin.evaluate("document.documentElement.scrollWidth") <= 390

    bob = await browser.new_page()
    await bob.goto(f"{url}/g/{old}")
    await bob.fill("#nick-modal-input", "Bob")
    await bob.click("#nick-modal-form button[type=submit]")
    await bob.wait_for_selector("text=集合地点在蓝色大厅")
    assert not await bob.locator("#new-links").is_visible()  # admins only

    admin.once("dialog", lambda dialog: dialog.accept())
    await button.click()
    await admin.wait_for_selector("text=已换新链接：旧的群地址和邀请链接不再有效。")
    new = admin.url.rsplit("/g/", 1)[1]
    assert new != old and len(new) >= 22
    new_invite = (await admin.text_content("#banner-link") or "").strip()
    assert "/join/" in new_invite and new_invite != old_invite
    await admin.wait_for_selector("text=集合地点在蓝色大厅")  # the history moved with the group
    await admin.screenshot(path=f"{shots(tmp_path)}/new-links-390.png")

    await bob.wait_for_selector("text=An admin made new links for this group: this address no longer works.")
    assert await bob.locator("#home-screen").is_visible() and bob.url == url + "/"
    assert f"/g/{old}" not in (await bob.inner_html("#recent-list"))  # the dead address is forgotten
    await bob.goto(old_invite)
    await bob.wait_for_selector("#home-screen:not([hidden])")
    await bob.goto(new_invite)
    await bob.wait_for_selector("text=集合地点在蓝色大厅")
    assert bob.url.endswith(f"/g/{new}")
    await phone.close()


async def test_a_member_signs_her_other_browsers_out(browser, paibot):
    """Signed in on two browsers (the second by a one-time link), she signs the other one out from this page;
    this browser stays signed in."""
    app, url, _ = paibot
    page = await browser.new_page()
    await create_on_page(page, url, "Alice", "Book club")
    me = await page.evaluate("fetch('/api/members/me').then((r) => r.json())")
    store = app.services.adapters["web"]._store  # type: ignore[union-attr]
    phone = store.redeem_sign_in(store.issue_sign_in(me["author_id"], "Alice", "000000", 60))
    other = await browser.new_context()  # the other browser, signed in with the key its link gave it
    await other.add_cookies([{"name": "paibot_member", "value": phone.key, "url": url}])
    there = await other.new_page()
    await there.goto(page.url)
    await there.wait_for_selector("#me-name:text('Alice')")

    await page.click("#change-nick")
    await page.click("#sign-out-others")
    await page.wait_for_selector("text=1 other browser signed out.")
    assert (await page.evaluate("fetch('/api/members/me').then((r) => r.json())"))["author_id"] == me["author_id"]

    # The signed-out browser says so when it next posts, asks for a nickname, and keeps the unsent text.
    await there.fill("#text", "still here?")
    await there.press("#text", "Enter")
    await there.wait_for_selector("text=This browser is no longer signed in")
    assert await there.locator("#nick-modal").is_visible() and not await there.locator("#token-screen").is_visible()
    assert await there.input_value("#text") == "still here?"
    await other.close()
    await page.click("#sign-out-others")
    await page.wait_for_selector("text=No other browser was signed in as you.")
