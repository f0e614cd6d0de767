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
from consent.registry_store import (MalformedInput, RegistryInputError, RegistryStore, RegistryUnavailable,
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


JUNK = ["not a number", "9071234", "1071234567", "907,0123456", "\x00\xff\xfe junk"]


@pytest.fixture(scope="module")
def download(tmp_path_factory, numbers) -> Path:
    """A download mixing every accepted shape: plain, CRLF, comma, zipped (two members), spaces."""
    folder = tmp_path_factory.mktemp("download")
    (folder / "212.txt").write_text(text_of(numbers[212], comma=False))
    (folder / "305.txt").write_bytes(text_of(numbers[305], comma=True, newline="\r\n").encode())
    with zipfile.ZipFile(folder / "west.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("415.txt", text_of(numbers[415], comma=True))
        archive.writestr("702.txt", text_of(numbers[702], comma=False))
    messy = ["", "  907 , " + f"{numbers[907][0] % 10_000_000:07d}  ", "\t" + str(numbers[907][1]) + " "]
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


def test_ingest_counts_every_valid_number(tmp_path, download, numbers):
    store = RegistryStore(tmp_path / "registry")
    report = store.ingest_full([download], synced_at=SYNCED)
    assert report.entries == len(AREA_CODES) * PER_AREA_CODE
    assert report.area_codes == len(AREA_CODES) and report.malformed == 0
    assert report.area_codes_loaded == [str(npa) for npa in AREA_CODES]
    zipped = next(f for f in report.files if f.path.endswith("west.zip"))
    assert zipped.members == ["415.txt", "702.txt"] and zipped.numbers == 2 * PER_AREA_CODE
    assert zipped.area_codes == [415, 702]


def test_a_download_with_malformed_lines_is_refused_whole(store, tmp_path, numbers):
    """One bad line and nothing of the load counts: the good lines of 212 would otherwise
    replace the area code with a partial list, and renew its date."""
    before = (store.path / "manifest.json").read_bytes()
    path = tmp_path / "907.txt"
    path.write_text("\n".join(["9075550100", *JUNK, "9075550101"]) + "\n")
    with pytest.raises(MalformedInput) as refused:
        store.ingest_full([path], synced_at=SYNCED + timedelta(days=3))
    samples = {m.line: m.reason for m in refused.value.samples}
    assert refused.value.malformed == 5 and sorted(samples) == [2, 3, 4, 5, 6]
    assert "'not a number' is neither a phone number" in samples[2]
    assert samples[3] == "'9071234': seven digits without an area code"
    assert "area code 107" in samples[4]
    assert samples[5] == "exchange must start with 2-9"
    assert refused.value.samples[0].text == "not a number"
    assert "nothing was loaded and no sync date was renewed" in str(refused.value)
    assert (store.path / "manifest.json").read_bytes() == before
    assert not store.contains("+19075550100")
    assert store.contains_array(all_numbers(numbers)).all()


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
    assert by_name["907.txt"]["lines"] == PER_AREA_CODE - 2 + 3
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


def test_binary_junk_refuses_the_load_without_a_crash(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 50 + b"\n2125550123\n")
    store = RegistryStore(tmp_path / "registry")
    with pytest.raises(MalformedInput) as refused:
        store.ingest_full([junk], synced_at=SYNCED)
    assert refused.value.malformed >= 1 and store.manifest() is None


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"hello\nworld\n"])
def test_a_download_without_any_number_leaves_the_store_unchanged(store, tmp_path, content):
    before = store.status()
    empty = tmp_path / "empty.txt"
    empty.write_bytes(content)
    with pytest.raises(RegistryInputError, match="no valid number|malformed line"):
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
    (b"212-555-0123", 2125550123),
    (b'"212","5550123"', 2125550123),
    (b"+1 (212) 555-0123", 2125550123),
    (b"212-555-0123,A", 2125550123),
    (b"2125550123,2026-11-01", 2125550123),
    (b"112,5550123", "area code 112 is not a NANP area code (must start with 2-9)"),
    (b"212,1550123", "exchange must start with 2-9"),
    (b"2125550123,D", "a deletion in a full list: load change lists with `outbound dnc import changes`"),
    (b"212555012", "'212555012': 9 digits, not a 10-digit phone number"),
    (b"2125550123,2125550124", "more than one phone number on the line"),
    (b"2125550123,2026-02-30", "'2026-02-30' is not a valid date"),
    (b"call 2125550123", "'call 2125550123' is neither a phone number, an A/D flag nor a date"),
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
    # The FTC does not publish the column order: fields are known by what they hold.
    (b"212-555-0123,A", (2125550123, True)),
    (b"2125550123,2026-11-01,D", (2125550123, False)),
    (b"D,2026-11-01,2125550123", (2125550123, False)),
    (b'"212","5550123","A","2026-11-01"', (2125550123, True)),
    (b"2125550123\tA\t2026-11-01T04:00:00Z", (2125550123, True)),
    (b"+12125550123,D", (2125550123, False)),
    (b"2125550123,A,D", "more than one add/delete flag"),
    (b"2125550123,A,2026-13-01", "'2026-13-01' is not a valid date"),
    (b"2125550123,A,whatever", "'whatever' is neither a phone number, an A/D flag nor a date"),
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
    ])
    before = store.status()["entries"]
    report = store.apply_changes([changes], at=SYNCED + timedelta(days=1))
    assert (report.added, report.removed) == (2, 1)
    assert report.malformed == 0
    assert store.contains(new) and store.contains(new_area_code)
    assert not store.contains(listed) and store.contains(also_listed)
    status = store.status()
    assert status["entries"] == before + 1
    assert status["area_codes"] == len(AREA_CODES) + 1
    # Only the area codes the list has lines for are renewed; 617 has no full list, so no data.
    assert report.area_codes_renewed == ["212", "305"]
    assert status["area_codes_held"] == [str(npa) for npa in AREA_CODES]
    assert status["coverage"]["212"]["synced_at"] == "2026-07-02T00:00:00Z"
    assert status["coverage"]["415"]["synced_at"] == "2026-07-01T00:00:00Z"
    assert status["synced_at"] == status["oldest_synced_at"] == "2026-07-01T00:00:00Z"
    assert status["newest_synced_at"] == "2026-07-02T00:00:00Z"
    assert status["baseline_synced_at"] == "2026-07-01T00:00:00Z"
    assert store.national_fact(f"+1{new_area_code}") == {"listed": True, "registered_on": None, "synced_at": None}
    assert status["changes"][0]["sha256"] == hashlib.sha256(changes.read_bytes()).hexdigest()
    assert status["version"].startswith("20260701T000000Z.1.")


