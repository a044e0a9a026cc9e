"""What one core of the video gateway sustains: relayed calls, direct-mode rooms, time to first frame.

The service (`create_app`: database, Redis, gateway) runs in a child process pinned to one core;
the participants (`video_gateway.client.RoomClient`, aiortc) run in other processes pinned to the
other core, so the gateway's CPU is measured alone (from /proc/<pid>/stat) while it works.

  relayed calls   two participants per room, each sending 640x480 VP8 at 30 fps (a pre-encoded
                  loop at ~700 kbps, the rate a browser settles at for a webcam at that size)
                  plus Opus audio (aiortc's AudioStreamTrack). The number of concurrent calls is
                  ramped; at each step, for BENCH_SECONDS, video frames sent by the participants
                  are compared with those they receive (loss) and the gateway's and the
                  participants' CPU are read. Reported: the largest number of calls with < 1 %
                  loss while the gateway core is not saturated, for encoded-frame forwarding and
                  for aiortc's decode/re-encode fallback (a ratio), recording off and on. When the
                  participants' core saturates first, the gateway's capacity is also extrapolated
                  from its CPU per call at the highest loss-free step, and labelled so.
  direct rooms    two participants per room holding only their control connection to the gateway
                  (data channel: ticks, pings, stats); their browser-to-browser media is not the
                  gateway's work, so each reports it connected and moving, as a page in a live
                  call does. Ramped until the gateway core passes ~80 % or ticks arrive late (p99
                  of the gaps between a participant's ticks past TICK_SECONDS > 250 ms). Each step
                  also shows where lateness would come from: the gateway's and the participants'
                  worst event-loop lag and garbage-collection pause, the gateway's share of time in
                  the collector and the objects it tracks.
  first frame     with the other participant already in the room, from `join()` to the first
                  remote video frame, relay and direct, p50/p95 over BENCH_TRIALS rooms.

    make bench-gateway
    BENCH_SECONDS=5 BENCH_MAX_CALLS=8 BENCH_MAX_ROOMS=200 make bench-gateway   # a quick look

Environment: BENCH_SECONDS (10), BENCH_MAX_CALLS (64), BENCH_MAX_ROOMS (3000), BENCH_TRIALS (20),
BENCH_CLIENT_PROCESSES (2), BENCH_DATABASE_URL (a migrated SQLite file in a temporary directory),
BENCH_REDIS_URL (redis://127.0.0.1:6379/0), BENCH_PHASES (relay,transcode,direct,first-frame),
BENCH_NICE (-10: applied where allowed), BENCH_LOG_LEVEL (warning, the gateway's).

On a shared machine: each step also reports what else ran on the two cores (`irq`: the kernel's
loopback networking on the gateway's core; `other`, `cl.other`: other processes or steal on the
gateway's and the participants' core). A step that fails while another process took ≥ 20 % of a
measured core is measured once more. The gateway's warnings and errors are counted per phase.
Output: the tables, a summary with each target, then one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import gc
import itertools
import json
import logging
import multiprocessing
import os
import platform
import re
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import structlog
from aiortc.mediastreams import AudioStreamTrack

from video_gateway.client import ReplayedVideo, RoomClient
from video_gateway.ice import restrict_host_addresses
from video_gateway.signalling import TICK_SECONDS

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
MAX_CALLS = int(os.environ.get("BENCH_MAX_CALLS", "64"))
MAX_ROOMS = int(os.environ.get("BENCH_MAX_ROOMS", "3000"))
TRIALS = int(os.environ.get("BENCH_TRIALS", "20"))
CLIENT_PROCESSES = max(1, int(os.environ.get("BENCH_CLIENT_PROCESSES", "2")))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NICE = int(os.environ.get("BENCH_NICE", "-10"))
PHASES = os.environ.get("BENCH_PHASES", "relay,transcode,direct,first-frame").replace(" ", "").split(",")

VIDEO_KBPS = 700
VIDEO_SIZE = (640, 480)
FPS = 30
LOOP_FRAMES = 300  # ten seconds: a keyframe every ten seconds, as from a camera asked once in a while

LOSS_LIMIT = 0.01
SATURATED = 0.90  # of one core: past this a process is queueing work, not keeping up
DIRECT_CPU_LIMIT = 0.80
TICK_LATE_LIMIT = 0.25  # seconds past the nominal tick period (TICK_SECONDS), p99
SETTLE_SECONDS = 3.0  # after joins: keyframes, DTLS and bandwidth estimation calm down
JOIN_CONCURRENCY = 8  # per client process; more only queues handshakes behind each other

RELAY_STEPS = [1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128]
DIRECT_STEPS = [25, 50, 100, 200, 300, 400, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000]
# A step may jump ahead while the busier core is projected to stay under this (never past 2x).
STRIDE_UTILISATION = 0.6

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------- machine


def process_cpu_seconds(pid: int) -> float:
    """User + system time of a whole process (all its threads: decoders, encoders, executors)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def core_times() -> dict[int, dict[str, float]]:
    """Seconds per core since boot (busy, interrupts, steal, total): what else ran on a core.

    Interrupt time is mostly the kernel's loopback network work, which no process is charged
    for; steal is the hypervisor running another guest.
    """
    result: dict[int, dict[str, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        # user nice system idle iowait irq softirq steal (guest time is already counted in user)
        n = [int(v) / _CLOCK_TICKS for v in values[:8]]
        result[int(name[3:])] = {
            "busy": sum(n) - n[3] - n[4],
            "irq": n[5] + n[6],
            "steal": n[7],
            "total": sum(n),
        }
    return result


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def pin(core: int | None) -> None:
    """Pin this process, including threads it already started; later threads inherit it.

    Also raises their priority where allowed: on a shared machine, a compiler or a test run that
    lands on the gateway's core would otherwise show up as the gateway's frame loss.
    """
    for task in os.listdir("/proc/self/task"):
        if core is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), {core})
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, int(task), NICE)


def threads_pinned(pid: int, core: int | None) -> bool:
    if core is None:
        return True
    tasks = Path(f"/proc/{pid}/task")
    return all(os.sched_getaffinity(int(task.name)) == {core} for task in tasks.iterdir())


