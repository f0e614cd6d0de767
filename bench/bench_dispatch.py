"""End-to-end dispatch throughput: claim, load facts, gate, store decision and audit event,
commit, carrier request (an in-process fake carrier), record the carrier id.

    .venv/bin/python bench/bench_dispatch.py                       # both backends
    .venv/bin/python bench/bench_dispatch.py --backend sqlite --attempts 5000
    .venv/bin/python bench/bench_dispatch.py --backend postgres --workers 2 \\
        --postgres-url postgresql+psycopg2://postgres@127.0.0.1:5432/test

Targets: ≥ 500 attempts/s with one worker on SQLite; ≥ 1,000 attempts/s with two worker
processes on PostgreSQL. Every attempt is allowed (informational live calls to landlines at
noon in New York), the most expensive path. Pacing is set out of the way (cps and concurrency at
their maxima, the inter-request spacing disabled): it is a configured ceiling, not a cost.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from consent.rules import load_pack  # noqa: E402
from dispatch_support import NOON_NEW_YORK, FakeAdapter, FakeRegistry, running_campaign  # noqa: E402
from outbound.db import ensure_schema, make_engine  # noqa: E402
from outbound.models import Attempt  # noqa: E402
from scheduler.dispatch import DispatchConfig, dispatch_once  # noqa: E402

TARGETS = {"sqlite": 500, "postgres": 1000}
CONFIG = DispatchConfig(batch_size=500, pacing_window_seconds=86400, lease_seconds=600)


def phones(count: int) -> list[str]:
    # 212 and 646 are both New York City: 20,000 distinct numbers.
    return [f"+1{'212' if i < 10_000 else '646'}555{i % 10_000:04d}" for i in range(count)]


def prepare(url: str, count: int) -> None:
    engine = make_engine(url)
    ensure_schema(engine)
    running_campaign(engine, phones(count), settings={"cps": 100, "max_concurrent": 10_000})
    engine.dispose()


def work(url: str, worker_id: str) -> int:
    """Dispatch until nothing is left to claim; returns attempts decided."""
    engine, pack, registry = make_engine(url), load_pack(), FakeRegistry()
    adapter = FakeAdapter(sid_prefix=f"CA-{worker_id}-")      # carrier ids are unique across workers
    done = 0
    # The pacing spacing (1/cps between requests) runs on a clock that jumps instead of waiting:
    # it is a configured ceiling, not a cost of the engine.
    skipped = [0.0]

    def sleep(seconds: float) -> None:
        skipped[0] += seconds

    while True:
        report = dispatch_once(engine, adapter, worker_id=worker_id, now=NOON_NEW_YORK, pack=pack,
                               registry=registry, config=CONFIG, sleep=sleep,
                               monotonic=lambda: time.monotonic() + skipped[0])
        if not report.claimed:
            break
        done += report.claimed
    engine.dispose()
    return done


def run(url: str, count: int, workers: int) -> float:
    prepare(url, count)
    started = time.perf_counter()
    if workers == 1:
        decided = work(url, "bench-0")
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            decided = sum(pool.starmap(work, [(url, f"bench-{n}") for n in range(workers)]))
    elapsed = time.perf_counter() - started
    engine = make_engine(url)
    with engine.connect() as connection:
        dialing = connection.execute(select(func.count()).select_from(Attempt)
                                     .where(Attempt.status == "dialing", Attempt.carrier_id.is_not(None))).scalar_one()
    engine.dispose()
    if decided != count or dialing != count:
        raise SystemExit(f"expected {count} attempts dialed, got {decided} decided and {dialing} dialing")
    return count / elapsed


def report(backend: str, workers: int, count: int, rate: float, command: str) -> None:
    target = TARGETS[backend]
    verdict = "meets" if rate >= target else "BELOW"
    print(f"{backend:8} {workers} worker(s)  {count:>6} attempts  {rate:8,.0f} attempts/s  "
          f"target ≥ {target:,}/s: {verdict}")
    print(f"         command: {command}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--attempts", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="PostgreSQL worker processes")
    parser.add_argument("--postgres-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    command = " ".join(["bench/bench_dispatch.py", *sys.argv[1:]])
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            rate = run(f"sqlite:///{folder}/bench.db", args.attempts, 1)
        report("sqlite", 1, args.attempts, rate, command)
    if args.backend in ("postgres", "both"):
        rate = _run_postgres(args.postgres_url, args.attempts, args.workers)
        report("postgres", args.workers, args.attempts, rate, command)


def _run_postgres(admin_url: str, count: int, workers: int) -> float:
    admin = make_engine(admin_url)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        return run(url.render_as_string(hide_password=False), count, workers)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
