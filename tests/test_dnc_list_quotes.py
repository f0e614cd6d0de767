"""State and litigator lists with a stray quote (issue 20, "DNC uploads").

A file holding `\\r"` made the csv module raise `_csv.Error`: HTTP 500 through POST /v1/dnc/...
and a traceback from the CLI. Now the load is refused whole, naming the line (422, exit 2), and a
quote that swallows the lines after it refuses the load instead of dropping their numbers.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from consent import dnc
from outbound.cli import app

AT = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
STRAY_QUOTE = b'phone\r\n3055550100\r"\n3055550101\n'        # the probe's `\r"`


def no_audit(*_args, **_kwargs) -> None:
    raise AssertionError("a refused load must audit nothing")


def load(session, tmp_path: Path, kind: str, content: bytes, audit=no_audit):
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    if kind == "state":
        return dnc.import_state_list(session, "FL", path, at=AT, actor="ann", audit=audit)
    return dnc.import_litigator_list(session, path, at=AT, actor="ann", audit=audit)


@pytest.mark.parametrize("kind", ["state", "litigator"])
@pytest.mark.parametrize("content,line,reason", [
    (STRAY_QUOTE, 3, "quoted_field_over_lines"),
    # A quote opened in another column would hide the next row's number inside that cell.
    (b'name,phone\nann,3055550100\n"bob,3055550101\ncid,3055550102\n', 3, "quoted_field_over_lines"),
    (b'phone,name\r3055550100,"a\r3055550101,b\r', 2, "quoted_field_over_lines"),
    (b'phone\n"' + b"9" * 140_000 + b'"\n', 2, "unreadable_csv_line"),                   # past csv's field limit
])
def test_a_list_the_csv_reader_cannot_take_is_refused_naming_the_line(session, tmp_path, kind, content, line,
                                                                     reason):
    with pytest.raises(dnc.MalformedList) as refused:
        load(session, tmp_path, kind, content)
    [sample] = refused.value.samples
    assert sample.line == line and sample.reason.startswith(reason)
    assert f"line {line}: {reason}" in str(refused.value) and "the current list is kept" in str(refused.value)
    assert dnc.current_sources(session) == []


def test_lone_carriage_returns_end_lines(session, tmp_path):
    """Old Mac line ends: the default StringIO saw one line holding \\r and csv gave up."""
    report = load(session, tmp_path, "state", b"name,phone\ra,3055550100\rb,3055550101\r",
                  audit=lambda *_args, **_kwargs: None)
    assert (report.entries, report.lines) == (2, 2)


def test_the_api_answers_422_with_the_line(env_api_users):
    client = TestClient(create_app())
    compliance = env_api_users.headers("compliance")
    for route in ("/v1/dnc/state/FL", "/v1/dnc/litigator"):
        response = client.post(route, files={"file": ("fl.csv", STRAY_QUOTE, "text/csv")}, headers=compliance)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail["loaded"] is False and "fl.csv" in detail["error"] and "/tmp" not in response.text
        [sample] = detail["rejected_samples"]
        assert sample["line"] == 3 and sample["reason"].startswith("quoted_field_over_lines")
        assert sample["text"] == '"'


def test_the_cli_exits_2_naming_the_line(outbound_env, cli_runner, tmp_path):
    path = tmp_path / "lit.csv"
    path.write_bytes(STRAY_QUOTE)
    for args in (["dnc", "import", "state", "FL", str(path)], ["dnc", "import", "litigator", str(path)]):
        result = cli_runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "quoted_field_over_lines" in result.output and "3" in result.output
