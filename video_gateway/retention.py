"""Deletes recordings older than the retention period."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

# What recording.py writes (overflow files included: room.2.mkv); WebM in case it is ever used.
RECORDING_SUFFIXES = frozenset({".mkv", ".webm"})


def delete_expired(directory: Path, older_than_days: int, now: datetime) -> list[Path]:
    """Delete recordings under ``directory`` (subdirectories included) last modified more than
    ``older_than_days`` before ``now``; return them. Other files, symlinks and a missing
    directory are left alone.
    """
    if now.tzinfo is None:
        # A naive datetime would be read as local time and shift the cut-off by the UTC offset.
        raise ValueError("now must be timezone-aware")
    if older_than_days < 0:
        raise ValueError("older_than_days must not be negative")
    cutoff = (now - timedelta(days=older_than_days)).timestamp()
    deleted: list[Path] = []
    for root, _, names in os.walk(directory):  # a missing directory yields nothing
        for name in sorted(names):
            path = Path(root, name)
            if path.suffix.lower() not in RECORDING_SUFFIXES:
                continue
            try:
                status = path.lstat()
                if stat.S_ISREG(status.st_mode) and status.st_mtime < cutoff:
                    path.unlink()
                    deleted.append(path)
            except FileNotFoundError:
                continue  # deleted meanwhile by someone else: nothing left to do
    return deleted
