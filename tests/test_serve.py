"""What `make run` does, as separate processes: migrate, load the demo, serve, stop cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
    env.update(CONCIERGE_DATA_DIR=str(tmp_path / "var"), CONCIERGE_HTTP_PORT=str(free_port()))
    return env


def concierge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "concierge", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def served(environment: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    assert concierge("db", "upgrade", env=environment).returncode == 0
    loaded = concierge("demo", "load", env=environment)
    assert loaded.returncode == 0, loaded.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "concierge", "serve"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.match(r"Concierge is running on (http://127\.0\.0\.1:\d+)", banner)
        assert match, (
            f"unexpected banner {banner!r}; stderr: {process.stderr.read() if process.stderr else ''}"
        )
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_migrate_load_serve_and_stop(served: tuple[subprocess.Popen[str], str]) -> None:
    process, base = served
    assert get(f"{base}/readyz") == (
        200,
        json.dumps({"status": "ready", "checks": {"database": "ok", "redis": "ok"}}),
    )
    status, page = get(f"{base}/")  # no Accept-Language: English
    assert status == 200
    listed = int(re.search(r"(\d+) expert listings", page).group(1))  # type: ignore[union-attr]
    assert listed >= 150

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert process.stderr is not None
    logs = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
    started = next(line for line in logs if line["event"] == "embedded redis started")
    assert any(line["event"] == "embedded redis stopped" for line in logs)
    redis_pid = int(started["pid"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{redis_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{redis_pid}").exists()


def test_a_busy_port_is_a_clear_error(environment: dict[str, str]) -> None:
    assert concierge("db", "upgrade", env=environment).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(environment["CONCIERGE_HTTP_PORT"])))
        taken.listen()
        result = concierge("serve", env=environment)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{environment['CONCIERGE_HTTP_PORT']}" in result.stderr
    assert "CONCIERGE_HTTP_PORT" in result.stderr


def test_serving_an_unmigrated_database_says_what_to_run(environment: dict[str, str]) -> None:
    result = concierge("serve", env=environment)
    assert result.returncode == 1
    assert "run `concierge db upgrade`" in result.stderr