async def wait_for(condition: Callable[[], bool], within: float) -> bool:
    """Whether `condition` came true within `within` seconds (checked every 20 ms)."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Stalls:
    """How late this process's event loop wakes up, and how long its garbage collector pauses it.

    A late tick can be the gateway's fault or the participants' (the gaps are seen by them): each
    process watches itself, and a step reports both, so the lateness is not guessed at.
    """

    PERIOD = 0.05

    def __init__(self) -> None:
        self._lags: list[float] = []
        self._pauses: list[tuple[int, float]] = []
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._pauses.append((int(info["generation"]), time.perf_counter() - self._gc_started))

    async def watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.PERIOD)
            self._lags.append(time.monotonic() - before - self.PERIOD)

    def read(self) -> dict[str, float]:
        """Since the last read: loop lag p99 and max, the longest GC pause, full collections."""
        lags, pauses = self._lags, self._pauses
        self._lags, self._pauses = [], []
        return {
            "lag_p99": percentile(lags, 0.99) if lags else 0.0,
            "lag_max": max(lags, default=0.0),
            "gc_max": max((p for _, p in pauses), default=0.0),
            "gc_full": sum(1 for generation, _ in pauses if generation == 2),
            "gc_full_max": max((p for g, p in pauses if g == 2), default=0.0),
            "gc_seconds": sum(p for _, p in pauses),
            # Not len(gc.get_objects()): listing a million objects would itself stall the loop.
            "gc_frozen": gc.get_freeze_count(),
        }


# ------------------------------------------------------------------------------------------ media


def encode_webcam_loop(
    frames: int = LOOP_FRAMES, size: tuple[int, int] = VIDEO_SIZE, kbps: int = VIDEO_KBPS
) -> list[bytes]:
    """A loop of VP8 frames sized like a webcam's at `kbps`: a keyframe, then delta frames.

    The picture (a textured background, a moving patch, a little sensor noise) only has to make
    libvpx's rate control spend the bitrate a real camera would; nobody looks at it. The encoder
    runs a second first so that its rate control has settled when the loop starts.
    """
    width, height = size
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = kbps * 1000
    codec.gop_size = 1_000_000  # keyframes only when asked, as a browser sends them
    rate = str(kbps * 1000)
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "16",  # the fastest: the bitstream's size is what matters, not its looks
        "lag-in-frames": "0",
        "minrate": rate,
        "maxrate": rate,
        "bufsize": rate,
        "max-intra-rate": "1000",  # a keyframe of up to 10 frames' budget, as WebRTC allows
    }
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = (128 + 50 * np.sin(xx / 7) * np.cos(yy / 11) + 40 * np.sin((xx + yy) / 23)).astype(np.uint8)
    face = (128 + 60 * np.sin(xx / 3) * np.sin(yy / 4)).astype(np.uint8)
    noise = [rng.integers(0, 5, (height, width), dtype=np.uint8) for _ in range(7)]
    chroma = np.full(width * height // 2, 128, np.uint8)
    warm_up = FPS
    packets: list[bytes] = []
    for index in range(warm_up + frames):
        luma = scene.copy()
        x = int(width / 2 + 150 * np.sin(index * 2 * np.pi / frames))
        y = int(height / 2 + 60 * np.sin(index * 4 * np.pi / frames))
        shift = index % 9
        luma[y - 100 : y + 100, x - 80 : x + 80] = face[y - 100 + shift : y + 100 + shift, x - 80 : x + 80]
        luma += noise[index % len(noise)]
        planes = np.concatenate([luma.reshape(-1), chroma]).reshape(height * 3 // 2, width)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = index
        if index == warm_up:
            frame.pict_type = av.video.frame.PictureType.I
        encoded = [bytes(packet) for packet in codec.encode(frame)]
        if index >= warm_up:
            packets += encoded
    if not packets or packets[0][0] & 0x01:
        raise RuntimeError("the VP8 loop does not start with a keyframe")
    return packets


def loop_kbps(packets: Sequence[bytes]) -> float:
    return sum(len(p) for p in packets) * 8 * FPS / len(packets) / 1000


@dataclass
class Tally:
    video_sent: int = 0
    audio_sent: int = 0


class CountedVideo(ReplayedVideo):
    def __init__(self, packets: Sequence[bytes], tally: Tally) -> None:
        super().__init__(packets, FPS)
        self._tally = tally

    async def recv(self) -> av.Packet[Any]:
        packet = await super().recv()
        self._tally.video_sent += 1
        return packet


class CountedAudio(AudioStreamTrack):
    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self._tally = tally

    async def recv(self) -> Any:
        frame = await super().recv()
        self._tally.audio_sent += 1
        return frame


class ControlOnlyClient(RoomClient):
    """A direct-mode participant as the gateway sees it: the control connection and nothing else.

    Its media connection to the other participant would be browser to browser, so it is not made;
    its look at that connection every second finds it connected and moving bytes, as in a live
    call, so that it reports as a page does and the room meters (Redis every second, the database
    every five) as a real one does.
    """

    def __init__(self, http: aiohttp.ClientSession, link: str) -> None:
        super().__init__(http, link, media=None)
        self.tick_times: list[float] = []
        self._bytes = 0

    def _on_control(self, message: str | bytes) -> None:
        ticks = len(self.seen.ticks)
        super()._on_control(message)
        if len(self.seen.ticks) > ticks:
            self.tick_times.append(time.monotonic())

    def _media_status(self) -> tuple[bool, int]:
        self._bytes += VIDEO_KBPS * 1000 // 8
        return True, self._bytes

    async def _offer_media(self) -> None:
        return

    async def _on_signal(self, data: dict[str, Any]) -> None:
        return


# ---------------------------------------------------------------------------- participants' side


class ClientWorker:
    """One participants' process: joins what it is told to, counts what it sends and receives."""

    def __init__(self, connection: Connection, packets: list[bytes]) -> None:
        self._connection = connection
        self._packets = packets
        self._tally = Tally()
        self._http: aiohttp.ClientSession | None = None
        self._pairs: list[tuple[RoomClient, RoomClient]] = []
        self._controls: list[ControlOnlyClient] = []
        self._mark = 0.0
        self._stalls = Stalls()

    async def serve(self) -> None:
        handlers: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "relay": self.join_relayed,
            "direct": self.join_direct,
            "counters": self.counters,
            "mark": self.mark,
            "ticks": self.ticks,
            "first-frame": self.first_frame,
            "close": self.close_all,
        }
        # WebSockets hold their connection for the whole call: the default pool of 100 would
        # leave the 101st participant waiting for a free one.
        connector = aiohttp.TCPConnector(limit=0)
        watcher = asyncio.create_task(self._stalls.watch())
        async with aiohttp.ClientSession(connector=connector) as http:
            self._http = http
            while True:
                command, argument = await asyncio.to_thread(self._connection.recv)
                if command == "stop":
                    break
                try:
                    result = await handlers[command](argument)
                except Exception as exc:
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                self._connection.send(result)
            await self.close_all(None)
        watcher.cancel()
        self._connection.send({"stopped": True})

    def _media_client(self, link: str) -> RoomClient:
        assert self._http is not None
        tally, packets = self._tally, self._packets
        return RoomClient(self._http, link, media=lambda: (CountedAudio(tally), CountedVideo(packets, tally)))

    async def join_relayed(self, calls: list[tuple[str, str]]) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(JOIN_CONCURRENCY)
        pairs = [(self._media_client(c), self._media_client(e)) for c, e in calls]
        self._pairs += pairs

        async def one(customer: RoomClient, expert: RoomClient) -> None:
            async with gate:
                await customer.join(within=60)
                await expert.join(within=60)

        outcomes = await asyncio.gather(*(one(c, e) for c, e in pairs), return_exceptions=True)
        failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]

        def silent() -> int:
            return sum(
                1 for c, e in pairs if min(c.seen.remote_frames["video"], e.seen.remote_frames["video"]) == 0
            )

        await wait_for(lambda: not silent(), 30)
        return {
            "failed": len(failed),
            "errors": failed[:3],
            "silent": silent(),
            "seconds": time.monotonic() - started,
        }

    async def join_direct(self, rooms: list[tuple[str, str]]) -> dict[str, Any]:
        assert self._http is not None
        started = time.monotonic()
        gate = asyncio.Semaphore(JOIN_CONCURRENCY)
        clients = [(ControlOnlyClient(self._http, c), ControlOnlyClient(self._http, e)) for c, e in rooms]
        for pair in clients:
            self._controls += pair

        async def one(customer: ControlOnlyClient, expert: ControlOnlyClient) -> None:
            async with gate:
                await customer.join(within=60)
                await expert.join(within=60)
                customer.start_reporting()
                expert.start_reporting()

        outcomes = await asyncio.gather(*(one(c, e) for c, e in clients), return_exceptions=True)
        failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        joined = [client for pair in clients for client in pair]

        def closed() -> int:
            return sum(1 for c in joined if c.control is None or c.control.readyState != "open")

        await wait_for(lambda: not closed(), 30)
        # Each simulated page is its own browser in real life; thousands of them in one process would
        # otherwise stall it for a full collection now and then, and their late ticks be the
        # gateway's in the numbers.
        gc.collect()
        gc.freeze()
        return {
            "failed": len(failed),
            "errors": failed[:3],
            "silent": closed(),
            "seconds": time.monotonic() - started,
        }

    async def counters(self, _: Any) -> dict[str, int]:
        clients = [client for pair in self._pairs for client in pair]
        return {
            "video_sent": self._tally.video_sent,
            "audio_sent": self._tally.audio_sent,
            "video_received": sum(c.seen.remote_frames["video"] for c in clients),
            "audio_received": sum(c.seen.remote_frames["audio"] for c in clients),
            "connected": sum(
                1 for c in clients if c.gateway_pc is not None and c.gateway_pc.connectionState == "connected"
            ),
        }

    async def mark(self, _: Any) -> float:
        self._mark = time.monotonic()
        self._stalls.read()
        return self._mark

    async def ticks(self, _: Any) -> dict[str, Any]:
        """Gaps between consecutive ticks since the mark, and participants that heard none lately."""
        now = time.monotonic()
        gaps: list[float] = []
        stalled = 0
        for client in self._controls:
            times = [t for t in client.tick_times if t >= self._mark]
            gaps += [round(b - a, 4) for a, b in itertools.pairwise(times)]
            if not times or now - times[-1] > TICK_SECONDS + 2.0:
                stalled += 1
        return {
            "gaps": gaps,
            "stalled": stalled,
            "participants": len(self._controls),
            "stalls": self._stalls.read(),
        }

    async def first_frame(self, argument: dict[str, Any]) -> dict[str, Any]:
        """Per room: the customer is in (and connected) first; the expert's join is timed."""
        times: list[float] = []
        failures: list[str] = []
        for customer_link, expert_link in argument["links"]:
            first, second = self._media_client(customer_link), self._media_client(expert_link)
            try:
                times.append(await self._time_to_first_frame(first, second))
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                for client in (second, first):
                    with contextlib.suppress(Exception):
                        await client.close()
        return {"seconds": times, "failures": failures}

    @staticmethod
    async def _time_to_first_frame(first: RoomClient, second: RoomClient) -> float:
        await first.join()
        if not await wait_for(
            lambda: first.gateway_pc is not None and first.gateway_pc.connectionState == "connected", 10
        ):
            raise TimeoutError("the first participant did not connect")
        await asyncio.sleep(0.5)  # its media reaches the gateway: it is "already in the room"
        await second.join()
        # The arrival time is taken when the frame arrives, not when this check sees it.
        if not await wait_for(lambda: second.seen.first_remote_frame_at is not None, 10):
            raise TimeoutError("no remote frame within 10 s")
        assert second.seen.first_remote_frame_at is not None
        with contextlib.suppress(Exception):
            await first.hangup()  # ends the room at once rather than leaving it to wait
        return second.seen.first_remote_frame_at - second.opened_at

    async def close_all(self, _: Any) -> dict[str, int]:
        clients: list[RoomClient] = [client for pair in self._pairs for client in pair]
        clients += self._controls
        # Hanging up ends each room at the gateway instead of leaving it waiting for a rejoin.
        customers = [pair[0] for pair in self._pairs] + self._controls[::2]
        gate = asyncio.Semaphore(64)

        async def quietly(work: Awaitable[None]) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(work, 10)

        await asyncio.gather(*(quietly(c.hangup()) for c in customers))
        await asyncio.sleep(0.5)
        await asyncio.gather(*(quietly(c.close()) for c in clients))
        self._pairs, self._controls = [], []
        gc.unfreeze()
        return {"closed": len(clients)}


