"""Logs are structured, JSON off a terminal, and never carry a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from concierge.config import load_settings
from concierge.logs import REDACTED, configure_logging


@pytest.fixture
def captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, str]]:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CONCIERGE_SECRET_KEY", "s" * 20 + "-very-secret-value")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()  # not a TTY, so the format is JSON
    settings = load_settings()
    configure_logging(settings, stream)
    yield stream, settings.signing_key.decode()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secrets_tokens_and_url_passwords_never_reach_the_log(captured: tuple[io.StringIO, str]) -> None:
    stream, secret = captured
    log = structlog.get_logger("test")
    log.info(
        "connecting",
        url="postgresql://app:pa55word@db:5432/concierge",
        bot_token="123456:ABC-telegram",
        headers={"Authorization": "Bearer abc", "Accept": "text/html"},
        note=f"the key is {secret}",
        items=["redis://:redispass@cache:6379/0"],
    )
    logging.getLogger("aiohttp.server").error("stdlib says %s", f"key={secret}")
    output = stream.getvalue()
    for leaked in (secret, "pa55word", "ABC-telegram", "Bearer abc", "redispass"):
        assert leaked not in output
    first, second = lines(stream)
    assert first["event"] == "connecting"
    assert first["level"] == "info"
    assert first["url"] == "postgresql://app:***@db:5432/concierge"
    assert first["bot_token"] == REDACTED
    assert first["headers"] == {"Authorization": REDACTED, "Accept": "text/html"}
    assert first["items"] == ["redis://:***@cache:6379/0"]
    assert "timestamp" in first
    assert second["logger"] == "aiohttp.server"
    assert second["event"] == f"stdlib says key={REDACTED}"


def test_the_level_setting_filters(captured: tuple[io.StringIO, str]) -> None:
    stream, _ = captured
    structlog.get_logger("test").debug("too chatty")
    structlog.get_logger("test").warning("worth reading")
    assert [line["event"] for line in lines(stream)] == ["worth reading"]
