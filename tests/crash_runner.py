"""A worker process for the crash-safety tests: the real dispatch, reaper and housekeeping jobs,
driven in a tight loop on a simulated clock, dialing through `FileLogAdapter`.

    python tests/crash_runner.py DB_URL DIAL_LOG WORKER_NAME T0 [MAX_SECONDS [scheduler]]

With `scheduler`, the jobs run under the real APScheduler `Worker.run()` (fast intervals) until
SIGTERM/SIGINT instead of the tight loop.

The simulated clock is NOON_NEW_YORK + (wall time − T0): every process started by one test
shares it, so leases written by a killed process expire for its successor. Exits 0 once no
campaign is running (housekeeping completed it), 3 on timeout.
"""
from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from sqlalchemy import select  # noqa: E402

from consent.rules import load_pack  # noqa: E402
from dispatch_support import NOON_NEW_YORK, FakeRegistry, FileLogAdapter  # noqa: E402
from outbound.db import make_engine  # noqa: E402
from outbound.models import Campaign  # noqa: E402
from scheduler.dispatch import DispatchConfig  # noqa: E402
from scheduler.worker import Intervals, Worker  # noqa: E402

# Short leases, so a killed worker's attempts are recovered within the test's time.
CONFIG = DispatchConfig(batch_size=10, lease_seconds=2, send_lease_seconds=2, call_lease_seconds=0.5,
                        pacing_window_seconds=2, callback_window_seconds=3)


def main() -> int:
    db_url, dial_log, name, t0 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    max_seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 60
    engine = make_engine(db_url)
    worker = Worker(engine=engine, adapter=FileLogAdapter(dial_log, name), registry=FakeRegistry(),
                    clock=lambda: NOON_NEW_YORK + timedelta(seconds=time.time() - t0), pack=load_pack(),
                    worker_id=name, config=CONFIG, intervals=Intervals())
    if sys.argv[6:] == ["scheduler"]:
        worker.intervals = Intervals(dispatch=0.2, reaper=0.5, housekeeping=1.0)
        worker.run()
        return 0
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        worker.reaper_tick()
        report = worker.dispatch_tick()
        worker.housekeeping_tick()
        if not _any_running(engine):
            return 0
        if not report.claimed:
            time.sleep(0.05)
    return 3


def _any_running(engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(Campaign.id).where(Campaign.status == "running").limit(1)).first() is not None


if __name__ == "__main__":
    sys.exit(main())