def client_process(core: int | None, packets: list[bytes], connection: Connection) -> None:
    pin(core)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("aioice").setLevel(logging.ERROR)
    # The gateway offers only loopback; so must the participants (aioice skips 127.0.0.1 otherwise).
    restrict_host_addresses(["127.0.0.1"])
    asyncio.run(ClientWorker(connection, packets).serve())


# ---------------------------------------------------------------------------------- gateway side


def gateway_process(env: dict[str, str], core: int | None, log: Path, connection: Connection) -> None:
    pin(core)
    for name in [n for n in os.environ if n.upper().startswith("CONCIERGE_")]:
        del os.environ[name]
    os.environ.update(env)
    # Left open until the process exits: tasks collected at shutdown still log.
    stream = log.open("w", encoding="utf-8")
    asyncio.run(_serve_gateway(core, stream, connection))


async def _serve_gateway(core: int | None, log: Any, connection: Connection) -> None:
    from aiohttp import web

    from concierge.app import create_app
    from concierge.config import load_settings
    from concierge.logs import configure_logging
    from video_gateway.web import GATEWAY

    settings = load_settings()
    configure_logging(settings, log)  # JSON lines to a file: summarised per phase, not scrolled
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    pin(core)  # threads started during start-up (Redis, thread pools) too
    stalls = Stalls()
    watcher = asyncio.create_task(stalls.watch())
    connection.send({"ready": True, "pid": os.getpid()})
    while True:
        command = await asyncio.to_thread(connection.recv)
        if command == "stop":
            break
        if command == "stats":
            connection.send(_gateway_stats(app[GATEWAY]))
        if command == "stalls":
            connection.send(stalls.read())
    watcher.cancel()
    await runner.cleanup()
    connection.send({"stopped": True})


def _gateway_stats(gateway: Any) -> dict[str, int]:
    """What the gateway itself saw: to tell uplink loss from downlink loss, and rooms gone wrong."""
    stats = dict.fromkeys(
        ("rooms", "stopped_clocks", "seats", "connected", "video_in", "video_out", "dropped"), 0
    )
    for room in gateway.rooms.values():
        stats["rooms"] += 1
        # A room whose clock task ended while the room is open sends no more ticks and meters nothing.
        clock = getattr(room, "_task", None)
        stats["stopped_clocks"] += clock is not None and clock.done()
        for seat in room.seats.values():
            if seat is None:
                continue
            stats["seats"] += 1
            stats["connected"] += seat.connected
            source, viewer = seat.sources.get("video"), seat.viewers.get("video")
            stats["video_in"] += source.frames if source is not None else 0
            stats["video_out"] += viewer.forwarded if viewer is not None else 0
            stats["dropped"] += viewer.dropped if viewer is not None else 0
    return stats


