"""Recording forwarded WebRTC media into Matroska, fed with real VP8, H.264 and Opus from PyAV's encoders."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from video_gateway.recording import Kind, Recording, RecordingError
from video_gateway.retention import delete_expired

FPS = 30
VIDEO_FRAMES = 60  # 2 s
FORCED_KEYFRAMES = (0, 20)
OPUS_FRAME = 960  # 20 ms at 48 kHz, as browsers send it
AUDIO_FRAMES = 100  # 2 s


@dataclass(frozen=True)
class Frame:
    payload: bytes
    keyframe: bool


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Source:
    """One participant's stream as the gateway sees it: frames arriving in real time from ``start``."""

    participant: str
    kind: Kind
    codec: str
    frames: list[Frame]
    start: float
    first_rtp: int = 0

    @property
    def step(self) -> tuple[float, int]:
        """Seconds and RTP ticks between frames."""
        return (1 / FPS, 90_000 // FPS) if self.kind == "video" else (OPUS_FRAME / 48_000, OPUS_FRAME)

    def arrivals(self) -> Iterator[tuple[float, Source, int, Frame]]:
        seconds, ticks = self.step
        for index, frame in enumerate(self.frames):
            yield self.start + index * seconds, self, self.first_rtp + index * ticks, frame


def play(recording: Recording, clock: Clock, *sources: Source) -> None:
    events = sorted((event for source in sources for event in source.arrivals()), key=lambda event: event[0])
    for arrival, stream, rtp, frame in events:
        clock.now = arrival
        recording.write(stream.participant, stream.kind, stream.codec, frame.payload, rtp, frame.keyframe)


def picture(index: int) -> av.VideoFrame:
    """A 640x480 picture that changes every frame: a bright bar sweeping over a drifting gradient."""
    planes = np.empty((480 * 3 // 2, 640), np.uint8)  # yuv420p: Y rows, then U and V rows
    planes[:480] = (np.arange(640) + index * 4) % 256
    planes[:480, (index * 10) % 600 : (index * 10) % 600 + 40] = 235
    planes[480:] = (np.arange(480 // 2)[:, None] + index * 2) % 256
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def encode_video(encoder: str, options: dict[str, str]) -> list[Frame]:
    context = av.CodecContext.create(encoder, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height, context.pix_fmt = 640, 480, "yuv420p"
    context.time_base = Fraction(1, FPS)
    context.framerate = Fraction(FPS)
    context.gop_size = 1000  # keyframes only where forced, as a browser sends them (on PLI)
    context.thread_count = 1  # threads only wait for each other on a busy 2-core machine
    context.options = options
    packets: list[av.Packet[Any]] = []
    for index in range(VIDEO_FRAMES):
        frame = picture(index)
        frame.pts = index
        if index in FORCED_KEYFRAMES:
            frame.pict_type = av.video.frame.PictureType.I
        packets += context.encode(frame)
    packets += context.encode(None)
    return [Frame(bytes(packet), packet.is_keyframe) for packet in packets]


@pytest.fixture(scope="module")
def vp8() -> list[Frame]:
    return encode_video("libvpx", {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0"})


@pytest.fixture(scope="module")
def h264() -> list[Frame]:
    return encode_video("libx264", {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1"})


@pytest.fixture(scope="module")
def opus() -> list[Frame]:
    return encode_opus()


def encode_opus() -> list[Frame]:
    """A 440 Hz tone in 20 ms Opus packets."""
    context = av.CodecContext.create("libopus", "w")
    assert isinstance(context, av.AudioCodecContext)
    context.sample_rate, context.layout, context.format = 48_000, "stereo", "s16"
    context.time_base = Fraction(1, 48_000)
    packets: list[av.Packet[Any]] = []
    for index in range(AUDIO_FRAMES):
        t = (np.arange(OPUS_FRAME) + index * OPUS_FRAME) / 48_000
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None, :], format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, index * OPUS_FRAME
        packets += context.encode(frame)
    packets += context.encode(None)
    return [Frame(bytes(packet), True) for packet in packets]


@dataclass
class Track:
    codec: str
    start: float | None
    extradata: bytes | None
    frame_times: list[float] = field(default_factory=list)
    samples: int = 0
    decode_errors: int = 0

    @property
    def audio_seconds(self) -> float:
        return self.samples / 48_000


def read(path: Path) -> dict[str, Track]:
    """Each track of a recording by its title, with everything a player would decode from it."""
    with av.open(str(path)) as container:
        tracks = {
            stream.metadata["title"]: Track(
                stream.codec_context.name,
                None if stream.start_time is None else float(stream.start_time * (stream.time_base or 0)),
                stream.codec_context.extradata,
            )
            for stream in container.streams
        }
        by_index = {stream.index: tracks[stream.metadata["title"]] for stream in container.streams}
        for stream in container.streams:
            stream.codec_context.thread_count = 1
        for packet in container.demux():
            track = by_index[packet.stream.index]
            try:
                frames = packet.decode()
            except av.FFmpegError:
                track.decode_errors += 1
                continue
            for frame in frames:
                if isinstance(frame, av.AudioFrame):
                    track.samples += frame.samples
                elif isinstance(frame, av.VideoFrame) and frame.time is not None:
                    track.frame_times.append(frame.time)
    return tracks


def first_keyframe_from(frames: list[Frame], index: int) -> int:
    return next(position for position in range(index, len(frames)) if frames[position].keyframe)


def test_the_encoders_make_what_a_browser_sends(
    vp8: list[Frame], h264: list[Frame], opus: list[Frame]
) -> None:
    assert [index for index, frame in enumerate(vp8) if frame.keyframe] == list(FORCED_KEYFRAMES)
    assert [index for index, frame in enumerate(h264) if frame.keyframe] == list(FORCED_KEYFRAMES)
    assert len(vp8) == len(h264) == VIDEO_FRAMES
    assert AUDIO_FRAMES <= len(opus) <= AUDIO_FRAMES + 1
    # The VP8 frame tag's inverted key-frame bit, which the gateway reads (RFC 6386 §9.1).
    assert [frame.payload[0] & 0x01 == 0 for frame in vp8] == [frame.keyframe for frame in vp8]


def test_two_participants_line_up_in_one_file(tmp_path: Path, vp8: list[Frame], opus: list[Frame]) -> None:
    clock = Clock()
    path = tmp_path / "rooms" / "r1" / "session.mkv"
    with Recording.open(path, clock=clock) as recording:
        play(
            recording,
            clock,
            Source("customer", "video", "VP8", vp8, start=0.0, first_rtp=0),
            Source("customer", "audio", "opus", opus, start=0.01),
            Source("expert", "video", "VP8", vp8, start=5.0),
            Source("expert", "audio", "opus", opus, start=5.02),
        )
    assert recording.paths == [path]

    tracks = read(path)
    assert {title: track.codec for title, track in tracks.items()} == {
        "customer video": "vp8",
        "customer audio": "opus",
        "expert video": "vp8",
        "expert audio": "opus",
    }
    for participant, start in (("customer", 0.0), ("expert", 5.0)):
        video, audio = tracks[f"{participant} video"], tracks[f"{participant} audio"]
        assert abs(len(video.frame_times) - VIDEO_FRAMES) <= 1
        assert video.start == pytest.approx(start, abs=0.001)
        assert video.frame_times[-1] == pytest.approx(start + (VIDEO_FRAMES - 1) / FPS, abs=0.002)
        assert audio.audio_seconds == pytest.approx(len(opus) * OPUS_FRAME / 48_000, abs=0.03)
        assert audio.start == pytest.approx(start, abs=0.03)
        assert video.decode_errors == audio.decode_errors == 0
    assert tracks["expert audio"].extradata is not None
    assert tracks["expert audio"].extradata.startswith(b"OpusHead")


def test_a_stream_after_the_header_starts_late_in_its_placeholder_track(
    tmp_path: Path, vp8: list[Frame], opus: list[Frame]
) -> None:
    clock = Clock()
    path = tmp_path / "late.mkv"
    with Recording.open(path, clock=clock, hold_seconds=1.0) as recording:
        play(
            recording,
            clock,
            Source("customer", "video", "VP8", vp8, start=0.0),
            Source("customer", "audio", "opus", opus, start=0.0),
            # The expert's camera comes on half a minute in, long after the header was written.
            Source("expert", "audio", "opus", opus, start=20.0),
            Source("expert", "video", "VP8", vp8, start=30.0),
        )
    assert recording.paths == [path]

    tracks = read(path)
    assert list(tracks) == ["customer video", "customer audio", "expert audio", "expert video"]
    expert_video = tracks["expert video"]
    assert expert_video.codec == "vp8"
    assert expert_video.start == pytest.approx(30.0, abs=0.001)
    assert abs(len(expert_video.frame_times) - VIDEO_FRAMES) <= 1
    assert tracks["expert audio"].start == pytest.approx(20.0, abs=0.03)
    assert tracks["expert audio"].audio_seconds == pytest.approx(len(opus) * OPUS_FRAME / 48_000, abs=0.03)


def test_h264_first_seen_after_the_header_goes_to_an_overflow_file(
    tmp_path: Path, h264: list[Frame], opus: list[Frame]
) -> None:
    clock = Clock()
    path = tmp_path / "h264.mkv"
    with Recording.open(path, clock=clock, hold_seconds=1.0) as recording:
        play(
            recording,
            clock,
            Source("customer", "video", "H264", h264, start=0.0),
            Source("customer", "audio", "opus", opus, start=0.0),
            Source("expert", "audio", "opus", opus, start=5.0),
            Source("expert", "video", "H264", h264, start=5.0),
        )
    overflow = tmp_path / "h264.2.mkv"
    assert recording.paths == [path, overflow]

    first, second = read(path), read(overflow)
    assert list(first) == ["customer video", "customer audio", "expert audio"]
    assert list(second) == ["expert video"]
    for video, start in ((first["customer video"], 0.0), (second["expert video"], 5.0)):
        assert video.codec == "h264"
        assert video.extradata is not None
        assert video.extradata[0] == 1  # avcC, made by the muxer from the keyframe's SPS/PPS
        assert abs(len(video.frame_times) - VIDEO_FRAMES) <= 1
        assert video.start == pytest.approx(start, abs=0.001)  # one timeline across files
        assert video.decode_errors == 0
    assert first["expert audio"].start == pytest.approx(5.0, abs=0.03)


def test_the_header_is_written_once_the_roster_has_started_and_a_codec_change_overflows(
    tmp_path: Path, vp8: list[Frame], h264: list[Frame], opus: list[Frame]
) -> None:
    clock = Clock()
    path = tmp_path / "switch.mkv"
    with Recording.open(path, clock=clock, hold_seconds=10.0) as recording:
        play(
            recording,
            clock,
            Source("customer", "video", "VP8", vp8, start=0.0),
            Source("customer", "audio", "opus", opus, start=0.0),
            Source("expert", "video", "VP8", vp8, start=0.1),
            Source("expert", "audio", "opus", opus, start=0.1),
        )
        # Well within the hold time, but all four streams have started, so the header is out:
        # the expert rejoining from a browser that sends H.264 cannot be added to this file.
        play(recording, clock, Source("expert", "video", "H264", h264, start=3.0))
    assert recording.paths == [path, tmp_path / "switch.2.mkv"]

    first, second = read(path), read(tmp_path / "switch.2.mkv")
    assert list(first) == ["customer video", "customer audio", "expert video", "expert audio"]
    assert abs(len(first["expert video"].frame_times) - VIDEO_FRAMES) <= 1
    assert list(second) == ["expert video"]
    assert second["expert video"].codec == "h264"
    assert second["expert video"].start == pytest.approx(3.0, abs=0.001)
    assert abs(len(second["expert video"].frame_times) - VIDEO_FRAMES) <= 1


def test_video_before_the_first_keyframe_is_dropped(tmp_path: Path, vp8: list[Frame]) -> None:
    clock = Clock()
    path = tmp_path / "joined-mid-gop.mkv"
    join = 5  # the gateway taps a stream mid-GOP: frames 5..19 are deltas without their keyframe
    keyframe = first_keyframe_from(vp8, join)
    with Recording.open(path, participants=["customer"], clock=clock) as recording:
        play(recording, clock, Source("customer", "video", "VP8", vp8[join:], start=1.0))

    video = read(path)["customer video"]
    assert keyframe == FORCED_KEYFRAMES[1]
    assert abs(len(video.frame_times) - (VIDEO_FRAMES - keyframe)) <= 1
    # Placed where the keyframe arrived, not where the first (dropped) frame did.
    assert video.start == pytest.approx(1.0 + (keyframe - join) / FPS, abs=0.001)
    assert video.decode_errors == 0


def test_a_rejoin_restarts_the_stream_at_its_arrival_from_a_keyframe(
    tmp_path: Path, vp8: list[Frame]
) -> None:
    clock = Clock()
    path = tmp_path / "rejoin.mkv"
    with Recording.open(path, participants=["customer"], clock=clock) as recording:
        play(recording, clock, Source("customer", "video", "VP8", vp8, start=0.0, first_rtp=0))
        # New peer connection: aiortc's TimestampMapper starts again at 0; its first frames lack a keyframe.
        play(recording, clock, Source("customer", "video", "VP8", vp8[10:], start=8.0, first_rtp=0))

    times = read(path)["customer video"].frame_times
    restart_keyframe = first_keyframe_from(vp8, 10)
    assert abs(len(times) - (VIDEO_FRAMES + VIDEO_FRAMES - restart_keyframe)) <= 1
    assert times == sorted(times)
    second_part = [t for t in times if t > 3]
    assert second_part[0] == pytest.approx(8.0 + (restart_keyframe - 10) / FPS, abs=0.001)


def test_an_rtp_leap_the_wall_clock_did_not_see_is_placed_at_arrival(
    tmp_path: Path, opus: list[Frame]
) -> None:
    clock = Clock()
    path = tmp_path / "leap.mkv"
    half = len(opus) // 2
    with Recording.open(path, participants=["customer"], clock=clock) as recording:
        play(recording, clock, Source("customer", "audio", "opus", opus[:half], start=0.0))
        # A new SSRC's random base, which TimestampMapper maps as a wrap: billions of ticks later.
        play(
            recording,
            clock,
            Source("customer", "audio", "opus", opus[half:], start=1.0, first_rtp=3_000_000_000),
        )

    audio = read(path)["customer audio"]
    assert audio.audio_seconds == pytest.approx(len(opus) * OPUS_FRAME / 48_000, abs=0.03)
    with av.open(str(path)) as container:
        assert float(container.duration or 0) / av.time_base < 3  # not 17 hours


def test_writing_after_close_raises_and_close_is_idempotent(tmp_path: Path, opus: list[Frame]) -> None:
    recording = Recording.open(tmp_path / "closed.mkv", clock=Clock())
    recording.write("customer", "audio", "opus", opus[0].payload, 0, True)
    recording.close()
    recording.close()
    with pytest.raises(RecordingError, match="closed"):
        recording.write("customer", "audio", "opus", opus[1].payload, OPUS_FRAME, True)
    assert read(tmp_path / "closed.mkv")["customer audio"].samples == OPUS_FRAME


def test_a_garbage_frame_is_written_as_is_and_the_file_still_plays(tmp_path: Path, vp8: list[Frame]) -> None:
    # The gateway forwards without parsing; a corrupt frame costs that frame, never the file.
    garbage = Frame(bytes([0x01]) + bytes(range(256)) * 8, keyframe=False)
    frames = [*vp8[:30], garbage, *vp8[30:]]
    clock = Clock()
    path = tmp_path / "garbage.mkv"
    with Recording.open(path, participants=["customer"], clock=clock) as recording:
        play(recording, clock, Source("customer", "video", "VP8", frames, start=0.0))

    video = read(path)["customer video"]
    assert video.decode_errors <= 1  # the garbage itself
    assert abs(len(video.frame_times) - VIDEO_FRAMES) <= 1  # every real frame around it
    assert video.frame_times == sorted(video.frame_times)


def test_a_first_keyframe_that_is_not_one_is_refused_and_the_stream_waits(
    tmp_path: Path, vp8: list[Frame]
) -> None:
    clock = Clock()
    path = tmp_path / "bad-start.mkv"
    with Recording.open(path, participants=["customer"], clock=clock) as recording:
        with pytest.raises(RecordingError, match="VP8"):
            recording.write("customer", "video", "VP8", b"\x00garbage-that-claims-to-be-a-keyframe", 0, True)
        play(recording, clock, Source("customer", "video", "VP8", vp8, start=0.5, first_rtp=3000))

    video = read(path)["customer video"]
    assert abs(len(video.frame_times) - VIDEO_FRAMES) <= 1
    assert video.start == pytest.approx(0.5, abs=0.001)


@pytest.mark.parametrize(
    ("kind", "codec", "payload", "message"),
    [
        ("audio", "PCMU", b"\xff" * 160, "cannot record audio in PCMU"),
        ("video", "VP9", b"\x00" * 100, "cannot record video in VP9"),
        ("audio", "opus", b"", "empty"),
        ("video", "H264", b"\x00\x00\x00\x01\x65" + bytes(200), "SPS and PPS"),
        (
            "video",
            "H264",
            b"".join(b"\x00\x00\x00\x01" + bytes([nal]) + b"\xff" * 30 for nal in (0x67, 0x68, 0x65)),
            "H.264",
        ),
    ],
)
def test_what_cannot_be_recorded_raises_recording_error(
    tmp_path: Path, kind: Kind, codec: str, payload: bytes, message: str
) -> None:
    with (
        Recording.open(tmp_path / "refused.mkv", clock=Clock()) as recording,
        pytest.raises(RecordingError, match=message),
    ):
        recording.write("customer", kind, codec, payload, 0, True)


def test_an_existing_recording_is_never_overwritten(tmp_path: Path, opus: list[Frame]) -> None:
    path = tmp_path / "a" / "b" / "kept.mkv"
    with Recording.open(path, clock=Clock()) as recording:
        recording.write("expert", "audio", "opus", opus[0].payload, 0, True)
    before = path.read_bytes()
    with pytest.raises(RecordingError, match="cannot create") as raised:
        Recording.open(path, clock=Clock())
    assert isinstance(raised.value.__cause__, FileExistsError)
    assert path.read_bytes() == before
    # The streams nobody sent still have their (empty) placeholder tracks.
    assert set(read(path)) == {"customer audio", "customer video", "expert audio", "expert video"}


def test_a_recording_that_received_nothing_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "silent.mkv"
    recording = Recording.open(path, clock=Clock())
    assert path.exists()  # created at open, so a bad path fails there
    recording.close()
    assert not path.exists()
    assert recording.paths == []


def test_pyav_errors_surface_as_recording_error_with_their_cause(tmp_path: Path, opus: list[Frame]) -> None:
    directory = tmp_path / "vanishing"
    recording = Recording.open(directory / "lost.mkv", clock=Clock())
    recording.write("customer", "audio", "opus", opus[0].payload, 0, True)
    shutil.rmtree(directory)  # FFmpeg opens the file only when it writes the header
    with pytest.raises(RecordingError, match="header") as raised:
        recording.close()
    assert isinstance(raised.value.__cause__, av.FFmpegError)


def write_aged(path: Path, now: datetime, age: timedelta) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    moment = (now - age).timestamp()
    os.utime(path, (moment, moment))
    return path


def test_retention_deletes_only_expired_recordings(tmp_path: Path) -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    old = [
        write_aged(tmp_path / "a.mkv", now, timedelta(days=31)),
        write_aged(tmp_path / "a.2.mkv", now, timedelta(days=40)),
        write_aged(tmp_path / "2026-10" / "b.MKV", now, timedelta(days=30, seconds=1)),
    ]
    kept = [
        write_aged(tmp_path / "recent.mkv", now, timedelta(days=29)),
        write_aged(tmp_path / "edge.mkv", now, timedelta(days=30)),
        write_aged(tmp_path / "notes.txt", now, timedelta(days=400)),
        write_aged(tmp_path / "2026-10" / "index.json", now, timedelta(days=400)),
    ]
    (tmp_path / "link.mkv").symlink_to(old[0])

    deleted = delete_expired(tmp_path, older_than_days=30, now=now)

    assert sorted(deleted) == sorted(old)
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in kept)
    assert (tmp_path / "link.mkv").is_symlink()


def test_retention_of_a_missing_directory_deletes_nothing(tmp_path: Path) -> None:
    assert delete_expired(tmp_path / "never-created", 30, datetime.now(UTC)) == []


def test_retention_refuses_a_naive_now(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone"):
        delete_expired(tmp_path, 30, datetime(2026, 11, 24))  # naive: the mistake under test
