"""Benchmark of `outbound audit verify` on a chain of 1,000,000 events.

    .venv/bin/python bench/bench_audit.py                      # 1,000,000 events, SQLite
    .venv/bin/python bench/bench_audit.py --events 100000      # a quick run
    .venv/bin/python bench/bench_audit.py --database-url postgresql+psycopg2://postgres@127.0.0.1:5432/test

Setup (not measured): a few thousand real fact changes through the real code (internal DNC
entries and consents, each audited with its row digests), then the rest of the events appended
by a fast path that computes exactly the keyed hashes `append` would (a million appends one
transaction at a time would take longer than the verify being measured). Then `audit.verify`
is timed end to end: the chain walk, the head, and the re-read of every fact row. Target: under
60 s on the 2-core machine the README names.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OUTBOUND_AUDIT_KEY", "bench-audit-key-not-secret-0123456789abcdef")

import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session  # noqa: E402

from consent import dnc, records  # noqa: E402
from consent.ledger_io import ConsentIn  # noqa: E402
from outbound import audit  # noqa: E402
from outbound.audit_key import current_key  # noqa: E402
from outbound.db import make_engine, session_scope  # noqa: E402
from outbound.migrations import upgrade_to_head  # noqa: E402
from outbound.models import AuditEvent, AuditHead  # noqa: E402

TARGET_SECONDS = 60.0
T0 = datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc)
INSERT_BATCH = 20_000


def real_fact_changes(engine, count: int) -> None:
    """`count` internal DNC entries and `count` consents, each through the real, audited code."""
    with session_scope(engine) as session:
        for n in range(count):
            dnc.add_internal(session, f"+1212555{n:04d}", reason="asked (bench)", actor="bench",
                             at=T0, audit=audit.append)
            records.add_consent(session, ConsentIn.model_validate({
                "phone": f"+1312555{n:04d}", "kind": "written", "channels": ["voice", "sms"],
                "purposes": ["telemarketing"], "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z",
                "evidence": {"certificate_id": f"CERT-{n}"}}), actor="bench", at=T0, audit=audit.append)


def fast_append(engine, count: int) -> None:
    """`count` decision-like events appended in bulk, hashed exactly as `append` hashes them."""
    key = current_key()
    with session_scope(engine) as session:
        head = session.get(AuditHead, audit.HEAD_ID)
        last_id, last_hash = head.last_id, head.last_hash
        rows = []
        for n in range(count):
            at = T0 + timedelta(seconds=n)
            payload = audit.canonical_json({
                "decision_id": f"d-{n:07d}", "attempt_id": n, "verdict": "allow" if n % 3 else "defer",
                "reasons": [] if n % 3 else [{"code": "calling_window", "rule": "federal.hours"}],
                "rules_version": "2026.07-abcdef012345"})
            last_id += 1
            digest = audit._hash_event_text(key, last_id, audit.iso_utc(at), "scheduler", "gate.decision",
                                            f"+1212555{n % 10_000:04d}", payload, last_hash)
            rows.append({"id": last_id, "at": at, "actor": "scheduler", "action": "gate.decision",
                         "subject": f"+1212555{n % 10_000:04d}", "payload": payload,
                         "prev_hash": last_hash, "hash": digest})
            last_hash = digest
            if len(rows) == INSERT_BATCH:
                session.execute(sa.insert(AuditEvent.__table__), rows)
                rows = []
        if rows:
            session.execute(sa.insert(AuditEvent.__table__), rows)
        head.last_id, head.last_hash = last_id, last_hash
        session.add(head)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--fact-changes", type=int, default=2_000,
                        help="internal DNC entries and consents written through the real code (each)")
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as work:
        os.environ.setdefault("OUTBOUND_DATA_DIR", work)
        engine = make_engine(args.database_url or f"sqlite:///{Path(work) / 'outbound.db'}")
        upgrade_to_head(engine)
        started = time.perf_counter()
        real_fact_changes(engine, args.fact_changes)
        with Session(engine) as session:
            real_events = session.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar_one()
        fast_append(engine, max(args.events - real_events, 0))
        print(f"setup: {args.events:,} events ({real_events:,} from real fact changes) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        wall, cpu = time.perf_counter(), time.process_time()
        with Session(engine) as session:
            result = audit.verify(session)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        engine.dispose()
    assert result.ok, result
    met = wall < TARGET_SECONDS
    print(f"audit verify: {result.events_checked:,} events and {result.rows.rows_checked:,} fact rows "
          f"in {wall:.1f} s wall ({cpu:.1f} s CPU); target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
