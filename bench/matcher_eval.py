"""Which embedder matches best: the project's multilingual evaluation set, for every backend.

    make eval-matcher          # prints one row per embedder (accuracy, NDCG@5, ms/query)

The default embedder (CONCIERGE_EMBEDDER) is the one with the best NDCG@5 here; README's
Matcher section records the last run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from concierge.matching import demo_listings
from knowledge.taxonomy import load_taxonomy
from matcher.embedders import create_embedder
from matcher.engine import Matcher
from matcher.errors import EmbedderUnavailable
from matcher.evaluation import evaluate, read_labelled
from matcher.language import LanguageDetectorPort

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    names = sys.argv[1:] or ["use", "e5", "minilm"]
    queries = read_labelled(ROOT / "tests" / "data" / "matcher_eval.jsonl")
    detector = LanguageDetectorPort()
    listings = demo_listings()
    for name in names:
        try:
            started = time.perf_counter()
            matcher = Matcher(create_embedder(name, 2), detector, load_taxonomy())
            matcher.sync(listings)
            load = time.perf_counter() - started
        except EmbedderUnavailable as exc:
            print(json.dumps({"embedder": name, "error": str(exc)}))
            continue
        report = evaluate(matcher, queries)
        print(
            json.dumps({"embedder": name, "load_s": round(load, 2), **report.summary()}, ensure_ascii=False)
        )


if __name__ == "__main__":
    main()
