"""Scrub a contact list against every DNC source before a campaign runs.

For each row: its E.164 number and the sources that list it (`national`, `state:XX`, `internal`,
`litigator`, joined by `;`), or `invalid_number`. A number whose area code has no national
registry data is `national_not_loaded`: it cannot be said clean, and the gate blocks
telemarketing to it (`dnc_data_stale`). The summary counts rows per source, so a manager sees
what each list would block. Scrubbing stores nothing.

The output is meant to be opened in a spreadsheet: a cell that starts with `=`, `+`, `-` or `@`
(or a tab or carriage return) would be run as a formula there, so it gets a leading `'`. The
`e164` column is exempt: it is `+1` and ten digits, written by us, and quoting it would break
every tool that reads it back.
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlmodel import Session

from consent.text_files import read_text_file
from consent import bulk_numbers, dnc
from consent.registry_store import STALE_AFTER_DAYS, RegistryStore, age_days

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A cell that starts with one of FORMULA_STARTS, in a row joined with \x1f (which CSV cells
# practically never hold): one regex search per row instead of a test per cell.
_FORMULA_CELL = re.compile("(?:^|\x1f)[=+\\-@\t\r]")
INVALID = "invalid_number"
NOT_LOADED = "national_not_loaded"
SAMPLES = 20
PROGRESS_EVERY = 100_000


class ScrubInputError(ValueError):
    """A file that cannot be scrubbed at all; the message names what is wrong."""


@dataclass
class InvalidRow:
    line: int
    reason: str
    phone: str


@dataclass
class ScrubReport:
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    blocked: int = 0                        # valid rows on at least one list
    clean: int = 0
    counts: dict[str, int] = field(default_factory=dict)        # per source, plus invalid_number
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    invalid_samples: list[InvalidRow] = field(default_factory=list)
    ragged_rows: int = 0
    phone_column: str = ""
    national_version: str | None = None
    national_synced_at: str | None = None                       # the oldest area code's sync
    national_area_codes_held: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def escape_cell(value: str) -> str:
    """The cell as a spreadsheet will show it, never run it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def read_text(path: Path) -> str:
    return read_text_file(path, ScrubInputError, "a CSV file")


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], Sequence[int]]:
    """(header, rows, line number of each row): blank rows dropped."""
    text = read_text(path)
    first_line = text[:text.find("\n")]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        rows = list(reader)
    except csv.Error as error:
        raise ScrubInputError(f"{path}: line {reader.line_num}: {error}") from error
    kept = [row for row in rows if any(row)]      # csv yields [] for a blank line; "" is falsy
    if len(kept) == len(rows) and reader.line_num == len(rows) + 1:
        return header, rows, range(2, len(rows) + 2)   # one line per row: no need to track them
    return header, kept, _line_numbers(text, delimiter)


