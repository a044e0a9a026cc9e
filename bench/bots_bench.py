"""Help requests per second through the real python-telegram-bot stack, against its echo floor.

Both sides run the unmodified python-telegram-bot `Application` (long polling) against the local
Bot API server of tests/fakes, which runs in a child process (as Telegram is another machine),
with the driver: N users each send one message, at most C in flight, and a request counts as
answered when the bot's reply to that user arrives at the server.

  echo      a handler that answers every text with a fixed message: the library's own floor.
  concierge the whole service (SQLite, embedded Redis, the 168 demo experts, the USE embedder):
            update in → the dialogue engine → the matcher → expert cards out.

Reported: requests/s and p50/p99 latency for each, and the concierge path as a multiple of the
echo floor (the target is ≤ 3×, and ≥ 200 requests/s on 2 cores), with the machine's load
average before the run (anything else running on the two cores slows the concierge path
more than the echo). The 144 requests of tests/data/matcher_eval.jsonl are sent in turn, in
six languages; nothing on the way keeps a result for a text it saw before, so each one is
detected, embedded, parsed and ranked anew.

    make bench-bots              # N=600, C=32
    BENCH_N=2000 BENCH_C=64 make bench-bots
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import time
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import select, update
from telegram import Update
from telegram.ext import ApplicationBuilder, ContextTypes, TypeHandler

from concierge import migrate
from concierge.catalogue import import_experts
from concierge.database import create_engine, session_factory
from concierge.hours import WEEKDAYS, WeeklyHours
from concierge.model import Channel, ChannelIdentity, Expert, Person
from knowledge.demo import demo_catalogue_path
from tests.fakes.telegram_server import FakeTelegram

N = int(os.environ.get("BENCH_N", "600"))
CONCURRENCY = int(os.environ.get("BENCH_C", "32"))
FIRST_USER = 10_000


def requests_text() -> list[str]:
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "matcher_eval.jsonl"
    return [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line.strip()]


async def drive(telegram: FakeTelegram, texts: list[str], answered: Any) -> dict[str, float]:
    """Send N messages from N users, C at a time; time each until its answer arrives."""
    gate = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []
    waiting: dict[int, asyncio.Future[None]] = {}

    async def watch() -> None:
        # One reader of the bot's messages for every user: C waiters each scanning every
        # message cost this process (on the same two cores as the bot) more than the reading.
        seen = len(telegram.sent)
        while True:
            await telegram.wait_for(lambda _: True, since=seen, timeout=300)
            upto = len(telegram.sent)
            for message in telegram.sent[seen:upto]:
                future = waiting.get(message["chat"]["id"])
                if future is not None and not future.done() and answered(message):
                    future.set_result(None)
            seen = upto

    async def one(i: int) -> None:
        user = telegram.user(FIRST_USER + i, f"User {i}", language_code="en")
        async with gate:
            waiting[user["id"]] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            await telegram.send_text(user, texts[i % len(texts)])
            await asyncio.wait_for(waiting[user["id"]], 300)
            latencies.append(time.perf_counter() - started)

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(N)))
    finally:
        watcher.cancel()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "per_second": N / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


def serve_and_drive(connection: Connection) -> None:
    """The child process: the Bot API server and the simulated users."""

    async def run() -> None:
        async with FakeTelegram() as telegram:
            connection.send((telegram.token, telegram.base_url))
            while True:
                command = await asyncio.to_thread(connection.recv)
                if command == "stop":
                    return
                answered = (lambda m: m["text"] == "echo") if command == "echo" else (lambda m: True)
                connection.send(await drive(telegram, requests_text(), answered))
                connection.send(summary(telegram))

    asyncio.run(run())


def summary(telegram: FakeTelegram) -> dict[str, int]:
    kinds = {"cards": 0, "article": 0, "waiting line": 0, "other": 0}
    for message in telegram.sent:
        if message["text"] == "echo":
            continue
        if "kb_expert:" in str(message.get("reply_markup")):  # a self-help article offered first
            kinds["article"] += 1
        elif message.get("reply_markup"):
            kinds["cards"] += 1
        elif "in line" in message["text"]:
            kinds["waiting line"] += 1
        else:
            kinds["other"] += 1
    return kinds


class Driver:
    """The child process, from the bot's side."""

    def __init__(self) -> None:
        self._connection, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(target=serve_and_drive, args=(child,))
        self._process.start()
        self.token, self.base_url = self._connection.recv()

    async def run(self, kind: str) -> tuple[dict[str, float], dict[str, int]]:
        roles = self._roles()
        before = {role: sum(map(cpu_seconds, pids)) for role, pids in roles.items()}
        self._connection.send(kind)
        result = await asyncio.to_thread(self._connection.recv)
        kinds = await asyncio.to_thread(self._connection.recv)
        for role, pids in roles.items():
            result[f"cpu {role}"] = (sum(map(cpu_seconds, pids)) - before[role]) / N * 1000
        return result, kinds

    def _roles(self) -> dict[str, list[int]]:
        """Where the CPU goes: this process, its helpers (the matcher, an embedded Redis), the driver."""
        roles: dict[str, list[int]] = {"bot": [os.getpid()], "matcher": [], "Redis": []}
        for pid, command in children(os.getpid()):
            if pid == self._process.pid or "resource_tracker" in command:
                continue
            roles["Redis" if "redis-server" in command else "matcher"].append(pid)
        roles["simulated Telegram"] = [self._process.pid] if self._process.pid else []
        return roles

    def close(self) -> None:
        self._connection.send("stop")
        self._process.join(30)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux's /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of a process's children (Linux's /proc; none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append((int(stat.parent.name), command))
        except (OSError, IndexError, ValueError):
            continue
    return found


async def echo_floor(driver: Driver) -> dict[str, float]:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.message is not None:
            await context.bot.send_message(update.message.chat_id, "echo")

    app = ApplicationBuilder().token(driver.token).base_url(driver.base_url).concurrent_updates(True).build()
    app.add_handler(TypeHandler(Update, echo))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0.0)
    try:
        result, _ = await driver.run("echo")
        return result
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