class Child:
    """A spawned process spoken to over a pipe, one request at a time."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self.process: BaseProcess = context.Process(target=target, args=(*args, child_end), daemon=True)
        self.process.start()
        child_end.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    async def receive(self, within: float) -> Any:
        ready = await asyncio.to_thread(self._connection.poll, within)
        if not ready:
            raise TimeoutError(f"process {self.pid} did not answer within {within:.0f} s")
        return self._connection.recv()

    async def ask(self, command: Any, within: float = 600) -> Any:
        self._connection.send(command)
        answer = await self.receive(within)
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"process {self.pid}: {answer['error']}")
        return answer

    async def stop(self, command: Any, within: float = 120) -> None:
        with contextlib.suppress(Exception):
            self._connection.send(command)
            await self.receive(within)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


@dataclass
class Setup:
    folder: Path
    database_url: str
    secret: str
    gateway_core: int | None
    client_core: int | None


def service_env(setup: Setup, *, port: int, method: str, data_dir: Path) -> dict[str, str]:
    return {
        "CONCIERGE_DATA_DIR": str(data_dir),
        "CONCIERGE_DATABASE_URL": setup.database_url,
        "CONCIERGE_REDIS_URL": REDIS_URL,
        "CONCIERGE_HTTP_PORT": str(port),
        "CONCIERGE_MEDIA_ADDRESSES": "127.0.0.1",
        "CONCIERGE_RELAY_METHOD": method,
        # Shared with this process, which signs the links of the rooms it opens.
        "CONCIERGE_SECRET_KEY": setup.secret,
        "CONCIERGE_ROOM_LINK_MINUTES": "120",
        "CONCIERGE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
    }


class Service:
    """The gateway child for one phase, and the room opener that signs links for it."""

    def __init__(self, setup: Setup, method: str, name: str) -> None:
        from concierge.config import load_settings
        from concierge.database import create_engine, session_factory
        from concierge.rooms import SqlRoomBook, room_opener

        self.data_dir = setup.folder / name
        self.log = setup.folder / f"{name}.log"
        self.env = service_env(setup, port=free_port(), method=method, data_dir=self.data_dir)
        self.child = Child(gateway_process, self.env, setup.gateway_core, self.log)
        self.core = setup.gateway_core
        # The opener needs the same settings (signing key, public URL) as the gateway child.
        for variable in [n for n in os.environ if n.upper().startswith("CONCIERGE_")]:
            del os.environ[variable]
        os.environ.update(self.env)
        self.settings = load_settings()
        self._engine = create_engine(self.settings.database)
        self._opener = room_opener(self.settings, SqlRoomBook(session_factory(self._engine)))

    @property
    def pid(self) -> int:
        return self.child.pid

    async def start(self) -> None:
        ready = await self.child.receive(120)
        assert ready.get("ready"), ready
        if not threads_pinned(self.pid, self.core):
            raise RuntimeError("the gateway has threads outside its core")

    async def open_rooms(self, count: int, *, relay: bool, recorded: bool = False) -> list[tuple[str, str]]:
        from video_gateway.opening import RoomRequest
        from video_gateway.rooms import Participant

        links = []
        for _ in range(count):
            room = await self._opener.open(
                RoomRequest(
                    customer=Participant("Carla", "es"),
                    expert=Participant("Ed", "en"),
                    relay=relay,
                    recorded=recorded,
                )
            )
            links.append((room.customer, room.expert))
        return links

    async def stats(self) -> dict[str, int]:
        result: dict[str, int] = await self.child.ask("stats", 30)
        return result

    async def stalls(self) -> dict[str, float]:
        result: dict[str, float] = await self.child.ask("stalls", 30)
        return result

    async def stop(self) -> None:
        await self.child.stop("stop")
        await self._engine.dispose()
        for line in self.log_summary():
            print(f"       gateway log: {line}", flush=True)

    def log_summary(self) -> list[str]:
        """The gateway's warnings and errors, counted by event and exception."""
        counts: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in self.log.read_text("utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = {"level": "text", "event": "lines that are not JSON log entries"}
                if not isinstance(entry, dict) or entry.get("level") not in (
                    "warning",
                    "error",
                    "critical",
                    "text",
                ):
                    continue
                event = str(entry.get("event", "")).strip().splitlines() or [""]
                cause = str(entry.get("exception") or entry.get("error") or "").strip().splitlines()
                if not cause and len(event) > 1:  # asyncio's "Task exception was never retrieved"
                    cause = [re.sub(r"Task-\d+", "Task-N", event[-1])]
                key = f"{entry.get('level')}: {event[0]}" + (f" ({cause[-1][:200]})" if cause else "")
                counts[key] = counts.get(key, 0) + 1
        return [f"{count} x {key}" for key, count in sorted(counts.items(), key=lambda item: -item[1])]


class Participants:
    """The participants' processes, all on the client core."""

    def __init__(self, setup: Setup, packets: list[bytes]) -> None:
        self.core = setup.client_core
        self.workers = [Child(client_process, setup.client_core, packets) for _ in range(CLIENT_PROCESSES)]

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    async def each(self, command: str, arguments: Sequence[Any] | None = None) -> list[Any]:
        arguments = arguments if arguments is not None else [None] * len(self.workers)
        return list(
            await asyncio.gather(*(w.ask((command, a)) for w, a in zip(self.workers, arguments, strict=True)))
        )

    async def join(self, command: str, links: list[tuple[str, str]]) -> dict[str, Any]:
        shares = [links[i :: len(self.workers)] for i in range(len(self.workers))]
        results = await self.each(command, shares)
        return {
            "failed": sum(r["failed"] for r in results),
            "silent": sum(r["silent"] for r in results),
            "errors": [e for r in results for e in r["errors"]][:3],
            "seconds": max(r["seconds"] for r in results),
        }

    async def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for result in await self.each("counters"):
            for key, value in result.items():
                total[key] = total.get(key, 0) + value
        return total

    async def close(self) -> None:
        await self.each("close")

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop(("stop", None)) for w in self.workers))


# ------------------------------------------------------------------------------------ measuring


@dataclass
class Window:
    seconds: float
    gateway_cpu: float  # share of one core
    clients_cpu: float  # all participants' processes, share of one core
    irq_on_gateway_core: float  # kernel interrupt work (loopback networking) on the gateway's core
    other_on_gateway_core: float  # other processes (and steal) on the gateway's core
    other_on_clients_core: float  # other processes (and steal) on the participants' core
    counters: dict[str, int]  # participants' frames during the window
    gateway: dict[str, int]  # the gateway's frames during the window
    connected: int  # participants connected to the gateway at the end
    gateway_connected: int  # seats the gateway sees connected at the end
    stopped_clocks: int  # open rooms whose clock task has ended
    ticks: dict[str, Any] | None = None
    gateway_stalls: dict[str, float] = field(default_factory=dict)
    clients_stalls: dict[str, float] = field(default_factory=dict)  # the worst participants' process


_LEVELS = ("connected", "rooms", "seats", "stopped_clocks")


