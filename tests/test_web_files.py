"""Files and polls in the web group, over real loopback HTTP with a recording inbox in place of the core:
multipart uploads, their limits and durability, sniffed types, safe names, serving with safe headers, the
``AttachmentFetcher`` role, the bot's own files and native polls."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from adapters.web.adapter import WebAdapter
from adapters.web.files import safe_file_name, sniff
from adapters.web.store import NewFile, WebStore
from bot.errors import DeliveryError
from bot.events import Attachment, ChatRef, Outgoing, OutgoingFile, Poll
from tests.doc_factory import make_image, make_pdf
from tests.test_web_api import RecordingSink, db_rows, new_group
from tests.web_members import member_headers

TOKEN = "file-token-for-tests"
LIMIT = 64 * 1024


def blobs(data_dir: Path) -> list[Path]:
    """Every file (blob or temp) under the web group's file directory."""
    root = data_dir / "web_files"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def form(*files: tuple[str, bytes, str], **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for key, value in fields.items():
        data.add_field(key, value)
    for name, content, mime in files:
        data.add_field("file", content, filename=name, content_type=mime)
    return data


async def upload(http, group: str, *files, status: int = 200, author: str = "Alice", **fields) -> dict:
    resp = await http.post(f"/api/groups/{group}/messages", data=form(*files, **fields),
                           headers=await member_headers(http, author))
    body = await resp.json()
    assert resp.status == status, body
    return body


@pytest.fixture
async def web(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0, max_attachment_bytes=LIMIT)
    sink = RecordingSink()
    await adapter.start(sink)
    async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
        yield adapter, sink, http
    await adapter.stop()


# --------------------------------------------------------------------------- uploads


async def test_an_uploaded_document_and_image_reach_the_inbox_as_attachments_the_core_can_fetch(web, tmp_path):
    adapter, sink, http = web
    group = await new_group(http)
    pdf, png = make_pdf(["The deposit is 500 euros."]), make_image()
    msg = await upload(http, group["address"], ("contract.pdf", pdf, "application/pdf"),
                       ("whiteboard.png", png, "image/png"), text="here is the contract")  # fmt: skip

    assert msg["text"] == "here is the contract"
    assert [(f["name"], f["kind"], f["mime"], f["size"]) for f in msg["files"]] == [
        ("contract.pdf", "file", "application/pdf", len(pdf)),
        ("whiteboard.png", "image", "image/png", len(png)),
    ]
    [event] = sink.events
    assert [(a.kind, a.name, a.mime, a.size) for a in event.attachments] == [
        ("file", "contract.pdf", "application/pdf", len(pdf)),
        ("image", "whiteboard.png", "image/png", len(png)),
    ]
    assert [a.source for a in event.attachments] == [f["id"] for f in msg["files"]]
    # The bytes were durable before the poster got its 200, and the core reads them back unchanged.
    assert len(blobs(tmp_path)) == 2
    assert await adapter.fetch_attachment(event.attachments[0], LIMIT) == pdf
    assert await adapter.fetch_attachment(event.attachments[1], LIMIT) == png
    listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
    assert listed["messages"][0]["files"] == msg["files"]


async def test_a_message_may_be_files_only_but_not_empty(web):
    _, sink, http = web
    group = await new_group(http)
    only = await upload(http, group["address"], ("notes.txt", b"deposit: 500", "text/plain"))
    assert only["text"] == "" and only["files"][0]["name"] == "notes.txt"
    text_only = await upload(http, group["address"], text="multipart without a file")
    assert text_only["files"] == []
    refused = await upload(http, group["address"], status=400)
    assert "text" in refused["error"]
    empty_file = await upload(http, group["address"], ("empty.txt", b"", "text/plain"), status=400)
    assert "empty" in empty_file["error"]
    assert len(sink.events) == 2


async def test_a_file_over_the_limit_is_refused_with_413_and_nothing_is_stored(web, tmp_path):
    _, sink, http = web
    group = await new_group(http)
    body = await upload(http, group["address"], ("small.txt", b"fine", "text/plain"),
                        ("huge.bin", b"x" * (LIMIT + 1), "application/octet-stream"), text="two files", status=413)  # fmt: skip
    assert str(LIMIT) in body["error"]
    assert sink.events == [] and db_rows(tmp_path) == [] and blobs(tmp_path) == []
    exact = await upload(http, group["address"], ("exact.bin", b"y" * LIMIT, "application/octet-stream"))
    assert exact["files"][0]["size"] == LIMIT


async def test_more_files_than_the_cap_are_refused_and_nothing_is_stored(web, tmp_path):
    adapter, sink, http = web
    group = await new_group(http)
    many = [(f"f{i}.txt", b"x", "text/plain") for i in range(adapter.attachments.max_files + 1)]
    body = await upload(http, group["address"], *many, status=413)
    assert "files per message" in body["error"]
    assert sink.events == [] and db_rows(tmp_path) == [] and blobs(tmp_path) == []


async def test_unexpected_form_fields_and_bad_text_are_refused_without_leftovers(web, tmp_path):
    _, _, http = web
    group = await new_group(http)
    body = await upload(http, group["address"], ("a.txt", b"x", "text/plain"), evil="1", status=400)
    assert "evil" in body["error"]
    bad = aiohttp.FormData()
    bad.add_field("file", b"data", filename="a.txt", content_type="text/plain")
    bad.add_field("text", b"\xff\xfe not utf-8", content_type="text/plain")
    resp = await http.post(f"/api/groups/{group['address']}/messages", data=bad,
                           headers=await member_headers(http, "Alice"))
    assert resp.status == 400 and "UTF-8" in (await resp.json())["error"]
    assert db_rows(tmp_path) == [] and blobs(tmp_path) == []


async def test_when_the_inbox_refuses_the_upload_is_withdrawn_with_its_files(web, tmp_path):
    _, sink, http = web
    group = await new_group(http)
    sink.fail = RuntimeError("disk full")
    await upload(http, group["address"], ("a.txt", b"hello", "text/plain"), status=503)
    assert db_rows(tmp_path) == [] and blobs(tmp_path) == []
    sink.fail = None
    ok = await upload(http, group["address"], ("a.txt", b"hello", "text/plain"))
    assert len(blobs(tmp_path)) == 1 and ok["files"][0]["size"] == 5


async def test_a_retry_with_the_same_nonce_keeps_one_message_and_one_copy_of_its_files(web, tmp_path):
    _, sink, http = web
    group = await new_group(http)
    first = await upload(http, group["address"], ("a.txt", b"hello", "text/plain"), nonce="n-1")
    again = await upload(http, group["address"], ("a.txt", b"hello", "text/plain"), nonce="n-1")
    assert again["id"] == first["id"] and again["files"] == first["files"]
    assert len(sink.events) == 1 and len(blobs(tmp_path)) == 1


async def test_the_files_of_a_message_left_pending_by_a_crash_are_delivered_and_leftovers_swept(tmp_path):
    store = WebStore(tmp_path / "web.db")
    group = store.create_group("Crashy")
    folder = tmp_path / "web_files" / group.number
    folder.mkdir(parents=True)
    (folder / "kept-file-id-0123456789").write_bytes(b"deposit: 500")
    (folder / "orphan-file-id-01234567").write_bytes(b"no row names me")
    (folder / ".tmp-half-written-upload").write_bytes(b"half")
    pending, _ = store.add_message(group.number, "u-1234", "Alice", "", delivered=False, files=[
        NewFile("kept-file-id-0123456789", "file", "notes.txt", "text/plain", 12)])  # fmt: skip
    store.close()

    sink = RecordingSink()
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    await adapter.start(sink)
    try:
        [event] = sink.events
        assert event.id == str(pending.id)
        [att] = event.attachments
        assert att.name == "notes.txt" and await adapter.fetch_attachment(att, 100) == b"deposit: 500"
        assert [p.name for p in blobs(tmp_path)] == ["kept-file-id-0123456789"]
    finally:
        await adapter.stop()


# --------------------------------------------------------------------------- types and names


async def test_an_image_claim_is_checked_against_the_bytes(web):
    adapter, sink, http = web
    group = await new_group(http)
    jpeg, gif = make_image(fmt="JPEG"), make_image(fmt="GIF")
    msg = await upload(http, group["address"], ("fake.png", b"<script>alert(1)</script>", "image/png"),
                       ("photo", jpeg, "application/octet-stream"), ("anim.gif", gif, "image/gif"))  # fmt: skip
    kinds = [(f["name"], f["kind"], f["mime"]) for f in msg["files"]]
    assert kinds[0] == ("fake.png", "file", "application/octet-stream")  # claimed image/png; it is not
    assert kinds[1] == ("photo", "image", "image/jpeg")  # an image whatever the client said
    assert kinds[2] == ("anim.gif", "image", "image/gif")
    assert [a.kind for a in sink.events[0].attachments] == ["file", "image", "image"]


def test_sniffing_recognises_the_four_image_types_and_nothing_else_as_an_image():
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 "
    assert sniff(webp, "x", None).mime == "image/webp"
    assert sniff(make_image(), "x", "text/plain").kind == "image"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert sniff(svg, "logo.svg", "image/svg+xml").kind == "file"
    assert sniff(svg, "logo.svg", "image/svg+xml").mime == "application/octet-stream"
    assert sniff(b"%PDF-1.4", "x.bin", "text/html").mime == "application/pdf"
    assert sniff(b"a,b\n1,2", "t.csv", "").mime == "text/csv"
    assert sniff(b"hello", "x", "text/plain; charset=utf-8").mime == "text/plain"
    assert sniff(b"hello", "x", "not a mime <b>").mime == "application/octet-stream"


@pytest.mark.parametrize(("raw", "clean"), [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\alice\\report.pdf", "report.pdf"),
    ("\u202egnp.exe", "gnp.exe"),  # a right-to-left override would show it as "exe.png"
    (".htaccess", "htaccess"),
    ("  notes \t\n final .txt  ", "notes final .txt"),
    ("a\x00b\x1fc.txt", "abc.txt"),
    ("", "file"),
    ("../..", "file"),
    (None, "file"),
    ("合同.pdf", "合同.pdf"),
    ("x" * 300 + ".docx", "x" * 115 + ".docx"),
])  # fmt: skip
def test_file_names_lose_paths_controls_and_excess(raw, clean):
    assert safe_file_name(raw) == clean


async def test_an_uploaded_name_is_sanitised(web):
    _, sink, http = web
    group = await new_group(http)
    msg = await upload(http, group["address"], ("../../../home/alice/.ssh/id_rsa", b"key", "text/plain"))
    assert msg["files"][0]["name"] == "id_rsa" and sink.events[0].attachments[0].name == "id_rsa"


# --------------------------------------------------------------------------- serving


async def test_images_are_served_inline_and_other_files_as_safe_downloads(web):
    _, _, http = web
    group = await new_group(http)
    png = make_image()
    html = b"<html><script>document.cookie</script></html>"
    msg = await upload(http, group["address"], ("pic.png", png, "image/png"), ("page.html", html, "text/html"),
                       ("logo.svg", b"<svg/>", "image/svg+xml"), ("合同.pdf", make_pdf(["x"]), "application/pdf"))  # fmt: skip
    pic, page, svg, pdf = msg["files"]

    resp = await http.get(pic["url"])
    assert resp.status == 200 and await resp.read() == png
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in resp.headers["Content-Security-Policy"]

    for f in (page, svg):  # never rendered by this origin
        resp = await http.get(f["url"])
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Disposition"].startswith("attachment")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in resp.headers["Content-Security-Policy"]
    assert await (await http.get(page["url"])).read() == html

    resp = await http.get(pdf["url"])
    assert resp.headers["Content-Type"] == "application/pdf"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and "filename*=UTF-8''%E5%90%88%E5%90%8C.pdf" in disposition


async def test_unknown_and_malformed_file_ids_are_404_json(web):
    _, _, http = web
    for path in ("/api/files/abcdefghijklmnopqrstuvwx", "/api/files/..%2F..%2Fweb.db", "/api/files/x"):
        resp = await http.get(path)
        assert resp.status == 404 and "error" in await resp.json()


async def test_file_urls_need_the_access_token_like_the_rest_of_the_api(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0, access_token=TOKEN)
    await adapter.start(RecordingSink())
    try:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            group = await (await http.post("/api/groups", json={"name": "g"}, headers=bearer)).json()
            refused = await http.post(f"/api/groups/{group['address']}/messages",
                                      data=form(("a.txt", b"secret", "text/plain")))  # fmt: skip
            assert refused.status == 401 and blobs(tmp_path) == []
            alice = await member_headers(http, "Alice", headers=bearer)
            resp = await http.post(f"/api/groups/{group['address']}/messages?token={TOKEN}", headers=alice,
                                   data=form(("a.txt", b"secret", "text/plain")))  # fmt: skip
            url = (await resp.json())["files"][0]["url"]
            assert (await http.get(url)).status == 401
            assert (await http.get(url, headers={"Authorization": "Bearer wrong"})).status == 401
            assert await (await http.get(url, headers=bearer)).read() == b"secret"
            assert await (await http.get(f"{url}?token={TOKEN}")).read() == b"secret"
    finally:
        await adapter.stop()


# --------------------------------------------------------------------------- the core's side


async def test_fetch_attachment_refuses_unknown_sources_and_files_over_the_limit(web):
    adapter, sink, http = web
    group = await new_group(http)
    await upload(http, group["address"], ("a.txt", b"0123456789", "text/plain"))
    att = sink.events[0].attachments[0]
    assert await adapter.fetch_attachment(att, 10) == b"0123456789"
    with pytest.raises(DeliveryError, match="limit"):
        await adapter.fetch_attachment(att, 9)
    for source in ("nope-nope-nope-nope-nope", "../../web.db", ""):
        with pytest.raises(DeliveryError):
            await adapter.fetch_attachment(Attachment("file", "x", "text/plain", 1, source), 100)


async def test_the_bots_files_are_stored_with_its_message_once_per_idempotency_key(web, tmp_path):
    adapter, sink, http = web
    group = await new_group(http)
    png = make_image()
    out = Outgoing(ChatRef("web", group["number"]), "Here it is, in black and white.",
                   files=(OutgoingFile("pic-grayscale.png", "image/png", png),), idempotency_key="web:x:1")  # fmt: skip
    ref = await adapter.send(out)
    again = await adapter.send(out)  # a resend after a crash: stored once, files too
    assert again.message_id == ref.message_id and len(blobs(tmp_path)) == 1
    listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
    [msg] = listed["messages"]
    assert msg["is_bot"] and [(f["name"], f["kind"]) for f in msg["files"]] == [("pic-grayscale.png", "image")]
    assert await (await http.get(msg["files"][0]["url"])).read() == png


async def test_a_bot_file_over_the_limit_is_a_delivery_error_and_leaves_nothing(web, tmp_path):
    adapter, _, http = web
    group = await new_group(http)
    out = Outgoing(ChatRef("web", group["number"]), "big", files=(OutgoingFile("big.bin", "", b"x" * (LIMIT + 1)),))
    with pytest.raises(DeliveryError, match="limit"):
        await adapter.send(out)
    assert db_rows(tmp_path) == [] and blobs(tmp_path) == []


async def test_a_poll_is_shown_with_its_options_and_how_to_vote(web):
    adapter, _, http = web
    group = await new_group(http)
    out = Outgoing(ChatRef("web", group["number"]), "📊 Poll #1: Where do we eat?\n1. Luigi's\n2. Sushi Go",
                   poll=Poll("Where do we eat?", ("Luigi's", "Sushi Go"), close_after_s=1800))  # fmt: skip
    ref = await adapter.send(out)
    listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
    [msg] = listed["messages"]
    assert msg["id"] == int(ref.message_id)
    poll = msg["poll"]
    assert poll["question"] == "Where do we eat?" and poll["options"] == ["Luigi's", "Sushi Go"]
    assert poll["closes_at"] and poll["vote_text"] == "vote {n}"
    # A vote is an ordinary reply, the channel the polls skill counts.
    vote = await http.post(f"/api/groups/{group['address']}/messages",
                           json={"text": poll["vote_text"].format(n=2), "reply_to": msg["id"]},
                           headers=await member_headers(http, "Bob"))
    assert vote.status == 200 and (await vote.json())["reply_to"]["is_bot"]


def test_temp_and_blob_paths_cannot_leave_the_files_directory(tmp_path):
    from adapters.web.files import BlobDir, WebFileError

    blobs_dir = BlobDir(tmp_path / "web_files")
    for group, file_id in (("../x", "abcdefghijklmnopqrst"), ("123456", "../../../etc/passwd"), ("123456", "")):
        with pytest.raises(WebFileError):
            blobs_dir.path(group, file_id)
    assert not os.path.exists(tmp_path / "web_files")


async def test_a_cross_site_upload_is_refused_and_nothing_is_stored(web, tmp_path):
    _, sink, http = web
    group = await new_group(http)
    resp = await http.post(f"/api/groups/{group['address']}/messages",
                           headers={"Origin": "http://evil.example", **await member_headers(http, "Mallory")},
                           data=form(("a.txt", b"x", "text/plain")))  # fmt: skip
    assert resp.status == 403
    assert sink.events == [] and db_rows(tmp_path) == [] and blobs(tmp_path) == []


async def test_a_refused_message_keeps_none_of_its_files(web, tmp_path):
    _, sink, http = web
    group = await new_group(http)
    for status, fields in ((403, {"author_id": "bad id!"}), (400, {"reply_to": "999"}), (400, {"nonce": ""})):
        await upload(http, group["address"], ("a.txt", b"x", "text/plain"), status=status, **fields)
    assert sink.events == [] and db_rows(tmp_path) == [] and blobs(tmp_path) == []


async def test_the_core_can_fetch_a_file_before_its_message_is_marked_visible(web, tmp_path):
    adapter, _, http = web
    group = await new_group(http)
    folder = tmp_path / "web_files" / group["number"]
    folder.mkdir(parents=True)
    (folder / "in-flight-file-0123456789").write_bytes(b"deposit: 500")
    store = adapter._require_store()
    store.add_message(group["number"], "u-1234", "Alice", "", delivered=False,
                      files=[NewFile("in-flight-file-0123456789", "file", "n.txt", "text/plain", 12)])  # fmt: skip
    att = Attachment("file", "n.txt", "text/plain", 12, "in-flight-file-0123456789")
    assert await adapter.fetch_attachment(att, 100) == b"deposit: 500"  # the inbox has it: the core may read it
    assert (await http.get("/api/files/in-flight-file-0123456789")).status == 404  # not visible to people yet
