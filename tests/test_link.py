"""Members link their accounts on two platforms: one person for /forget-me, /what-do-you-know-about-me,
rate limits and the prompt."""

from __future__ import annotations

import re

import pytest

from tests.fakes import ScriptedLLM
from tests.pai_world import World, world
from tests.test_pai_chat import ONLY

PAI = "pai:bridge"
BRIDGE = ONLY + "pais: {bridge: {groups: ['alpha:g1', 'beta:g2'], relay: true}}\n"


@pytest.fixture
async def w(tmp_path):
    async for made in world(tmp_path, extra=BRIDGE, skills=None, llm=ScriptedLLM(["noted"])):
        yield made


async def link(w: World) -> None:
    await w.post(w.alpha, "/link", chat="g1", author="alice")
    assert "private message" in w.alpha.to("g1")[-1]
    [(user, text)] = w.alpha.direct
    assert user == "alice"
    code = re.search(r"code: ([A-Z0-9]{8})", text).group(1)  # type: ignore[union-attr]
    assert code not in " ".join(w.alpha.texts() + w.beta.texts())  # never in a group
    await w.post(w.beta, f"/link {code}", chat="g2", author="alice2", name="Alice B")
    assert "one person" in w.beta.to("g2")[-1] and "Alice (AL)" in w.beta.to("g2")[-1]


async def test_a_code_from_one_account_links_the_other(w: World):
    await link(w)
    people = w.app.services.people
    assert people.person_of("alpha:alice") == people.person_of("beta:alice2")
    await w.post(w.beta, "/unlink", chat="g2", author="alice2", name="Alice B")
    assert "no longer linked" in w.beta.to("g2")[-1]
    assert people.person_of("alpha:alice") != people.person_of("beta:alice2")


async def test_a_wrong_code_is_refused_and_guessing_is_bounded(w: World):
    for _ in range(5):
        await w.post(w.beta, "/link AAAAAAAA", chat="g2", author="mallory")
        assert "wrong, used or expired" in w.beta.to("g2")[-1]
    await w.post(w.beta, "/link AAAAAAAA", chat="g2", author="mallory")
    assert "Too many" in w.beta.to("g2")[-1]


async def test_forget_me_removes_the_persons_words_from_both_accounts_and_their_copies(w: World):
    await link(w)
    await w.post(w.alpha, "my phone is 555-0101", chat="g1", author="alice")
    await w.post(w.beta, "and my address is 1 Elm St", chat="g2", author="alice2", name="Alice B")
    await w.post(w.beta, "bob was here", chat="g2", author="bob")
    copies_in_beta = [o for o in w.beta.sent if "555-0101" in o.text]
    assert copies_in_beta
    await w.post(w.alpha, "/forget-me", chat="g1", author="alice")
    said = " ".join(w.texts(PAI))
    assert "555-0101" not in said and "Elm St" not in said and "bob was here" in said
    # the copies of her words in the other group are deleted there
    assert len(w.beta.deleted) == 1 and len(w.alpha.deleted) == 1


async def test_what_do_you_know_counts_both_accounts(w: World):
    await link(w)
    await w.post(w.alpha, "one", chat="g1", author="alice")
    await w.post(w.beta, "two", chat="g2", author="alice2", name="Alice B")
    await w.post(w.beta, "/what-do-you-know-about-me", chat="g2", author="alice2", name="Alice B")
    shown = w.beta.to("g2")[-1]
    assert "Alice (AL)" in shown and "Alice B (BE)" in shown
    assert "one" in shown and "two" in shown


async def test_the_prompt_says_the_two_accounts_are_one_person(w: World):
    await link(w)
    await w.post(w.alpha, "I like tea", chat="g1", author="alice")
    await w.post(w.beta, "@Pai what do I like?", chat="g2", author="alice2", name="Alice B", mentions_me=True)
    assert w.llm is not None
    prompt = w.llm.prompts[-1]
    assert "Alice (AL) and Alice B (BE) are the same person." in prompt
    assert "[AL] Alice: I like tea" in prompt


async def test_rate_limits_count_the_person_across_the_pai(tmp_path):
    extra = BRIDGE + "limits: {member_per_minute: 2}\n"
    async for w in world(tmp_path, extra=extra, skills=None, llm=ScriptedLLM(["a", "b"])):
        await link(w)  # alice's /link counts: one request of two this minute
        await w.post(w.alpha, "@Pai first", chat="g1", author="alice", mentions_me=True)
        await w.post(w.beta, "@Pai second", chat="g2", author="alice2", mentions_me=True)
        assert w.llm is not None and len(w.llm.calls) == 1