async def measure(
    service: Service, participants: Participants, seconds: float, *, ticks: bool = False
) -> Window:
    def cpu() -> tuple[float, list[float], float, dict[int, dict[str, float]]]:
        return (
            process_cpu_seconds(service.pid),
            [process_cpu_seconds(p) for p in participants.pids],
            process_cpu_seconds(os.getpid()),
            core_times(),
        )

    counters0, gateway0 = await participants.counters(), await service.stats()
    if ticks:
        await participants.each("mark")
        await service.stalls()
    started, (gw0, clients0, me0, cores0) = time.monotonic(), cpu()
    await asyncio.sleep(seconds)
    elapsed, (gw1, clients1, me1, cores1) = time.monotonic() - started, cpu()
    counters1, gateway1 = await participants.counters(), await service.stats()
    gateway_cpu = (gw1 - gw0) / elapsed
    clients_cpu = sum(b - a for a, b in zip(clients0, clients1, strict=True)) / elapsed
    irq = other = clients_other = 0.0

    def share(core: int, key: str) -> float:
        span = max(cores1[core]["total"] - cores0[core]["total"], 1e-9)
        return (cores1[core][key] - cores0[core][key]) / span

    if service.core is not None and participants.core is not None:
        irq = share(service.core, "irq")
        other = max(0.0, share(service.core, "busy") - gateway_cpu - irq)
        mine = (me1 - me0) / elapsed  # this process runs on the participants' core too
        clients_other = max(
            0.0, share(participants.core, "busy") - clients_cpu - mine - share(participants.core, "irq")
        )
    tick_report = None
    gateway_stalls: dict[str, float] = {}
    clients_stalls: dict[str, float] = {}
    if ticks:
        gateway_stalls = await service.stalls()
        reports = await participants.each("ticks")
        for r in reports:
            for key, value in r["stalls"].items():
                clients_stalls[key] = max(clients_stalls.get(key, 0.0), value)
        gaps = [g for r in reports for g in r["gaps"]]
        tick_report = {
            "p50_gap": percentile(gaps, 0.5),
            "p99_gap": percentile(gaps, 0.99),
            "max_gap": max(gaps, default=float("nan")),
            "stalled": sum(r["stalled"] for r in reports),
            "participants": sum(r["participants"] for r in reports),
        }
    return Window(
        seconds=elapsed,
        gateway_cpu=gateway_cpu,
        clients_cpu=clients_cpu,
        irq_on_gateway_core=irq,
        other_on_gateway_core=other,
        other_on_clients_core=clients_other,
        counters={k: v - counters0.get(k, 0) for k, v in counters1.items() if k not in _LEVELS},
        gateway={k: v - gateway0.get(k, 0) for k, v in gateway1.items() if k not in _LEVELS},
        connected=counters1.get("connected", 0),
        gateway_connected=gateway1["connected"],
        stopped_clocks=gateway1["stopped_clocks"],
        ticks=tick_report,
        gateway_stalls=gateway_stalls,
        clients_stalls=clients_stalls,
    )


def next_step(steps: Sequence[int], current: int, utilisation: float, limit: int) -> int | None:
    """The next load: the next listed step, or further while still far from saturation."""
    later = [s for s in steps if current < s <= limit]
    if not later:
        return limit if current < limit else None
    if current == 0 or utilisation <= 0:
        return later[0]
    per_unit = utilisation / current
    fitting = [s for s in later if s <= 2 * current and per_unit * s <= STRIDE_UTILISATION]
    return fitting[-1] if fitting else later[0]


# ------------------------------------------------------------------------------------ relayed calls

# Another process took this much of a measured core during a step that failed: measured again once
# (after settling), so that a compiler or a test run on this machine is not taken for the gateway's
# limit.
FOREIGN_LOAD = 0.20
CORE_FULL = 0.95  # a core this busy, whoever uses it, queues the work of the process measured on it

# What bounded a step that is past the capacity.
GATEWAY = "gateway"  # the measured number is the gateway's capacity
PARTICIPANTS = "participants"  # the participants' core gave out first: the gateway's is extrapolated
SHARED = "shared machine"  # other processes filled the gateway's core: extrapolated as well
FAILURE = "failure"  # something broke: nothing is extrapolated


@dataclass
class Verdict:
    limit: str = ""  # why a step is past the capacity; empty within it
    bound: str = ""  # GATEWAY, PARTICIPANTS, SHARED or FAILURE


def judge(
    problem: str,
    *,
    gateway_cpu: float,
    gateway_full: float,
    gateway_core_busy: float,
    clients_cpu: float,
    clients_core_busy: float,
) -> Verdict:
    """Name the limit of a step with `problem` (frame loss, late ticks...; "" for none)."""
    clients_full = clients_cpu >= SATURATED or clients_core_busy >= CORE_FULL
    clients = "saturated" if clients_cpu >= SATURATED else "full with other processes"
    if gateway_cpu >= gateway_full:
        return Verdict(f"the gateway core (past {gateway_full:.0%})", GATEWAY)
    if problem and clients_full:
        return Verdict(f"{problem}, the participants' core {clients}", PARTICIPANTS)
    if problem and gateway_core_busy >= CORE_FULL:
        return Verdict(f"{problem}, other processes filling the gateway's core", SHARED)
    if problem:
        return Verdict(f"{problem}, neither core saturated", GATEWAY)
    if clients_full:
        return Verdict(f"the participants' core ({clients})", PARTICIPANTS)
    return Verdict()


@dataclass
class RelayStep:
    calls: int
    video_loss: float
    uplink_loss: float  # participants -> gateway
    downlink_loss: float  # gateway -> participants
    audio_loss: float
    gateway_dropped: int  # frames the gateway dropped for a viewer that fell behind
    gateway_cpu: float
    clients_cpu: float
    irq_on_gateway_core: float
    other_on_gateway_core: float
    other_on_clients_core: float
    connected: int
    join_seconds: float
    join_failures: int
    verdict: Verdict = field(default_factory=Verdict)

    @property
    def limit(self) -> str:
        return self.verdict.limit


@dataclass
class RelayResult:
    method: str
    recorded: bool
    steps: list[RelayStep] = field(default_factory=list)
    limited_by: str = ""
    bound: str = ""
    best_calls: int = 0  # loss-free with the gateway core not saturated
    best_gateway_cpu: float = 0.0
    calls_per_core: float = 0.0
    extrapolated: bool = False
    recording_bytes: int = 0

    @property
    def cpu_per_call(self) -> float:
        return self.best_gateway_cpu / self.best_calls if self.best_calls else float("nan")


def _loss(sent: int, received: int) -> float:
    return max(0.0, 1 - received / sent) if sent > 0 else float("nan")


def relay_step(calls: int, window: Window, joined: dict[str, Any]) -> RelayStep:
    c, g = window.counters, window.gateway
    step = RelayStep(
        calls=calls,
        video_loss=_loss(c["video_sent"], c["video_received"]),
        uplink_loss=_loss(c["video_sent"], g["video_in"]),
        downlink_loss=_loss(g["video_out"], c["video_received"]),
        audio_loss=_loss(c["audio_sent"], c["audio_received"]),
        gateway_dropped=g["dropped"],
        gateway_cpu=window.gateway_cpu,
        clients_cpu=window.clients_cpu,
        irq_on_gateway_core=window.irq_on_gateway_core,
        other_on_gateway_core=window.other_on_gateway_core,
        other_on_clients_core=window.other_on_clients_core,
        connected=min(window.connected, window.gateway_connected),
        join_seconds=joined["seconds"],
        join_failures=joined["failed"] + joined["silent"],
    )
    if step.join_failures:
        step.verdict = Verdict(f"{step.join_failures} calls failed to join or to get media", FAILURE)
        return step
    problem = ""
    if step.connected < 2 * calls:
        problem = f"{2 * calls - step.connected} participants lost their gateway connection"
    elif not step.video_loss < LOSS_LIMIT:
        problem = "frame loss"
    step.verdict = judge(
        problem,
        gateway_cpu=step.gateway_cpu,
        gateway_full=SATURATED,
        gateway_core_busy=step.gateway_cpu + step.irq_on_gateway_core + step.other_on_gateway_core,
        clients_cpu=step.clients_cpu,
        clients_core_busy=step.clients_cpu + step.other_on_clients_core,
    )
    return step


RELAY_HEADER = (
    f"{'calls':>6}{'loss %':>8}{'up %':>7}{'down %':>8}{'audio %':>9}{'gateway':>9}{'ms/s/call':>11}"
    f"{'clients':>9}{'irq':>6}{'other':>7}{'cl.other':>9}{'join s':>8}"
)


