"""How much the validated, idempotent expert import costs over a bare SQL insert.

Both sides load the same N listings (the demo catalogue repeated under new ids) into a fresh,
migrated SQLite database in the same run; the result is reported as a ratio to that baseline,
so it means the same on a fast or a slow machine.

    make bench-import            # N=5000
    BENCH_N=20000 make bench-import
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from concierge import migrate
from concierge.catalogue import import_experts
from concierge.database import create_engine, session_factory
from knowledge.demo import demo_catalogue_path


def synthetic_catalogue(path: Path, count: int) -> None:
    demo = demo_catalogue_path().read_text("utf-8").splitlines()
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            line = json.loads(demo[i % len(demo)])
            line["id"] = f"bench-{i:06d}"
            line["name"] = f"{line['name']} {i}"
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


async def migrated(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    return url


def baseline_insert(database: Path, source: Path) -> float:
    """Parse each line and INSERT it with sqlite3.executemany: no validation, no upsert."""
    started = time.perf_counter()
    persons, experts = [], []
    now = "2026-11-24 00:00:00.000000"
    for raw in source.read_text("utf-8").splitlines():
        line = json.loads(raw)
        person_id = f"per_{line['id']}"
        persons.append((person_id, line["name"], line["languages"][0], line["timezone"], now))
        rating = line["rating"]
        experts.append((
            line["id"], person_id, line["headline"], line["bio"], json.dumps(line["skills"]),
            json.dumps(line["categories"]), json.dumps(line["languages"]), line["pricing"]["mode"],
            line["pricing"]["amount"], line["pricing"]["currency"], line["timezone"],
            json.dumps(line["hours"]), line["online"], rating["count"],
            round(rating["count"] * rating["mean"]), now, now,
        ))  # fmt: skip
    connection = sqlite3.connect(database)
    with connection:
        connection.executemany(
            "INSERT INTO persons (id, display_name, locale, time_zone, created_at) VALUES (?,?,?,?,?)",
            persons,
        )
        connection.executemany(
            "INSERT INTO experts (id, person_id, headline, bio, skills, categories, languages, "
            "pricing_mode, price_amount, price_currency, time_zone, hours, online, rating_count, "
            "rating_total, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            experts,
        )
    connection.close()
    return time.perf_counter() - started


async def ours(url: str, source: Path) -> tuple[float, float]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    started = time.perf_counter()
    first = await import_experts(sessions, source)
    created = time.perf_counter() - started
    started = time.perf_counter()
    again = await import_experts(sessions, source)
    unchanged = time.perf_counter() - started
    await engine.dispose()
    assert first.created == again.unchanged
    assert not first.rejected
    return created, unchanged


async def main() -> None:
    count = int(os.environ.get("BENCH_N", "5000"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "experts.jsonl"
        synthetic_catalogue(source, count)
        base_url = await migrated(work / "baseline.db")
        ours_url = await migrated(work / "ours.db")
        baseline = baseline_insert(Path(base_url.split("///", 1)[1]), source)
        created, unchanged = await ours(ours_url, source)
    print(f"expert import, {count} listings, SQLite, one process")
    print(f"  baseline (json + sqlite3 executemany)  {baseline:7.3f} s  {count / baseline:9.0f} lines/s")
    print(f"  concierge experts import (new)         {created:7.3f} s  {count / created:9.0f} lines/s"
          f"  ratio {created / baseline:5.1f}x")  # fmt: skip
    print(f"  concierge experts import (unchanged)   {unchanged:7.3f} s  {count / unchanged:9.0f} lines/s"
          f"  ratio {unchanged / baseline:5.1f}x")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
