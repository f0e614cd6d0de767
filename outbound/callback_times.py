"""When a person asked to be called back: "after 5 pm", "tomorrow afternoon", "at 3:30".

Pure: the instant heard and the contact's zone are arguments. The result is only a due time:
dispatch still puts the call through the gate then (a time outside the legal window is deferred
to the next opening, never dialled).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

PARTS_OF_DAY = {"morning": time(9, 0), "afternoon": time(13, 0), "evening": time(17, 30), "tonight": time(18, 0),
                "noon": time(12, 0), "lunch": time(12, 0)}
CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a m|p m|oclock|o clock)?\b")
DEFAULT_DELAY = timedelta(days=1)


@dataclass(frozen=True)
class CallbackTime:
    due_at: datetime          # UTC
    phrase: str               # how the greeting says it next time: "after 5 PM"


def parse_callback_time(heard: str, at: datetime, zone: str) -> CallbackTime:
    """The first instant after `at` that matches what was heard, in the contact's `zone`.
    Nothing usable (e.g. "later") → the same time tomorrow."""
    tz = ZoneInfo(zone)
    local_now = at.astimezone(tz)
    text = heard.casefold()
    day_offset = 1 if "tomorrow" in text else 0
    wanted = _clock_time(text) or next((t for word, t in PARTS_OF_DAY.items() if word in text), None)
    if wanted is None:
        due = local_now + (DEFAULT_DELAY if day_offset == 0 else timedelta(days=day_offset))
        return CallbackTime(due.astimezone(UTC), "later")
    day = local_now.date() + timedelta(days=day_offset)
    due = datetime.combine(day, wanted, tzinfo=tz)
    if due <= local_now:
        due = datetime.combine(day + timedelta(days=1), wanted, tzinfo=tz)
    return CallbackTime(due.astimezone(UTC), _phrase(text, wanted, day_offset))


def _clock_time(text: str) -> time | None:
    for match in CLOCK.finditer(text):
        hour, minute, meridiem = int(match.group(1)), int(match.group(2) or 0), (match.group(3) or "").replace(" ", "")
        if not meridiem and not match.group(2):
            # A bare number counts as a time only after "at" / "after" / "around" ("call me at 3").
            if not re.search(rf"\b(?:at|after|around|about|by)\s+{match.group(0)}\b", text):
                continue
        if hour > 23 or minute > 59:
            continue
        if meridiem == "pm" and hour < 12:
            hour += 12
        elif meridiem == "am" and hour == 12:
            hour = 0
        elif not meridiem or meridiem in ("oclock",):
            # "at 3" means the afternoon; people are not asked to be called at 3 in the night.
            hour = hour + 12 if 1 <= hour <= 7 else hour
        return time(hour, minute)
    return None


def _phrase(text: str, wanted: time, day_offset: int) -> str:
    label = wanted.strftime("%I:%M %p").lstrip("0").replace(":00", "")
    prefix = "after " if re.search(r"\bafter\b", text) else "at "
    return f"{'tomorrow ' if day_offset else ''}{prefix}{label}"