def relay_row(step: RelayStep, note: str = "") -> str:
    return (
        f"{step.calls:>6}{step.video_loss * 100:>8.2f}{step.uplink_loss * 100:>7.2f}"
        f"{step.downlink_loss * 100:>8.2f}{step.audio_loss * 100:>9.2f}{step.gateway_cpu * 100:>8.1f}%"
        f"{step.gateway_cpu * 1000 / step.calls:>11.1f}{step.clients_cpu * 100:>8.1f}%"
        f"{step.irq_on_gateway_core * 100:>5.1f}%{step.other_on_gateway_core * 100:>6.1f}%"
        f"{step.other_on_clients_core * 100:>8.1f}%{step.join_seconds:>8.1f}"
        + (f"  {step.limit}" if step.limit else "")
        + (f" ({note})" if note else "")
    )


def worth_measuring_again(step: RelayStep | DirectStep) -> bool:
    """A step past the limit while other processes were busy on a measured core, gateway not full."""
    foreign = max(step.other_on_gateway_core, step.other_on_clients_core) >= FOREIGN_LOAD
    return (
        foreign
        and step.verdict.bound in (GATEWAY, PARTICIPANTS, SHARED)
        and not step.limit.startswith("the gateway core")
    )


MEASURING_AGAIN = "other processes on a measured core: measured again after settling"


async def relay_ramp(setup: Setup, participants: Participants, method: str, recorded: bool) -> RelayResult:
    result = RelayResult(method, recorded)
    service = Service(setup, method, f"{method}-{'recorded' if recorded else 'plain'}")
    await service.start()
    print(f"\n{method} relay, recording {'on' if recorded else 'off'}", flush=True)
    print(RELAY_HEADER, flush=True)
    try:
        calls, utilisation = 0, 0.0
        while (target := next_step(RELAY_STEPS, calls, utilisation, MAX_CALLS)) is not None:
            links = await service.open_rooms(target - calls, relay=True, recorded=recorded)
            joined = await participants.join("relay", links)
            calls = target
            if joined["errors"]:
                print(f"       join errors: {joined['errors']}", flush=True)
            await asyncio.sleep(SETTLE_SECONDS)
            step = relay_step(calls, await measure(service, participants, SECONDS), joined)
            if worth_measuring_again(step):
                print(relay_row(step, MEASURING_AGAIN), flush=True)
                await asyncio.sleep(SETTLE_SECONDS)  # recovering from a loss burst costs extra CPU
                step = relay_step(calls, await measure(service, participants, SECONDS), joined)
            result.steps.append(step)
            print(relay_row(step), flush=True)
            within = step.video_loss < LOSS_LIMIT and step.gateway_cpu < SATURATED
            if within and not step.join_failures and step.connected == 2 * calls:
                result.best_calls, result.best_gateway_cpu = calls, step.gateway_cpu
            if step.limit:
                result.limited_by, result.bound = step.limit, step.verdict.bound
                break
            utilisation = max(step.gateway_cpu, step.clients_cpu + step.other_on_clients_core)
        else:
            result.limited_by, result.bound = f"BENCH_MAX_CALLS={MAX_CALLS}", PARTICIPANTS
    finally:
        await participants.close()
        await service.stop()
    if result.best_calls and result.bound in (PARTICIPANTS, SHARED):
        result.calls_per_core = result.best_calls / result.best_gateway_cpu
        result.extrapolated = True
    else:
        result.calls_per_core = float(result.best_calls)
    result.recording_bytes = sum(p.stat().st_size for p in service.data_dir.rglob("*.mkv"))
    return result


def marginal_cpu_per_call(result: RelayResult) -> float:
    """The slope of the gateway's CPU over the calls of the steps within limits (least squares).

    One step's CPU per call is noisy on a shared machine (±15 % between phases here) and carries
    the idle gateway's share; the slope over several steps is what one more call costs.
    """
    points = [(s.calls, s.gateway_cpu) for s in result.steps if not s.limit]
    if len(points) < 2:
        return result.cpu_per_call
    calls, cpu = zip(*points, strict=True)
    return statistics.linear_regression(calls, cpu).slope


def describe_relay(result: RelayResult) -> str:
    if not result.best_calls:
        return f"no loss-free step (limited by {result.limited_by})"
    text = (
        f"{result.best_calls} calls loss-free, gateway core at {result.best_gateway_cpu * 100:.0f} % "
        f"({result.cpu_per_call * 1000:.1f} ms CPU/s per call); limited by {result.limited_by}"
    )
    if result.extrapolated:
        return text + f" -> EXTRAPOLATED {result.calls_per_core:.1f} calls per core"
    return text + f" -> {result.calls_per_core:.0f} calls per core (measured)"


# ------------------------------------------------------------------------------------ direct rooms


@dataclass
class DirectStep:
    rooms: int
    gateway_cpu: float
    clients_cpu: float
    irq_on_gateway_core: float
    other_on_gateway_core: float
    other_on_clients_core: float
    tick_p50_late: float
    tick_p99_late: float
    tick_max_late: float
    stalled: int  # participants without a tick in the last tick period + 2 s of the window
    stopped_clocks: int
    join_seconds: float
    join_failures: int
    # Where lateness comes from: each process's event-loop lag and GC pauses (max, seconds).
    gateway_lag: float = 0.0
    gateway_gc: float = 0.0
    gateway_gc_share: float = 0.0  # of the window, in collections
    gateway_frozen: int = 0  # objects frozen out of the collector's way
    clients_lag: float = 0.0
    clients_gc: float = 0.0
    verdict: Verdict = field(default_factory=Verdict)

    @property
    def limit(self) -> str:
        return self.verdict.limit


@dataclass
class DirectResult:
    steps: list[DirectStep] = field(default_factory=list)
    limited_by: str = ""
    bound: str = ""
    best_rooms: int = 0
    best_gateway_cpu: float = 0.0
    rooms_per_core: float = 0.0  # at DIRECT_CPU_LIMIT of the core
    extrapolated: bool = False

    @property
    def cpu_per_room(self) -> float:
        return self.best_gateway_cpu / self.best_rooms if self.best_rooms else float("nan")

    @property
    def cpu_bound_rooms(self) -> float:
        """Rooms at DIRECT_CPU_LIMIT if CPU were the only limit (from the best step's cost per room)."""
        return DIRECT_CPU_LIMIT / self.cpu_per_room if self.best_rooms else float("nan")


