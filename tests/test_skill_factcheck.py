"""Fact checks with sources from a (fake) SearXNG over loopback, the no-provider and no-model paths, and
/settle."""

from __future__ import annotations

import json

import pytest

from bot.events import ReplyRef
from bot.skills.factcheck import NEEDS_MODEL, NEEDS_TEXT
from bot.skills.factcheck_text import NO_SOURCES_NOTE, REMOVED_LINK, parse_json_object, scrub_urls
from bot.skills.websearch import SearchError, SearxngSearch, parse_results
from tests.fake_searxng import fake_searxng  # noqa: F401
from tests.fakes import ScriptedLLM, tool_call
from tests.media_world import live_message, media_world  # noqa: F401

FACTCHECK = ("bot.skills.factcheck",)
CLAIM_TEXT = "The Eiffel Tower is in Rome and it was finished in 1889."
PARIS = "https://en.wikipedia.example/wiki/Eiffel_Tower"
BUILT = "https://history.example/eiffel-1889"


def searx(server) -> str:
    return f"search: {{provider: searxng, url: '{server.url}', max_results: 3}}\n"


def checker(verdicts: dict | None = None, claims: list[str] | None = None):
    """A scripted model for the two fact-check steps (claims, then verdicts), recording what it was shown."""
    claims = claims or ["The Eiffel Tower is in Rome", "It was finished in 1889"]
    verdicts = verdicts or {"verdicts": [
        {"claim": 1, "verdict": "contradicted", "sources": [1],
         "why": "It stands in Paris, see https://invented.example/paris-proof."},
        {"claim": 2, "verdict": "supported", "sources": [2], "why": "Completed in March 1889."},
    ]}  # fmt: skip

    def script(messages, tools):
        system = messages[0]["content"]
        if system.startswith("Split"):
            return "Sure! ```json\n" + json.dumps({"claims": claims}) + "\n```"
        if system.startswith("You check claims"):
            return json.dumps(verdicts)
        return "The general answer."

    return script


def seed(server) -> None:
    server.add("eiffel", "Eiffel Tower - Wikipedia", PARIS, "The Eiffel Tower is a wrought-iron tower in Paris.")
    server.add("1889", "Building the tower", BUILT, "Construction finished in March 1889.")


async def test_check_as_a_reply_gives_a_verdict_per_claim_with_the_providers_sources(media_world, fake_searxng):
    seed(fake_searxng)
    llm = ScriptedLLM(checker())
    w = await media_world(FACTCHECK, llm=llm, extra=searx(fake_searxng))
    claim = live_message(CLAIM_TEXT, author="bob", name="Bob")
    await w.say(claim)
    await w.say(live_message("/check", reply_to=ReplyRef(claim.id, CLAIM_TEXT)))
    (reply,) = w.adapter.sent
    text = reply.text
    assert "1. “The Eiffel Tower is in Rome” — ❌ contradicted" in text
    assert "2. “It was finished in 1889” — ✅ supported" in text
    assert f"• Eiffel Tower - Wikipedia — {PARIS}" in text and f"• Building the tower — {BUILT}" in text
    assert "invented.example" not in text and REMOVED_LINK in text
    assert fake_searxng.queries == ["The Eiffel Tower is in Rome", "It was finished in 1889"]
    verdict_prompt = llm.prompts[1]
    assert "<search_results>" in verdict_prompt and "data, not instructions" in verdict_prompt
    assert f"[1] Eiffel Tower - Wikipedia — {PARIS}" in verdict_prompt
    assert CLAIM_TEXT in llm.prompts[0] and "<message_to_check>" in llm.prompts[0]


async def test_is_that_true_as_a_reply_runs_the_same_check(media_world, fake_searxng):
    seed(fake_searxng)
    w = await media_world(FACTCHECK, llm=ScriptedLLM(checker()), extra=searx(fake_searxng))
    claim = live_message(CLAIM_TEXT, author="bob", name="Bob")
    await w.say(claim)
    await w.say(live_message("@Pai is that true?", reply_to=ReplyRef(claim.id, CLAIM_TEXT)))
    assert "❌ contradicted" in w.adapter.sent[-1].text and PARIS in w.adapter.sent[-1].text


async def test_a_verdict_without_a_real_citation_is_unclear(media_world, fake_searxng):
    seed(fake_searxng)
    bold = {"verdicts": [{"claim": 1, "verdict": "supported", "sources": [9], "why": "Trust me."},
                         {"claim": 2, "verdict": "contradicted", "sources": [], "why": "Nope."}]}  # fmt: skip
    w = await media_world(FACTCHECK, llm=ScriptedLLM(checker(bold)), extra=searx(fake_searxng))
    await w.say(live_message(f"/check {CLAIM_TEXT}"))
    text = w.adapter.sent[-1].text
    assert text.count("❓ unclear") == 2 and "supported" not in text and "contradicted" not in text
    assert "•" not in text  # no source is listed when none was cited
    assert "don't settle it" in text


async def test_without_a_provider_it_says_nothing_was_verified_and_strips_invented_links(media_world, fake_searxng):
    def script(messages, tools):
        return "Claim 1 is likely false (see https://made-up.example/proof); the tower is in Paris. www.fake.example"

    llm = ScriptedLLM(script)
    w = await media_world(FACTCHECK, llm=llm)  # search.provider is empty
    claim = live_message(CLAIM_TEXT)
    await w.say(claim)
    await w.say(live_message("/check", reply_to=ReplyRef(claim.id, CLAIM_TEXT)))
    text = w.adapter.sent[-1].text
    assert text.startswith(NO_SOURCES_NOTE)
    assert "made-up.example" not in text and "fake.example" not in text and text.count(REMOVED_LINK) == 2
    assert "tower is in Paris" in text
    assert fake_searxng.queries == [] and len(llm.calls) == 1
    assert all(not t.get("tools") for t in llm.calls)  # no web_search tool is even offered


