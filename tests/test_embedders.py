"""The embedding backends load offline and behave as the README says they do."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from matcher.embedders import create_embedder
from matcher.errors import EmbedderUnavailable

PAIRS = {
    "en": "My laptop will not connect to the wifi",
    "fr": "Mon ordinateur portable ne se connecte pas au wifi",
    "zh": "我的笔记本电脑连不上无线网络",
}
UNRELATED = "I would like to learn how to bake sourdough bread"


def similarities(embedder: Any) -> dict[str, float]:
    query = embedder.embed_queries([PAIRS["en"]])[0]
    passages = embedder.embed_passages([PAIRS["fr"], PAIRS["zh"], UNRELATED])
    fr, zh, unrelated = passages @ query
    return {"fr": float(fr), "zh": float(zh), "unrelated": float(unrelated)}


def test_use_is_multilingual(use_embedder: Any) -> None:
    vectors = use_embedder.embed_passages(["one", "two", ""])
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    s = similarities(use_embedder)
    assert s["fr"] > s["unrelated"] + 0.3
    assert s["zh"] > s["unrelated"] + 0.3


def test_e5_is_multilingual_with_a_compressed_range() -> None:
    embedder = create_embedder("e5", 2)
    assert embedder.dim == 384
    s = similarities(embedder)
    assert s["fr"] > s["unrelated"]
    assert s["zh"] > s["unrelated"]
    assert s["unrelated"] > 0.5  # why the matcher calibrates each model's "unrelated" level


def test_minilm_loads_from_its_package_and_is_english_only() -> None:
    embedder = create_embedder("minilm", 2)
    assert embedder.dim == 384
    english = embedder.embed_passages(["My notebook can't get on the wireless network"])[0]
    query = embedder.embed_queries([PAIRS["en"]])[0]
    s = similarities(embedder)
    assert float(english @ query) > 0.5
    assert s["zh"] < 0.3  # a Chinese translation looks unrelated to it


def test_a_model_that_is_not_on_disk_is_refused_without_a_download() -> None:
    with pytest.raises(EmbedderUnavailable, match="cannot load"):
        create_embedder("sentence-transformers:some-org/not-on-this-machine", 1)
    with pytest.raises(EmbedderUnavailable, match="unknown embedder"):
        create_embedder("word2vec", 1)