def direct_step(rooms: int, window: Window, joined: dict[str, Any]) -> DirectStep:
    ticks = window.ticks or {}
    step = DirectStep(
        rooms=rooms,
        gateway_cpu=window.gateway_cpu,
        clients_cpu=window.clients_cpu,
        irq_on_gateway_core=window.irq_on_gateway_core,
        other_on_gateway_core=window.other_on_gateway_core,
        other_on_clients_core=window.other_on_clients_core,
        tick_p50_late=ticks.get("p50_gap", float("nan")) - TICK_SECONDS,
        tick_p99_late=ticks.get("p99_gap", float("nan")) - TICK_SECONDS,
        tick_max_late=ticks.get("max_gap", float("nan")) - TICK_SECONDS,
        stalled=ticks.get("stalled", 0),
        stopped_clocks=window.stopped_clocks,
        join_seconds=joined["seconds"],
        join_failures=joined["failed"] + joined["silent"],
        gateway_lag=window.gateway_stalls.get("lag_max", float("nan")),
        gateway_gc=window.gateway_stalls.get("gc_max", float("nan")),
        gateway_gc_share=window.gateway_stalls.get("gc_seconds", 0.0) / window.seconds,
        gateway_frozen=int(window.gateway_stalls.get("gc_frozen", 0)),
        clients_lag=window.clients_stalls.get("lag_max", float("nan")),
        clients_gc=window.clients_stalls.get("gc_max", float("nan")),
    )
    if step.join_failures:
        step.verdict = Verdict(f"{step.join_failures} participants failed to join", FAILURE)
    elif step.stopped_clocks:
        step.verdict = Verdict(f"{step.stopped_clocks} room clocks stopped (see the gateway log)", FAILURE)
    else:
        late = bool(step.stalled) or not step.tick_p99_late <= TICK_LATE_LIMIT
        step.verdict = judge(
            "late ticks" if late else "",
            gateway_cpu=step.gateway_cpu,
            gateway_full=DIRECT_CPU_LIMIT,
            gateway_core_busy=step.gateway_cpu + step.irq_on_gateway_core + step.other_on_gateway_core,
            clients_cpu=step.clients_cpu,
            clients_core_busy=step.clients_cpu + step.other_on_clients_core,
        )
    return step


DIRECT_HEADER = (
    f"{'rooms':>6}{'gateway':>9}{'ms/s/room':>11}{'clients':>9}{'irq':>6}{'other':>7}{'cl.other':>9}"
    f"{'tick late p50/p99/max ms':>26}{'stalled':>9}{'join s':>8}"
    f"{'gw lag/gc ms':>14}{'gc %':>6}{'frozen':>7}{'cl lag/gc':>11}"
)


def direct_row(step: DirectStep, note: str = "") -> str:
    late = "/".join(f"{v * 1000:.0f}" for v in (step.tick_p50_late, step.tick_p99_late, step.tick_max_late))
    return (
        f"{step.rooms:>6}{step.gateway_cpu * 100:>8.1f}%{step.gateway_cpu * 1000 / step.rooms:>11.2f}"
        f"{step.clients_cpu * 100:>8.1f}%{step.irq_on_gateway_core * 100:>5.1f}%"
        f"{step.other_on_gateway_core * 100:>6.1f}%{step.other_on_clients_core * 100:>8.1f}%{late:>26}"
        f"{step.stalled:>9}{step.join_seconds:>8.1f}"
        f"{f'{step.gateway_lag * 1000:.0f}/{step.gateway_gc * 1000:.0f}':>14}"
        f"{step.gateway_gc_share * 100:>5.1f}%{step.gateway_frozen / 1e6:>6.2f}M"
        f"{f'{step.clients_lag * 1000:.0f}/{step.clients_gc * 1000:.0f}':>11}"
        + (f"  {step.limit}" if step.limit else "")
        + (f" ({note})" if note else "")
    )


async def direct_ramp(setup: Setup, participants: Participants) -> DirectResult:
    result = DirectResult()
    service = Service(setup, "forward", "direct")
    await service.start()
    print("\ndirect-mode rooms, two participants each, control connections only", flush=True)
    print(DIRECT_HEADER, flush=True)
    try:
        rooms, utilisation = 0, 0.0
        while (target := next_step(DIRECT_STEPS, rooms, utilisation, MAX_ROOMS)) is not None:
            links = await service.open_rooms(target - rooms, relay=False)
            joined = await participants.join("direct", links)
            rooms = target
            if joined["errors"]:
                print(f"       join errors: {joined['errors']}", flush=True)
            await asyncio.sleep(SETTLE_SECONDS)
            step = direct_step(rooms, await measure(service, participants, SECONDS, ticks=True), joined)
            if worth_measuring_again(step):
                print(direct_row(step, MEASURING_AGAIN), flush=True)
                await asyncio.sleep(SETTLE_SECONDS)
                step = direct_step(rooms, await measure(service, participants, SECONDS, ticks=True), joined)
            result.steps.append(step)
            print(direct_row(step), flush=True)
            if not step.limit or step.limit.startswith("the participants' core ("):
                result.best_rooms, result.best_gateway_cpu = rooms, step.gateway_cpu
            if step.limit:
                result.limited_by, result.bound = step.limit, step.verdict.bound
                break
            utilisation = max(
                step.gateway_cpu / DIRECT_CPU_LIMIT, step.clients_cpu + step.other_on_clients_core
            )
        else:
            result.limited_by, result.bound = f"BENCH_MAX_ROOMS={MAX_ROOMS}", PARTICIPANTS
    finally:
        await participants.close()
        await service.stop()
    if result.best_rooms and result.bound in (PARTICIPANTS, SHARED):
        result.rooms_per_core = result.best_rooms * DIRECT_CPU_LIMIT / result.best_gateway_cpu
        result.extrapolated = True
    else:
        result.rooms_per_core = float(result.best_rooms)
    return result


def describe_direct(result: DirectResult) -> str:
    if not result.best_rooms:
        return f"no step within limits (limited by {result.limited_by})"
    text = (
        f"{result.best_rooms} rooms with ticks on time, "
        f"gateway core at {result.best_gateway_cpu * 100:.0f} % "
        f"({result.cpu_per_room * 1000:.2f} ms CPU/s per room); limited by {result.limited_by}"
    )
    if result.extrapolated:
        return text + (
            f" -> EXTRAPOLATED {result.rooms_per_core:.0f} rooms per core at {DIRECT_CPU_LIMIT * 100:.0f} %"
        )
    return text + (
        f" -> {result.rooms_per_core:.0f} rooms per core (measured; its CPU cost alone would allow "
        f"{result.cpu_bound_rooms:.0f} at {DIRECT_CPU_LIMIT * 100:.0f} %)"
    )


# ------------------------------------------------------------------------------------ first frame


@dataclass
class FirstFrame:
    mode: str
    seconds: list[float]
    failures: list[str]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.seconds, 0.95)


async def first_frames(setup: Setup, participants: Participants) -> list[FirstFrame]:
    service = Service(setup, "forward", "first-frame")
    await service.start()
    results = []
    try:
        for mode in ("relay", "direct"):
            links = await service.open_rooms(TRIALS, relay=mode == "relay")
            # One process runs the trials one after the other: each starts on a quiet machine.
            answer = await participants.workers[0].ask(("first-frame", {"links": links}))
            results.append(FirstFrame(mode, answer["seconds"], answer["failures"]))
    finally:
        await participants.close()
        await service.stop()
    return results


# ------------------------------------------------------------------------------------------ main


async def prepare(folder: Path) -> Setup:
    from concierge import migrate
    from concierge.config import normalise_database_url
    from concierge.database import create_engine

    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    url = normalise_database_url(url)  # postgresql:// as people write it -> the asyncpg driver
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    cores = sorted(os.sched_getaffinity(0))
    gateway_core, client_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    return Setup(folder, url, secrets.token_urlsafe(48), gateway_core, client_core)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return None if value != value else round(value, 4)  # NaN is not JSON
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


