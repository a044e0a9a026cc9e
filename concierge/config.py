"""The one settings object, read from `CONCIERGE_*` environment variables.

`load_settings()` is called once at start-up; an invalid or unknown variable stops the
process with a message that names it, rather than surfacing later as a strange failure.
Every variable is listed in the README's configuration table.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from billing.quotes import MinuteRounding, QuoteError, parse_category_commissions
from concierge.errors import ConfigError
from concierge.languages import check_language
from concierge.money import check_currency
from matcher.embedders import EMBEDDERS
from matcher.language import DEFAULT_LANGUAGES, detectable
from matcher.ranking import Weights
from video_gateway.ice import IceServers, check_ice_urls
from video_gateway.rooms import RelayMethod

ENV_PREFIX = "CONCIERGE_"
# Variables with this prefix belong to the test suite, not to the service.
_TEST_PREFIX = "CONCIERGE_TEST_"
_SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name
_MIN_SECRET_LENGTH = 32


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON unless stderr is a terminal
    JSON = "json"
    CONSOLE = "console"


class TelegramMode(StrEnum):
    POLLING = "polling"  # the bot asks Telegram for updates: development, one process
    WEBHOOK = "webhook"  # Telegram posts updates to /webhooks/telegram: production, many processes


class RoomMedia(StrEnum):
    DIRECT = "direct"  # browser to browser unless the session is recorded
    RELAY = "relay"  # every room through the gateway: server-authoritative metering


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def normalise_database_url(url: str) -> str:
    """Map the URLs people write to the async drivers the service uses."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must be a URL such as postgresql://user@host/db or sqlite:///path.db")
    drivers = {
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
        "postgres": "postgresql+asyncpg",
        "postgresql": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
    }
    if scheme not in drivers:
        raise ValueError(f"unsupported database {scheme!r}; use postgresql:// or sqlite:///")
    return f"{drivers[scheme]}://{rest}"


def _check_redis_url(url: str) -> str:
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("must start with redis://, rediss:// or unix://")
    return url


def _check_embedder(spec: str) -> str:
    if spec in {"use", "e5", "minilm"} or (spec.startswith("sentence-transformers:") and spec[22:]):
        return spec
    raise ValueError(f"use one of {', '.join(EMBEDDERS)}")


def _check_weights(text: str) -> str:
    Weights.parse(text)
    return text


def _check_detector_languages(text: str) -> str:
    codes = text.replace(",", " ").split()
    if len(codes) < 2:
        raise ValueError("name at least two ISO 639-1 codes")
    for code in codes:
        check_language(code)
        if not detectable(code):
            raise ValueError(f"the language detector cannot detect {code!r}")
    return text


def _check_api_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    return url


def _check_category_commissions(text: str) -> str:
    try:
        parse_category_commissions(text)
    except QuoteError as exc:
        raise ValueError(str(exc)) from None
    return text


def _check_telegram_token(token: SecretStr) -> SecretStr:
    # Telegram tokens look like 123456789:AA…; a typo here would only show as a 401 much later.
    bot_id, sep, secret = token.get_secret_value().partition(":")
    if not sep or not bot_id.isdigit() or not secret:
        raise ValueError("must look like <bot id>:<secret>, as @BotFather gives it")
    return token


def _check_ice_servers(text: str) -> str:
    check_ice_urls(text)
    return text


def _check_addresses(text: str) -> str:
    for address in text.replace(",", " ").split():
        ipaddress.ip_address(address)  # ValueError names the bad one
    return text


_OFFSET = re.compile(r"^(\d{1,4})([mhd])$")
_OFFSET_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}


def reminder_minutes(text: str) -> tuple[int, ...]:
    """`"24h 10m"` → (1440, 10): how long before a booking each reminder goes out, longest first."""
    minutes = set()
    for part in text.replace(",", " ").split():
        match = _OFFSET.match(part)
        if match is None or int(match.group(1)) == 0:
            raise ValueError(f"{part!r} is not an offset like 24h, 90m or 2d")
        minutes.add(int(match.group(1)) * _OFFSET_MINUTES[match.group(2)])
    if any(m > 14 * 24 * 60 for m in minutes):
        raise ValueError("a reminder more than 14 days ahead would come before most bookings are made")
    return tuple(sorted(minutes, reverse=True))


def _check_reminders(text: str) -> str:
    reminder_minutes(text)
    return text


