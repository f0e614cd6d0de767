"""`outbound scrub` and `outbound dnc ...` end to end through the CLI, plus the fast number reader."""
from __future__ import annotations

import csv
import json
import random
import zipfile
from pathlib import Path

import phonenumbers
import pytest

from consent import bulk_numbers
from outbound.cli import app

NATIONAL = ["2125550100", "212,5550101", "3055550100"]


@pytest.fixture
def loaded(outbound_env, cli_runner, tmp_path):
    """Every source loaded: national (zipped), FL state list, litigator list, internal entry."""
    archive = tmp_path / "national.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("all.txt", "\r\n".join(NATIONAL) + "\r\n")
    fl = tmp_path / "fl.txt"
    fl.write_text("3055550100\n3055550101\n")
    litigators = tmp_path / "lit.csv"
    litigators.write_text("name,Cell\nx,2125550102\n")
    for args in (["dnc", "import", "national", str(archive), "--synced-at", "2026-11-01T00:00:00Z"],
                 ["dnc", "import", "state", "FL", str(fl)],
                 ["dnc", "import", "litigator", str(litigators)],
                 ["dnc", "add", "+1 212 555 0103", "--reason", "asked on the phone", "--actor", "ann"]):
        result = cli_runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    return outbound_env


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_scrub_writes_every_column_with_e164_and_blocked_by(loaded, cli_runner, tmp_path):
    contacts = write_csv(tmp_path / "contacts.csv", [
        ["First Name", " Phone ", "note"],
        ["a", "(212) 555-0100", "=HYPERLINK(\"x\")"],
        ["b", "305.555.0100", "+fine"],
        ["c", "+1 212 555 0102", "-1"],
        ["d", "2125550103", "@me"],
        ["e", "2125550199", "ok"],
        ["f", "+44 20 7946 0958", ""],
        ["g", "212-555-0104 x12", ""],
        ["h", "3055550101", "extra", "cells"],
    ])
    out = tmp_path / "result.csv"
    result = cli_runner.invoke(app, ["scrub", str(contacts), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    rows = read_csv(out)
    assert list(rows[0]) == ["First Name", " Phone ", "note", "extra_1", "e164", "blocked_by"]
    assert [(r["e164"], r["blocked_by"]) for r in rows] == [
        ("+12125550100", "national"),
        ("+13055550100", "national;state:FL"),
        ("+12125550102", "litigator"),
        ("+12125550103", "internal"),
        ("+12125550199", ""),
        ("", "invalid_number"),
        ("", "invalid_number"),
        ("+13055550101", "state:FL"),
    ]
    assert [r["note"] for r in rows[:4]] == ["'=HYPERLINK(\"x\")", "'+fine", "'-1", "'@me"]
    assert rows[0][" Phone "] == "(212) 555-0100" and rows[2][" Phone "] == "'+1 212 555 0102"
    assert rows[7]["extra_1"] == "cells"
    assert summary["counts"] == {"internal": 1, "invalid_number": 2, "litigator": 1, "national": 2, "state:FL": 2}
    assert (summary["rows"], summary["valid"], summary["blocked"], summary["clean"], summary["invalid"]) == (8, 6, 5, 1, 2)
    assert summary["invalid_by_reason"] == {"extension_not_allowed": 1, "not_nanp_number": 1}
    assert summary["ragged_rows"] == 1


def test_scrub_refuses_a_file_without_a_phone_column(loaded, cli_runner, tmp_path):
    contacts = write_csv(tmp_path / "c.csv", [["name", "email"], ["a", "a@example.org"]])
    result = cli_runner.invoke(app, ["scrub", str(contacts), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "no phone column; header seen: name, email" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content,message", [(b"", "the file is empty"),
                                             (b"\x00\x00\x01\x02", "binary data"),
                                             (b"phone\n\xff\xfe\xfa\n", "not UTF-8 text")])
def test_scrub_refuses_unreadable_files(outbound_env, cli_runner, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = cli_runner.invoke(app, ["scrub", str(path), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and message in result.output


def test_scrub_without_national_data_warns(outbound_env, cli_runner, tmp_path):
    contacts = write_csv(tmp_path / "c.csv", [["mobile"], ["2125550100"]])
    result = cli_runner.invoke(app, ["scrub", str(contacts), "--out", str(tmp_path / "o.csv"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["national_version"] is None
    assert "no national registry data" in summary["warnings"][0]


def test_status_lists_every_source(loaded, cli_runner):
    result = cli_runner.invoke(app, ["dnc", "status", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["source"]: row for row in json.loads(result.output)}
    assert set(rows) == {"national", "state:FL", "litigator", "internal"}
    assert rows["national"]["entries"] == 3 and rows["national"]["synced_at"] == "2026-11-01T00:00:00Z"
    assert rows["internal"]["entries"] == 1
    human = cli_runner.invoke(app, ["dnc", "status"])
    assert human.exit_code == 0 and "state:FL" in human.output


def test_import_national_with_a_malformed_line_loads_nothing_and_exits_2(outbound_env, cli_runner, tmp_path):
    path = tmp_path / "212.txt"
    path.write_text("2125550100\nbad line\n2125550101\n")
    result = cli_runner.invoke(app, ["dnc", "import", "national", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] is False and report["malformed"] == 1
    assert report["malformed_samples"][0]["line"] == 2 and report["malformed_samples"][0]["text"] == "bad line"
    status = json.loads(cli_runner.invoke(app, ["dnc", "status", "--json"]).output)[0]
    assert status["entries"] == 0 and status["synced_at"] is None


def test_area_code_files_add_up_and_status_shows_them(outbound_env, cli_runner, tmp_path):
    (tmp_path / "212.txt").write_text("2125550100\n")
    (tmp_path / "201.txt").write_text("phone\n\"201\",\"5550100\"\n201-555-0101\n")
    first = cli_runner.invoke(app, ["dnc", "import", "national", str(tmp_path / "212.txt"), "--json",
                                    "--synced-at", "2026-11-01T00:00:00Z"])
    assert first.exit_code == 0, first.output
    second = cli_runner.invoke(app, ["dnc", "import", "national", str(tmp_path / "201.txt"), "--json",
                                     "--synced-at", "2026-11-20T00:00:00Z"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert (report["area_codes_loaded"], report["area_codes_kept"], report["entries"]) == (["201"], ["212"], 3)
    national = json.loads(cli_runner.invoke(app, ["dnc", "status", "--json"]).output)[0]
    assert national["area_codes_held"] == ["201", "212"]
    assert national["oldest_synced_at"] == national["synced_at"] == "2026-11-01T00:00:00Z"
    human = cli_runner.invoke(app, ["dnc", "status"])
    assert "area codes held: 201, 212" in human.output
    replaced = cli_runner.invoke(app, ["dnc", "import", "national", str(tmp_path / "212.txt"), "--json",
                                       "--replace-all"])
    assert json.loads(replaced.stdout)["area_codes_dropped"] == ["201"]


def status_without_ages(cli_runner) -> list[dict]:
    """`dnc status --json` without the ages, which move with the clock between two calls."""
    rows = json.loads(cli_runner.invoke(app, ["dnc", "status", "--json"]).output)
    return [{key: value for key, value in row.items() if key != "age_days"} for row in rows]


def test_a_change_list_with_a_bad_line_changes_nothing_and_exits_2(loaded, cli_runner, tmp_path):
    before = status_without_ages(cli_runner)
    changes = tmp_path / "changes.txt"
    changes.write_text("2125550100,D\n2125550177,A\n2125550178,maybe\n")
    result = cli_runner.invoke(app, ["dnc", "import", "changes", str(changes)])
    assert result.exit_code == 2
    assert "1 malformed line" in result.output and "nothing was loaded" in result.output
    assert "changes.txt:3: '2125550178,maybe'" not in result.output      # reason before text
    assert "changes.txt:3:" in result.output and "'2125550178,maybe'" in result.output
    assert status_without_ages(cli_runner) == before
    as_json = cli_runner.invoke(app, ["dnc", "import", "changes", str(changes), "--json"])
    [sample] = json.loads(as_json.stdout.strip().splitlines()[-1])["malformed_samples"]
    assert (sample["line"], sample["text"]) == (3, "2125550178,maybe")
    assert "neither a phone number" in sample["reason"]


@pytest.mark.parametrize("kind", ["national", "changes", "state FL", "litigator"])
def test_a_sync_date_in_the_future_is_refused(loaded, cli_runner, tmp_path, kind):
    before = status_without_ages(cli_runner)
    path = tmp_path / "list.txt"
    path.write_text("2125550100,A\n" if kind == "changes" else "2125550100\n")
    result = cli_runner.invoke(app, ["dnc", "import", *kind.split(), str(path), "--synced-at", "2099-01-01"])
    assert result.exit_code == 2
    assert "--synced-at 2099-01-01: that is in the future" in result.output
    assert status_without_ages(cli_runner) == before


def test_state_list_with_a_bad_line_exits_2_and_keeps_the_list(loaded, cli_runner, tmp_path):
    path = tmp_path / "fl.csv"
    path.write_text("phone\n3055550177\ncall me\n")
    result = cli_runner.invoke(app, ["dnc", "import", "state", "FL", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rejected_samples"] == [{"line": 3, "reason": "letters_in_number", "text": "call me"}]
    rows = {row["source"]: row for row in json.loads(cli_runner.invoke(app, ["dnc", "status", "--json"]).output)}
    assert rows["state:FL"]["entries"] == 2


def test_scrub_marks_numbers_of_area_codes_without_data(loaded, cli_runner, tmp_path):
    contacts = write_csv(tmp_path / "c.csv", [["phone"], ["2125550199"], ["6465550100"], ["+1 646 555 0101"]])
    out = tmp_path / "o.csv"
    result = cli_runner.invoke(app, ["scrub", str(contacts), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["blocked_by"] for r in read_csv(out)] == ["", "national_not_loaded", "national_not_loaded"]
    assert summary["counts"] == {"national_not_loaded": 2}
    assert (summary["blocked"], summary["clean"]) == (2, 1)
    assert summary["national_area_codes_held"] == ["212", "305"]


def test_import_changes_then_status(loaded, cli_runner, tmp_path):
    changes = tmp_path / "changes.txt"
    changes.write_text("212,5550100,D,2026-11-02\n+2125550177\n")
    result = cli_runner.invoke(app, ["dnc", "import", "changes", str(changes), "--json",
                                     "--synced-at", "2026-11-02T00:00:00Z"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["added"], report["removed"], report["entries"]) == (1, 1, 3)


@pytest.mark.parametrize("args,message", [
    (["dnc", "import", "changes", "{tmp}/missing.txt"], "no such file or folder"),
    (["dnc", "import", "national", "{tmp}/missing.txt"], "no such file or folder"),
    (["dnc", "import", "state", "Florida", "{tmp}/fl.txt"], "two-letter USPS code"),
    (["dnc", "add", "call me maybe", "--reason", "x"], "not a valid US/NANP phone number"),
    (["dnc", "remove", "2125550100", "--reason", " "], "needs a non-empty reason"),
    (["dnc", "remove", "2125550100", "--reason", "mistake"], "is not on the internal list"),
    (["dnc", "import", "national", "{tmp}/fl.txt", "--synced-at", "yesterday"], "expected an ISO 8601"),
])
def test_errors_exit_2_with_a_precise_message(outbound_env, cli_runner, tmp_path, args, message):
    (tmp_path / "fl.txt").write_text("3055550100\n")
    result = cli_runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_changes_before_any_full_download_exit_2(outbound_env, cli_runner, tmp_path):
    changes = tmp_path / "c.txt"
    changes.write_text("2125550100,A\n")
    result = cli_runner.invoke(app, ["dnc", "import", "changes", str(changes)])
    assert result.exit_code == 2 and "import a full download first" in result.output


def test_internal_remove_through_the_cli(loaded, cli_runner):
    result = cli_runner.invoke(app, ["dnc", "remove", "2125550103", "--reason", "consent re-given"])
    assert result.exit_code == 0, result.output
    assert "+12125550103 removed" in result.output


@pytest.mark.parametrize("raw,expected", [
    ("2125550123", ("+12125550123", None)),
    ("(212) 555-0123", ("+12125550123", None)),
    ("212.555.0123", ("+12125550123", None)),
    ("+1 212-555-0123", ("+12125550123", None)),
    ("1-212-555-0123", ("+12125550123", None)),
    ("  ", (None, "empty")),
    ("+44 20 7946 0958", (None, "not_nanp_number")),
    ("212-555-0123 ext 4", (None, "extension_not_allowed")),
    ("212-CALL-NOW", (None, "letters_in_number")),
    ("555-0123", (None, "wrong_length")),
    ("1125550123", (None, "not_valid_nanp_number")),
    ("2121550123", (None, "not_valid_nanp_number")),
])
def test_fast_number_reader(raw, expected):
    assert bulk_numbers.normalise(raw) == expected


def test_fast_reader_agrees_with_phonenumbers():
    """The regex built from the metadata answers as phonenumbers does."""
    rng = random.Random(11)
    for _ in range(20000):
        digits = f"{rng.randrange(200, 1000)}{rng.randrange(0, 1000):03d}{rng.randrange(0, 10000):04d}"
        parsed = phonenumbers.parse(digits, "US")
        expected = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) \
            if phonenumbers.is_valid_number(parsed) else None
        assert bulk_numbers.normalise(digits)[0] == expected, digits


def test_invalid_rows_are_reported_with_their_file_line(loaded, cli_runner, tmp_path):
    contacts = tmp_path / "c.csv"
    contacts.write_text('phone,note\n\n2125550100,"two\nlines"\nnope,x\n\n555,y\n')
    out = tmp_path / "o.csv"
    result = cli_runner.invoke(app, ["scrub", str(contacts), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert [(r["line"], r["reason"]) for r in summary["invalid_samples"]] == [
        (5, "letters_in_number"), (7, "wrong_length")]
    assert [r["note"] for r in read_csv(out)] == ["two\nlines", "x", "y"]
