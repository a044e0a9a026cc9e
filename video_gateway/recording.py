"""Records the encoded frames the gateway forwards into Matroska files, without transcoding.

Streams appearing late
----------------------
FFmpeg writes a Matroska file's track list once, in the header: PyAV cannot add a stream after
the first packet (tried: the file comes out corrupt). A track cannot be declared blind either:
a VP8 track needs a picture size and an H.264 track needs the stream's SPS/PPS (the muxer
refuses the header without them), and both are only known from the stream's first keyframe.
So a recording works in three steps:

1. **Hold.** Frames are held in memory until every expected stream (each participant of the
   roster, audio and video) has delivered its first usable frame, or ``hold_seconds`` have passed
   since the first frame, or ``hold_bytes`` are held. Opening the recording when the call goes
   live makes the hold last about a second.
2. **Header.** The tracks seen so far are declared from their first frames, and each expected
   stream still missing gets a placeholder track: Opus 48 kHz stereo for audio (exactly what
   WebRTC sends), VP8 for video unless the room's video is H.264 (no placeholder is possible
   then). A late stream that matches its placeholder is simply written into it, at its own time:
   a participant whose camera comes on at 5:00 starts at 5:00 in the same file.
3. **Overflow.** A stream the header cannot carry (H.264 first seen after the header, a codec
   change on rejoin, a participant outside the roster) opens the next file, ``<stem>.2.mkv``,
   ``<stem>.3.mkv``…, which holds and declares in turn. All files of a recording share one
   timeline (seconds since ``Recording.open``), so they line up when played side by side;
   ``Recording.paths`` lists them.

Timeline
--------
Each stream is placed by its arrival on the recording's clock at its first frame, then spaced by
its RTP timestamps (jitter-free). A timestamp going backwards (a new receiver after a rejoin)
or leaping ahead of the wall clock (a new SSRC, which aiortc's TimestampMapper maps as a wrap)
re-places the stream at its arrival. Audio/video sync is thus as good as arrival times (within
the jitter buffers' latency difference, tens of ms); exact lip sync would need RTCP sender reports.

Cost
----
A frame written after the header costs one ``av.Packet`` (a copy of the payload) and one
interleaved write into FFmpeg's buffered file output, synchronously: measured on a 2-core machine
of this workplace, 3 µs for a 1.5 KB frame, 6.5 µs for 12 KB, 20 µs for a 50 KB keyframe. Writing
the header flushes the hold (1.6 ms for 10 s of two streams). The only decode is one keyframe per
H.264 track, to learn its picture size (0.5-2 ms at 640x480).
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, Self

import av
from av.container import OutputContainer
from av.stream import Stream

from video_gateway.errors import GatewayError

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, Kind] = ("audio", "video")
CLOCK_RATES: dict[Kind, int] = {"audio": 48_000, "video": 90_000}

# WebRTC codec names (upper-cased) → FFmpeg codec names, per kind.
_FFMPEG_CODECS: dict[Kind, dict[str, str]] = {
    "video": {"VP8": "vp8", "H264": "h264"},
    "audio": {"OPUS": "opus"},
}
# Pre-skip 0: RTP carries no pre-skip, a receiver plays Opus from its first sample.
# RFC 7845 §5.1: magic, version, channels, pre-skip, input rate, output gain, mapping family.
_OPUS_HEAD = struct.pack("<8sBBHIhB", b"OpusHead", 1, 2, 0, 48_000, 0, 0)
_PLACEHOLDER_SIZE = (640, 480)
_H264_START = b"\x00\x00\x01"
_H264_SPS, _H264_PPS = 7, 8
# An RTP clock advancing this much faster than the wall clock between two frames is a new source.
_JUMP_SECONDS = 2.0

TrackKey = tuple[str, Kind, str]  # participant, kind, upper-cased codec


class RecordingError(GatewayError):
    """The recording could not take a frame or write its file."""


class Recording:
    """One session's recording: ``open``, ``write`` every forwarded frame, ``close``."""

    def __init__(
        self,
        path: Path,
        participants: Sequence[str],
        hold_seconds: float,
        hold_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        if not participants:
            raise ValueError("a recording needs at least one expected participant")
        self._path = path
        self._expected = dict.fromkeys(participants)  # ordered set: roster, then newcomers
        self._hold_seconds = hold_seconds
        self._hold_bytes = hold_bytes
        self._clock = clock
        self._origin = clock()
        self._origin_wall = datetime.now(UTC)
        self._segments: list[_Segment] = []
        self._routes: dict[TrackKey, _Segment] = {}
        self._routed_streams: set[tuple[str, Kind]] = set()
        self._timelines: dict[tuple[str, Kind], _Timeline] = {}
        self._closed = False
        self._start_segment()

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        participants: Sequence[str] = ("customer", "expert"),
        hold_seconds: float = 10.0,
        hold_bytes: int = 32 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> Recording:
        """Create ``path`` (and its parent directories); never overwrites an existing file.

        ``participants``: whose audio and video the header waits for, at most ``hold_seconds``
        after the first frame or until ``hold_bytes`` are held. ``clock``: monotonic seconds,
        read at every write; the files' zero is its value now.
        """
        return cls(path, participants, hold_seconds, hold_bytes, clock)

    @property
    def paths(self) -> list[Path]:
        """The files of this recording: ``path`` first, then any overflow files.

        After ``close`` a file that received no frame is deleted and no longer listed.
        """
        return [segment.path for segment in self._segments if not segment.discarded]

    def write(
        self, participant: str, kind: Kind, codec: str, payload: bytes, rtp_timestamp: int, keyframe: bool
    ) -> None:
        """Record one encoded frame, as it leaves the receiver's jitter buffer.

        Video frames before a stream's first keyframe are dropped. Raises ``RecordingError``
        after ``close``, for an unsupported codec, an empty payload, a first keyframe that is
        not one, or a failed write.
        """
        if self._closed:
            raise RecordingError("the recording is closed")
        if not payload:
            raise RecordingError(f"empty {kind} frame from {participant}")
        stream = (participant, kind)
        timeline = self._timelines.get(stream)
        if timeline is None:
            timeline = self._timelines[stream] = _Timeline(
                CLOCK_RATES[kind], starts_on_keyframe=kind == "video"
            )
        if not timeline.admits(rtp_timestamp, keyframe):
            return
        key: TrackKey = (participant, kind, codec.upper())
        segment = self._routes.get(key) or self._route_new_track(key, payload)
        now = self._clock() - self._origin
        ticks = timeline.place(rtp_timestamp, now)
        if segment.header_written:
            segment.write(key, ticks, payload, keyframe)
        else:
            segment.hold(_HeldFrame(key, ticks, payload, keyframe), now)
        newest = self._segments[-1]
        if not newest.header_written and newest.held_bytes and self._hold_is_over(newest, now):
            self._write_header(newest)

    def close(self) -> None:
        """Write whatever is held and finalise every file; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        first_error: RecordingError | None = None
        for segment in self._segments:
            try:
                if not segment.header_written and segment.held_bytes:
                    self._write_header(segment)
            except RecordingError as exc:
                first_error = first_error or exc
            try:
                segment.close()
            except RecordingError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _route_new_track(self, key: TrackKey, payload: bytes) -> _Segment:
        participant, kind, _ = key
        spec = _spec_from_first_frame(kind, key[2], payload)
        segment = self._segments[-1]
        if segment.header_written:
            segment = self._start_segment()
        segment.declare(key, spec)
        self._expected.setdefault(participant)
        self._routes[key] = segment
        self._routed_streams.add((participant, kind))
        return segment

    def _start_segment(self) -> _Segment:
        number = len(self._segments) + 1
        path = self._path if number == 1 else self._path.with_stem(f"{self._path.stem}.{number}")
        segment = _Segment.create(path, self._origin_wall)
        self._segments.append(segment)
        return segment

    def _hold_is_over(self, segment: _Segment, now: float) -> bool:
        return (
            segment.held_bytes >= self._hold_bytes
            or now - segment.first_held_at >= self._hold_seconds
            or all(
                (participant, kind) in self._routed_streams
                for participant in self._expected
                for kind in KINDS
            )
        )

    def _write_header(self, segment: _Segment) -> None:
        placeholders = self._placeholders()
        for key in placeholders:
            self._routes[key] = segment
            self._routed_streams.add((key[0], key[1]))
        segment.write_header(placeholders)

    def _placeholders(self) -> dict[TrackKey, _TrackSpec]:
        """Tracks for expected streams not seen yet, declared so they can start late in the same file."""
        placeholders: dict[TrackKey, _TrackSpec] = {}
        videos = [spec for key, spec in self._declared_specs() if key[1] == "video"]
        for participant in self._expected:
            for kind in KINDS:
                if (participant, kind) in self._routed_streams:
                    continue
                if kind == "audio":
                    placeholders[(participant, kind, "OPUS")] = _TrackSpec("opus", 0, 0, _OPUS_HEAD)
                elif not any(spec.codec == "h264" for spec in videos):
                    width, height = (videos[0].width, videos[0].height) if videos else _PLACEHOLDER_SIZE
                    placeholders[(participant, kind, "VP8")] = _TrackSpec("vp8", width, height, None)
        return placeholders

    def _declared_specs(self) -> Iterator[tuple[TrackKey, _TrackSpec]]:
        for segment in self._segments:
            yield from segment.specs.items()


@dataclass(frozen=True)
class _TrackSpec:
    """What a track's header needs, learnt from the stream's first frame."""

    codec: str  # FFmpeg's name
    width: int
    height: int
    extradata: bytes | None


class _HeldFrame(NamedTuple):
    key: TrackKey
    ticks: int
    payload: bytes
    keyframe: bool


class _Track(NamedTuple):
    stream: Stream
    time_base: Fraction


class _Segment:
    """One Matroska file: holds frames until its header is written, then muxes them."""

    def __init__(self, path: Path, container: OutputContainer) -> None:
        self.path = path
        self.specs: dict[TrackKey, _TrackSpec] = {}
        self.held_bytes = 0
        self.first_held_at = 0.0
        self._container = container
        self._tracks: dict[TrackKey, _Track] = {}
        self._held: list[_HeldFrame] = []
        self.header_written = False
        self.frames_written = 0
        self.discarded = False

    @classmethod
    def create(cls, path: Path, origin_wall: datetime) -> _Segment:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Exclusive: a recording is evidence, never overwrite one.
            path.open("xb").close()
            container = av.open(str(path), "w", format="matroska")
        except (OSError, av.FFmpegError, ValueError) as exc:
            raise RecordingError(f"cannot create {path}: {exc}") from exc
        container.metadata["creation_time"] = origin_wall.isoformat()
        return cls(path, container)

    def declare(self, key: TrackKey, spec: _TrackSpec) -> None:
        self.specs[key] = spec

    def hold(self, frame: _HeldFrame, now: float) -> None:
        if not self._held:
            self.first_held_at = now
        self._held.append(frame)
        self.held_bytes += len(frame.payload)

    def write_header(self, placeholders: dict[TrackKey, _TrackSpec]) -> None:
        for key, spec in placeholders.items():
            self.specs.setdefault(key, spec)
        self.header_written = True
        try:
            for key, spec in self.specs.items():
                self._tracks[key] = _add_track(self._container, key, spec)
            self._container.start_encoding()
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise RecordingError(f"cannot write the header of {self.path}: {exc}") from exc
        held, self._held, self.held_bytes = self._held, [], 0
        for frame in held:  # in arrival order, as live frames come; FFmpeg interleaves by time
            self.write(frame.key, frame.ticks, frame.payload, frame.keyframe)

    def write(self, key: TrackKey, ticks: int, payload: bytes, keyframe: bool) -> None:
        track = self._tracks.get(key)
        if track is None:
            raise RecordingError(f"{self.path} has no {key[1]} track for {key[0]}: its header failed")
        packet = av.Packet(payload)
        packet.stream = track.stream
        packet.time_base = track.time_base
        packet.pts = ticks
        packet.dts = ticks
        packet.is_keyframe = keyframe
        try:
            self._container.mux_one(packet)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise RecordingError(f"cannot write a {key[1]} frame of {key[0]} to {self.path}: {exc}") from exc
        self.frames_written += 1

    def close(self) -> None:
        try:
            self._container.close()
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise RecordingError(f"cannot finalise {self.path}: {exc}") from exc
        if not self.frames_written:
            # Matroska with tracks but no frame is valid, yet FFmpeg refuses to open it: no media, no file.
            self.path.unlink(missing_ok=True)
            self.discarded = True


class _Timeline:
    """Places one source stream's frames on the recording clock, in ticks of its RTP clock."""

    def __init__(self, clock_rate: int, *, starts_on_keyframe: bool) -> None:
        self._clock_rate = clock_rate
        self._starts_on_keyframe = starts_on_keyframe
        self._waiting_for_keyframe = starts_on_keyframe
        self._anchored = False
        self._anchor_rtp = 0
        self._anchor_ticks = 0
        self._last_rtp = 0
        self._last_ticks = -1
        self._last_arrival = 0
        self._jump = int(_JUMP_SECONDS * clock_rate)

    def admits(self, rtp_timestamp: int, keyframe: bool) -> bool:
        if self._anchored and rtp_timestamp < self._last_rtp:
            # TimestampMapper never goes backwards: this is a new receiver (a rejoin), whose
            # decoder state owes nothing to the old one.
            self._anchored = False
            self._waiting_for_keyframe = self._starts_on_keyframe
        return keyframe or not self._waiting_for_keyframe

    def place(self, rtp_timestamp: int, arrival_seconds: float) -> int:
        arrival = round(arrival_seconds * self._clock_rate)
        # Arriving late is normal (a stall, a burst of retransmissions) and keeps the RTP spacing;
        # RTP time racing ahead of the wall clock is not.
        if self._anchored and (rtp_timestamp - self._last_rtp) - (arrival - self._last_arrival) > self._jump:
            self._anchored = False
        if not self._anchored:
            self._anchor_rtp = rtp_timestamp
            self._anchor_ticks = max(arrival, self._last_ticks + 1)
            self._anchored = True
        ticks = self._anchor_ticks + rtp_timestamp - self._anchor_rtp
        self._waiting_for_keyframe = False
        self._last_rtp, self._last_ticks, self._last_arrival = rtp_timestamp, ticks, arrival
        return ticks


def _spec_from_first_frame(kind: Kind, codec: str, payload: bytes) -> _TrackSpec:
    ffmpeg_codec = _FFMPEG_CODECS[kind].get(codec)
    if ffmpeg_codec is None:
        raise RecordingError(f"cannot record {kind} in {codec}")
    if ffmpeg_codec == "opus":
        return _TrackSpec("opus", 0, 0, _OPUS_HEAD)
    if ffmpeg_codec == "vp8":
        return _TrackSpec("vp8", *_vp8_size(payload), None)
    parameter_sets = _h264_parameter_sets(payload)
    return _TrackSpec("h264", *_h264_size(parameter_sets, payload), parameter_sets)


def _vp8_size(keyframe: bytes) -> tuple[int, int]:
    # RFC 6386 §9.1: frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
    if len(keyframe) < 10 or keyframe[0] & 0x01 or keyframe[3:6] != b"\x9d\x01\x2a":
        raise RecordingError("a VP8 stream must start with a keyframe")
    width = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
    height = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
    if not width or not height:
        raise RecordingError("a VP8 keyframe with no picture size")
    return width, height


def _h264_nal_units(payload: bytes) -> Iterator[bytes]:
    start = payload.find(_H264_START)
    while start != -1:
        end = payload.find(_H264_START, start + 3)
        # The zero byte of a following 4-byte start code is not part of this unit.
        unit = payload[start + 3 : end if end != -1 else len(payload)].rstrip(b"\x00")
        if unit:
            yield unit
        start = end


def _h264_parameter_sets(keyframe: bytes) -> bytes:
    """The SPS and PPS of a keyframe, in Annex B: the muxer turns them into the track's avcC."""
    units = [unit for unit in _h264_nal_units(keyframe) if unit[0] & 0x1F in (_H264_SPS, _H264_PPS)]
    if {unit[0] & 0x1F for unit in units} != {_H264_SPS, _H264_PPS}:
        raise RecordingError("an H.264 stream must start with a keyframe carrying its SPS and PPS")
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def _h264_size(parameter_sets: bytes, keyframe: bytes) -> tuple[int, int]:
    # Decoding the one keyframe is simpler and surer than parsing the SPS by hand.
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = parameter_sets
    try:
        frames = [*decoder.decode(av.Packet(keyframe)), *decoder.decode(None)]
    except (av.FFmpegError, ValueError) as exc:
        raise RecordingError(f"an H.264 keyframe that does not decode: {exc}") from exc
    pictures = [frame for frame in frames if isinstance(frame, av.VideoFrame)]
    if not pictures:
        raise RecordingError("an H.264 keyframe that does not decode")
    return pictures[0].width, pictures[0].height


def _add_track(container: OutputContainer, key: TrackKey, spec: _TrackSpec) -> _Track:
    # A stream copied from a template gets a codec context PyAV never opens (no encoder runs,
    # no encoder invents its own extradata) but whose size and extradata reach the header.
    scratch = av.open(io.BytesIO(), "w", format="matroska")
    try:
        stream = container.add_stream_from_template(scratch.add_stream(spec.codec))
    finally:
        scratch.close()
    context = stream.codec_context
    if isinstance(context, av.VideoCodecContext):
        context.width, context.height = spec.width, spec.height
    if spec.extradata is not None:
        context.extradata = spec.extradata
    participant, kind, _ = key
    time_base = Fraction(1, CLOCK_RATES[kind])
    stream.time_base = time_base
    stream.metadata["title"] = f"{participant} {kind}"
    return _Track(stream, time_base)
