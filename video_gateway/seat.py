"""One participant's connection to a live room: their socket, their peer connection with the
gateway, the control channel on it and, in relay mode, their media in and out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from aiortc import RTCDataChannel, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from video_gateway import heap
from video_gateway.forwarding import ForwardedTrack, Source
from video_gateway.links import Role
from video_gateway.rooms import RelayMethod

log = structlog.get_logger("video_gateway.seat")

_PREFERRED = {"video": "VP8", "audio": "opus"}


class Outlet(Protocol):
    """Where frames for a participant's page go: their signalling WebSocket."""

    async def send(self, text: str) -> None: ...

    async def close(self) -> None: ...


class Seat:
    def __init__(self, role: Role, outlet: Outlet, *, relay: bool, method: RelayMethod) -> None:
        self.role = role
        self.outlet = outlet
        self.relay = relay
        self.method = method
        self.pc: RTCPeerConnection | None = None
        self.control: RTCDataChannel | None = None
        self.sources: dict[str, Source] = {}
        self.viewers: dict[str, ForwardedTrack] = {}
        self.last_heard = time.monotonic()
        self.closed = False
        # Direct mode: the page's own report about its media connection to the other person.
        self.reported_connected = False
        self.reported_flowing = False
        self.reported_bytes = -1
        self.reported_at: float | None = None
        self.bytes_moved_at: float | None = None

    @property
    def connected(self) -> bool:
        return self.pc is not None and self.pc.connectionState == "connected"

    async def send(self, text: str) -> None:
        if self.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.outlet.send(text)

    def tell(self, text: str) -> None:
        """Over the control channel, when open (ticks, pings, warnings)."""
        channel = self.control
        if channel is not None and channel.readyState == "open":
            with contextlib.suppress(ConnectionError, RuntimeError):
                channel.send(text)

    async def answer(
        self,
        offer_sdp: str,
        pc: RTCPeerConnection,
        on_control: Callable[[Seat, RTCDataChannel], None],
        on_source: Callable[[Seat, Source], None],
        on_state: Callable[[Seat], Awaitable[None]],
    ) -> str:
        """Take the page's offer for its gateway connection and return the gateway's answer."""
        await self.close_connection()
        self.pc = pc

        @pc.on("datachannel")
        def _datachannel(channel: RTCDataChannel) -> None:
            if channel.label == "control":
                self.control = channel
                on_control(self, channel)

        @pc.on("track")
        def _track(track: object) -> None:
            transceiver = _transceiver_of(pc, track)
            if not self.relay or transceiver is None or transceiver.kind not in ("audio", "video"):
                return
            source = Source(transceiver.kind, self.method)
            source.attach(transceiver.receiver)
            self.sources[transceiver.kind] = source
            on_source(self, source)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            await on_state(self)

        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        if self.relay:
            for transceiver in pc.getTransceivers():
                if transceiver.kind not in _PREFERRED:
                    continue
                _prefer(transceiver, _PREFERRED[transceiver.kind])
                viewer = ForwardedTrack(transceiver.kind)
                self.viewers[transceiver.kind] = viewer
                pc.addTrack(viewer)
                viewer.bind(transceiver.sender)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def close_connection(self) -> None:
        pc, self.pc = self.pc, None
        self.control = None
        for source in self.sources.values():
            source.close()
        self.sources.clear()
        for viewer in self.viewers.values():
            viewer.stop()
        self.viewers.clear()
        if pc is not None:
            heap.connection_closed()
            with contextlib.suppress(Exception):  # closing a half-negotiated connection may complain
                await pc.close()

    async def close(self) -> None:
        self.closed = True
        await self.close_connection()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.outlet.close()


def _transceiver_of(pc: RTCPeerConnection, track: object) -> RTCRtpTransceiver | None:
    return next((t for t in pc.getTransceivers() if t.receiver.track is track), None)


def _prefer(transceiver: RTCRtpTransceiver, name: str) -> None:
    """Send and receive one codec on every relayed connection, so frames forward unchanged.

    The answerer's codecs are fixed in setRemoteDescription (in the offer's order); keeping
    only the wanted one (and its retransmission stream) before the answer is created makes
    both participants' uplinks and downlinks agree.
    """
    codecs = transceiver._codecs
    wanted = [c for c in codecs if c.name.lower() == name.lower()]
    if not wanted:
        log.warning(
            "offer without the relay codec: media cannot pass unchanged", codec=name, kind=transceiver.kind
        )
        return
    payload_types = {c.payloadType for c in wanted}
    rtx = [c for c in codecs if c.name == "rtx" and c.parameters.get("apt") in payload_types]
    transceiver._codecs = wanted + rtx
