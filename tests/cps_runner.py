"""A worker process for the shared calls-per-second test: the real dispatch and reaper jobs in a
tight loop, dialing the simulator, each carrier request's wall-clock instant appended to a log.

    python tests/cps_runner.py DB_URL DIAL_LOG WORKER_NAME T0 [MAX_SECONDS]

Exits 0 once no attempt is left to send (pending, claimed or sending), 3 on timeout.
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from sqlalchemy import func, select  # noqa: E402

from consent.rules import load_pack  # noqa: E402
from dispatch_support import NOON_NEW_YORK, FakeRegistry  # noqa: E402
from outbound.db import make_engine  # noqa: E402
from outbound.models import Attempt  # noqa: E402
from scheduler.dispatch import DispatchConfig  # noqa: E402
from scheduler.worker import Intervals, Worker  # noqa: E402
from telephony.simulator import SimulatorAdapter  # noqa: E402

# Batches smaller than the 2 s window's budget (cps × 2): two workers each hold one at once.
CONFIG = DispatchConfig(batch_size=10, pacing_window_seconds=2)


class TimedSimulator(SimulatorAdapter):
    """The simulator, with the instant it took each call request on record (O_APPEND, one write
    per line, so several processes share the log)."""

    def __init__(self, log_path: str, worker: str, **kwargs) -> None:
        super().__init__(seed=worker, deliver=lambda kind, params, at: None, **kwargs)
        self.log_path, self.worker = log_path, worker

    def place_call(self, request):
        received_at = time.time()          # when the carrier has the request, before its own work
        call = super().place_call(request)
        line = json.dumps({"t": received_at, "sid": call.sid, "attempt_id": request.attempt_id,
                           "worker": self.worker}) + "\n"
        descriptor = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)
        return call


def main() -> int:
    db_url, dial_log, name, t0 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    max_seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 60
    engine = make_engine(db_url)
    clock = lambda: NOON_NEW_YORK + timedelta(seconds=time.time() - t0)  # noqa: E731
    worker = Worker(engine=engine, adapter=TimedSimulator(dial_log, name, clock=clock), registry=FakeRegistry(),
                    clock=clock, pack=load_pack(), worker_id=name, config=CONFIG, intervals=Intervals())
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        report = worker.dispatch_tick()
        if not _left_to_send(engine):
            return 0
        if not report.claimed:
            time.sleep(0.02)
    return 3


def _left_to_send(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Attempt).where(
            Attempt.status.in_(("pending", "claimed", "sending")))).scalar_one()


if __name__ == "__main__":
    sys.exit(main())
