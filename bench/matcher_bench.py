"""Matcher speed and memory for 1k … 1M experts, each next to a numpy brute-force baseline.

    make bench-matcher                     # 1k, 10k, 100k, 1M
    BENCH_SIZES=1000,100000 make bench-matcher

Synthetic experts are built from real embeddings: every vector mixes two real ones (demo
listings and taxonomy examples, embedded with the default model) plus a little noise, so the
neighbourhood structure that recall depends on is that of real text, not of random points.
Queries are the 144 requests of the evaluation set, embedded for real. Filters are the ones a
"now" request meets: online, within hours in the expert's zone, not busy, speaks the language
(or English). Targets on 2 cores: query embedding ≤ 5 ms; search + rank ≤ 5 ms p99 at 100k;
≤ 20 ms p99 at 1M with recall@10 ≥ 0.95.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from concierge.matching import demo_listings
from knowledge.taxonomy import load_taxonomy
from matcher.embedders import create_embedder
from matcher.engine import Matcher, MatchQuery
from matcher.evaluation import read_labelled
from matcher.language import LanguageDetectorPort
from matcher.listing import Listing

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # a Tuesday afternoon in Europe
ZONES = ["Europe/Paris", "Europe/London", "Europe/Berlin", "Europe/Madrid", "America/New_York",
         "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "Asia/Tokyo", "Asia/Shanghai",
         "Asia/Kolkata", "Australia/Adelaide", "Africa/Lagos"]  # fmt: skip
LANGUAGES = ["en", "es", "fr", "de", "zh", "ja", "pt", "it", "ru", "ar"]
LANGUAGE_WEIGHTS = np.array([0.35, 0.15, 0.1, 0.1, 0.08, 0.07, 0.05, 0.04, 0.03, 0.03])
HOURS = [
    {d: [(540, 1020)] for d in ("mon", "tue", "wed", "thu", "fri")},
    {d: [(1020, 1320)] for d in ("mon", "tue", "wed", "thu", "fri")},
    {d: [(600, 1200)] for d in ("sat", "sun")},
    {d: [(480, 720), (840, 1080)] for d in ("mon", "tue", "wed", "thu", "fri", "sat")},
    {d: [(0, 1440)] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
]


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def synthetic(
    count: int, base: np.ndarray, templates: list[Listing], rng: np.random.Generator
) -> tuple[list[Listing], np.ndarray]:
    a = rng.integers(0, len(base), count)
    b = rng.integers(0, len(base), count)
    w = rng.uniform(0.5, 1.0, (count, 1)).astype(np.float32)
    vectors = (
        w * base[a] + (1 - w) * base[b] + rng.normal(0, 0.015, (count, base.shape[1])).astype(np.float32)
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    zones = rng.integers(0, len(ZONES), count)
    hours = rng.integers(0, len(HOURS), count)
    online = rng.random(count) < 0.4
    busy = rng.random(count) < 0.05
    counts = rng.integers(0, 300, count)
    means = rng.uniform(3.5, 5.0, count)
    listings = []
    for i in range(count):
        template = templates[int(a[i]) % len(templates)]
        spoken = rng.choice(LANGUAGES, size=int(rng.integers(1, 4)), replace=False, p=LANGUAGE_WEIGHTS)
        listings.append(
            replace(
                template,
                id=f"x{i}",
                headline=f"{template.headline} #{i}",  # distinct fingerprints
                languages=tuple(spoken),
                timezone=ZONES[zones[i]],
                hours=HOURS[hours[i]],
                online=bool(online[i]),
                busy=bool(busy[i]),
                rating_count=int(counts[i]),
                rating_total=round(float(counts[i] * means[i])),
            )
        )
    return listings, np.ascontiguousarray(vectors)


def run(
    size: int, matcher_parts: tuple, base: np.ndarray, templates: list[Listing], queries: list[str]
) -> None:
    embedder, detector = matcher_parts
    rng = np.random.default_rng(size)
    listings, vectors = synthetic(size, base, templates, rng)
    before = rss_mb()
    started = time.perf_counter()
    matcher = Matcher(embedder, detector, load_taxonomy(), exact_limit=20_000)
    matcher.sync(listings, vectors=vectors, progress=size >= 100_000)
    build = time.perf_counter() - started
    memory = rss_mb() - before
    started = time.perf_counter()
    baseline_matrix = np.ascontiguousarray(vectors)  # the baseline "index": the matrix itself
    baseline_build = time.perf_counter() - started + 1e-9

    understood = []
    for text in queries:
        query = MatchQuery(text=text, now=NOW, accept_english=True, top=5)
        understanding, vector = matcher.understand(query)
        assert vector is not None
        understood.append((query, understanding, vector))

    ours, numpy_times, found_total, recall_hits, recall_total = [], [], 0, 0, 0
    for _ in range(max(1, 600 // len(understood))):
        for query, understanding, vector in understood:
            started = time.perf_counter()
            result = matcher.find(vector, understanding, query)
            ours.append(time.perf_counter() - started)
            found_total += len(result.experts)
            started = time.perf_counter()
            mask = matcher.allowed(query, understanding)
            scores = baseline_matrix @ vector
            scores[~mask[: scores.size]] = -np.inf
            top = np.argpartition(-scores, 100)[:100]
            top[np.argsort(-scores[top])]
            numpy_times.append(time.perf_counter() - started)
    for query, understanding, vector in understood:
        mask = matcher.allowed(query, understanding)
        approximate = {p for p, _ in matcher.index.search(vector, 10, mask)}
        exact = {p for p, _ in matcher.index.exact_search(vector, 10, mask)}
        recall_hits += len(approximate & exact)
        recall_total += len(exact)

    allowed_share = float(np.mean([matcher.allowed(q, u).mean() for q, u, _ in understood]))
    sweep = []
    if matcher.index.kind == "hnsw":
        default_ef = matcher.index.ef_search
        for ef in (64, 128, 256):
            matcher.index.ef_search = ef
            times, hits, total = [], 0, 0
            for query, understanding, vector in understood:
                mask = matcher.allowed(query, understanding)
                started = time.perf_counter()
                approximate = {p for p, _ in matcher.index.search(vector, 10, mask)}
                times.append(time.perf_counter() - started)
                hits += len(approximate & {p for p, _ in matcher.index.exact_search(vector, 10, mask)})
                total += 10
            beam = matcher.index.beam(int(allowed_share * len(matcher.index)))
            sweep.append(
                f"efSearch {ef} (beam {beam} here): recall {hits / total:.3f}, "
                f"search p99 {percentile(times, 99):.2f} ms"
            )
        matcher.index.ef_search = default_ef
    p50, p99 = percentile(ours, 50), percentile(ours, 99)
    b50, b99 = percentile(numpy_times, 50), percentile(numpy_times, 99)
    print(
        f"{size:>9,}  {matcher.index.kind:<5} allowed {allowed_share:6.1%}  "
        f"search+rank p50 {p50:7.2f} ms p99 {p99:7.2f} ms | numpy p50 {b50:7.2f} p99 {b99:7.2f} ms "
        f"| ratio p99 {p99 / b99:5.2f}x | recall@10 {recall_hits / max(1, recall_total):.3f} "
        f"| build {build:7.1f} s (numpy {baseline_build * 1000:.0f} ms) "
        f"| memory {memory:7.0f} MB (numpy matrix {baseline_matrix.nbytes / 2**20:.0f} MB) "
        f"| {found_total / len(ours):.1f} experts/query",
        flush=True,
    )
    for line in sweep:
        print(f"{'':>11}{line}", flush=True)
    del matcher, listings, vectors, baseline_matrix


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "1000,10000,100000,1000000").split(",")]
    embedder = create_embedder("use", 2)
    detector = LanguageDetectorPort()
    templates = demo_listings()
    taxonomy = load_taxonomy()
    base_texts = [t.text for t in templates] + [
        example for c in taxonomy.categories for examples in c.examples.values() for example in examples
    ]
    # Recombined listings (a headline, another's skills, a third's first sentence) widen the base
    # to ~5,600 real embeddings; mixing only 600 gave near-duplicate clusters whose top-10
    # order is arbitrary, and recall on those says nothing about real catalogues.
    rng = np.random.default_rng(7)
    for _ in range(5000):
        a, b, c = (templates[int(i)] for i in rng.integers(0, len(templates), 3))
        base_texts.append(f"{a.headline} · {', '.join(b.skills)} · {c.bio.split('.')[0]}")
    base = embedder.embed_passages(base_texts)
    queries = [q.text for q in read_labelled(ROOT / "tests" / "data" / "matcher_eval.jsonl")]

    timings = []
    for text in queries * 3:
        started = time.perf_counter()
        embedder.embed_queries([text])
        timings.append(time.perf_counter() - started)
    print(f"matcher benchmark, {os.cpu_count()} cores, embedder {embedder.name} ({embedder.dim}-d)")
    p50, p99 = percentile(timings, 50), percentile(timings, 99)
    print(f"query embedding: p50 {p50:.2f} ms, p99 {p99:.2f} ms (target ≤ 5 ms)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS before building indexes: {peak:.0f} MB")
    for size in sizes:
        run(size, (embedder, detector), base, templates, queries)


if __name__ == "__main__":
    main()