def test_a_change_list_is_applied_once(store, tmp_path):
    changes = write_changes(tmp_path / "c.txt", ["2125550100,A"])
    store.apply_changes([changes], at=SYNCED + timedelta(days=1))
    report = store.apply_changes([changes], at=SYNCED + timedelta(days=9))
    assert report.files[0].skipped == "already applied"
    assert store.status()["coverage"]["212"]["synced_at"] == "2026-07-02T00:00:00Z"


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
    store.ingest_full([only_305], synced_at=SYNCED + timedelta(days=3), replace_all=True)
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


# --- coverage and freshness per area code ---------------------------------------------------

def area_code_file(folder: Path, npa: int, lines: list[int]) -> Path:
    path = folder / f"{npa}.txt"
    path.write_text("".join(f"{npa}{line:07d}\n" for line in lines))
    return path


def test_area_code_files_loaded_one_at_a_time_add_up(tmp_path):
    """The FTC sends one file per area code: 212.txt replaces 212 only and keeps 201."""
    store = RegistryStore(tmp_path / "registry")
    store.ingest_full([area_code_file(tmp_path, 212, [5550100, 5550101])], synced_at=SYNCED)
    report = store.ingest_full([area_code_file(tmp_path, 201, [5550100])], synced_at=SYNCED + timedelta(days=2))
    assert (report.area_codes_loaded, report.area_codes_kept) == (["201"], ["212"])
    assert store.contains("+12125550100") and store.contains("+12015550100")

    store.ingest_full([area_code_file(tmp_path, 212, [5550101])], synced_at=SYNCED + timedelta(days=5))
    assert not store.contains("+12125550100")                  # 212 replaced by its new file
    assert store.contains("+12125550101") and store.contains("+12015550100")
    status = store.status()
    assert status["area_codes_held"] == ["201", "212"] and status["entries"] == 2
    assert status["oldest_synced_at"] == status["synced_at"] == "2026-07-03T00:00:00Z"
    assert status["coverage"]["212"]["synced_at"] == "2026-07-06T00:00:00Z"
    assert status["coverage"]["212"]["files"] == ["212.txt"]
    assert [f["name"] for f in status["files"]] == ["201.txt", "212.txt"]
    assert store.national_fact("+12015550199")["synced_at"] == "2026-07-03T00:00:00Z"
    assert store.national_fact("+12125550199")["synced_at"] == "2026-07-06T00:00:00Z"