async def run() -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as name:
        setup = await prepare(Path(name))
        pin(setup.client_core)  # this process opens rooms and reads counters: the participants' core
        print(
            f"{os.cpu_count()} cores ({cpu_model()}); gateway on core {setup.gateway_core}, "
            f"{CLIENT_PROCESSES} participant processes on core {setup.client_core}; "
            f"database {setup.database_url.split(':')[0]}, Redis {REDIS_URL}",
            flush=True,
        )
        if setup.gateway_core is None:
            print("WARNING: fewer than 2 cores: nothing is pinned, CPU shares are not per core", flush=True)
        packets = await asyncio.to_thread(encode_webcam_loop)
        kbps = loop_kbps(packets)
        print(
            f"media per participant: VP8 {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} {FPS} fps, {kbps:.0f} kbps "
            f"(a {len(packets) / FPS:.0f} s loop, keyframe {len(packets[0]) // 1024} KiB), Opus (aiortc); "
            f"{SECONDS:.0f} s per step",
            flush=True,
        )
        participants = Participants(setup, packets)
        relay: list[RelayResult] = []
        direct: DirectResult | None = None
        first: list[FirstFrame] = []
        try:
            if "first-frame" in PHASES:
                first = await first_frames(setup, participants)
                for f in first:
                    print(
                        f"first remote frame, {f.mode}: p50 {f.p50 * 1000:.0f} ms, "
                        f"p95 {f.p95 * 1000:.0f} ms, "
                        f"max {max(f.seconds, default=float('nan')) * 1000:.0f} ms "
                        f"over {len(f.seconds)} rooms ({len(f.failures)} failed)",
                        flush=True,
                    )
            for method in ("forward", "transcode"):
                if (method == "forward" and "relay" in PHASES) or (
                    method == "transcode" and "transcode" in PHASES
                ):
                    for recorded in (False, True):
                        outcome = await relay_ramp(setup, participants, method, recorded)
                        relay.append(outcome)
                        print(describe_relay(outcome), flush=True)
            if "direct" in PHASES:
                direct = await direct_ramp(setup, participants)
                print(describe_direct(direct), flush=True)
        finally:
            await participants.stop()
    return report(setup, kbps, relay, direct, first, time.monotonic() - started)


def report(
    setup: Setup,
    kbps: float,
    relay: list[RelayResult],
    direct: DirectResult | None,
    first: list[FirstFrame],
    elapsed: float,
) -> dict[str, Any]:
    def find(method: str, recorded: bool) -> RelayResult | None:
        return next((r for r in relay if r.method == method and r.recorded == recorded), None)

    print("\n== summary ==")
    # CPU per call: at the best step (what calls/core comes from) and one more call's (the slope).
    print(
        f"{'relay':<11}{'recording':<10}{'calls/core':>11}{'how':>14}{'ms/s per call':>15}"
        f"{'marginal':>10}  limited by"
    )
    for r in relay:
        how = "extrapolated" if r.extrapolated else "measured"
        print(
            f"{r.method:<11}{'on' if r.recorded else 'off':<10}{r.calls_per_core:>11.1f}{how:>14}"
            f"{r.cpu_per_call * 1000:>15.1f}{marginal_cpu_per_call(r) * 1000:>10.1f}  {r.limited_by}"
        )
    ratios: dict[str, float] = {}
    for recorded in (False, True):
        forward, transcode = find("forward", recorded), find("transcode", recorded)
        if forward and transcode:
            key = "recording_on" if recorded else "recording_off"
            ratios[f"calls_per_core_{key}"] = (
                forward.calls_per_core / transcode.calls_per_core
                if transcode.calls_per_core
                else float("inf")
            )
            slow, fast = marginal_cpu_per_call(transcode), marginal_cpu_per_call(forward)
            ratios[f"cpu_per_call_{key}"] = slow / fast
            print(
                f"forward / transcode, recording {'on' if recorded else 'off'}: "
                f"{ratios[f'calls_per_core_{key}']:.1f}x the calls per core; one more transcoded call "
                f"costs {slow / fast:.1f}x the CPU ({slow * 1000:.0f} vs {fast * 1000:.1f} ms/s)"
            )
    plain, with_recording = find("forward", False), find("forward", True)
    if plain and with_recording:
        on, off = marginal_cpu_per_call(with_recording), marginal_cpu_per_call(plain)
        ratios["recording_cpu"] = on / off
        print(
            f"recording on / off: one more recorded forwarded call costs {on / off:.2f}x the gateway CPU "
            f"({on * 1000:.1f} vs {off * 1000:.1f} ms/s; "
            f"{with_recording.recording_bytes / 1e6:.1f} MB of MKV written)"
        )
    if direct is not None:
        print(f"direct rooms: {describe_direct(direct)}")
    for f in first:
        print(f"first remote frame {f.mode}: p50 {f.p50 * 1000:.0f} ms, p95 {f.p95 * 1000:.0f} ms")

    targets: list[dict[str, Any]] = []
    if with_recording is not None:
        targets.append(
            {
                "target": "relayed calls per core, recording on (forward)",
                "value": with_recording.calls_per_core,
                "extrapolated": with_recording.extrapolated,
                "limited_by": with_recording.limited_by,
                "goal": ">= 20",
                "met": with_recording.calls_per_core >= 20,
            }
        )
    if direct is not None:
        targets.append(
            {
                "target": f"direct-mode rooms per core (CPU <= {DIRECT_CPU_LIMIT:.0%}, ticks on time)",
                "value": direct.rooms_per_core,
                "extrapolated": direct.extrapolated,
                "limited_by": direct.limited_by,
                "goal": ">= 1000",
                "met": direct.rooms_per_core >= 1000,
            }
        )
    for f in first:
        targets.append(
            {
                "target": f"first remote frame p95, {f.mode}",
                "value": f.p95,
                "extrapolated": False,
                "limited_by": "",
                "goal": "<= 1 s",
                "met": bool(f.seconds) and not f.failures and f.p95 <= 1.0,
            }
        )
    print("\n== targets (2 cores: gateway on one, participants on the other) ==")
    for t in targets:
        value = f"{t['value']:.3f} s" if "frame" in t["target"] else f"{t['value']:.1f}"
        note = f" (EXTRAPOLATED; limited by {t['limited_by']})" if t["extrapolated"] else ""
        if not t["extrapolated"] and t["limited_by"]:
            note = f" (measured; limited by {t['limited_by']})"
        print(f"{'MET ' if t['met'] else 'MISSED'} {t['target']}: {value}, goal {t['goal']}{note}")
    print(f"(run took {elapsed:.0f} s)")

    summary: dict[str, Any] = _round(
        {
            "bench": "gateway",
            "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
            "setup": {
                "gateway_core": setup.gateway_core,
                "client_core": setup.client_core,
                "client_processes": CLIENT_PROCESSES,
                "database": setup.database_url.split(":")[0],
                "video": f"VP8 {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} {FPS} fps",
                "video_kbps": kbps,
                "audio": "Opus (aiortc AudioStreamTrack)",
                "seconds_per_step": SECONDS,
            },
            "relay": [
                {
                    **asdict(r),
                    "cpu_per_call": r.cpu_per_call,
                    "marginal_cpu_per_call": marginal_cpu_per_call(r),
                }
                for r in relay
            ],
            "ratios": ratios,
            "direct": None
            if direct is None
            else {
                **asdict(direct),
                "cpu_per_room": direct.cpu_per_room,
                "cpu_bound_rooms": direct.cpu_bound_rooms,
            },
            "first_frame": [{"mode": f.mode, "p50": f.p50, "p95": f.p95, **asdict(f)} for f in first],
            "targets": targets,
            "elapsed_seconds": elapsed,
        }
    )
    return summary


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    summary = asyncio.run(run())
    print(json.dumps(summary, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
