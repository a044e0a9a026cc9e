"""A room participant in Python (aiortc): what the room page does, for tests, benchmarks and probes.

It speaks video_gateway/PROTOCOL.md exactly as the browser page does: the signalling socket,
the gateway connection with its `control` channel, and in direct mode a media connection to
the other participant. Received media is counted as encoded frames (no decoding), unless
`decode=True`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from video_gateway.forwarding import Source
from video_gateway.rooms import RelayMethod
from video_gateway.signalling import REPORT_SECONDS

_VIDEO_CLOCK = 90_000

# Makes a (microphone, camera) pair of tracks for one connection; None for either is receive-only.
MediaFactory = Callable[[], tuple[MediaStreamTrack | None, MediaStreamTrack | None]]


@dataclass
class Observed:
    welcome: dict[str, Any] | None = None
    ticks: list[dict[str, Any]] = field(default_factory=list)
    last_tick_at: float | None = None  # monotonic
    budget_warnings: list[dict[str, Any]] = field(default_factory=list)
    ended: dict[str, Any] | None = None
    replaced: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    peer_present: bool = False
    first_remote_frame_at: float | None = None  # monotonic
    remote_frames: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    remote_keyframes: int = 0


class RoomClient:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        link: str,
        *,
        media: MediaFactory | None = None,
        decode: bool = False,
    ) -> None:
        self._http = http
        self._link = link
        self._media = media
        self._decode = decode
        self.seen = Observed()
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self.gateway_pc: RTCPeerConnection | None = None
        self.media_pc: RTCPeerConnection | None = None
        self.control: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sources: list[Source] = []
        self._answered = asyncio.Event()
        self._welcomed = asyncio.Event()
        self.opened_at = 0.0
        # Direct mode: what the last look at the media connection saw, and the last report sent.
        self._bytes_seen = 0
        self._reported: tuple[bool, bool] | None = None
        self._reported_at = 0.0

    @property
    def role(self) -> str:
        assert self.seen.welcome is not None
        return str(self.seen.welcome["role"])

    @property
    def relay(self) -> bool:
        return self.seen.welcome is not None and self.seen.welcome["mode"] == "relay"

    def billed_now(self) -> int:
        """What the page's timer shows: the last tick's count, running on while the call is live."""
        if not self.seen.ticks or self.seen.last_tick_at is None:
            return int(self.seen.welcome["billed_seconds"]) if self.seen.welcome else 0
        tick = self.seen.ticks[-1]
        running = time.monotonic() - self.seen.last_tick_at if tick["state"] == "live" else 0.0
        return int(tick["billed_seconds"]) + int(running)

    async def join(self, within: float = 10.0) -> None:
        self.opened_at = time.monotonic()
        self.socket = await self._http.ws_connect(self._link + "/ws")
        self._spawn(self._read_socket())
        await asyncio.wait_for(self._welcomed.wait(), within)
        await self._connect_gateway()
        await asyncio.wait_for(self._answered.wait(), within)

    async def _connect_gateway(self) -> None:
        pc = RTCPeerConnection(self._configuration())
        self.gateway_pc = pc
        self.control = pc.createDataChannel("control")
        self.control.on("message", self._on_control)
        if self.relay:
            self._add_media(pc)
            pc.on("track", lambda track: self._receive(pc, track))
        await pc.setLocalDescription(await pc.createOffer())
        await self._send(type="offer", sdp=pc.localDescription.sdp)

    def _configuration(self) -> RTCConfiguration:
        assert self.seen.welcome is not None
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in self.seen.welcome["ice_servers"]
        ]
        return RTCConfiguration(iceServers=servers)

    def _add_media(self, pc: RTCPeerConnection) -> None:
        # Fresh tracks per connection: aiortc stops a sender's track when its connection closes.
        audio, video = self._media() if self._media is not None else (None, None)
        for kind, track in (("audio", audio), ("video", video)):
            if isinstance(track, ReplayedVideo):
                sender = pc.addTrack(track)
                sender._send_keyframe = track.restart_at_keyframe  # type: ignore[method-assign]
            elif track is not None:
                pc.addTrack(track)
            else:
                pc.addTransceiver(kind, direction="recvonly")

    def _receive(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
        if transceiver is None:
            return
        if self._decode:
            self._spawn(self._consume_decoded(track))
            return
        source = Source(track.kind, RelayMethod.FORWARD)
        source.add_listener(self._count)
        source.attach(transceiver.receiver)
        self._sources.append(source)

    def _count(self, kind: str, codec: str, data: bytes, timestamp: int, keyframe: bool) -> None:
        if self.seen.first_remote_frame_at is None and kind == "video":
            self.seen.first_remote_frame_at = time.monotonic()
            if not self.relay:
                self._spawn(self._report())  # as the page does: media arriving is reported at once
        self.seen.remote_frames[kind] += 1
        if kind == "video" and keyframe:
            self.seen.remote_keyframes += 1

    async def _consume_decoded(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self._count(track.kind, "", b"", 0, False)

    # ------------------------------------------------------------------ signalling

    async def _send(self, **frame: Any) -> None:
        if self.socket is not None and not self.socket.closed:
            await self.socket.send_str(json.dumps(frame))

    async def send_raw(self, text: str) -> None:
        assert self.socket is not None
        await self.socket.send_str(text)

    async def _read_socket(self) -> None:
        assert self.socket is not None
        async for message in self.socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(message.data)
            await self._on_socket(frame)

    async def _on_socket(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "welcome":
            self.seen.welcome = frame
            self.seen.peer_present = frame["peer_present"]
            self._welcomed.set()
        elif kind == "answer":
            assert self.gateway_pc is not None
            await self.gateway_pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "answer"))
            self._answered.set()
            if not self.relay and self.seen.peer_present and self.role == "customer":
                await self._offer_media()
        elif kind == "peer":
            self.seen.peer_present = frame["present"]
            if self.relay:
                return
            await self._close_media()
            if frame["present"] and self.role == "customer" and self._answered.is_set():
                await self._offer_media()
        elif kind == "signal":
            await self._on_signal(frame["data"])
        elif kind == "replaced":
            self.seen.replaced = True
        elif kind == "ended":
            self.seen.ended = frame
        elif kind == "error":
            self.seen.errors.append(frame)

    async def _offer_media(self) -> None:
        pc = self._new_media_pc()
        await pc.setLocalDescription(await pc.createOffer())
        await self._send(type="signal", data={"sdp": {"type": "offer", "sdp": pc.localDescription.sdp}})

    def _new_media_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._configuration())
        self.media_pc = pc
        self._add_media(pc)
        pc.on("track", lambda track: self._receive(pc, track))
        return pc

    async def _on_signal(self, data: dict[str, Any]) -> None:
        sdp = data.get("sdp")
        if not isinstance(sdp, dict):
            return  # aiortc puts every candidate in the SDP; trickled ones add nothing
        if sdp["type"] == "offer":
            await self._close_media()
            pc = self._new_media_pc()
            await pc.setRemoteDescription(RTCSessionDescription(sdp["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await self._send(type="signal", data={"sdp": {"type": "answer", "sdp": pc.localDescription.sdp}})
        elif sdp["type"] == "answer" and self.media_pc is not None:
            await self.media_pc.setRemoteDescription(RTCSessionDescription(sdp["sdp"], "answer"))

    # ------------------------------------------------------------------ control channel

    def _on_control(self, message: str | bytes) -> None:
        frame = json.loads(message)
        kind = frame["type"]
        if kind == "tick":
            self.seen.ticks.append(frame)
            self.seen.last_tick_at = time.monotonic()
        elif kind == "budget":
            self.seen.budget_warnings.append(frame)
        elif kind == "ended":
            self.seen.ended = frame
        elif kind == "ping" and self.control is not None:
            self.control.send(json.dumps({"type": "pong", "t": frame["t"]}))

    def _media_status(self) -> tuple[bool, int]:
        """Whether the media connection to the other person is up, and the bytes received on it.

        aiortc's inbound-rtp stats have no byte counter (browsers' do), so the client counts the
        encoded media it received itself.
        """
        pc = self.media_pc
        connected = pc is not None and pc.connectionState == "connected"
        return connected, sum(source.bytes for source in self._sources)

    async def _report(self) -> None:
        """Direct mode, once a second: a look at the media connection, reported to the gateway
        when what it shows changed, and otherwise every REPORT_SECONDS (as the page does)."""
        connected, received = self._media_status()
        flowing = connected and received > self._bytes_seen
        self._bytes_seen = received
        now = time.monotonic()
        if self._reported == (connected, flowing) and now - self._reported_at < REPORT_SECONDS:
            return
        if self.control is not None and self.control.readyState == "open":
            self._reported, self._reported_at = (connected, flowing), now
            self.control.send(
                json.dumps(
                    {"type": "stats", "connected": connected, "flowing": flowing, "bytes_received": received}
                )
            )

    async def report_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if not self.relay:
                await self._report()

    def start_reporting(self) -> None:
        self._spawn(self.report_forever())

    # ------------------------------------------------------------------ leaving

    async def hangup(self) -> None:
        await self._send(type="hangup")

    async def _close_media(self) -> None:
        pc, self.media_pc = self.media_pc, None
        if pc is not None:
            await pc.close()

    async def close(self) -> None:
        """Leave without hanging up (a dropped connection, as far as the room can tell)."""
        for task in list(self._tasks):
            task.cancel()
        for source in self._sources:
            source.close()
        await self._close_media()
        if self.gateway_pc is not None:
            await self.gateway_pc.close()
        if self.socket is not None:
            await self.socket.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class ReplayedVideo(MediaStreamTrack):
    """640x480 VP8 at 30 fps from a pre-encoded loop: a camera that costs no encoding.

    A keyframe request restarts the loop at its keyframe, as a real encoder would send one.
    """

    kind = "video"

    def __init__(self, packets: Sequence[bytes], fps: int = 30) -> None:
        super().__init__()
        self._packets = packets
        self._fps = fps
        self._index = 0
        self._pts = 0
        self._started: float | None = None
        self._time_base = fractions.Fraction(1, _VIDEO_CLOCK)

    def restart_at_keyframe(self) -> None:
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = now
        due = self._started + self._pts / _VIDEO_CLOCK
        if due > now:
            await asyncio.sleep(due - now)
        packet = av.Packet(self._packets[self._index])
        packet.pts = self._pts
        packet.time_base = self._time_base
        self._index = (self._index + 1) % len(self._packets)
        self._pts += _VIDEO_CLOCK // self._fps
        return packet


def encode_vp8_loop(
    frames: int = 60, width: int = 640, height: int = 480, keyframe_every: int = 60
) -> list[bytes]:
    """A loop of real VP8 frames with moving content; the first is a keyframe."""
    import numpy as np

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.bit_rate = 1_000_000
    codec.gop_size = keyframe_every
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[bytes] = []
    for index in range(frames):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[:, :, 0] = (np.arange(width) + index * 8) % 256
        image[:, :, 1] = ((np.arange(height) + index * 4) % 256)[:, None]
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        packets += [bytes(packet) for packet in codec.encode(frame)]
    packets += [bytes(packet) for packet in codec.encode(None)]
    return packets


def transceiver_kinds(pc: RTCPeerConnection) -> list[str]:
    return [t.kind for t in pc.getTransceivers() if isinstance(t, RTCRtpTransceiver)]