async def seeded_database(folder: Path) -> str:
    # BENCH_DATABASE_URL: an empty PostgreSQL database to compare with the embedded SQLite.
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    engine = create_engine(url)
    await migrate.upgrade(engine)
    sessions = session_factory(engine)
    await import_experts(sessions, demo_catalogue_path())
    always = WeeklyHours.parse({day: ["00:00-24:00"] for day in WEEKDAYS}).to_json()
    async with sessions.begin() as db:
        await db.execute(update(Expert).values(online=True, hours_json=always))
        # Each expert reachable in a chat of their own, as an expert who went /online is.
        for number, person_id in enumerate(await db.scalars(select(Expert.person_id)), start=1):
            db.add(ChannelIdentity(channel=Channel.TELEGRAM, external_id=str(number), person_id=person_id))
    # Customers who already passed the age question: the benchmark measures requests, not sign-up.
    async with sessions.begin() as db:
        for i in range(N):
            person = Person(display_name=f"User {i}", locale="en", birth_date=date(1990, 1, 1))
            db.add(person)
            db.add(
                ChannelIdentity(
                    channel=Channel.TELEGRAM, external_id=str(FIRST_USER + i), person_id=person.id
                )
            )
    await engine.dispose()
    return url


async def concierge_path(driver: Driver) -> tuple[dict[str, float], dict[str, int]]:
    from concierge.cli.commands import service_app
    from concierge.config import load_settings

    with tempfile.TemporaryDirectory() as folder:
        url = await seeded_database(Path(folder))
        os.environ.update(
            {
                "CONCIERGE_DATA_DIR": folder,
                "CONCIERGE_DATABASE_URL": url,
                "CONCIERGE_TELEGRAM_TOKEN": driver.token,
                "CONCIERGE_TELEGRAM_API_URL": driver.base_url,
                "CONCIERGE_MESSAGES_PER_MINUTE": "10000",
                # The target is update in → expert cards out: a self-help article answering first
                # would be another, shorter path (BENCH_ARTICLES=1 measures the service as shipped).
                "CONCIERGE_ARTICLE_THRESHOLD": "0.5" if os.environ.get("BENCH_ARTICLES") == "1" else "1",
            }
        )
        runner = web.AppRunner(service_app(load_settings()))
        await runner.setup()  # starts the core, the matcher and the Telegram channel
        try:
            return await driver.run("concierge")
        finally:
            await runner.cleanup()


def main() -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{N} help requests from {N} Telegram users, {CONCURRENCY} in flight (load average {load})")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    driver = Driver()
    try:
        echo = asyncio.run(echo_floor(driver))
        concierge, kinds = asyncio.run(concierge_path(driver))
    finally:
        driver.close()
    print(f"{'path':<12}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in (("echo", echo), ("concierge", concierge)):
        print(f"{name:<12}{r['per_second']:>12.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}")
    print(f"\nCPU per request (ms){'bot':>8}{'matcher':>9}{'Redis':>7}{'simulated Telegram':>20}")
    for name, r in (("echo", echo), ("concierge", concierge)):
        print(
            f"{name:<20}{r['cpu bot']:>8.2f}{r['cpu matcher']:>9.2f}{r['cpu Redis']:>7.2f}"
            f"{r['cpu simulated Telegram']:>20.2f}"
        )
    ratio = echo["per_second"] / concierge["per_second"]
    print(f"\nconcierge answers {kinds}")
    print(
        f"concierge costs {ratio:.2f}x the echo floor (target ≤ 3x); "
        f"{concierge['per_second']:.0f} requests/s (target ≥ 200 on 2 cores)"
    )


if __name__ == "__main__":
    main()
