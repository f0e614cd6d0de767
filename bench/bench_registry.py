"""Benchmark of the national registry store and the scrub, at registry scale.

    .venv/bin/python bench/bench_registry.py                    # 250,000,000 numbers, ~300 NPAs
    .venv/bin/python bench/bench_registry.py --numbers 5000000  # a quick run

It writes a synthetic full download (one text file per area code, both line formats, some CRLF)
into a work folder, then measures the real code paths: `RegistryStore.ingest_full` parsing
those text files, the store's size on disk, batched lookups, a 1,000,000-line change list and
a 1,000,000-row scrub against every source. Each figure is printed next to its target.

Generating the files is not measured, and is done with numpy (the text of 250 million numbers
in pure Python would take longer than the ingest being measured).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consent.registry_store import NUMBERS_PER_NPA, RegistryStore  # noqa: E402

AREA_CODES = 300
FIRST_EXCHANGE_LINE = 2_000_000          # NANP exchanges start with 2: lines 2000000..9999999
LINES_PER_NPA = NUMBERS_PER_NPA - FIRST_EXCHANGE_LINE
SYNCED_AT = datetime(2026, 7, 1, tzinfo=timezone.utc)


@dataclass
class Figure:
    name: str
    value: float                         # wall clock
    unit: str
    target: str
    met: bool
    cpu_value: float | None = None       # the same figure in this process's CPU time: on a
                                         # shared machine, what the code costs without the wait


class Timer:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> "Timer":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def pick_area_codes(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct area codes in service (so that scrubbed numbers are mostly valid)."""
    from consent.bulk_numbers import normalise
    candidates = np.array([n for n in range(200, 1000) if normalise(f"{n}5550100")[0]])
    return np.sort(rng.choice(candidates, size=count, replace=False))


