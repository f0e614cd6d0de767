"""Benchmark: import a generated, realistically messy contact list into a fresh SQLite database.

    .venv/bin/python bench/bench_import.py                 # 1,000,000 rows
    .venv/bin/python bench/bench_import.py --rows 100000 --keep /tmp/list.csv

The list is generated in a child process, so the peak RSS reported is the import's alone. About
5% of rows cannot be used (blank, letters, too short, impossible area codes, extensions,
international numbers, unknown states), about 3% repeat an earlier number in another layout,
and ZIP and state come in every combination and spelling a spreadsheet produces. The import
runs through the same code path as `outbound import contacts` (open_list, import_contacts).
The target (issue 3): 1M rows in at most 20 s on a 2-core machine, peak RSS at most 1 GB.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED = 20261121
INVALID_SHARE = 0.05
DUPLICATE_SHARE = 0.03
PREFIX_POOL = 20_000


def _valid_prefixes(rng: random.Random) -> list[str]:
    """NPA-NXX prefixes of real US numbers, the way a real list spreads over the country."""
    import phonenumbers
    prefixes: set[str] = set()
    while len(prefixes) < PREFIX_POOL:
        prefix = f"{rng.randint(201, 989)}{rng.randint(200, 999)}"
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(prefix + "0000"))
        if phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) == "US":
            prefixes.add(prefix)
    return sorted(prefixes)


def _layout(rng: random.Random, digits: str) -> str:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return rng.choice((
        f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"1-{a}-{b}-{c}", f"{a}{b}{c}",
        f"{a}-{b}-{c}", f"+1{a}{b}{c}", f" {a} {b} {c} ", f"1{a}{b}{c}", f"({a}){b}-{c}",
    ))


def _invalid_phone(rng: random.Random, digits: str) -> str:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return rng.choice((
        "", "   ", "N/A", f"{a}-{b}-{c[:2]}AB", f"{a}-{b}-{c} x{rng.randint(1, 999)}",
        f"{a}.{b}.{c} ext. {rng.randint(1, 99)}", f"+44 20 7946 {rng.randint(1000, 9999)}",
        f"+49 30 {rng.randint(1000000, 9999999)}", f"{a}-{b}-{c[:3]}", f"123-{b}-{c}",
        f"(555) 0{b[1:]}-{c}", "0000000000", f"{a}{b}{c}{c}",
    ))


def generate(path: Path, rows: int, seed: int = SEED) -> None:
    import zipcodes
    rng = random.Random(seed)
    prefixes = _valid_prefixes(rng)
    zips = [(z["zip_code"], z["state"]) for z in zipcodes.list_all() if z["zip_code"].isdigit()]
    state_names = {"NY": "New York", "CA": "california", "TX": "Texas", "FL": "FLORIDA", "OH": "Ohio"}
    recent: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["Phone Number", "First Name", "Last Name", "Email", "Zip Code", "State", "Notes"])
        for i in range(rows):
            digits = rng.choice(prefixes) + f"{rng.randint(0, 9999):04d}"
            roll = rng.random()
            if roll < INVALID_SHARE:
                phone = _invalid_phone(rng, digits)
            elif roll < INVALID_SHARE + DUPLICATE_SHARE and recent:
                phone = _layout(rng, rng.choice(recent))
            else:
                phone = _layout(rng, digits)
                if len(recent) < 100_000:
                    recent.append(digits)
                else:
                    recent[rng.randrange(len(recent))] = digits
            zip_code, state = rng.choice(zips)
            writer.writerow([phone, rng.choice(("Ann", "José", "Li", "Mary-Kate", "")),
                             rng.choice(("Smith", "O'Brien", "García", "Nguyen", "Smith, Jr.")),
                             f"user{i}@example.com" if rng.random() < 0.6 else "",
                             *_address(rng, zip_code, state, state_names),
                             rng.choice(("", "", "", "call after 5", "=HYPERLINK(\"x\")"))])


def _address(rng: random.Random, zip_code: str, state: str, state_names: dict[str, str]) -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.01:
        return "", "ZZ"                                     # unknown state: rejected
    if roll < 0.35:
        return zip_code, state                              # both
    if roll < 0.50:
        return zip_code.lstrip("0") + "-1234", ""           # ZIP+4, leading zero dropped by Excel
    if roll < 0.70:
        return "", state_names.get(state, state.lower())    # state only, spelled out or lower case
    if roll < 0.85:
        return zip_code, ""                                 # ZIP only
    return "", ""                                           # neither: the number alone decides


def run_import(path: Path, database: Path) -> dict:
    from outbound.db import ensure_schema, make_engine, session_scope
    from outbound.lists import find_or_create_campaign, import_contacts, open_list

    engine = make_engine(f"sqlite:///{database}")
    ensure_schema(engine)
    started, cpu_started, main_cpu_started = time.perf_counter(), time.process_time(), time.thread_time()
    at = datetime.now(timezone.utc)
    with path.open("rb") as stream:
        reader, columns = open_list(stream)
        with session_scope(engine) as session:
            campaign_id = find_or_create_campaign(session, "bench", at).id
        result = import_contacts(engine, reader, columns, campaign_id=campaign_id,
                                 file_name=path.name, actor="bench", at=at)
    seconds = time.perf_counter() - started
    # CPU seconds of both threads (parser and writer): on a shared machine wall time also
    # measures the neighbours.
    cpu_seconds = time.process_time() - cpu_started
    main_thread_cpu = time.thread_time() - main_cpu_started      # reading, normalising, placing
    return {"rows": result.rows, "seconds": round(seconds, 2), "rows_per_s": round(result.rows / seconds),
            "cpu_seconds": round(cpu_seconds, 2), "parser_thread_cpu_seconds": round(main_thread_cpu, 2),
            "writer_thread_cpu_seconds": round(cpu_seconds - main_thread_cpu, 2),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            **result.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the generated CSV here and keep it")
    parser.add_argument("--csv", type=Path, help="import this CSV instead of generating one")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)   # child process mode
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.rows)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.csv or args.keep or Path(tmp) / "contacts.csv"
        if not args.csv:
            started = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--generate", str(path), "--rows", str(args.rows)],
                           check=True)
            print(f"generated {args.rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - started:.1f} s")
        figures = run_import(path, Path(tmp) / "bench.db")
    for name, value in figures.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
