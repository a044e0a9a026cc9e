"""Recordings for logged-in operators only: each time one is opened, who, when, from where and
with what browser is written to `recording_accesses` before a byte is sent."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from concierge.appkeys import SESSIONS, SETTINGS
from concierge.model import RecordingAccess, Room
from concierge.ops.guard import client_address, operator_of
from concierge.ops.pages import bad_input
from concierge.video import RECORDINGS


async def recording_file(request: web.Request) -> web.StreamResponse:
    session_id = request.match_info["session_id"]
    async with request.config_dict[SESSIONS]() as db:
        name = await db.scalar(select(Room.recording).where(Room.session_id == session_id))
    if not name:
        return bad_input(request, "This session has no recording.", 404)
    directory = (request.config_dict[SETTINGS].data_dir / RECORDINGS).resolve()
    path = (request.config_dict[SETTINGS].data_dir / name).resolve()
    if not path.is_relative_to(directory):  # a tampered row must not serve any other file
        return bad_input(request, "This recording is stored outside the recordings directory.", 404)
    if not path.is_file():
        return bad_input(request, "This recording was deleted (retention period over).", 410)
    async with request.config_dict[SESSIONS].begin() as db:
        db.add(
            RecordingAccess(
                operator_id=operator_of(request).id,
                session_id=session_id,
                ip=client_address(request)[:64],
                user_agent=request.headers.get("User-Agent", "")[:512],
            )
        )
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "video/x-matroska",
            "Content-Disposition": f'attachment; filename="{session_id}.mkv"',
        },
    )