def numbers_of_area_code(npa: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """About `count` distinct sorted numbers of one area code, as int64 10-digit values."""
    chosen = np.flatnonzero(rng.random(LINES_PER_NPA) < count / LINES_PER_NPA)
    return npa * NUMBERS_PER_NPA + FIRST_EXCHANGE_LINE + chosen


def format_lines(numbers: np.ndarray, comma: bool, crlf: bool) -> bytes:
    """The text of `numbers`, one per line, built as a byte matrix (no Python loop per line)."""
    digits = np.empty((len(numbers), 10), dtype=np.uint8)
    rest = numbers.copy()
    for column in range(9, -1, -1):
        digits[:, column] = rest % 10 + 48
        rest //= 10
    parts = [digits[:, :3]]
    if comma:
        parts.append(np.full((len(numbers), 1), ord(","), np.uint8))
    parts.append(digits[:, 3:])
    if crlf:
        parts.append(np.full((len(numbers), 1), 13, np.uint8))
    parts.append(np.full((len(numbers), 1), 10, np.uint8))
    return np.hstack(parts).tobytes()


def write_full_download(folder: Path, total: int, rng: np.random.Generator) -> tuple[int, list[int]]:
    """One file per area code; returns (lines written, area codes). Formats rotate per file."""
    folder.mkdir(parents=True, exist_ok=True)
    area_codes = pick_area_codes(min(AREA_CODES, max(1, total // 1000)), rng)
    per_npa = total / len(area_codes)
    written = 0
    for index, npa in enumerate(area_codes.tolist()):
        numbers = numbers_of_area_code(npa, int(per_npa), rng)
        text = format_lines(numbers, comma=index % 2 == 0, crlf=index % 3 == 0)
        (folder / f"{npa}.txt").write_bytes(text)
        written += len(numbers)
    return written, area_codes.tolist()


def write_change_list(path: Path, area_codes: list[int], lines: int, rng: np.random.Generator) -> None:
    """`lines` changes, half additions and half deletions, as `AAA,NNNNNNN,A|D,date`."""
    npas = rng.choice(area_codes, size=lines)
    numbers = npas * NUMBERS_PER_NPA + FIRST_EXCHANGE_LINE + rng.integers(0, LINES_PER_NPA, lines)
    flags = np.where(rng.random(lines) < 0.5, "A", "D")
    with path.open("w") as handle:
        for number, flag in zip(numbers.tolist(), flags.tolist()):
            handle.write(f"{number // NUMBERS_PER_NPA},{number % NUMBERS_PER_NPA:07d},{flag},2026-07-02\n")


def write_scrub_list(path: Path, area_codes: list[int], rows: int, rng: np.random.Generator) -> None:
    """A contact list with a few formats and some invalid rows, like a manager's export."""
    npas = rng.choice(area_codes, size=rows)
    numbers = npas * NUMBERS_PER_NPA + FIRST_EXCHANGE_LINE + rng.integers(0, LINES_PER_NPA, rows)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["first_name", "Phone Number", "zip"])
        for index, number in enumerate(numbers.tolist()):
            text = str(number)
            if index % 3 == 0:
                phone = f"({text[:3]}) {text[3:6]}-{text[6:]}"
            elif index % 3 == 1:
                phone = f"+1{text}"
            else:
                phone = text
            if index % 1000 == 0:
                phone = "not a phone"
            writer.writerow([f"name{index}", phone, "10001"])


def lookup_rate(store: RegistryStore, area_codes: list[int], count: int,
                rng: np.random.Generator) -> tuple[float, float]:
    npas = rng.choice(area_codes, size=count)
    numbers = npas * NUMBERS_PER_NPA + FIRST_EXCHANGE_LINE + rng.integers(0, LINES_PER_NPA, count)
    store.contains_array(numbers[:1000])                       # map the store before timing
    with Timer() as timer:
        store.contains_array(numbers)
    return count / timer.wall, count / timer.cpu


def string_lookup_rate(store: RegistryStore, area_codes: list[int], count: int, rng: np.random.Generator) -> float:
    npas = rng.choice(area_codes, size=count)
    numbers = npas * NUMBERS_PER_NPA + FIRST_EXCHANGE_LINE + rng.integers(0, LINES_PER_NPA, count)
    phones = [f"+1{n}" for n in numbers.tolist()]
    started = time.perf_counter()
    store.contains_many(phones)
    return count / (time.perf_counter() - started)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def scrub_seconds(store: RegistryStore, work: Path, list_path: Path, area_codes: list[int]) -> Timer:
    """The scrub of `list_path` against the store and an SQLite database holding state,
    internal and litigator lists of realistic size."""
    from sqlmodel import Session, SQLModel, create_engine

    from consent import dnc, scrub, tables  # noqa: F401  (tables registers the metadata)
    from consent.bulk_numbers import normalise

    engine = create_engine(f"sqlite:///{work / 'bench.db'}")
    SQLModel.metadata.create_all(engine)
    rng = np.random.default_rng(7)
    state_file = work / "fl.txt"
    picks = rng.choice(area_codes, size=100_000) * NUMBERS_PER_NPA + FIRST_EXCHANGE_LINE \
        + rng.integers(0, LINES_PER_NPA, 100_000)
    # A list load is all or nothing: keep only numbers a real list would hold (valid NANP).
    picks = np.array([n for n in picks.tolist() if normalise(str(n))[0]], dtype=np.int64)
    state_file.write_text("\n".join(f"+1{n}" for n in picks.tolist()))
    litigator_file = work / "litigators.txt"
    litigator_file.write_text("\n".join(str(n) for n in picks[:20_000].tolist()))
    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        dnc.import_state_list(session, "FL", state_file, at=now, actor="bench", audit=_no_audit)
        dnc.import_litigator_list(session, litigator_file, at=now, actor="bench", audit=_no_audit)
        for n in [n for n in picks[20_000:22_000].tolist() if normalise(str(n))[0]][:1000]:
            dnc.add_internal(session, f"+1{n}", reason="bench", actor="bench", at=now, audit=_no_audit)
        session.commit()
        with Timer() as timer:
            report = scrub.scrub_csv(list_path, work / "scrubbed.csv", session, store)
    print(f"  scrub counts: {report.counts} of {report.rows:,} rows")
    return timer


def _no_audit(session, **event) -> None:
    """The benchmark measures the lists, not the audit chain."""


def run(total: int, work: Path, keep: bool) -> list[Figure]:
    rng = np.random.default_rng(2026)
    figures: list[Figure] = []
    scale = total / 250_000_000
    print(f"work folder: {work}")
    started = time.perf_counter()
    written, area_codes = write_full_download(work / "download", total, rng)
    text_bytes = sum(p.stat().st_size for p in (work / "download").iterdir())
    print(f"generated {written:,} numbers over {len(area_codes)} area codes "
          f"({text_bytes / 1e9:.2f} GB of text) in {time.perf_counter() - started:.1f} s (not measured)")

    store = RegistryStore(work / "registry")
    with Timer() as timer:
        report = store.ingest_full([work / "download"], synced_at=SYNCED_AT)
    assert report.entries == written and report.malformed == 0, report
    full_scale = total >= 250_000_000
    figures.append(Figure("ingest full download", timer.wall, "s",
                          "<= 120 s" if full_scale else f"<= 120 s at 250M (here {total:,})",
                          timer.wall <= 120, timer.cpu))
    size = folder_size(work / "registry")
    figures.append(Figure("store size on disk", size / 1e6, "MB", "<= 400 MB", size <= 400e6))

    wall_rate, cpu_rate = lookup_rate(store, area_codes, 20_000_000, rng)
    figures.append(Figure("batched lookups (int64 array)", wall_rate / 1e6, "M numbers/s", ">= 20 M/s",
                          wall_rate >= 20e6, cpu_rate / 1e6))
    string_rate = string_lookup_rate(store, area_codes, 1_000_000, rng)
    figures.append(Figure("batched lookups (E.164 strings, info)", string_rate / 1e6, "M numbers/s",
                          "no target", True))

    change_path = work / "changes.txt"
    write_change_list(change_path, area_codes, 1_000_000, rng)
    with Timer() as timer:
        change = store.apply_changes([change_path], at=SYNCED_AT + timedelta(days=1))
    figures.append(Figure("apply 1,000,000-line change list", timer.wall, "s", "<= 10 s",
                          timer.wall <= 10, timer.cpu))
    print(f"  changes: +{change.added:,} -{change.removed:,}, entries now {change.entries:,}")

    list_path = work / "contacts.csv"
    write_scrub_list(list_path, area_codes, 1_000_000, rng)
    timer = scrub_seconds(store, work, list_path, area_codes)
    figures.append(Figure("scrub 1,000,000 rows", timer.wall, "s", "<= 10 s", timer.wall <= 10, timer.cpu))
    store.close()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numbers", type=int, default=250_000_000, help="registry size (default 250,000,000)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-registry-"))
    load_before = os.getloadavg()[0]
    figures = run(args.numbers, work, args.keep)
    print()
    print(f"load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs; 'cpu' is the figure in this process's CPU time")
    print(f"{'figure':40} {'wall':>9} {'cpu':>9}  {'unit':12} {'target':38} result")
    for figure in figures:
        mark = "ok" if figure.met else "MISSED"
        cpu = "" if figure.cpu_value is None else f"{figure.cpu_value:9.2f}"
        print(f"{figure.name:40} {figure.value:9.2f} {cpu:>9}  {figure.unit:12} {figure.target:38} {mark}")
    return 0 if all(f.met for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
