"""The embedded Redis is a real redis-server owned by the process, and it goes when we go."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from concierge.embedded_redis import EmbeddedRedis
from concierge.redis_keys import channel_name, entity_key


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
    return "State:\tZ" not in status


async def test_start_use_and_stop(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = await server.start()
    pid = server.pid
    assert pid is not None
    assert _alive(pid)
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("server")
        assert str(info["redis_version"]).startswith(("6.", "7."))
        assert info["tcp_port"] == 0  # unix socket only: nothing else on the machine can reach it

        key = entity_key("request", "req_1", "claim")
        assert await client.set(key, "expert-1", nx=True)
        assert not await client.set(key, "expert-2", nx=True)
        assert await client.get(key) == b"expert-1"

        pubsub = client.pubsub()
        await pubsub.subscribe(channel_name("lifecycle"))
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        assert await client.publish(channel_name("lifecycle"), "claimed") == 1
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        assert message["data"] == b"claimed"
        await pubsub.aclose()

        script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert await script(keys=["concierge:{t}:n"], args=[5]) == 5
    finally:
        await client.aclose()
    socket_path = server.socket_path
    await server.stop()
    assert not _alive(pid)
    assert not socket_path.exists()
    await server.stop()  # stopping twice is harmless


async def test_data_survives_a_restart_in_the_same_data_dir(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    client = aioredis.Redis.from_url(await server.start())
    await client.set("concierge:{t}:kept", "yes")
    await client.aclose()
    await server.stop()

    again = EmbeddedRedis(tmp_path)
    client = aioredis.Redis.from_url(await again.start())
    try:
        assert await client.get("concierge:{t}:kept") == b"yes"
    finally:
        await client.aclose()
        await again.stop()


def test_the_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """Even a SIGKILLed service (no cleanup at all) leaves no redis-server behind."""
    program = (
        "import asyncio, sys, time\n"
        "from pathlib import Path\n"
        "from concierge.embedded_redis import EmbeddedRedis\n"
        f"server = EmbeddedRedis(Path({str(tmp_path)!r}))\n"
        "asyncio.run(server.start())\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid)
    finally:
        parent.kill()
        parent.wait()


async def test_a_server_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    server = EmbeddedRedis(blocker)  # its data dir would be inside a regular file
    with pytest.raises(OSError, match="Not a directory"):
        await asyncio.wait_for(server.start(), 15)
    assert server.pid is None
