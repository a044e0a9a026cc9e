"""Writing a new migration: revisions render our column types without importing the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from concierge.cli import main
from concierge.migrate import head_revision

VERSIONS = Path(__file__).resolve().parent.parent / "concierge" / "migrations" / "versions"


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)
def test_db_revision_on_an_up_to_date_database_writes_an_empty_revision(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    before = set(VERSIONS.glob("*.py"))
    head = head_revision()
    try:
        result = CliRunner().invoke(main, ["db", "revision", "-m", "nothing to do"])
        assert result.exit_code == 0, result.output
        (written,) = set(VERSIONS.glob("*.py")) - before
        text = written.read_text()
        assert f"Revises: {head}" in text
        upgrade = text.partition("def upgrade() -> None:")[2].partition("def downgrade")[0]
        assert "op." not in upgrade  # the model and the migrations agree: nothing to change
    finally:
        for stray in set(VERSIONS.glob("*.py")) - before:
            stray.unlink()


def test_db_revision_refuses_an_unmigrated_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["db", "revision", "-m", "x"])
    assert result.exit_code == 1
    assert "concierge db upgrade" in result.output
