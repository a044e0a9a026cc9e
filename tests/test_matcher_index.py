"""The faiss index: in-place updates, flat and HNSW, filtered search, persistence, recall."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge.taxonomy import load_taxonomy
from matcher.errors import IndexCorrupt
from matcher.evaluation import read_labelled
from matcher.index import ExpertIndex

ROOT = Path(__file__).resolve().parent.parent


def unit_vectors(count: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_updates_happen_in_place_and_removals_stay_removed() -> None:
    vectors = unit_vectors(50)
    index = ExpertIndex(32)
    assert index.upsert([(f"e{i}", "v1", vectors[i]) for i in range(40)]) == 40
    assert index.upsert([(f"e{i}", "v1", vectors[i]) for i in range(40)]) == 0  # nothing changed
    assert index.upsert([("e3", "v2", vectors[45])]) == 1
    assert (len(index), index.size) == (40, 41)  # one tombstone, no rebuild
    assert index.listing_at(index.search(vectors[45], 1)[0][0]) == "e3"
    assert index.listing_at(index.search(vectors[3], 1)[0][0]) != "e3"
    assert index.remove(["e7", "nobody"]) == 1
    assert "e7" not in {index.listing_at(p) for p, _ in index.search(vectors[7], 40)}


def test_it_switches_to_hnsw_above_the_exact_limit_and_compacts_tombstones() -> None:
    vectors = unit_vectors(3000)
    index = ExpertIndex(32, exact_limit=1000)
    index.upsert([(f"e{i}", "v", vectors[i]) for i in range(800)])
    assert index.kind == "flat"
    index.upsert([(f"e{i}", "v", vectors[i]) for i in range(800, 3000)])
    assert index.kind == "hnsw"
    index.remove([f"e{i}" for i in range(1200)])  # 1200 tombstones of 3000: compacted
    assert index.size == len(index) == 1800
    assert index.kind == "hnsw"
    index.remove([f"e{i}" for i in range(1200, 2500)])
    assert index.kind == "flat"
    assert {index.listing_at(p) for p, _ in index.search(vectors[2999], 1)} == {"e2999"}


def test_filtered_search_only_returns_allowed_listings_on_both_kinds() -> None:
    vectors = unit_vectors(9000, seed=1)
    for exact_limit in (10_000, 500):
        index = ExpertIndex(32, exact_limit=exact_limit)
        index.upsert([(f"e{i}", "v", vectors[i]) for i in range(9000)])
        allowed = np.zeros(index.size, dtype=bool)
        allowed[::3] = True  # 3000 allowed: exact on the flat index, HNSW + bitmap on the other
        hits = index.search(vectors[9], 10, allowed)
        assert len(hits) == 10
        assert all(position % 3 == 0 for position, _ in hits)
        assert hits[0][0] == 9
        only_one = np.zeros(index.size, dtype=bool)
        only_one[5] = True  # a handful allowed: gathered and searched exactly
        assert [p for p, _ in index.search(vectors[9], 10, only_one)] == [5]
        assert index.search(vectors[9], 10, np.zeros(index.size, dtype=bool)) == []


def test_save_and_load_round_trip_and_refuse_what_does_not_fit(tmp_path: Path) -> None:
    vectors = unit_vectors(100)
    index = ExpertIndex(32)
    index.upsert([(f"e{i}", f"fp{i}", vectors[i]) for i in range(100)])
    index.remove(["e1"])
    index.save(tmp_path, embedder="use")
    loaded = ExpertIndex.load(tmp_path, embedder="use", dim=32)
    assert len(loaded) == 99
    assert loaded.fingerprint("e5") == "fp5"
    assert "e1" not in loaded
    assert loaded.search(vectors[5], 1) == index.search(vectors[5], 1)
    with pytest.raises(IndexCorrupt, match="another model"):
        ExpertIndex.load(tmp_path, embedder="e5", dim=32)
    (tmp_path / "experts.faiss").write_bytes(b"not an index")
    with pytest.raises(IndexCorrupt):
        ExpertIndex.load(tmp_path, embedder="use", dim=32)
    with pytest.raises(IndexCorrupt):
        ExpertIndex.load(tmp_path / "missing", embedder="use", dim=32)


def test_hnsw_recall_against_exact_search_on_real_embeddings(use_embedder: Any, demo_listings: Any) -> None:
    taxonomy = load_taxonomy()
    texts = [listing.text for listing in demo_listings] + [
        example
        for category in taxonomy.categories
        for examples in category.examples.values()
        for example in examples
    ]
    vectors = use_embedder.embed_passages(texts)
    index = ExpertIndex(use_embedder.dim, exact_limit=100)  # force HNSW on ~600 real vectors
    index.upsert([(f"t{i}", "v", vector) for i, vector in enumerate(vectors)])
    assert index.kind == "hnsw"
    queries = use_embedder.embed_queries(
        [q.text for q in read_labelled(ROOT / "tests/data/matcher_eval.jsonl")]
    )
    found = total = 0
    for query in queries:
        exact = {p for p, _ in index.exact_search(query, 10)}
        approximate = {p for p, _ in index.search(query, 10)}
        found += len(exact & approximate)
        total += len(exact)
    assert found / total >= 0.95
