"""Self-help articles searched with the request's own embedding: is there one that closely matches?

The matcher already embeds every request, so looking for an article is one small matrix-vector
product over a few hundred rows (each article's title, and title plus body, in every language it
has): the request may be in any language, the vectors are multilingual. Which article text a
person then reads is the core's choice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from matcher.embedders import Embedder
from matcher.understanding import Understanding


@dataclass(frozen=True, slots=True)
class ArticlePassage:
    """One language of one article, as the matcher needs it."""

    article_id: str
    business_id: str | None  # None: the shared library, offered everywhere
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class ArticleHit:
    article_id: str
    business_id: str | None
    score: float  # rescaled similarity: 0 is the model's "unrelated" level, 1 identical


# Someone who asks for a person, a lesson or a time wants a human, not a page to read. The
# markers are matched on word boundaries (Latin scripts) or as substrings (Chinese, Japanese).
_PERSON_MARKERS = {
    "en": r"teach me|lessons?|tutor|coach(ing)?|talk to (someone|somebody|a (person|human|real))|"
    r"speak (to|with) (someone|somebody|a)|a real person|a human|an expert|a professional|"
    r"someone (to|who)|somebody (to|who)|(can|could) (someone|somebody|anyone) help|"
    r"practi[cs]e (my|speaking|conversation)|video call|call me",
    "fr": r"apprends[- ]moi|m'apprendre|des cours|un cours|cours de|leçons?|professeur|prof |coach|"
    r"parler (à|avec) (quelqu'un|un)|"
    r"une vraie personne|un humain|un expert|une experte|quelqu'un (pour|qui|peut)|appel vidéo|m'appeler",
    "de": r"bring mir|beibringen|unterricht|nachhilfe|lektion|lehrer|coach|"
    r"mit (jemandem|einem menschen|einem experten)|echten menschen|jemand(en)?,? (der|die)|videoanruf",
    "es": r"enséñame|enseñarme|clases?|lecciones|lección|profesor|tutor|coach|"
    r"hablar con (alguien|una persona|un)|"
    r"una persona real|un humano|un experto|alguien (que|para)|videollamada|llámame",
    # Not 教我 / 教えて: "教我怎么…" and "…を教えて" are how people ask how to do something.
    "zh": r"课|辅导|家教|老师|教练|真人|和人聊|找人|专家|陪我练|视频通话",
    "ja": r"レッスン|授業|講座|先生|コーチ|家庭教師|人と話|誰かと話|専門家|相談に乗|練習相手|ビデオ通話",
}
_PERSON_PATTERNS = {
    language: re.compile(pattern if language in {"zh", "ja"} else rf"\b({pattern})", re.IGNORECASE)
    for language, pattern in _PERSON_MARKERS.items()
}


def wants_a_person(understanding: Understanding) -> bool:
    """A request for a person, a lesson, a time or with a budget is never answered with an article."""
    if understanding.when is not None or understanding.budget is not None:
        return True
    text = understanding.text
    language = understanding.language.code if understanding.language else None
    patterns = [_PERSON_PATTERNS[language]] if language in _PERSON_PATTERNS else _PERSON_PATTERNS.values()
    # A request often mixes in English ("I need a tutor pour mon fils"): English markers always count.
    return any(pattern.search(text) for pattern in (*patterns, _PERSON_PATTERNS["en"]))


class ArticleIndex:
    """Every passage's vectors in one matrix; an article scores its best passage."""

    def __init__(self, dim: int) -> None:
        self._matrix: NDArray[np.float32] = np.zeros((0, dim), dtype=np.float32)
        self._articles: list[str] = []  # per row
        self._businesses: list[str | None] = []  # per row
        self._shared = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(set(self._articles))

    def load(
        self, passages: Sequence[ArticlePassage], embedder: Embedder, cache_dir: Path | None = None
    ) -> None:
        """Embed every passage twice: the title alone (close to how people ask) and the whole text.

        Embedding the library's 720 texts takes ~5 s with USE on one thread, so the vectors are
        kept in `cache_dir` by model and text: a restart embeds only what changed."""
        texts = [p.title for p in passages] + [f"{p.title}. {p.body}" for p in passages]
        if cache_dir is not None:
            _read_cache(embedder, cache_dir)
        self._matrix, embedded = _embedded(embedder, texts)
        if cache_dir is not None and embedded:
            _write_cache(embedder, cache_dir, texts)
        self._articles = [p.article_id for p in passages] * 2
        self._businesses = [p.business_id for p in passages] * 2
        self._shared = np.asarray([business is None for business in self._businesses], dtype=bool)

    def search(
        self,
        vector: NDArray[np.float32],
        business_id: str | None,
        rescale: Callable[[float], float],
        threshold: float,
    ) -> ArticleHit | None:
        """The closest article at or above `threshold`; the business's own first when both qualify."""
        if not self._articles:
            return None
        scores = self._matrix @ vector
        mine = np.asarray([b == business_id for b in self._businesses], dtype=bool) if business_id else None
        for allowed in (mine, self._shared):
            if allowed is None or not allowed.any():
                continue
            row = int(np.argmax(np.where(allowed, scores, -np.inf)))
            score = rescale(float(scores[row]))
            if score >= threshold:
                return ArticleHit(self._articles[row], self._businesses[row], round(score, 4))
        return None