def _check_public_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return url.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # an empty variable (common in compose files) means "unset"
        frozen=True,
        case_sensitive=False,
        extra="ignore",
    )

    data_dir: Path = Path("var")
    database_url: Annotated[str, AfterValidator(normalise_database_url)] | None = None
    redis_url: Annotated[str, AfterValidator(_check_redis_url)] | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    public_url: Annotated[str, AfterValidator(_check_public_url)] | None = None
    secret_key: SecretStr | None = None
    commission_percent: Decimal = Field(default=Decimal(20), ge=0, le=100, decimal_places=2)
    default_currency: Annotated[str, AfterValidator(check_currency)] = "EUR"
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.AUTO
    embedder: Annotated[str, AfterValidator(_check_embedder)] = "use"
    match_weights: Annotated[str, AfterValidator(_check_weights)] = ""
    matcher_languages: Annotated[str, AfterValidator(_check_detector_languages)] = " ".join(DEFAULT_LANGUAGES)
    matcher_exact_limit: int = Field(default=20_000, ge=1, le=10_000_000)
    # One: a request embeds one sentence, and idle BLAS threads spin on the other cores
    # (make bench-bots: the same throughput for 1.8 cores instead of 1 with two threads).
    matcher_threads: int = Field(default=1, ge=1, le=256)
    # Rescaled similarity at which a self-help article "closely matches" a request (calibrated
    # on tests/data/articles_eval.jsonl, README "Self-help answers"); 1 switches articles off.
    article_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    telegram_token: Annotated[SecretStr, AfterValidator(_check_telegram_token)] | None = None
    telegram_mode: TelegramMode = TelegramMode.POLLING
    telegram_api_url: Annotated[str, AfterValidator(_check_api_url)] = "https://api.telegram.org/bot"
    telegram_webhook_secret: SecretStr | None = None
    discord_token: SecretStr | None = None
    discord_api_url: Annotated[str, AfterValidator(_check_api_url)] = "https://discord.com/api/v10"
    offer_timeout_seconds: int = Field(default=60, ge=5, le=3600)
    offer_batch: int = Field(default=3, ge=1, le=20)
    conversation_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    max_message_chars: int = Field(default=1000, ge=50, le=4000)
    messages_per_minute: int = Field(default=20, ge=1, le=10_000)
    community_messages_per_minute: int = Field(default=300, ge=1, le=1_000_000)
    mute_strikes: int = Field(default=3, ge=1, le=100)
    mute_minutes: int = Field(default=60, ge=1, le=60 * 24 * 365)
    ice_servers: Annotated[str, AfterValidator(_check_ice_servers)] = ""
    turn_secret: SecretStr | None = None
    media_addresses: Annotated[str, AfterValidator(_check_addresses)] = ""
    room_media: RoomMedia = RoomMedia.DIRECT
    relay_method: RelayMethod = RelayMethod.FORWARD
    room_link_minutes: int = Field(default=10, ge=1, le=24 * 60)
    room_grace_minutes: int = Field(default=15, ge=1, le=24 * 60)
    recording_retention_days: int = Field(default=30, ge=1, le=3650)
    category_commission: Annotated[str, AfterValidator(_check_category_commissions)] = "health=0"
    max_session_minutes: int = Field(default=60, ge=1, le=8 * 60)
    minimum_minutes: int = Field(default=1, ge=0, le=60)
    minute_rounding: MinuteRounding = MinuteRounding.STARTED_MINUTE
    payment_minutes: int = Field(default=30, ge=30, le=24 * 60)
    refund_window_hours: int = Field(default=72, ge=0, le=24 * 365)
    # Due jobs (reminders, expiries): how often each process looks, and how long a process
    # that claimed a job has before another may take it over (longer than any handler runs).
    scheduler_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    scheduler_lease_seconds: int = Field(default=60, ge=5, le=3600)
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: Annotated[str, AfterValidator(_check_api_url)] | None = None
    # Bookings: how far ahead, when the card is held (a hold must outlive the session), until when
    # it can be paid, how long an expert has to confirm, and when reminders go out.
    booking_days_ahead: int = Field(default=30, ge=1, le=365)
    booking_payment_lead_hours: int = Field(default=120, ge=1, le=144)
    booking_pay_by_minutes: int = Field(default=60, ge=5, le=24 * 60)
    booking_confirm_hours: int = Field(default=12, ge=1, le=72)
    reminders: Annotated[str, AfterValidator(_check_reminders)] = "24h 10m"
    # The operator console (/ops): sessions end after this long idle, or this long after login.
    ops_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    ops_session_hours: int = Field(default=12, ge=1, le=24 * 7)
    # Failed logins allowed per operator name and per address before a lock-out of that length.
    ops_login_attempts: int = Field(default=5, ge=1, le=1000)
    ops_lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)

    @model_validator(mode="after")
    def _stripe_complete(self) -> Settings:
        # Without the webhook secret no payment could ever be confirmed: refuse to start.
        if self.stripe_api_key is not None and self.stripe_webhook_secret is None:
            raise ValueError(
                "CONCIERGE_STRIPE_WEBHOOK_SECRET is needed with CONCIERGE_STRIPE_API_KEY "
                "(payments are confirmed only by signed webhooks)"
            )
        if self.ops_idle_minutes > self.ops_session_hours * 60:
            raise ValueError("CONCIERGE_OPS_IDLE_MINUTES cannot exceed CONCIERGE_OPS_SESSION_HOURS")
        if self.minimum_minutes > self.max_session_minutes:
            raise ValueError("CONCIERGE_MINIMUM_MINUTES cannot exceed CONCIERGE_MAX_SESSION_MINUTES")
        return self

    @property
    def category_commissions(self) -> dict[str, Decimal]:
        return parse_category_commissions(self.category_commission)

    @property
    def weights(self) -> Weights:
        return Weights.parse(self.match_weights)

    @property
    def ice(self) -> IceServers:
        secret = self.turn_secret.get_secret_value().encode() if self.turn_secret else None
        return IceServers(tuple(check_ice_urls(self.ice_servers)), turn_secret=secret)

    @property
    def media_address_list(self) -> list[str]:
        return self.media_addresses.replace(",", " ").split()

    @property
    def detector_languages(self) -> list[str]:
        return self.matcher_languages.replace(",", " ").split()

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < _MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {_MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("http_host")
    @classmethod
    def _host_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    # Derived values: always present once `load_settings` has resolved the defaults.

    @property
    def database(self) -> str:
        assert self.database_url is not None, "call load_settings()"
        return self.database_url

    @property
    def base_url(self) -> str:
        assert self.public_url is not None, "call load_settings()"
        return self.public_url

    @property
    def signing_key(self) -> bytes:
        assert self.secret_key is not None, "call load_settings()"
        return self.secret_key.get_secret_value().encode()

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


def _field_env_names() -> dict[str, str]:
    return {f"{ENV_PREFIX}{name.upper()}": name for name in Settings.model_fields}


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    known = _field_env_names()
    messages = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(_TEST_PREFIX) or upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        messages.append(f"{name}: unknown setting{hint}")
    return messages


def _describe(error: Mapping[str, Any]) -> str:
    field = str(error["loc"][0]) if error["loc"] else "?"
    name = f"{ENV_PREFIX}{field.upper()}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if field in {"secret_key", "telegram_token", "discord_token", "telegram_webhook_secret", "turn_secret"}:
        # never echo a secret, even a rejected one
        return f"{name}: {message}"
    return f"{name}={error.get('input')!r}: {message}"


def _load_or_create_secret(data_dir: Path) -> SecretStr:
    path = data_dir / _SECRET_KEY_FILE
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once must not write different keys.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        key = path.read_text().strip()
    except FileExistsError:
        key = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"CONCIERGE_SECRET_KEY is unset and {path} cannot be used to keep one: {exc}"
        ) from exc
    if len(key) < _MIN_SECRET_LENGTH:
        raise ConfigError(f"{path} holds a secret key shorter than {_MIN_SECRET_LENGTH} characters")
    return SecretStr(key)


def load_settings() -> Settings:
    """Read, check and complete the settings; raise ConfigError naming every bad variable."""
    problems = _unknown_variables(os.environ)
    settings: Settings | None = None
    try:
        settings = Settings()
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors())
    if problems or settings is None:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))

    data_dir = settings.data_dir.expanduser().resolve()
    resolved: dict[str, Any] = {"data_dir": data_dir}
    if settings.database_url is None:
        resolved["database_url"] = f"sqlite+aiosqlite:///{data_dir / 'concierge.db'}"
    if settings.public_url is None:
        resolved["public_url"] = f"http://{settings.http_host}:{settings.http_port}"
    if settings.secret_key is None:
        resolved["secret_key"] = _load_or_create_secret(data_dir)
    return settings.model_copy(update=resolved)