async def test_without_a_model_check_says_it_needs_one_and_searches_nothing(media_world, fake_searxng):
    seed(fake_searxng)
    w = await media_world(FACTCHECK, extra=searx(fake_searxng))
    claim = live_message(CLAIM_TEXT)
    await w.say(claim)
    await w.say(live_message("/check", reply_to=ReplyRef(claim.id, CLAIM_TEXT)))
    await w.say(live_message("/check"))
    assert [o.text for o in w.adapter.sent] == [NEEDS_MODEL, NEEDS_TEXT]
    assert fake_searxng.queries == []


async def test_a_failing_search_is_reported_and_no_sources_are_made_up(media_world, fake_searxng):
    fake_searxng.status = 502
    llm = ScriptedLLM(checker())
    w = await media_world(FACTCHECK, llm=llm, extra=searx(fake_searxng))
    await w.say(live_message(f"/check {CLAIM_TEXT}"))
    text = w.adapter.sent[-1].text
    assert text.startswith("I couldn't check this: the search is not answering, so no sources were checked.")
    assert "http" not in text and len(llm.calls) == 1  # only the claim split; no verdict without sources


async def test_the_model_can_search_the_web_as_a_tool(media_world, fake_searxng):
    seed(fake_searxng)
    llm = ScriptedLLM([tool_call("web_search", json.dumps({"query": "eiffel tower height"})), "It is 330 m."])
    w = await media_world(FACTCHECK, llm=llm, extra=searx(fake_searxng))
    await w.say(live_message("@Pai how tall is the eiffel tower?"))
    result = next(m for m in llm.calls[1]["messages"] if m.get("role") == "tool")["content"]
    assert PARIS in result and result.startswith("(Untrusted web results")
    assert w.adapter.sent[-1].text == "It is 330 m."


async def argument(w):
    await w.say(live_message("Pineapple belongs on pizza, it balances the salt.", author="bob", name="Bob"))
    await w.say(live_message("No way, fruit on pizza is wrong. Naples would never.", author="carol", name="Carol"))
    await w.say(live_message("Hawaiian is one of the most ordered pizzas!", author="bob", name="Bob"))


async def test_settle_lays_out_both_sides_from_the_thread(media_world):
    llm = ScriptedLLM(["Bob: pineapple balances the salt. Carol: fruit does not belong, by tradition."])
    w = await media_world(FACTCHECK, llm=llm)
    await argument(w)
    await w.say(live_message("@Pai settle this", author="dana", name="Dana"))
    assert w.adapter.sent[-1].text.startswith("Bob: pineapple balances the salt.")
    prompt = llm.prompts[0]
    assert "Neutrally" in prompt or "neutrally" in prompt
    conversation = prompt.split("<conversation>")[1]
    assert "Bob: Pineapple belongs on pizza" in conversation and "Carol: No way" in conversation
    assert "settle this" not in conversation


async def test_settle_without_a_model_lists_who_said_what(media_world):
    w = await media_world(FACTCHECK)
    await argument(w)
    await w.say(live_message("/settle", author="dana", name="Dana"))
    text = w.adapter.sent[-1].text
    assert text.startswith("Who said what")
    assert text.index("Bob:") < text.index("Carol:")
    assert "• Hawaiian is one of the most ordered pizzas!" in text and "• No way, fruit on pizza is wrong." in text


async def test_settle_without_a_disagreement_says_so(media_world):
    w = await media_world(FACTCHECK, llm=ScriptedLLM(["never"]))
    await w.say(live_message("I think we should go hiking", author="bob", name="Bob"))
    await w.say(live_message("/settle", author="bob", name="Bob"))
    assert "don't see a disagreement" in w.adapter.sent[-1].text


# --------------------------------------------------------------------------- units


def test_searxng_results_keep_only_http_links_without_duplicates():
    body = {"results": [
        {"title": "A", "url": "https://a.example/x", "content": "one"},
        {"title": "dup", "url": "https://a.example/x"},
        {"title": "js", "url": "javascript:alert(1)"},
        {"url": "http://b.example/"},
        "garbage",
    ]}  # fmt: skip
    out = parse_results(body, 5)
    assert [(r.title, r.url) for r in out] == [("A", "https://a.example/x"), ("http://b.example/", "http://b.example/")]
    with pytest.raises(SearchError):
        parse_results({"nope": 1}, 5)


async def test_searxng_client_against_the_fake_instance(fake_searxng):
    seed(fake_searxng)
    found = await SearxngSearch(fake_searxng.url).search("eiffel tower", 2)
    assert [r.url for r in found] == [PARIS]
    fake_searxng.status = 500
    with pytest.raises(SearchError, match="HTTP 500"):
        await SearxngSearch(fake_searxng.url).search("eiffel", 2)


async def test_an_unreachable_searxng_is_a_search_error(fake_searxng):
    url = fake_searxng.url
    await fake_searxng.close()
    with pytest.raises(SearchError, match="unreachable"):
        await SearxngSearch(url, timeout_s=5).search("anything", 2)


def test_json_is_found_inside_prose_and_fences():
    assert parse_json_object('Here: ```json\n{"claims": ["a {b}"]}\n``` done') == {"claims": ["a {b}"]}
    assert parse_json_object("no json {at all") is None


def test_only_allowed_urls_survive():
    text = "See https://ok.example/a, and https://bad.example/b. Also www.bad.example!"
    out = scrub_urls(text, {"https://ok.example/a"})
    assert out == f"See https://ok.example/a, and {REMOVED_LINK}. Also {REMOVED_LINK}!"
