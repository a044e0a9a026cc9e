"""Configuration: defaults, every invalid value named, unknown variables caught, the secret kept."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from concierge.cli import main
from concierge.config import LogFormat, load_settings
from concierge.errors import ConfigError


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def test_defaults_are_the_documented_ones(data_dir: Path) -> None:
    settings = load_settings()
    assert settings.data_dir == data_dir.resolve()
    assert settings.database == f"sqlite+aiosqlite:///{data_dir.resolve() / 'concierge.db'}"
    assert settings.embedded_redis
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.commission_percent == Decimal(20)
    assert settings.default_currency == "EUR"
    assert settings.log_format is LogFormat.AUTO


def test_postgres_urls_get_the_async_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", "postgres://app:pw@db:5432/concierge")
    assert load_settings().database == "postgresql+asyncpg://app:pw@db:5432/concierge"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CONCIERGE_HTTP_PORT", "eighty", "valid integer"),
        ("CONCIERGE_HTTP_PORT", "70000", "less than or equal to 65535"),
        ("CONCIERGE_DATABASE_URL", "mysql://x@y/z", "unsupported database"),
        ("CONCIERGE_DATABASE_URL", "concierge.db", "must be a URL"),
        ("CONCIERGE_REDIS_URL", "http://localhost:6379", "redis://"),
        ("CONCIERGE_PUBLIC_URL", "ftp://example.org", "http"),
        ("CONCIERGE_PUBLIC_URL", "https://example.org/?a=1", "query"),
        ("CONCIERGE_COMMISSION_PERCENT", "120", "less than or equal to 100"),
        ("CONCIERGE_COMMISSION_PERCENT", "twenty", "decimal"),
        ("CONCIERGE_DEFAULT_CURRENCY", "EURO", "three-letter"),
        ("CONCIERGE_DEFAULT_CURRENCY", "ABC", "unknown currency"),
        ("CONCIERGE_LOG_LEVEL", "loud", "debug"),
        ("CONCIERGE_HTTP_HOST", "   ", "empty"),
        ("CONCIERGE_ARTICLE_THRESHOLD", "1.5", "less than or equal to 1"),
        ("CONCIERGE_ARTICLE_THRESHOLD", "close", "valid number"),
    ],
)
def test_an_invalid_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert expected in message


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_HTTP_PORT", "-1")
    monkeypatch.setenv("CONCIERGE_DEFAULT_CURRENCY", "xx")
    monkeypatch.setenv("CONCIERGE_HTTP_PROT", "9000")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "CONCIERGE_HTTP_PORT" in message
    assert "CONCIERGE_DEFAULT_CURRENCY" in message
    assert "CONCIERGE_HTTP_PROT: unknown setting (did you mean CONCIERGE_HTTP_PORT?)" in message


def test_a_rejected_secret_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_SECRET_KEY", "hunter2-short")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "CONCIERGE_SECRET_KEY" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_REDIS_URL", "")
    monkeypatch.setenv("CONCIERGE_HTTP_PORT", "")
    settings = load_settings()
    assert settings.embedded_redis
    assert settings.http_port == 8080


def test_secret_key_is_generated_once_and_kept_private(data_dir: Path) -> None:
    first = load_settings().signing_key
    key_file = data_dir / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_settings().signing_key == first
    assert key_file.read_text().strip().encode() == first


def test_an_explicit_secret_key_wins_and_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setenv("CONCIERGE_SECRET_KEY", "k" * 40)
    assert load_settings().signing_key == b"k" * 40
    assert not (data_dir / "secret_key").exists()


def test_an_unwritabledata_dir_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(blocker / "var"))
    with pytest.raises(ConfigError, match="CONCIERGE_SECRET_KEY is unset"):
        load_settings()


def test_cli_stops_with_exit_2_and_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_HTTP_PORT", "http")
    result = CliRunner().invoke(main, ["db", "current"])
    assert result.exit_code == 2
    assert "CONCIERGE_HTTP_PORT='http'" in result.output
