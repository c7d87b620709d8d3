"""Text normalisation, the offline embedding, and the litellm embedding over a loopback server."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from bot.config import MemorySettings
from bot.errors import ConfigError, MemoryError_
from memory.embedding import HashingEmbedder, LiteLLMEmbedder, make_embedder
from memory.textnorm import fts_match, index_terms, query_terms


def test_chinese_is_split_into_words_without_function_words() -> None:
    assert index_terms("我们周六去公园") == "周六 去 公园"
    assert query_terms("谁订的场地？") == ["订", "场地"]  # never "的场" or "订的"
    assert query_terms("中华人民共和国") == ["中华", "华人", "人民", "共和", "共和国", "中华人民共和国"]
    assert query_terms("猫") == ["猫"]
    assert query_terms("的") == ["的"]  # a query of nothing but a function word keeps it


def test_traditional_chinese_folds_to_simplified() -> None:
    assert query_terms("場地押金") == query_terms("场地押金") == ["场地", "押金"]
    assert index_terms("藍色大廳") == index_terms("蓝色大厅")


def test_mixed_text_and_japanese_keep_working() -> None:
    assert index_terms("Meet at the 蓝色大厅 tomorrow") == "meet at the 蓝色 大厅 tomorrow"
    assert query_terms("deposit 押金 500元") == ["deposit", "押金", "500", "元"]
    assert query_terms("ありがとう") == ["あり", "りが", "がと", "とう"]  # kana: character pairs


def test_query_terms_drop_stop_words_unless_nothing_is_left() -> None:
    assert query_terms("What did Alice say about the venue?") == ["alice", "say", "venue"]
    assert query_terms("what is it") == ["what", "is", "it"]
    assert query_terms("Ｆｕｌｌｗｉｄｔｈ ÉCOLE") == ["fullwidth", "école"]


def test_fts_match_quotes_terms_so_input_cannot_inject_query_syntax() -> None:
    expr = fts_match(query_terms('venue" OR body:* NEAR(x'))
    assert expr == '"venue" OR "body" OR "near" OR "x"'


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_offline_embedding_is_deterministic_normalised_and_meaningful() -> None:
    e = HashingEmbedder()
    a, b, c, empty = e.embed(["hiking in the mountains", "we hiked up a mountain", "tax return deadline", ""])
    assert np.array_equal(a, HashingEmbedder().embed(["hiking in the mountains"])[0])
    for v in (a, b, c, empty):
        assert len(v) == 512 and math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5)
    assert cos(a, b) > cos(a, c) + 0.2
    zh = e.embed(["我们周六去公园野餐", "周六公园见", "明天交税"])
    assert cos(zh[0], zh[1]) > cos(zh[0], zh[2]) + 0.2


def test_offline_embedding_of_a_text_does_not_depend_on_its_batch_or_the_caches() -> None:
    texts = ["Alice: hiking hiking hiking in the Alps", "Bob: don't forget the tax return", "Carol: 周六公园见 ok", ""]
    alone = np.stack([HashingEmbedder().embed([t])[0] for t in texts])
    small = HashingEmbedder()
    small.CACHE_MAX = 3  # caches cleared over and over while embedding
    for e in (HashingEmbedder(), small):
        batch = e.embed(texts + texts[::-1])
        assert batch.dtype == np.float32 and batch.shape == (8, 512)
        assert np.allclose(batch[:4], alone, atol=1e-6) and np.allclose(batch[4:], alone[::-1], atol=1e-6)
    # a word said three times weighs less than three times as much (sublinear term frequency)
    once, thrice = HashingEmbedder().embed(["hiking alps", "hiking hiking hiking alps"])
    assert cos(once, thrice) > 0.8


def test_make_embedder_reads_the_setting() -> None:
    assert isinstance(make_embedder(MemorySettings(embedding="offline")), HashingEmbedder)
    lit = make_embedder(MemorySettings(embedding="litellm:openai/emb", embedding_api_base="http://127.0.0.1:1"))
    assert isinstance(lit, LiteLLMEmbedder) and lit.model == "openai/emb"
    with pytest.raises(ConfigError):
        make_embedder(MemorySettings(embedding="litellm:"))


async def test_litellm_embedding_through_a_local_openai_compatible_server() -> None:
    seen: list[dict[str, Any]] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if body["input"] == ["fail"]:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=400)
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                for i, t in enumerate(body["input"])]  # fmt: skip
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 1, "total_tokens": 1}})  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        emb = LiteLLMEmbedder("openai/test-embed", f"http://127.0.0.1:{port}/v1", "sk-test")
        vecs = await asyncio.to_thread(emb.embed, ["ab", "abcd"])
        assert vecs.dtype == np.float32 and vecs.tolist() == [[2.0, 1.0, 0.0], [4.0, 1.0, 0.0]]
        assert seen[0]["model"] == "test-embed"
        with pytest.raises(MemoryError_, match="openai/test-embed"):
            await asyncio.to_thread(emb.embed, ["fail"])
    finally:
        await runner.cleanup()
