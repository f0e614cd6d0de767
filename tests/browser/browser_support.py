"""Helpers of the browser journeys: signing in through the real form, a worker on simulated time."""
from __future__ import annotations

import itertools
import shutil
import threading
from datetime import datetime, timedelta
from pathlib import Path

from scheduler.dispatch import dispatch_once


def business_afternoon_after(now: datetime) -> datetime:
    """16:00 UTC (11:00 in New York, 08:00 in Los Angeles) of the next weekday after `now` that is
    not a US federal holiday: campaigns started "now" by the pages are due by then, and the
    calling windows are open across the country, so the simulated worker has calls to allow."""
    import holidays

    federal = holidays.country_holidays("US", years=range(now.year, now.year + 2))
    day = now.date() + timedelta(days=1)
    while day.weekday() >= 5 or day in federal:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 16, 0, tzinfo=now.tzinfo)


def sign_in_browser(page, app, name: str, role: str, *, next_path: str = "") -> None:
    """Create the user (if new) and sign in through the real login form."""
    from pages_support import PASSWORD, ensure_user

    ensure_user(app.engine, name, role)
    page.goto(app.url("/login" + (f"?next={next_path}" if next_path else "")))
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


_SEEDS = itertools.count(7)


class SimulatedWorker:
    """The dispatch loop on simulated time, in a thread: what `outbound worker` does, with the
    seeded simulator as carrier and its events delivered through the webhook handler."""

    def __init__(self, engine, registry, start: datetime, step: timedelta = timedelta(minutes=1),
                 pause_seconds: float = 0.3):
        self.engine, self.registry, self.step, self.pause = engine, registry, step, pause_seconds
        self.now = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-worker", daemon=True)
        self.error: BaseException | None = None
        from sqlmodel import Session

        from consent.rules import load_pack
        from outbound.carrier_events import handle_webhook
        from scheduler.dispatch import DispatchConfig
        from telephony.simulator import SimulatorAdapter

        def deliver(kind: str, params: dict, at: datetime) -> None:
            with Session(self.engine) as session:
                handle_webhook(session, kind, params, at, adapter=self.simulator)

        # A seed per worker: the simulator's call ids follow from its seed, and two workers with one
        # seed would hand out the same (unique) carrier ids.
        self.simulator = SimulatorAdapter(next(_SEEDS), deliver, clock=lambda: self.now)
        self.pack, self.config = load_pack(), DispatchConfig()

    def __enter__(self) -> SimulatedWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def tick(self) -> None:
        """One dispatch at the simulated now, the carrier's events delivered, the clock moved on."""
        now = self.now
        dispatch_once(self.engine, self.simulator, worker_id="browser-tests", now=now, pack=self.pack,
                      registry=self.registry, config=self.config, sleep=lambda _s: None,
                      monotonic=lambda: now.timestamp())
        self.simulator.advance(now)
        self.now = now + self.step

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(self.pause)
        except BaseException as error:      # noqa: BLE001 - reported by the test that started it
            self.error = error


def copy_sample(name: str, target: Path) -> Path:
    from outbound.demo import sample_path

    shutil.copy(sample_path(name), target)
    return target
