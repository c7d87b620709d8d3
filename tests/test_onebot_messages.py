"""OneBot v11 messages: CQ codes and segment arrays both ways, splitting, outgoing messages, and the
conversion of message events into core events (names, mentions, replies, media, identity)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adapters.onebot import cqcode
from adapters.onebot.convert import Me, Quoted, fingerprint, to_event, upload_event
from adapters.onebot.text import outgoing_segments, split_text, wire_message

ME = Me("2000001", "派")


# --------------------------------------------------------------------------- CQ codes


def test_the_standard_example_parses_into_its_segment_array() -> None:
    text = "&#91;第一部分&#93;[CQ:image,file=123.jpg]图片之后的部分，表情：[CQ:face,id=123]"
    assert cqcode.parse(text) == [
        {"type": "text", "data": {"text": "[第一部分]"}},
        {"type": "image", "data": {"file": "123.jpg"}},
        {"type": "text", "data": {"text": "图片之后的部分，表情："}},
        {"type": "face", "data": {"id": "123"}},
    ]


def test_values_split_at_the_first_equals_sign_and_unescape_commas() -> None:
    segs = cqcode.parse("[CQ:share,title=标题中有=等号&#44;逗号,url=http://baidu.com/?a=1&amp;b=2]")
    assert segs == [
        {"type": "share", "data": {"title": "标题中有=等号,逗号", "url": "http://baidu.com/?a=1&b=2"}}
    ]


def test_codes_without_parameters_and_unclosed_codes() -> None:
    assert cqcode.parse("[CQ:shake]") == [{"type": "shake", "data": {}}]
    assert cqcode.parse("a [CQ:face,id=1") == [{"type": "text", "data": {"text": "a [CQ:face,id=1"}}]


def test_rendering_escapes_text_and_values() -> None:
    segs = [
        {"type": "text", "data": {"text": "- [x] 使用 `&data`"}},
        {"type": "share", "data": {"title": "震惊,小伙", "url": "http://x/?a=1&b=2"}},
    ]
    assert (
        cqcode.render(segs)
        == "- &#91;x&#93; 使用 `&amp;data`[CQ:share,title=震惊&#44;小伙,url=http://x/?a=1&amp;b=2]"
    )


safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
segment = st.one_of(
    safe_text.filter(bool).map(lambda t: {"type": "text", "data": {"text": t}}),
    st.builds(lambda q: {"type": "at", "data": {"qq": q}}, st.from_regex(r"[0-9]{5,10}", fullmatch=True)),
    st.builds(lambda f, u: {"type": "image", "data": {"file": f, "url": u}}, safe_text, safe_text),
)


@given(st.lists(segment, max_size=8))
def test_rendering_then_parsing_gives_the_segments_back(segs: list[dict[str, Any]]) -> None:
    assert cqcode.parse(cqcode.render(segs)) == cqcode.normalize(segs)


def test_normalize_accepts_strings_arrays_and_single_segments_and_drops_junk() -> None:
    assert cqcode.normalize({"type": "text", "data": {"text": "hi"}}) == [
        {"type": "text", "data": {"text": "hi"}}
    ]
    assert cqcode.normalize(
        [
            {"type": "text", "data": {"text": "a"}},
            {"type": "text", "data": {"text": "b"}},
            5,
            {"data": {}},
            {"type": "face", "data": None},
        ]
    ) == [  # fmt: skip
        {"type": "text", "data": {"text": "ab"}},
        {"type": "face", "data": {}},
    ]
    assert cqcode.normalize(None) == []


# --------------------------------------------------------------------------- outgoing


def test_long_answers_split_at_sentence_ends_within_the_limit() -> None:
    text = "第一句话说完了。" * 30 + "最后"
    parts = split_text(text, 100)
    assert all(len(p) <= 100 for p in parts)
    assert "".join(parts) == text
    assert all(p.endswith("。") for p in parts[:-1])


def test_whitespace_only_text_gives_no_parts() -> None:
    assert split_text("  \n ", 50) == []


def test_an_answer_quotes_the_question_and_mentions_its_author() -> None:
    segs = outgoing_segments("好的", reply_to="777", mention=("12345",))
    assert segs == [
        {"type": "reply", "data": {"id": "777"}},
        {"type": "at", "data": {"qq": "12345"}},
        {"type": "text", "data": {"text": " 好的"}},
    ]


def test_model_text_never_becomes_a_cq_code_or_a_mass_ping() -> None:
    evil = "[CQ:at,qq=all] 大家好 [CQ:image,file=http://evil/x.jpg]"
    segs = outgoing_segments(evil, mention=("all", "abc"))
    assert [s["type"] for s in segs] == ["text"]
    as_string = wire_message(segs, "string")
    assert isinstance(as_string, str) and "[CQ:" not in as_string
    assert cqcode.parse(as_string) == segs


# --------------------------------------------------------------------------- events


class Names:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def member_name(self, group_id: str, user_id: str) -> str:
        self.asked.append((group_id, user_id))
        return {"111": "小明（群名片）", "222": "小红"}.get(user_id, "")

    async def group_name(self, group_id: str) -> str:
        return "读书会"

    async def quoted(self, message_id: str) -> Quoted | None:
        return {"900": Quoted("上次的答案", ME.self_id, "派"), "901": Quoted("别人的话", "222", "小红")}.get(
            message_id
        )


def group_event(message: Any, **over: Any) -> dict[str, Any]:
    ev = {
        "time": 1_700_000_000, "self_id": int(ME.self_id), "post_type": "message", "message_type": "group",
        "sub_type": "normal", "message_id": -2147000001, "group_id": 445566, "user_id": 111,
        "message": message, "raw_message": "", "font": 0,
        "sender": {"user_id": 111, "nickname": "xiaoming", "card": "小明"},
    }  # fmt: skip
    ev.update(over)
    return ev


async def test_a_group_message_becomes_an_event_with_the_card_as_the_name() -> None:
    ev = await to_event(group_event([{"type": "text", "data": {"text": "今天读到第三章"}}]), ME, Names())
    assert ev is not None
    assert ev.chat.key == "onebot:445566" and ev.chat.title == "读书会"
    assert ev.author.key == "onebot:111" and ev.author.display_name == "小明"
    assert ev.id == "-2147000001" and ev.text == "今天读到第三章"
    assert not ev.mentions_me and not ev.is_direct and not ev.from_me
    assert ev.sent_at.timestamp() == 1_700_000_000


async def test_an_at_of_the_bot_mentions_it_and_reads_as_its_name() -> None:
    msg = f"[CQ:at,qq={ME.self_id}] 第三章讲了什么？[CQ:at,qq=222]"
    ev = await to_event(group_event(msg), ME, Names())
    assert ev is not None and ev.mentions_me
    assert ev.text == "@派 第三章讲了什么？@小红"


async def test_a_reply_to_the_bot_addresses_it_and_carries_the_quote() -> None:
    names = Names()
    ev = await to_event(group_event("[CQ:reply,id=900]那第四章呢"), ME, names)
    assert ev is not None and ev.mentions_me
    assert ev.reply_to is not None and ev.reply_to.message_id == "900" and ev.reply_to.text == "上次的答案"
    other = await to_event(group_event("[CQ:reply,id=901]同意"), ME, names)
    assert other is not None and not other.mentions_me and other.reply_to.author.user_id == "222"  # type: ignore[union-attr]


async def test_a_sender_without_card_field_is_looked_up() -> None:
    names = Names()
    ev = await to_event(group_event("hi", sender={"user_id": 111, "nickname": "xiaoming"}), ME, names)
    assert ev is not None and ev.author.display_name == "小明（群名片）"
    assert names.asked == [("445566", "111")]


async def test_private_messages_are_direct_and_keyed_by_the_peer() -> None:
    ev = await to_event(
        group_event("在吗", message_type="private", group_id=None, sub_type="friend"), ME, Names()
    )
    assert ev is not None and ev.is_direct and ev.chat.key == "onebot:private:111"


async def test_images_become_attachments_with_their_url() -> None:
    img = {"type": "image", "data": {"file": "A507E29F.png", "url": "https://multimedia.example/d?x=1",
                                     "file_size": "871157"}}  # fmt: skip
    ev = await to_event(group_event([img]), ME, Names())
    assert ev is not None and ev.text == ""
    (att,) = ev.attachments
    assert (att.kind, att.name, att.mime, att.size, att.source) == (
        "image",
        "A507E29F.png",
        "image/png",
        871157,
        "https://multimedia.example/d?x=1",
    )


async def test_messages_with_nothing_to_remember_are_skipped() -> None:
    assert await to_event(group_event([{"type": "face", "data": {"id": "1"}}]), ME, Names()) is None


async def test_the_event_id_survives_renumbering_and_changing_media_urls() -> None:
    """NapCat numbers messages afresh after a restart and re-signs media URLs: the same message fetched from
    history again must get the same event id."""
    live = group_event([{"type": "reply", "data": {"id": "5"}}, {"type": "text", "data": {"text": "看图"}},
                        {"type": "image", "data": {"file": "A.png", "url": "https://x/?rkey=1"}}],
                       )  # fmt: skip
    again = group_event([{"type": "reply", "data": {"id": "99"}}, {"type": "text", "data": {"text": "看图"}},
                         {"type": "image", "data": {"file": "A.png", "url": "https://x/?rkey=2"}}],
                        message_id=123)  # fmt: skip
    a, b = await to_event(live, ME, Names()), await to_event(again, ME, Names())
    assert a is not None and b is not None and a.event_id == b.event_id and a.id != b.id
    other = await to_event(group_event("看图", time=1_700_000_001), ME, Names())
    assert other is not None and other.event_id != a.event_id


def test_the_fingerprint_reads_cq_strings_and_arrays_alike() -> None:
    array = cqcode.normalize([{"type": "at", "data": {"qq": "1"}}, {"type": "text", "data": {"text": "a"}},
                              {"type": "text", "data": {"text": "b"}}])  # fmt: skip
    assert fingerprint("1", 5, array) == fingerprint("1", 5, cqcode.parse("[CQ:at,qq=1]ab"))


async def test_a_group_file_upload_becomes_a_message_with_the_file() -> None:
    raw = {
        "time": 1_700_000_000,
        "self_id": 2000001,
        "post_type": "notice",
        "notice_type": "group_upload",
        "group_id": 445566,
        "user_id": 222,
        "file": {"id": "/abc", "name": "讲义.pdf", "size": 2048, "busid": 102},
    }
    ev = await upload_event(raw, ME, Names())
    assert ev is not None and ev.author.display_name == "小红"
    (att,) = ev.attachments
    assert (att.kind, att.name, att.mime, att.size) == ("file", "讲义.pdf", "application/pdf", 2048)
    assert att.source == "groupfile:445566:102:/abc"
