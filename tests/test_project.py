"""The project's own promises: README, compose file and settings stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from concierge.config import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_readme_starts_with_one_sentence_and_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    before_code, _, rest = text.partition("```sh\n")
    assert len([line for line in before_code.splitlines() if line.strip()]) == 1
    commands = rest.partition("```")[0].splitlines()
    assert [line.split()[:2] for line in commands] == [["make", "run"], ["make", "test"]]


def test_readme_documents_every_setting() -> None:
    text = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(CONCIERGE_[A-Z_]+)` \|", text, re.M))
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert settings <= documented
    assert documented - settings == {"CONCIERGE_TEST_POSTGRES_URL", "CONCIERGE_TEST_REDIS_URL"}


def test_compose_runs_the_service_with_healthy_postgres_and_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"concierge", "postgres", "redis", "coturn"}
    assert all("healthcheck" in services[name] for name in ("concierge", "postgres", "redis"))
    # coturn and the service share the TURN secret: browsers get credentials coturn accepts.
    turn = " ".join(services["coturn"]["command"])
    assert "--use-auth-secret" in turn
    assert "--static-auth-secret=${CONCIERGE_TURN_SECRET:-change-me-turn-secret}" in turn
    assert services["concierge"]["environment"]["CONCIERGE_TURN_SECRET"] == (
        "${CONCIERGE_TURN_SECRET:-change-me-turn-secret}"
    )
    app = services["concierge"]
    assert app["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    # The compose environment is a valid configuration (with ${…:-} defaults applied).
    for name, value in app["environment"].items():
        monkeypatch.setenv(name, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.database.startswith("postgresql+asyncpg://concierge:concierge@postgres:5432/")
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - inside a container
    assert [url.split(":")[0] for url in settings.ice.urls] == ["stun", "turn", "turn"]
    dockerfile = app["build"]["dockerfile_inline"]
    for package in ("concierge", "knowledge", "bots", "matcher", "billing", "video_gateway"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_each_package_is_importable_and_says_what_it_is_for() -> None:
    import importlib

    for package in ("bots", "matcher", "video_gateway", "billing", "knowledge", "concierge"):
        module = importlib.import_module(package)
        assert len(module.__doc__ or "") > 20