def test_a_full_load_of_everything_replaces_everything(tmp_path):
    store = RegistryStore(tmp_path / "registry")
    store.ingest_full([area_code_file(tmp_path, 201, [5550100])], synced_at=SYNCED)
    everything = tmp_path / "all"
    everything.mkdir()
    area_code_file(everything, 212, [5550100])
    area_code_file(everything, 305, [5550100])
    report = store.ingest_full([everything], synced_at=SYNCED + timedelta(days=1), replace_all=True)
    assert report.area_codes_dropped == ["201"] and report.replace_all
    assert store.status()["area_codes_held"] == ["212", "305"]
    assert not store.contains("+12015550100")
    assert store.national_fact("+12015550100")["synced_at"] is None     # no data: fails closed


def test_an_area_code_without_data_has_no_sync_date(tmp_path):
    store = RegistryStore(tmp_path / "registry")
    store.ingest_full([area_code_file(tmp_path, 212, [5550100])], synced_at=SYNCED)
    assert store.national_fact("+16465550100") == {"listed": False, "registered_on": None, "synced_at": None}
    numbers = np.array([2125550100, 6465550100, 0], dtype=np.int64)
    assert store.covered_array(numbers).tolist() == [True, False, False]


def test_a_change_list_with_one_bad_line_changes_nothing_and_renews_no_date(store, tmp_path):
    before = store.status()
    manifest = (store.path / "manifest.json").read_bytes()
    changes = write_changes(tmp_path / "c.txt", ["2125550100,A", "2125550101,D", "2125550102,Q,2026-07-02",
                                                 "2125550103,A"])
    with pytest.raises(MalformedInput) as refused:
        store.apply_changes([changes], at=SYNCED + timedelta(days=1))
    [bad] = refused.value.samples
    assert (bad.line, bad.text, bad.reason) == (3, "2125550102,Q,2026-07-02", "unknown change flag 'Q' (use A or D)")
    assert (store.path / "manifest.json").read_bytes() == manifest
    assert store.status() == before and not store.contains("+12125550100")
    # The same file, fixed, is not taken for one "already applied".
    write_changes(changes, ["2125550100,A", "2125550101,D", "2125550103,A"])
    assert store.apply_changes([changes], at=SYNCED + timedelta(days=1)).added == 2


def test_ftc_shaped_files_with_headers_quotes_dashes_and_dates_load(store, tmp_path):
    changes = write_changes(tmp_path / "c.csv", [
        "phone,flag,date", '"212","5550100","A"', "212-555-0101,A", "2125550102,2026-07-02,A",
        "A,2026-07-02,2125550103", "2125550103,2026-07-02,D", "D,2026-07-02,2125550104"])
    report = store.apply_changes([changes], at=SYNCED + timedelta(days=1))
    assert report.malformed == 0 and report.additions == 4 and report.deletions == 2
    assert [store.contains(f"+121255501{n:02d}") for n in range(4)] == [True, True, True, False]


def test_a_header_is_only_a_header_on_the_first_line(tmp_path):
    path = tmp_path / "212.txt"
    path.write_text("\nPhone Number\n2125550100\nphone\n")
    store = RegistryStore(tmp_path / "registry")
    with pytest.raises(MalformedInput) as refused:
        store.ingest_full([path], synced_at=SYNCED)
    assert [m.line for m in refused.value.samples] == [4]


def test_a_sync_date_in_the_future_is_refused(store, tmp_path):
    before = store.status()
    now = datetime(2026, 7, 10, tzinfo=timezone.utc)
    future = now + timedelta(seconds=1)
    with pytest.raises(RegistryInputError, match=r"the sync date 2026-07-10T00:00:01Z is in the future"):
        store.ingest_full([area_code_file(tmp_path, 201, [5550100])], synced_at=future, now=now)
    with pytest.raises(RegistryInputError, match="is in the future"):
        store.apply_changes([write_changes(tmp_path / "c.txt", ["2125550100,A"])], at=future, now=now)
    assert store.status() == before
    assert store.ingest_full([area_code_file(tmp_path, 201, [5550100])], synced_at=now, now=now).entries


def test_a_store_written_before_coverage_reads_as_one_sync_for_all(store):
    """Format 1 manifests (one synced_at for the store) keep working after the upgrade."""
    manifest = json.loads(store.manifest_path.read_text())
    del manifest["coverage"]
    manifest["format"] = 1
    store.manifest_path.write_text(json.dumps(manifest))
    reader = RegistryStore(store.path)
    assert reader.status()["area_codes_held"] == [str(npa) for npa in AREA_CODES]
    assert reader.national_fact("+12125550100")["synced_at"] == "2026-07-01T00:00:00Z"