def _line_numbers(text: str, delimiter: str) -> list[int]:
    """Line of each non-blank row, for files with blank lines or cells spanning lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader)
    return [reader.line_num for row in reader if any(row)]


def _blocked_by(listing: dict | None, national: bool, not_loaded: bool) -> str:
    sources = ["national"] if national else []
    if not_loaded:
        sources.append(NOT_LOADED)
    if listing:
        sources += [f"state:{code}" for code in listing["state"]]
        if listing["internal"]:
            sources.append("internal")
        if listing["litigator"]:
            sources.append("litigator")
    return ";".join(sources)


def scrub_csv(in_path: str | Path, out_path: str | Path, session: Session, store: RegistryStore,
              now: datetime | None = None,
              progress: Callable[[int, int], None] | None = None) -> ScrubReport:
    """Scrub `in_path` and write every input column plus `e164` and `blocked_by` to `out_path`.

    `now` (when given) adds a warning if the national data is past the 31-day limit."""
    in_path, out_path = Path(in_path), Path(out_path)
    header, rows, lines = _read_rows(in_path)
    column = dnc.find_phone_column(header)
    if column is None:
        raise ScrubInputError(f"{in_path}: no phone column; header seen: {', '.join(header) or '(empty)'} "
                              "(name one column phone, phone_number, mobile, cell or number)")
    report = ScrubReport(rows=len(rows), phone_column=header[column])
    numbers = [bulk_numbers.normalise(row[column] if column < len(row) else "") for row in rows]
    valid_e164 = [e164 for e164, _ in numbers if e164]
    national, covered = _national_hits(store, valid_e164, report)
    _warn_if_stale(report, now, store)
    listed_nationally = {valid_e164[i] for i in np.flatnonzero(national).tolist()}
    not_loaded = {valid_e164[i] for i in np.flatnonzero(~covered).tolist()}
    listings = dnc.listed_sources(session, set(valid_e164))
    blocked = [INVALID if e164 is None
               else _blocked_by(listings.get(e164), e164 in listed_nationally, e164 in not_loaded)
               if e164 in listed_nationally or e164 in listings or e164 in not_loaded else ""
               for e164, _ in numbers]
    _write_rows(out_path, header, rows, numbers, blocked, progress)
    _tally(report, header, rows, lines, column, numbers, blocked)
    return report


def _warn_if_stale(report: ScrubReport, now: datetime | None, store: RegistryStore) -> None:
    """A warning naming the area codes whose data is past the 31-day limit."""
    if now is None:
        return
    coverage = store.status()["coverage"]
    stale = [npa for npa, held in coverage.items() if age_days(held["synced_at"], now) > STALE_AFTER_DAYS]
    if stale:
        age = age_days(report.national_synced_at, now)
        report.warnings.append(
            f"national registry data of {len(stale)} area code{'s' if len(stale) > 1 else ''} "
            f"({', '.join(stale[:20])}{' ...' if len(stale) > 20 else ''}) is up to {age:.0f} days old "
            f"(limit {STALE_AFTER_DAYS}): the gate blocks telemarketing to them until a fresh download is imported")


def _write_rows(out_path: Path, header: list[str], rows: list[list[str]],
                numbers: list[tuple[str | None, str | None]], blocked: list[str],
                progress: Callable[[int, int], None] | None) -> None:
    """Every row padded to the widest one (extra cells of ragged rows get `extra_N` headers),
    then e164 and blocked_by. This loop runs once per row: it does no more than it must."""
    width = max([len(header), *map(len, rows)])
    out_header = header + [f"extra_{n}" for n in range(1, width - len(header) + 1)] + ["e164", "blocked_by"]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([escape_cell(name) for name in out_header])
        for start in range(0, len(rows), PROGRESS_EVERY):
            stop = min(start + PROGRESS_EVERY, len(rows))
            writer.writerows(_output_row(rows[i], width, numbers[i][0], blocked[i]) for i in range(start, stop))
            if progress:
                progress(stop, len(rows))


def _output_row(row: list[str], width: int, e164: str | None, blocked_by: str) -> list[str]:
    if len(row) != width:
        row = row + [""] * (width - len(row))
    if _FORMULA_CELL.search("\x1f".join(row)):
        row = [escape_cell(cell) for cell in row]
    return row + [e164 or "", blocked_by]


def _tally(report: ScrubReport, header: list[str], rows: list[list[str]], lines: list[int], column: int,
           numbers: list[tuple[str | None, str | None]], blocked: list[str]) -> None:
    """Counts per source and per invalid reason, and the first invalid rows with their line."""
    counts = Counter(source for result in blocked if result for source in result.split(";"))
    invalid_reasons = Counter(reason for e164, reason in numbers if e164 is None)
    for index, (e164, reason) in enumerate(numbers):
        if e164 is None and len(report.invalid_samples) < SAMPLES:
            phone = rows[index][column] if column < len(rows[index]) else ""
            report.invalid_samples.append(InvalidRow(lines[index], reason, phone[:60]))
        if len(report.invalid_samples) >= SAMPLES:
            break
    report.invalid = sum(invalid_reasons.values())
    report.valid = report.rows - report.invalid
    report.blocked = sum(1 for result in blocked if result and result != INVALID)   # not_loaded included
    report.clean = report.valid - report.blocked
    report.counts = dict(sorted(counts.items()))
    report.invalid_by_reason = dict(sorted(invalid_reasons.items()))
    report.ragged_rows = sum(1 for row in rows if len(row) != len(header))


def _national_hits(store: RegistryStore, valid_e164: list[str], report: ScrubReport) -> tuple[np.ndarray, np.ndarray]:
    """(listed, area code covered) of the valid numbers (all `+1` and ten digits, so int() is safe)."""
    status = store.status()
    report.national_version, report.national_synced_at = status["version"], status["synced_at"]
    report.national_area_codes_held = status["area_codes_held"]
    if status["version"] is None:
        report.warnings.append("no national registry data loaded: rows were not checked against it "
                               f"(marked {NOT_LOADED}), and the gate blocks all telemarketing until it is imported")
    values = np.fromiter((int(e164[2:]) for e164 in valid_e164), dtype=np.int64, count=len(valid_e164))
    return store.contains_array(values), store.covered_array(values)
