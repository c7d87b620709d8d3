"""Embeddings for the vector index, chosen by ``memory.embedding``.

Every embedder is synchronous and blocking: the store calls it on a worker thread, never on the event loop.

- ``offline``: a feature-hashing embedding (no download, no model, deterministic across processes). It is
  what tests and air-gapped hosts use. Features are stemmed content words, word bigrams, character 3/4-grams
  inside words (so "hiking" meets "hike" and typos still overlap) and CJK character bigrams, each hashed with
  a sign bit into a fixed-width vector (so collisions cancel out on average) and L2-normalised.
- ``chroma-default``: chromadb's bundled MiniLM ONNX model, downloaded on first use.
- ``litellm:<model>``: any embedding model litellm reaches (OpenAI, Ollama, ...), with
  ``memory.embedding_api_base`` / ``memory.embedding_api_key``.
- ``sentence-transformers:<model name or local path>``: a sentence-transformers model run in this process
  (e.g. ``sentence-transformers:all-MiniLM-L6-v2``, or the directory of a model on disk). The package is
  optional (``pip install sentence-transformers``); the model loads on first use, from the local cache or
  the path (set ``HF_HUB_OFFLINE=1`` on hosts that must not download).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from bot.errors import ConfigError, MemoryError_
from memory.config import EmbeddingConfig, LitellmLoader
from memory.textnorm import STOPWORDS, cjk_grams, words

log = logging.getLogger("paibot.memory")

ST_PREFIX = "sentence-transformers:"


class Embedder(Protocol):
    """Turns texts into vectors. ``fingerprint`` changes whenever vectors stop being comparable (another
    model, another width): the store then builds a fresh collection from the transcript."""

    fingerprint: str
    floor: float  # similarity below which a hit is unrelated noise for this model
    weight: float  # the dense side's weight in ranking (0: its vectors are kept but not used to rank)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text (shape ``(len(texts), width)``)."""
        ...


_SUFFIXES = ("ingly", "edly", "ing", "ies", "ied", "ed", "es", "ly", "s")


def light_stem(word: str) -> str:
    """A tiny suffix stripper: enough to make plural/tense variants share a feature."""
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            stem = word[: -len(suf)]
            return stem + "y" if suf in ("ies", "ied") else stem
    return word


class HashingEmbedder:
    """Signed feature hashing of word, word-bigram, character n-gram and CJK-gram features.

    Speed: a word's features (its stem and its character n-grams, already hashed) are computed once and
    cached, and a batch is summed into its vectors with numpy; the per-text Python work is tokenising and
    looking words up. The caches are bounded (cleared when full) and safe to share between threads: a
    racing reader at worst recomputes an entry."""

    CACHE_MAX = 200_000

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.fingerprint = f"hash{dim}v2"  # v2: traditional Chinese folded to simplified
        self.floor = 0.08
        # Measured on the LoCoMo and kdconv-mem dev splits: fused with the lexical side it adds nothing (it
        # hashes the same words BM25 already matches) and costs about a point of recall@10, so it does not rank.
        self.weight = 0.0
        self._words: dict[str, tuple[str, int, tuple[int, ...], float] | None] = {}
        self._hashes: dict[str, int] = {}

    def _hash(self, key: str) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self.CACHE_MAX:
                self._hashes.clear()
            h = self._hashes[key] = zlib.crc32(key.encode("utf-8"))
        return h

    def _word(self, tok: str) -> tuple[str, int, tuple[int, ...], float] | None:
        """(stem, hash of the word feature, hashes of its character 3/4-grams, weight of each gram), or None
        for a stop word."""
        if tok in self._words:
            return self._words[tok]
        entry: tuple[str, int, tuple[int, ...], float] | None = None
        if tok not in STOPWORDS and tok:
            stem = light_stem(tok)
            padded = f"<{tok}>"
            grams = [padded[i : i + n] for n in (3, 4) for i in range(len(padded) - n + 1)]
            share = 0.8 / math.sqrt(len(grams)) if grams else 0.0
            entry = (stem, self._hash("w:" + stem), tuple(self._hash("g:" + g) for g in grams), share)
        if len(self._words) >= self.CACHE_MAX:
            self._words.clear()
        self._words[tok] = entry
        return entry

    def hashed_features(self, text: str) -> tuple[list[int], list[float]]:
        """The text's features as (crc32 of the feature name, weight) pairs, one pair per occurrence."""
        hs: list[int] = []
        ws: list[float] = []
        prev = ""
        for tok, cjk in words(text):
            if cjk:
                for g in cjk_grams(tok, unigrams=False):
                    hs.append(self._hash("c:" + g))
                    ws.append(1.0)
                for ch in tok:
                    hs.append(self._hash("c:" + ch))
                    ws.append(0.3)
                prev = ""
                continue
            entry = self._word(tok.replace("'", ""))
            if entry is None:
                prev = ""
                continue
            stem, wh, grams, share = entry
            hs.append(wh)
            ws.append(1.0)
            if prev:
                hs.append(self._hash("b:" + prev + "_" + stem))
                ws.append(0.5)
            prev = stem
            hs.extend(grams)
            ws.extend([share] * len(grams))
        return hs, ws

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        rows: list[int] = []
        hs: list[int] = []
        ws: list[float] = []
        for i, text in enumerate(texts):
            h, w = self.hashed_features(text)
            rows.extend([i] * len(h))
            hs.extend(h)
            ws.extend(w)
        if hs:
            # one value per (text, feature): weights of repeats add up, then grow sublinearly (a word said
            # ten times is not ten times as relevant)
            keys, inverse = np.unique(
                (np.asarray(rows, dtype=np.int64) << 32) | np.asarray(hs, dtype=np.int64), return_inverse=True
            )
            weight = np.bincount(inverse, weights=np.asarray(ws, dtype=np.float64))
            weight = np.where(weight > 1.0, 1.0 + np.log(np.maximum(weight, 1.0)), weight)
            h = keys & 0xFFFFFFFF
            sign = np.where((h >> 31) & 1, 1.0, -1.0)
            np.add.at(out, (keys >> 32, h % self.dim), (sign * weight).astype(np.float32))
        norms = np.linalg.norm(out, axis=1)
        empty = norms == 0.0
        out[empty, 0] = 1.0  # an empty text still needs a valid unit vector
        norms[empty] = 1.0
        return out / norms[:, None]


