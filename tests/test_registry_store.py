"""The national registry store: ingest of full downloads, change lists, lookups, atomic builds."""
from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from consent import registry_store
from consent.registry_store import (RegistryInputError, RegistryStore, RegistryUnavailable,
                                    parse_change_line, parse_full_line, ten_digits)

SYNCED = datetime(2026, 7, 1, tzinfo=timezone.utc)
AREA_CODES = (212, 305, 415, 702, 907)
PER_AREA_CODE = 60_000                   # 300,000 numbers: CI-sized, still several parse blocks


def make_numbers(seed: int = 1) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    numbers = {}
    for npa in AREA_CODES:
        lines = rng.choice(np.arange(2_000_000, 10_000_000), size=PER_AREA_CODE, replace=False)
        numbers[npa] = np.sort(npa * 10_000_000 + lines)
    return numbers


def text_of(numbers: np.ndarray, comma: bool, newline: str = "\n") -> str:
    if comma:
        return "".join(f"{n // 10_000_000},{n % 10_000_000:07d}{newline}" for n in numbers.tolist())
    return "".join(f"{n}{newline}" for n in numbers.tolist())


@pytest.fixture(scope="module")
def numbers() -> dict[int, np.ndarray]:
    return make_numbers()


@pytest.fixture(scope="module")
def download(tmp_path_factory, numbers) -> Path:
    """A download mixing every accepted shape: plain, CRLF, comma, zipped (two members), junk."""
    folder = tmp_path_factory.mktemp("download")
    (folder / "212.txt").write_text(text_of(numbers[212], comma=False))
    (folder / "305.txt").write_bytes(text_of(numbers[305], comma=True, newline="\r\n").encode())
    with zipfile.ZipFile(folder / "west.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("415.txt", text_of(numbers[415], comma=True))
        archive.writestr("702.txt", text_of(numbers[702], comma=False))
    messy = ["", "  907 , " + f"{numbers[907][0] % 10_000_000:07d}  ", "\t" + str(numbers[907][1]) + " ",
             "not a number", "9071234", "1071234567", "907,0123456", "\x00\xff\xfe junk"]
    rest = text_of(numbers[907][2:], comma=False).splitlines()
    (folder / "907.txt").write_text("\n".join(messy + rest))           # no final newline either
    return folder


@pytest.fixture
def store(tmp_path, download) -> RegistryStore:
    store = RegistryStore(tmp_path / "registry")
    store.ingest_full([download], synced_at=SYNCED)
    yield store
    store.close()


def all_numbers(numbers) -> np.ndarray:
    return np.concatenate(list(numbers.values()))


def test_ingest_counts_every_valid_number_and_reports_malformed_lines(tmp_path, download, numbers):
    store = RegistryStore(tmp_path / "registry")
    report = store.ingest_full([download], synced_at=SYNCED)
    assert report.entries == len(AREA_CODES) * PER_AREA_CODE
    assert report.area_codes == len(AREA_CODES)
    assert report.malformed == 5
    samples = {(Path(m.file).name, m.line): m.reason for m in report.malformed_samples}
    assert samples[("907.txt", 4)] == "expected AAA,NNNNNNN or AAANNNNNNN"
    assert samples[("907.txt", 5)] == "expected AAA,NNNNNNN or AAANNNNNNN"
    assert "area code 107" in samples[("907.txt", 6)]
    assert samples[("907.txt", 7)] == "exchange must start with 2-9"
    assert ("907.txt", 8) in samples
    zipped = next(f for f in report.files if f.path.endswith("west.zip"))
    assert zipped.members == ["415.txt", "702.txt"] and zipped.numbers == 2 * PER_AREA_CODE


def test_every_listed_number_is_found_and_others_are_not(store, numbers):
    listed = all_numbers(numbers)
    assert store.contains_array(listed).all()
    unlisted = np.setdiff1d(listed + 1, listed)
    assert not store.contains_array(unlisted).any()
    other_area_code = np.array([312_555_0123, 2_000_000_000, 9_999_999_999])
    assert not store.contains_array(other_area_code).any()


@pytest.mark.parametrize("form", ["+1{n}", "1{n}", "{n}"])
def test_contains_accepts_e164_and_ten_digits(store, numbers, form):
    n = int(numbers[415][7])
    assert store.contains(form.format(n=n))
    assert not store.contains(form.format(n=n + 1)) or n + 1 in set(numbers[415].tolist())


def test_contains_many_answers_in_order_and_false_for_invalid(store, numbers):
    listed = int(numbers[212][0])
    answers = store.contains_many([f"+1{listed}", "+12125550100", "+44207946095", "junk", str(listed)])
    assert answers == [True, f"+12125550100" in {f"+1{n}" for n in numbers[212].tolist()}, False, False, True]


def test_contains_refuses_a_non_nanp_number(store):
    with pytest.raises(ValueError, match="not a NANP number"):
        store.contains("+442079460958")


def test_manifest_records_files_hashes_and_line_counts(store, download):
    manifest = json.loads((store.path / "manifest.json").read_text())
    by_name = {f["name"]: f for f in manifest["files"]}
    for path in download.iterdir():
        assert by_name[path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert by_name["212.txt"]["lines"] == PER_AREA_CODE
    assert by_name["907.txt"]["lines"] == PER_AREA_CODE - 2 + 8
    assert manifest["synced_at"] == "2026-07-01T00:00:00Z"
    assert manifest["area_codes"] == sorted(AREA_CODES)
    assert manifest["entries"] == len(AREA_CODES) * PER_AREA_CODE


def test_store_is_one_bitset_per_area_code(store):
    status = store.status()
    assert status["size_bytes"] == len(AREA_CODES) * 1_250_000
    assert status["area_codes"] == len(AREA_CODES)
    assert status["version"].startswith("20260701T000000Z.0.")


def test_national_fact_names_the_sync(store, numbers):
    listed = f"+1{int(numbers[702][3])}"
    assert store.national_fact(listed) == {"listed": True, "registered_on": None,
                                           "synced_at": "2026-07-01T00:00:00Z"}
    assert store.national_fact("+17020000000")["listed"] is False


def test_national_fact_without_data_has_no_sync_so_the_gate_fails_closed(tmp_path):
    fact = RegistryStore(tmp_path / "nothing").national_fact("+12125550123")
    assert fact == {"listed": False, "registered_on": None, "synced_at": None}


def test_one_file_for_everything_unsorted_and_zipped(tmp_path, numbers):
    everything = all_numbers(numbers)
    np.random.default_rng(3).shuffle(everything)
    archive_path = tmp_path / "all.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("registry.txt", text_of(everything, comma=True, newline="\r\n"))
    store = RegistryStore(tmp_path / "registry")
    report = store.ingest_full([archive_path], synced_at=SYNCED)
    assert report.entries == len(everything) and report.malformed == 0
    assert store.contains_array(everything).all()


def test_utf16_download_is_decoded(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_bytes("2125550123\r\n305,5550100\r\n".encode("utf-16"))
    store = RegistryStore(tmp_path / "registry")
    assert store.ingest_full([path], synced_at=SYNCED).entries == 2
    assert store.contains("+13055550100")


def test_binary_junk_is_reported_not_fatal(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 50 + b"\n2125550123\n")
    report = RegistryStore(tmp_path / "registry").ingest_full([junk], synced_at=SYNCED)
    assert report.entries == 1 and report.malformed >= 1


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"hello\nworld\n"])
def test_a_download_without_any_number_leaves_the_store_unchanged(store, tmp_path, content):
    before = store.status()
    empty = tmp_path / "empty.txt"
    empty.write_bytes(content)
    with pytest.raises(RegistryInputError, match="no valid number"):
        store.ingest_full([empty], synced_at=SYNCED + timedelta(days=5))
    assert store.status() == before


def damaged_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("212.txt", "".join(f"212{n:07d}\n" for n in range(2_000_000, 2_050_000)))
    data = bytearray(path.read_bytes())
    data[200:260] = b"\xff" * 60                          # inside the compressed member
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("path,message", [("missing.txt", "no such file"),
                                          ("empty.zip", "holds no files"),
                                          ("damaged.zip", "damaged zip file")])
def test_unusable_input_is_refused_with_a_precise_message(tmp_path, path, message):
    if path == "empty.zip":
        zipfile.ZipFile(tmp_path / path, "w").close()
    if path == "damaged.zip":
        damaged_zip(tmp_path / path)
    store = RegistryStore(tmp_path / "registry")
    with pytest.raises(RegistryInputError, match=message):
        store.ingest_full([tmp_path / path], synced_at=SYNCED)


@pytest.mark.parametrize("line,expected", [
    (b"212,5550123", 2125550123),
    (b"2125550123", 2125550123),
    (b"  212 , 5550123 \r", 2125550123),
    (b"", None),
    (b"   ", None),
    (b"212-555-0123", "expected AAA,NNNNNNN or AAANNNNNNN"),
    (b"112,5550123", "area code 112 is not a NANP area code (must start with 2-9)"),
    (b"212,1550123", "exchange must start with 2-9"),
])
def test_full_line_formats(line, expected):
    assert parse_full_line(line) == expected


@pytest.mark.parametrize("line,expected", [
    (b"212,5550123,A", (2125550123, True)),
    (b"212,5550123,D,2026-07-02", (2125550123, False)),
    (b"2125550123,delete,07/02/2026", (2125550123, False)),
    (b"+2125550123", (2125550123, True)),
    (b"- 212,5550123", (2125550123, False)),
    (b"212,5550123", "no add/delete flag: a change list line needs A or D, or a +/- prefix"),
    (b"212,5550123,X", "unknown change flag 'X' (use A or D)"),
    (b"+212,5550123,D", "both a +/- prefix and an A/D flag"),
    (b"", None),
])
def test_change_line_formats(line, expected):
    assert parse_change_line(line) == expected


@pytest.mark.parametrize("phone,expected", [
    ("+12125550123", 2125550123), ("12125550123", 2125550123), ("2125550123", 2125550123),
    (2125550123, 2125550123), ("+442079460958", None), ("1125550123", None), ("21255501", None),
    ("212555012x", None),
])
def test_ten_digits(phone, expected):
    assert ten_digits(phone) == expected


def write_changes(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_change_list_adds_and_deletes(store, numbers, tmp_path):
    listed = int(numbers[212][0])
    also_listed = int(numbers[305][0])
    new = 2_129_999_999 if 2_129_999_999 not in set(numbers[212].tolist()) else 2_129_999_998
    new_area_code = 6_175_550_123
    changes = write_changes(tmp_path / "changes.txt", [
        f"{str(new)[:3]},{str(new)[3:]},A,2026-07-02",
        f"+{new_area_code}",
        f"{str(listed)[:3]},{str(listed)[3:]},D,2026-07-02",
        f"-{also_listed}",
        f"+{also_listed}",                       # the last line for a number wins
        "2125550199,D",                          # not listed: nothing to delete
        "garbage",
    ])
    before = store.status()["entries"]
    report = store.apply_changes([changes], at=SYNCED + timedelta(days=1))
    assert (report.added, report.removed) == (2, 1)
    assert report.malformed == 1 and report.malformed_samples[0].line == 7
    assert store.contains(new) and store.contains(new_area_code)
    assert not store.contains(listed) and store.contains(also_listed)
    status = store.status()
    assert status["entries"] == before + 1
    assert status["area_codes"] == len(AREA_CODES) + 1
    assert status["synced_at"] == "2026-07-02T00:00:00Z"
    assert status["baseline_synced_at"] == "2026-07-01T00:00:00Z"
    assert status["changes"][0]["sha256"] == hashlib.sha256(changes.read_bytes()).hexdigest()
    assert status["version"].startswith("20260701T000000Z.1.")


def test_a_change_list_is_applied_once(store, tmp_path):
    changes = write_changes(tmp_path / "c.txt", ["2125550100,A"])
    store.apply_changes([changes], at=SYNCED + timedelta(days=1))
    report = store.apply_changes([changes], at=SYNCED + timedelta(days=9))
    assert report.files[0].skipped == "already applied"
    assert store.status()["synced_at"] == "2026-07-02T00:00:00Z"


def test_zipped_change_list(store, tmp_path):
    archive_path = tmp_path / "changes.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("adds.txt", "212,5550100,A\n")
        archive.writestr("dels.txt", "212,5550100,D\n")
    store.apply_changes([archive_path], at=SYNCED + timedelta(days=1))
    assert not store.contains("+12125550100")


def test_changes_need_a_baseline(tmp_path):
    changes = write_changes(tmp_path / "c.txt", ["2125550100,A"])
    with pytest.raises(RegistryUnavailable, match="import a full download first"):
        RegistryStore(tmp_path / "registry").apply_changes([changes], at=SYNCED)


def test_readers_see_the_old_version_until_the_swap_then_the_new_one(store, numbers, tmp_path):
    reader = RegistryStore(store.path)                     # another process's view
    listed = int(numbers[212][5])
    assert reader.contains(listed)
    only_305 = tmp_path / "305.txt"
    only_305.write_text(text_of(numbers[305], comma=False))
    store.ingest_full([only_305], synced_at=SYNCED + timedelta(days=3))
    assert not reader.contains(listed)                     # re-read the manifest after the swap
    assert reader.status()["area_codes"] == 1
    generations = [p.name for p in store.path.iterdir() if p.name.startswith("gen-")]
    assert len(generations) == 2                           # the new one and the one just replaced


def test_a_build_that_fails_before_the_swap_changes_nothing(store, numbers, tmp_path, monkeypatch):
    before = (store.path / "manifest.json").read_bytes()

    def crash(*_args, **_kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(registry_store, "_write_bitsets", crash)
    only_212 = tmp_path / "212.txt"
    only_212.write_text(text_of(numbers[212][:10], comma=False))
    with pytest.raises(OSError, match="disk full"):
        store.ingest_full([only_212], synced_at=SYNCED + timedelta(days=3))
    assert (store.path / "manifest.json").read_bytes() == before
    assert not [p for p in store.path.iterdir() if p.name.startswith(".building-")]
    assert store.contains_array(all_numbers(numbers)).all()


def test_string_batches_decode_like_one_by_one():
    """The character-matrix path for E.164 batches agrees with `ten_digits` on every spelling."""
    same_length = ["+12125550123", "+1212555012x", "+44207946095", "+11125550123", "+12121550123"]
    mixed = same_length + ["2125550123", "", "+12125550é23", "1 212 555 0123"]
    for phones in (same_length, mixed):
        assert registry_store.numbers_of(phones).tolist() == [ten_digits(p) or 0 for p in phones]
