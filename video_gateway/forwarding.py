"""Relaying media without decoding it: encoded frames in, the same encoded frames out.

aiortc decodes every received track (a decoder thread per receiver) and re-encodes every sent
one, which limits a relay to a few calls per core. Two seams of aiortc 1.16 avoid both:

- receiving: `RTCRtpReceiver` puts every complete frame from its jitter buffer on a private
  `queue.Queue` that feeds its decoder thread. `tap_receiver` swaps that queue, before the
  receiver starts, for one that hands the encoded frame to a `Source` and passes nothing on to
  the decoder (or everything, in the decode/re-encode fallback);
- sending: `RTCRtpSender` packetises an `av.Packet` it gets from its track without encoding it
  (`Encoder.pack`). A `ForwardedTrack` yields the source's frames as packets.

Keyframes: a viewer's PLI reaches the sender, whose `_send_keyframe` is redirected to a PLI
sent upstream to the source's browser; a new viewer also asks for one and skips delta frames
until it arrives. Both seams are private API, hence aiortc is pinned (pyproject.toml); the
tests in tests/test_gateway_media.py fail loudly if they move.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import queue
import time
from collections.abc import Callable
from typing import Any

import av
import structlog
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from video_gateway.rooms import RelayMethod

log = structlog.get_logger("video_gateway.forwarding")

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
_VIDEO_STEP = VIDEO_CLOCK // 30  # nominal frame spacing, used when a source changes
_AUDIO_STEP = AUDIO_CLOCK // 50
_QUEUE_FRAMES = 60  # two seconds of video: a viewer further behind skips to the next keyframe
_PLI_INTERVAL_S = 0.5


def is_keyframe(codec: str, data: bytes) -> bool:
    if not data:
        return False
    if codec == "VP8":
        return data[0] & 0x01 == 0  # the inverse key-frame flag of the VP8 frame tag (RFC 6386)
    if codec == "H264":
        # Annex B as aiortc depayloads it: an IDR slice (5) or a sequence parameter set (7).
        index = data.find(b"\x00\x00\x01")
        while index != -1 and index + 3 < len(data):
            if data[index + 3] & 0x1F in (5, 7):
                return True
            index = data.find(b"\x00\x00\x01", index + 3)
        return False
    return True  # audio: every frame stands alone


FrameListener = Callable[[str, str, bytes, int, bool], None]  # kind, codec, data, timestamp, keyframe


class Source:
    """One participant's incoming track at the gateway: counts, forwards, records."""

    def __init__(self, kind: str, method: RelayMethod) -> None:
        self.kind = kind
        self.method = method
        self.codec = ""
        self.frames = 0
        self.bytes = 0
        self.last_frame_at: float | None = None  # monotonic
        self._viewers: set[ForwardedTrack] = set()
        self._listeners: list[FrameListener] = []
        self._receiver: RTCRtpReceiver | None = None
        self._last_pli = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._decoded: asyncio.Task[None] | None = None

    # -- wiring

    def attach(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver
        _swap_decoder_queue(receiver, _FrameTap(self, decode=self.method is RelayMethod.TRANSCODE))
        if self.method is RelayMethod.TRANSCODE:
            self._decoded = asyncio.ensure_future(self._pump_decoded(receiver.track))

    def add_listener(self, listener: FrameListener) -> None:
        self._listeners.append(listener)

    def add_viewer(self, viewer: ForwardedTrack) -> None:
        self._viewers.add(viewer)
        self.request_keyframe()

    def remove_viewer(self, viewer: ForwardedTrack) -> None:
        self._viewers.discard(viewer)

    def close(self) -> None:
        if self._decoded is not None:
            self._decoded.cancel()
        for viewer in list(self._viewers):
            viewer.source_gone(self)
        self._viewers.clear()
        self._listeners.clear()
        self._receiver = None

    # -- frames

    def on_encoded(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        data = bytes(frame.data)
        self.codec = codec.name
        self.frames += 1
        self.bytes += len(data)
        self.last_frame_at = time.monotonic()
        keyframe = is_keyframe(codec.name, data)
        for listener in self._listeners:
            listener(self.kind, codec.name, data, frame.timestamp, keyframe)
        if self.method is RelayMethod.FORWARD:
            for viewer in self._viewers:
                viewer.push_encoded(self, codec.name, data, frame.timestamp, keyframe)

    async def _pump_decoded(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame | av.AudioFrame):
                    for viewer in self._viewers:
                        viewer.push_decoded(frame)

    def request_keyframe(self) -> None:
        """Ask the source's browser for a keyframe (PLI), at most twice a second."""
        receiver = self._receiver
        now = time.monotonic()
        if self.kind != "video" or receiver is None or now - self._last_pli < _PLI_INTERVAL_S:
            return
        sources = receiver.getSynchronizationSources()
        if not sources:
            return
        self._last_pli = now
        task = asyncio.ensure_future(receiver._send_rtcp_pli(sources[0].source))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


class _FrameTap(queue.Queue[Any]):
    """Stands in for the receiver's decoder queue; `put` runs on the event loop thread."""

    def __init__(self, source: Source, *, decode: bool) -> None:
        super().__init__()
        self._source = source
        self._decode = decode

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            codec, frame = item
            try:
                self._source.on_encoded(codec, frame)
            except Exception:  # a listener's bug must not kill the receiver
                log.exception("forwarding an encoded frame failed")
            if not self._decode:
                return
        super().put(item, block, timeout)  # None stops the decoder thread: always pass it on


def _swap_decoder_queue(receiver: RTCRtpReceiver, tap: _FrameTap) -> None:
    attribute = "_RTCRtpReceiver__decoder_queue"
    if not isinstance(getattr(receiver, attribute, None), queue.Queue):
        raise RuntimeError(f"aiortc's receiver has no {attribute}: the pinned version changed?")
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise RuntimeError("tap the receiver before it starts (on the track event)")
    setattr(receiver, attribute, tap)


class ForwardedTrack(MediaStreamTrack):
    """What the gateway sends one viewer: the other participant's media, as it arrives.

    The output keeps its own timeline (monotonic RTP timestamps) across source changes, so a
    participant who rejoins does not make the viewer's timestamps jump backwards.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        self._step = _VIDEO_STEP if kind == "video" else _AUDIO_STEP
        self._time_base = fractions.Fraction(1, self._clock)
        self._queue: asyncio.Queue[av.Packet[Any] | av.VideoFrame | av.AudioFrame | None] = asyncio.Queue(
            _QUEUE_FRAMES
        )
        self._source: Source | None = None
        self._waiting_for_keyframe = True
        self._last_in: int | None = None
        self._out = 0
        self.forwarded = 0
        self.dropped = 0

    def follow(self, source: Source | None) -> None:
        if self._source is source:
            return
        if self._source is not None:
            self._source.remove_viewer(self)
        self._source = source
        self._last_in = None
        self._waiting_for_keyframe = True
        if source is not None:
            source.add_viewer(self)

    def source_gone(self, source: Source) -> None:
        if self._source is source:
            self._source = None
            self._last_in = None

    def bind(self, sender: RTCRtpSender) -> None:
        """Send the viewer's keyframe requests (PLI/FIR on this sender) upstream to the source."""
        sender._send_keyframe = self._keyframe_wanted  # type: ignore[method-assign]

    def _keyframe_wanted(self) -> None:
        if self._source is not None:
            self._source.request_keyframe()

    def _timestamp(self, timestamp: int) -> int:
        if self._last_in is not None and 0 < timestamp - self._last_in < 10 * self._clock:
            self._out += timestamp - self._last_in
        elif self._last_in is not None:
            self._out += self._step
        self._last_in = timestamp
        return self._out

    def push_encoded(self, source: Source, codec: str, data: bytes, timestamp: int, keyframe: bool) -> None:
        if self.readyState != "live":
            return
        if self._waiting_for_keyframe and self.kind == "video":
            if not keyframe:
                self.dropped += 1
                return
            self._waiting_for_keyframe = False
        packet = av.Packet(data)
        packet.pts = self._timestamp(timestamp)
        packet.time_base = self._time_base
        try:
            self._queue.put_nowait(packet)
        except asyncio.QueueFull:
            # The viewer's link is slower than the source: start again from a keyframe.
            self._drain()
            self.dropped += 1
            self._waiting_for_keyframe = True
            source.request_keyframe()

    def push_decoded(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        if self.readyState != "live":
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped += 1

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def recv(self) -> av.Packet[Any] | av.VideoFrame | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            raise MediaStreamError
        self.forwarded += 1
        return item

    def stop(self) -> None:
        if self._source is not None:
            self._source.remove_viewer(self)
            self._source = None
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
