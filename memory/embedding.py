"""Embeddings for the vector index, chosen by ``memory.embedding``.

Every embedder is synchronous and blocking: the store calls it on a worker thread, never on the event loop.

- ``offline``: a feature-hashing embedding (no download, no model, deterministic across processes). It is
  what tests and air-gapped hosts use. Features are stemmed content words, word bigrams, character 3/4-grams
  inside words (so "hiking" meets "hike" and typos still overlap) and CJK character bigrams, each hashed with
  a sign bit into a fixed-width vector (so collisions cancel out on average) and L2-normalised.
- ``chroma-default``: chromadb's bundled MiniLM ONNX model, downloaded on first use.
- ``litellm:<model>``: any embedding model litellm reaches (OpenAI, Ollama, ...), with
  ``memory.embedding_api_base`` / ``memory.embedding_api_key``.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from bot.config import MemorySettings
from bot.errors import ConfigError, MemoryError_
from memory.textnorm import STOPWORDS, cjk_grams, words

log = logging.getLogger("paibot.memory")


class Embedder(Protocol):
    """Turns texts into vectors. ``fingerprint`` changes whenever vectors stop being comparable (another
    model, another width): the store then builds a fresh collection from the transcript."""

    fingerprint: str
    floor: float  # similarity below which a hit is unrelated noise for this model

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


_SUFFIXES = ("ingly", "edly", "ing", "ies", "ied", "ed", "es", "ly", "s")


def light_stem(word: str) -> str:
    """A tiny suffix stripper: enough to make plural/tense variants share a feature."""
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            stem = word[: -len(suf)]
            return stem + "y" if suf in ("ies", "ied") else stem
    return word


class HashingEmbedder:
    """Signed feature hashing of word, word-bigram, character n-gram and CJK-gram features."""

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.fingerprint = f"hash{dim}v1"
        self.floor = 0.08

    def features(self, text: str) -> dict[str, float]:
        feats: dict[str, float] = {}

        def add(key: str, weight: float) -> None:
            feats[key] = feats.get(key, 0.0) + weight

        prev = ""
        for tok, cjk in words(text):
            if cjk:
                for g in cjk_grams(tok, unigrams=False):
                    add("c:" + g, 1.0)
                for ch in tok:
                    add("c:" + ch, 0.3)
                prev = ""
                continue
            tok = tok.replace("'", "")
            if tok in STOPWORDS or not tok:
                prev = ""
                continue
            stem = light_stem(tok)
            add("w:" + stem, 1.0)
            if prev:
                add("b:" + prev + "_" + stem, 0.5)
            prev = stem
            padded = f"<{tok}>"
            grams = [padded[i : i + n] for n in (3, 4) for i in range(len(padded) - n + 1)]
            if grams:
                share = 0.8 / math.sqrt(len(grams))
                for g in grams:
                    add("g:" + g, share)
        return feats

    def embed_one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        for key, weight in self.features(text).items():
            h = zlib.crc32(key.encode("utf-8"))
            sign = 1.0 if (h >> 31) & 1 else -1.0
            # sublinear term frequency: a word repeated ten times is not ten times as relevant
            vec[h % self.dim] += sign * (1.0 + math.log(weight) if weight > 1.0 else weight)
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:
            vec[0] = 1.0  # an empty text still needs a valid unit vector
            return vec
        return vec / norm

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_one(t).tolist() for t in texts]


class ChromaDefaultEmbedder:
    """chromadb's default embedding function (MiniLM, ONNX), which downloads its model on first use."""

    fingerprint = "chroma-minilm"
    floor = 0.15

    def __init__(self) -> None:
        self._fn: Any = None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            if self._fn is None:
                from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

                self._fn = DefaultEmbeddingFunction()
            return [list(map(float, v)) for v in self._fn(list(texts))]
        except Exception as exc:  # the ONNX download surfaces as many exception types
            raise MemoryError_(
                "memory.embedding 'chroma-default' needs chromadb's MiniLM model, which could not be loaded or "
                f"downloaded ({type(exc).__name__}: {exc}). On a host without internet access set "
                "memory.embedding to 'offline', or to 'litellm:<model>' with memory.embedding_api_base "
                "pointing at a reachable embedding server."
            ) from exc


class LiteLLMEmbedder:
    """Any embedding model litellm supports (``litellm:<model>``)."""

    def __init__(self, model: str, api_base: str = "", api_key: str = "") -> None:
        self.model = model
        self._api_base = api_base or None
        self._api_key = api_key or None
        self.fingerprint = "litellm-" + format(zlib.crc32(model.encode()), "08x")
        self.floor = 0.0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import litellm

        try:
            resp = litellm.embedding(
                model=self.model, input=list(texts), api_base=self._api_base, api_key=self._api_key
            )
        except Exception as exc:  # litellm maps provider failures to many classes
            raise MemoryError_(f"embedding model {self.model!r} failed: {type(exc).__name__}: {exc}") from exc
        data = sorted(resp.data, key=lambda d: d["index"] if isinstance(d, dict) else d.index)
        return [list(map(float, d["embedding"] if isinstance(d, dict) else d.embedding)) for d in data]


def make_embedder(mem: MemorySettings) -> Embedder:
    """The embedder ``memory.embedding`` names."""
    name = mem.embedding
    if name == "offline":
        return HashingEmbedder()
    if name == "chroma-default":
        return ChromaDefaultEmbedder()
    if name.startswith("litellm:") and name[len("litellm:") :]:
        return LiteLLMEmbedder(name[len("litellm:") :], mem.embedding_api_base, mem.embedding_api_key)
    raise ConfigError("memory.embedding", "must be 'offline', 'chroma-default' or 'litellm:<model>'")
