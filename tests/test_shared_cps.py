"""The calls-per-second ceiling is the campaign's, across every worker (PostgreSQL, several
worker processes, one campaign): in no one-second window do the workers together make more
carrier requests than the campaign's cps. Each worker kept the spacing for itself before, and
two workers together sent 60 in one second against a cps of 50."""
from __future__ import annotations

import bisect
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from dispatch_support import NOON_NEW_YORK, new_york_phone, running_campaign
from outbound.db import ensure_schema, make_engine
from scheduler.pacing import MAX_SLOT_AHEAD, reserve_send_slot

RUNNER = Path(__file__).resolve().parent / "cps_runner.py"
CPS = 20


def busiest_second(instants: list[float]) -> int:
    """The most instants in any half-open one-second window [t, t + 1)."""
    instants = sorted(instants)
    return max(bisect.bisect_left(instants, start + 1.0, lo=i) - i for i, start in enumerate(instants))


@pytest.mark.postgres
def test_two_workers_together_never_exceed_the_campaigns_cps_in_any_second(postgres_schema_url, tmp_path):
    engine = make_engine(postgres_schema_url)
    ensure_schema(engine)
    contacts = 240
    running_campaign(engine, [new_york_phone(i) for i in range(1000, 1000 + contacts)],
                     settings={"cps": CPS, "max_concurrent": 1000})
    dial_log, t0 = tmp_path / "dials.jsonl", time.time()
    workers = [subprocess.Popen([sys.executable, str(RUNNER), postgres_schema_url, str(dial_log), f"w{n}", repr(t0),
                                 "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in range(2)]
    for worker in workers:
        _out, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err.decode()[-3000:]
    dials = [json.loads(line) for line in dial_log.read_text().splitlines()]
    engine.dispose()

    assert len(dials) == contacts and len({dial["attempt_id"] for dial in dials}) == contacts
    by_worker = Counter(dial["worker"] for dial in dials)
    assert len(by_worker) == 2 and min(by_worker.values()) >= 10, f"the work was not shared: {by_worker}"
    busiest = busiest_second([dial["t"] for dial in dials])
    print(f"\n{len(dials)} dials by {dict(by_worker)}; busiest second: {busiest} (cps {CPS})")
    assert busiest <= CPS


def test_busiest_second_counts_a_half_open_window():
    assert busiest_second([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert busiest_second([0.0, 1.0, 2.0]) == 1


def test_slots_are_handed_out_one_after_another_across_callers(engine):
    campaign_id = running_campaign(engine, [new_york_phone(1)])
    slots = [reserve_send_slot(engine, campaign_id, 4, NOON_NEW_YORK) for _ in range(3)]
    assert slots == [NOON_NEW_YORK, NOON_NEW_YORK + timedelta(seconds=0.25), NOON_NEW_YORK + timedelta(seconds=0.5)]
    # A caller later than the next slot sends at once, and the slots go on from it.
    later = NOON_NEW_YORK + timedelta(seconds=5)
    assert reserve_send_slot(engine, campaign_id, 4, later) == later
    assert reserve_send_slot(engine, campaign_id, 4, later) == later + timedelta(seconds=0.25)
    # A slot set on another clock (far ahead of this caller's) does not hold this one back.
    earlier = NOON_NEW_YORK - MAX_SLOT_AHEAD * 2
    assert reserve_send_slot(engine, campaign_id, 4, earlier) == earlier
