"""Keeping CPython's full garbage collections short in a process that holds many WebRTC connections.

A full collection (CPython 3.11) walks every object the collector tracks, in one go, with the event
loop stopped. Each aiortc connection keeps ~230 tracked objects (ICE, DTLS, SCTP, their tasks and
timers) that cost ~0.25 ms per full collection on the test machines, so with 200–400 direct-mode
rooms a single full collection stopped the loop for 200–300 ms, and every tick, report and
signalling frame waited behind it (`make bench-gateway` measured the loop lag and the collector's
pauses side by side).

So objects that survived a while are moved out of the collector's way: every two seconds a full
collection runs (a short pause: only what was made since the previous time is walked) and the
survivors are frozen (`gc.freeze`). Every ten seconds left 100-180 ms pauses at 1,000-2,000 rooms,
every two 20-65 ms.

Frozen objects are still freed by reference counting; what they cannot get rid of is a reference
cycle that dies while frozen. In the steady state that does not happen (a hundred connections
exchanging messages every second kept the frozen count flat, ±0.3 %, over 90 s), but a closed
connection leaves most of its objects (about 70 %) in cycles. Those are reclaimed by a compaction
(unfreeze, one full collection over everything, freeze again) once the connections closed since
the last compaction outnumber the open ones: memory stays within about twice the live
connections' share, at the price of one heap-sized pause per turnover of the rooms. Cycles other
parts of the process leave behind are not counted, so a compaction also runs once an hour.
"""

from __future__ import annotations

import gc
import time

import structlog

log = structlog.get_logger("video_gateway.heap")

FREEZE_SECONDS = 2.0
# Below this many closed connections a compaction would reclaim too little to be worth its pause.
COMPACT_AFTER_CLOSED = 200
COMPACT_SECONDS = 3600.0

_closed = 0


def connection_closed() -> None:
    """A gateway connection went away: the cycles it leaves are only reclaimed by a compaction."""
    global _closed
    _closed += 1


class HeapKeeper:
    def __init__(self, *, freeze_seconds: float = FREEZE_SECONDS) -> None:
        self._freeze_seconds = freeze_seconds
        self._last = self._compacted = time.monotonic()
        self._closed_at_compaction = _closed
        self.froze = False
        self.compactions = 0

    def step(self, now: float, open_connections: int) -> None:
        """Called from the gateway's clock; freezes the survivors every few seconds."""
        if now - self._last < self._freeze_seconds:
            return
        self._last = now
        closed = _closed - self._closed_at_compaction
        if closed >= max(open_connections, COMPACT_AFTER_CLOSED) or now - self._compacted >= COMPACT_SECONDS:
            self._compact(now, closed)
        gc.collect()
        gc.freeze()
        self.froze = True

    def _compact(self, now: float, closed: int) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        self._compacted = now
        self._closed_at_compaction = _closed
        self.compactions += 1
        log.info(
            "heap compacted",
            closed_connections=closed,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def release(self) -> None:
        """The gateway stops: the process's collector goes back to its normal ways."""
        if self.froze:
            gc.unfreeze()
            self.froze = False
