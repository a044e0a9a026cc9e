"""`concierge match` against the experts in the database, one request or a batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from concierge.cli import main


@pytest.fixture
def loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    return runner


def test_match_prints_the_documented_json(loaded: CliRunner, tmp_path: Path) -> None:
    assert loaded.invoke(main, ["demo", "load"]).exit_code == 0
    result = loaded.invoke(
        main,
        ["match", "Quiero practicar conversación en español", "--include-offline", "--top", "2", "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"language", "category", "category_confidence", "when", "budget", "experts"} <= set(payload)
    assert payload["language"] == "es"
    assert payload["category"] == "languages"
    assert len(payload["experts"]) == 2
    assert payload["experts"][0]["id"] == "demo-061"
    assert set(payload["experts"][0]) == {"id", "score", "reasons"}
    assert (tmp_path / "var" / "index" / "experts.faiss").exists()

    at = loaded.invoke(
        main, ["match", "bike brakes", "--at", "2026-11-28T10:00", "--timezone", "Europe/Berlin", "--json"]
    )
    assert json.loads(at.stdout)["when"] == "2026-11-28T10:00:00+01:00"


def test_batch_answers_line_by_line_and_reports_bad_lines(loaded: CliRunner, tmp_path: Path) -> None:
    assert loaded.invoke(main, ["demo", "load"]).exit_code == 0
    batch = tmp_path / "queries.jsonl"
    batch.write_bytes(
        b'{"id": "q1", "text": "Mon wifi ne marche plus"}\n'
        b"not json\n"
        b'{"id": "q3", "text": "\xf0\x9f\x98\x80"}\n'
        b'{"id": "q4"}\n'
        b"\n"
        b'{"id": "q6", "text": "my bike brakes squeal"}\n'
    )
    result = loaded.invoke(main, ["match", "--batch", str(batch), "--include-offline"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row.get("id") for row in rows] == ["q1", None, "q3", None, "q6"]
    assert rows[0]["experts"][0]["id"] == "demo-064"
    assert rows[1]["line"] == 2
    assert "error" in rows[1]
    assert rows[2]["problem"] == "no_words"
    assert rows[2]["no_experts"] == "cannot_understand"
    assert rows[3]["line"] == 4


def test_an_empty_catalogue_says_so(loaded: CliRunner) -> None:
    result = loaded.invoke(main, ["match", "my wifi is broken", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["experts"] == []
    assert payload["no_experts"] == "empty_catalogue"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["match"], "either TEXT or --batch"),
        (["match", "x", "--at", "tomorrow"], "not an ISO date"),
        (["match", "x", "--timezone", "Mars/Olympus"], "--timezone"),
        (["match", "x", "--lang", "klingon"], "two-letter"),
        (["match", "x", "--top", "0"], "--top"),
    ],
)
def test_bad_options_are_refused(loaded: CliRunner, args: list[str], message: str) -> None:
    result = loaded.invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output


def test_an_unusable_embedder_is_a_configuration_error(
    loaded: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_EMBEDDER", "sentence-transformers:/nonexistent/model")
    result = loaded.invoke(main, ["match", "my wifi is broken"])
    assert result.exit_code == 1
    assert (
        "CONCIERGE_EMBEDDER='sentence-transformers:/nonexistent/model' cannot be used here" in result.output
    )