# Vectors of article texts already embedded in this process, by model: a service restarted in
# the same process (the tests start one per test) or a reload after a business adds an
# article embeds only what is new.
_KNOWN: dict[tuple[str, int, str], NDArray[np.float32]] = {}


def _embedded(embedder: Embedder, texts: list[str]) -> tuple[NDArray[np.float32], int]:
    """The texts' vectors, and how many had to be embedded now."""
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32), 0
    model = (embedder.name, embedder.dim)
    for text in texts:
        saved = _SAVED.get((*model, _digest(text))) if (*model, text) not in _KNOWN else None
        if saved is not None:
            _KNOWN[(*model, text)] = saved
    fresh = list(dict.fromkeys(text for text in texts if (*model, text) not in _KNOWN))
    if fresh:
        for text, vector in zip(fresh, embedder.embed_passages(fresh), strict=True):
            _KNOWN[(*model, text)] = vector
    matrix = np.vstack([_KNOWN[(*model, text)] for text in texts]).astype(np.float32, copy=False)
    return matrix, len(fresh)


def _cache_file(embedder: Embedder, cache_dir: Path) -> Path:
    return cache_dir / f"articles-{embedder.name}-{embedder.dim}.npz"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_cache(embedder: Embedder, cache_dir: Path) -> None:
    """Vectors saved by an earlier start; a missing or damaged file only means embedding again."""
    model = (embedder.name, embedder.dim)
    try:
        with np.load(_cache_file(embedder, cache_dir), allow_pickle=False) as saved:
            digests, vectors = saved["digests"], saved["vectors"]
    except (OSError, ValueError, KeyError):
        return
    if vectors.ndim != 2 or vectors.shape[1] != embedder.dim or len(digests) != len(vectors):
        return
    _SAVED.update({(*model, str(d)): v.astype(np.float32) for d, v in zip(digests, vectors, strict=True)})


def _write_cache(embedder: Embedder, cache_dir: Path, texts: list[str]) -> None:
    model = (embedder.name, embedder.dim)
    unique = list(dict.fromkeys(texts))
    digests = np.asarray([_digest(text) for text in unique])
    vectors = np.vstack([_KNOWN[(*model, text)] for text in unique])
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_dir, suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, digests=digests, vectors=vectors)
        os.replace(temporary, _cache_file(embedder, cache_dir))  # never a half-written file
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


# Vectors read from the cache file, by model and text digest.
_SAVED: dict[tuple[str, int, str], NDArray[np.float32]] = {}
