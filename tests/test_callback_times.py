"""What "call me back after 5 pm" means, in the contact's own zone (the gate still decides)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from outbound.callback_times import parse_callback_time


@pytest.mark.parametrize("heard,at,zone,due,phrase", [
    ("Call me after 5 pm", "2026-07-15T16:00Z", "America/New_York", "2026-07-15T21:00Z", "after 5 PM"),
    ("Call me after 5 pm", "2026-07-15T22:00Z", "America/New_York", "2026-07-16T21:00Z", "after 5 PM"),  # 18:00: tomorrow
    ("call me back tomorrow afternoon", "2026-07-15T16:00Z", "America/Chicago", "2026-07-16T18:00Z", "tomorrow at 1 PM"),
    ("call me at 3", "2026-07-15T16:00Z", "America/Los_Angeles", "2026-07-15T22:00Z", "at 3 PM"),
    ("call back at 9:30 am", "2026-07-15T16:00Z", "America/New_York", "2026-07-16T13:30Z", "at 9:30 AM"),
    ("later, I'm driving", "2026-07-15T16:00Z", "America/New_York", "2026-07-16T16:00Z", "later"),
    # The clocks go back on 2026-11-01: 17:00 EST is 22:00 UTC, not 21:00.
    ("after 5 pm", "2026-10-31T20:00Z", "America/New_York", "2026-10-31T21:00Z", "after 5 PM"),
    ("after 5 pm", "2026-11-01T20:00Z", "America/New_York", "2026-11-01T22:00Z", "after 5 PM"),
])
def test_callback_time(heard, at, zone, due, phrase):
    parsed = parse_callback_time(heard, datetime.fromisoformat(at.replace("Z", "+00:00")), zone)
    assert parsed.due_at == datetime.fromisoformat(due.replace("Z", "+00:00")).astimezone(timezone.utc)
    assert parsed.phrase == phrase