class ChromaDefaultEmbedder:
    """chromadb's default embedding function (MiniLM, ONNX), which downloads its model on first use."""

    fingerprint = "chroma-minilm"
    floor = 0.15
    weight = 0.3

    def __init__(self) -> None:
        self._fn: Any = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            if self._fn is None:
                from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

                self._fn = DefaultEmbeddingFunction()
            return np.asarray(self._fn(list(texts)), dtype=np.float32)
        except Exception as exc:  # the ONNX download surfaces as many exception types
            raise MemoryError_(
                "memory.embedding 'chroma-default' needs chromadb's MiniLM model, which could not be loaded or "
                f"downloaded ({type(exc).__name__}: {exc}). On a host without internet access set "
                "memory.embedding to 'offline', or to 'litellm:<model>' with memory.embedding_api_base "
                "pointing at a reachable embedding server."
            ) from exc


class LiteLLMEmbedder:
    """Any embedding model litellm supports (``litellm:<model>``)."""

    def __init__(
        self, model: str, api_base: str = "", api_key: str = "", load_litellm: LitellmLoader | None = None
    ) -> None:
        self.model = model
        self._load_litellm = load_litellm or _import_litellm
        self._api_base = api_base or None
        self._api_key = api_key or None
        self.fingerprint = "litellm-" + format(zlib.crc32(model.encode()), "08x")
        self.floor = 0.0
        self.weight = 0.3

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        litellm = self._load_litellm()

        try:
            resp = litellm.embedding(
                model=self.model, input=list(texts), api_base=self._api_base, api_key=self._api_key
            )
        except Exception as exc:  # litellm maps provider failures to many classes
            raise MemoryError_(f"embedding model {self.model!r} failed: {type(exc).__name__}: {exc}") from exc
        data = sorted(resp.data, key=lambda d: d["index"] if isinstance(d, dict) else d.index)
        return np.asarray([d["embedding"] if isinstance(d, dict) else d.embedding for d in data], dtype=np.float32)


class SentenceTransformerEmbedder:
    """A sentence-transformers model (``sentence-transformers:<model name or local path>``), loaded on first
    use. Vectors are L2-normalised, so chroma's cosine distance is exact."""

    def __init__(self, model: str, batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size
        self.fingerprint = "st-" + format(zlib.crc32(model.encode()), "08x")
        self.floor = 0.15  # MiniLM-class models: unrelated sentences still score around 0.1
        self.weight = 0.3
        self._st: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:  # the index thread and search threads may both ask first
            if self._st is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MemoryError_(_ST_MISSING) from exc
                try:
                    self._st = SentenceTransformer(self.model)
                except Exception as exc:  # missing files, no network, bad path: many exception types
                    raise MemoryError_(
                        f"sentence-transformers model {self.model!r} could not be loaded ({type(exc).__name__}: "
                        f"{exc}). Give a model name in the local cache or the path of a model directory."
                    ) from exc
            return self._st

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        st = self._loaded()
        try:
            vecs = st.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)  # fmt: skip
        except Exception as exc:  # torch raises many types (out of memory, bad input)
            raise MemoryError_(f"embedding with {self.model!r} failed: {type(exc).__name__}: {exc}") from exc
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)


_ST_MISSING = (
    "memory.embedding 'sentence-transformers:...' needs the sentence-transformers package, which is not "
    "installed: run `pip install sentence-transformers` in the bot's environment (it brings torch; a CPU-only "
    "torch is enough), or choose another memory.embedding"
)


def _import_litellm() -> Any:
    import litellm

    return litellm


def make_embedder(mem: EmbeddingConfig, *, load_litellm: LitellmLoader | None = None) -> Embedder:
    """The embedder ``memory.embedding`` names. A named package that is not installed is a ``ConfigError``
    here, at start, rather than a failure at the first message. ``load_litellm`` imports litellm for a
    ``litellm:<model>`` embedding (the composition root injects its quiet import; default a plain import)."""
    name = mem.embedding
    if name == "offline":
        return HashingEmbedder()
    if name == "chroma-default":
        return ChromaDefaultEmbedder()
    if name.startswith("litellm:") and name[len("litellm:") :]:
        return LiteLLMEmbedder(
            name[len("litellm:") :], mem.embedding_api_base, mem.embedding_api_key, load_litellm
        )
    if name.startswith(ST_PREFIX) and name[len(ST_PREFIX) :].strip():
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError("memory.embedding", _ST_MISSING)
        return SentenceTransformerEmbedder(name[len(ST_PREFIX) :].strip())
    raise ConfigError(
        "memory.embedding",
        "must be 'offline', 'chroma-default', 'litellm:<model>' or 'sentence-transformers:<model or path>'",
    )
