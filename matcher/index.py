"""A faiss index over listing embeddings, updated in place as listings change.

Vectors live at positions; a listing that changes gets a new position and its old one becomes a
tombstone, so an update never rebuilds the index. Tombstones are compacted away once they are
a quarter of the positions. Below `exact_limit` live listings the index is exact (a flat
inner-product index); above it, HNSW. Searches take a boolean mask over positions (the hard
filters): a small allowed set is searched exactly, a large one through HNSW with a bitmap
selector, so filters never cost recall on small sets nor a scan on large ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from matcher.errors import IndexCorrupt

Vectors = NDArray[np.float32]
Mask = NDArray[np.bool_]

_FORMAT = 1
_COMPACT_RATIO = 0.25
# An HNSW search with few allowed rows wanders; gathering that many rows is cheaper and exact.
_GATHER_LIMIT = 2000
_NARROW_SHARE = 0.25


def _top(candidates: NDArray[np.intp], scores: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
    """The `k` candidates with the highest `scores[candidate]`, best first."""
    if candidates.size == 0:
        return []
    mine = scores[candidates]
    take = min(k, candidates.size)
    best = np.argpartition(-mine, take - 1)[:take]
    best = best[np.argsort(-mine[best])]
    return [(int(candidates[i]), float(mine[i])) for i in best]


class ExpertIndex:
    def __init__(
        self,
        dim: int,
        *,
        exact_limit: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
    ) -> None:
        self.dim = dim
        self.exact_limit = exact_limit
        self._hnsw_m = hnsw_m
        self._ef_construction = ef_construction
        self.ef_search = ef_search
        self._index: Any = faiss.IndexFlatIP(dim)
        self._ids: list[str | None] = []  # position → listing id (None: tombstone)
        self._positions: dict[str, int] = {}
        self._fingerprints: dict[str, str] = {}
        self._live = np.zeros(0, dtype=bool)

    # ------------------------------------------------------------------ facts

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "flat"

    @property
    def size(self) -> int:
        """Positions, live and dead: the length of masks passed to `search`."""
        return len(self._ids)

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, listing_id: object) -> bool:
        return listing_id in self._positions

    def position(self, listing_id: str) -> int | None:
        return self._positions.get(listing_id)

    def listing_at(self, position: int) -> str | None:
        return self._ids[position]

    def fingerprint(self, listing_id: str) -> str | None:
        return self._fingerprints.get(listing_id)

    def listing_ids(self) -> list[str]:
        return list(self._positions)

    def live_mask(self) -> Mask:
        """True at every position that holds a current listing (read-only)."""
        view = self._live[: self.size]
        view.flags.writeable = False
        return view

    def vectors(self) -> Vectors:
        """A read-only view of every position's vector (dead ones included)."""
        storage = self._index.storage if self.kind == "hnsw" else self._index
        flat: Any = faiss.downcast_index(storage)
        if flat.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        view = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dim)
        return np.asarray(view).reshape(flat.ntotal, self.dim)

    # ------------------------------------------------------------------ changes

    def upsert(self, items: Sequence[tuple[str, str, NDArray[np.float32]]]) -> int:
        """Add or replace listings: (listing id, fingerprint, vector). Returns positions added."""
        fresh = [(lid, fp, vec) for lid, fp, vec in items if self._fingerprints.get(lid) != fp]
        if not fresh:
            return 0
        for listing_id, _, _ in fresh:
            self._bury(listing_id)
        matrix = np.ascontiguousarray(np.vstack([vec for _, _, vec in fresh]), dtype=np.float32)
        if matrix.shape[1] != self.dim:
            raise ValueError(f"vectors have {matrix.shape[1]} dimensions, the index {self.dim}")
        start = len(self._ids)
        for offset, (listing_id, fp, _) in enumerate(fresh):
            self._ids.append(listing_id)
            self._positions[listing_id] = start + offset
            self._fingerprints[listing_id] = fp
        self._grow_live(len(self._ids))
        self._live[start : len(self._ids)] = True
        self._index.add(matrix)
        self._maybe_reshape()
        return len(fresh)

    def remove(self, listing_ids: Iterable[str]) -> int:
        removed = sum(self._bury(listing_id) for listing_id in listing_ids)
        if removed:
            self._maybe_reshape()
        return removed

    def _bury(self, listing_id: str) -> bool:
        position = self._positions.pop(listing_id, None)
        self._fingerprints.pop(listing_id, None)
        if position is None:
            return False
        self._ids[position] = None
        self._live[position] = False
        return True

    def _grow_live(self, size: int) -> None:
        if size > self._live.size:
            grown = np.zeros(max(size, 2 * self._live.size, 1024), dtype=bool)
            grown[: self._live.size] = self._live
            self._live = grown

    def _maybe_reshape(self) -> None:
        live, dead = len(self._positions), self.size - len(self._positions)
        wants_hnsw = live > self.exact_limit
        if wants_hnsw != (self.kind == "hnsw") or (dead > 1000 and dead > _COMPACT_RATIO * self.size):
            self.compact()

    def compact(self) -> None:
        """Rebuild without tombstones, choosing flat or HNSW by the live count."""
        order = sorted(self._positions.items(), key=lambda item: item[1])
        vectors = self.vectors()[[position for _, position in order]] if order else None
        self._index = self._new_index(len(order))
        self._ids = [listing_id for listing_id, _ in order]
        self._positions = {listing_id: i for i, (listing_id, _) in enumerate(order)}
        self._live = np.ones(len(order), dtype=bool)
        if vectors is not None:
            self._index.add(np.ascontiguousarray(vectors))

    def _new_index(self, live: int) -> Any:
        if live <= self.exact_limit:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self._ef_construction
        return index

    # ------------------------------------------------------------------ search

    def search(
        self, query: NDArray[np.float32], k: int, allowed: Mask | None = None
    ) -> list[tuple[int, float]]:
        """The `k` best live positions among `allowed` (all when None): (position, cosine)."""
        if k <= 0 or not self._positions:
            return []
        mask = self._allowed(allowed)
        vector = np.ascontiguousarray(query, dtype=np.float32).reshape(self.dim)
        if self.kind == "flat":
            # One matrix-vector product over every row beats gathering the allowed rows.
            return _top(np.flatnonzero(mask), self.vectors() @ vector, k)
        allowed_rows = int(np.count_nonzero(mask))
        if allowed_rows <= _GATHER_LIMIT:
            return self._brute_force(np.flatnonzero(mask), vector, k)
        bits = np.packbits(mask, bitorder="little")
        params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # stubs lag the library
        params.efSearch = max(self.beam(allowed_rows), k)
        params.sel = faiss.IDSelectorBitmap(mask.size, faiss.swig_ptr(bits))
        scores, positions = self._index.search(vector.reshape(1, -1), k, params=params)
        return [(int(p), float(s)) for p, s in zip(positions[0], scores[0], strict=True) if p >= 0]

    def beam(self, allowed_rows: int) -> int:
        """HNSW's efSearch for a search where `allowed_rows` rows pass the filters.

        Measured in bench/matcher_bench.py: a bigger graph needs a wider beam for the same
        recall (√ of the size beyond 100k), and with few rows passing the filters most of the
        beam is spent on rows that cannot be returned (twice as wide under a quarter).
        """
        live = len(self._positions)
        size_factor = max(1.0, (live / 100_000) ** 0.5)
        narrow = 2 if allowed_rows < _NARROW_SHARE * live else 1
        return int(self.ef_search * size_factor * narrow)

    def exact_search(
        self, query: NDArray[np.float32], k: int, allowed: Mask | None = None
    ) -> list[tuple[int, float]]:
        """Brute force over every allowed live position: the reference for recall."""
        if k <= 0 or not self._positions:
            return []
        vector = np.asarray(query, dtype=np.float32).reshape(self.dim)
        return self._brute_force(np.flatnonzero(self._allowed(allowed)), vector, k)

    def _allowed(self, allowed: Mask | None) -> Mask:
        live = self.live_mask()
        return live if allowed is None else allowed[: self.size] & live

    def _brute_force(
        self, candidates: NDArray[np.intp], query: NDArray[np.float32], k: int
    ) -> list[tuple[int, float]]:
        scores = np.empty(self.size, dtype=np.float32)
        scores[candidates] = self.vectors()[candidates] @ query
        return _top(candidates, scores, k)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path, *, embedder: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp_index, tmp_meta = directory / "experts.faiss.tmp", directory / "experts.json.tmp"
        faiss.write_index(self._index, str(tmp_index))
        tmp_meta.write_text(
            json.dumps(
                {
                    "format": _FORMAT,
                    "embedder": embedder,
                    "dim": self.dim,
                    "ids": self._ids,
                    "fingerprints": self._fingerprints,
                }
            )
        )
        # Rename last: a crash mid-save leaves the previous pair intact.
        tmp_index.replace(directory / "experts.faiss")
        tmp_meta.replace(directory / "experts.json")

    @classmethod
    def load(cls, directory: Path, *, embedder: str, dim: int, exact_limit: int = 20_000) -> ExpertIndex:
        """Read a saved index; IndexCorrupt when it is missing, unreadable or for another model."""
        try:
            meta = json.loads((directory / "experts.json").read_text())
            index = faiss.read_index(str(directory / "experts.faiss"))
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexCorrupt(f"no usable index in {directory}: {exc}") from exc
        if meta.get("format") != _FORMAT or meta.get("embedder") != embedder or meta.get("dim") != dim:
            raise IndexCorrupt(f"the index in {directory} was built by another model or version")
        ids: list[str | None] = meta["ids"]
        if index.ntotal != len(ids) or index.d != dim:
            raise IndexCorrupt(f"the index in {directory} does not match its metadata")
        loaded = cls(dim, exact_limit=exact_limit)
        loaded._index = index
        loaded._ids = ids
        loaded._positions = {lid: i for i, lid in enumerate(ids) if lid is not None}
        loaded._fingerprints = dict(meta["fingerprints"])
        loaded._live = np.asarray([lid is not None for lid in ids], dtype=bool)
        return loaded
