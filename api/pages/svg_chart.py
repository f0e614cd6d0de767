"""A stacked bar chart as inline SVG, drawn on the server: blocked attempts per day by reason.

No charting library and no JavaScript: the page shows the picture as soon as the HTML arrives,
and the chart cannot execute anything. Labels are escaped here (this markup is emitted as-is).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 860, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 44, 190, 12, 46
PALETTE = ("#b3261e", "#1f5fbf", "#9a6400", "#1d7a3a", "#6a3fb5", "#c2185b", "#00838f", "#5d4037",
           "#455a64", "#ef6c00")


@dataclass(frozen=True)
class Bar:
    day: str
    reason: str
    count: int
    x: float
    y: float
    width: float
    height: float


def stacked_bars(series: list[dict]) -> tuple[list[str], list[str], list[Bar], int]:
    """Days, reasons and the bars of `series` rows {"day", "reason", "count"}; plus the tallest day."""
    days = sorted({row["day"] for row in series})
    reasons = sorted({row["reason"] for row in series})
    per_day: dict[str, dict[str, int]] = defaultdict(dict)
    for row in series:
        per_day[row["day"]][row["reason"]] = row["count"]
    tallest = max((sum(counts.values()) for counts in per_day.values()), default=0)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_w / max(len(days), 1)
    bar_w = max(min(slot * 0.7, 48), 2)
    bars = []
    for index, day in enumerate(days):
        base = HEIGHT - MARGIN_BOTTOM
        for reason in reasons:
            count = per_day[day].get(reason, 0)
            if not count:
                continue
            height = plot_h * count / tallest
            base -= height
            bars.append(Bar(day, reason, count, MARGIN_LEFT + index * slot + (slot - bar_w) / 2, base, bar_w, height))
    return days, reasons, bars, tallest


def blocked_by_reason_svg(series: list[dict], *, title: str = "Blocked attempts per day (UTC) by reason") -> str:
    days, reasons, bars, tallest = stacked_bars(series)
    colour = {reason: PALETTE[index % len(PALETTE)] for index, reason in enumerate(reasons)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
             f'role="img" aria-label="{escape(title)}" id="blocked-chart"><title>{escape(title)}</title>']
    axis_y = HEIGHT - MARGIN_BOTTOM
    parts.append(f'<line x1="{MARGIN_LEFT}" y1="{axis_y}" x2="{WIDTH - MARGIN_RIGHT}" y2="{axis_y}" stroke="#889"/>')
    if not bars:
        parts.append(f'<text x="{MARGIN_LEFT + 10}" y="{HEIGHT / 2}" fill="#5b6575">no blocked attempts match</text>')
    else:
        # Gridlines at whole counts only: a "0.5 attempts" line would mean nothing.
        for value in sorted({tallest, tallest // 2} - {0}):
            y = axis_y - (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) * value / tallest
            parts.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN_RIGHT}" y2="{y:.1f}" '
                         f'stroke="#e3e6ec"/><text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" font-size="11" '
                         f'text-anchor="end" fill="#5b6575">{value}</text>')
    for bar in bars:
        parts.append(f'<rect x="{bar.x:.1f}" y="{bar.y:.1f}" width="{bar.width:.1f}" height="{bar.height:.1f}" '
                     f'fill="{colour[bar.reason]}" data-reason="{escape(bar.reason)}" data-day="{bar.day}">'
                     f'<title>{escape(bar.day)}: {escape(bar.reason)} {bar.count}</title></rect>')
    step = max(1, len(days) // 10)              # at most ~10 day labels, so they never overlap
    slot = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / max(len(days), 1)
    for index, day in enumerate(days):
        if index % step == 0:
            x = MARGIN_LEFT + index * slot + slot / 2
            parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle" '
                         f'fill="#5b6575">{escape(day[5:])}</text>')
    for index, reason in enumerate(reasons):
        y = MARGIN_TOP + 14 + index * 18
        x = WIDTH - MARGIN_RIGHT + 14
        parts.append(f'<rect x="{x}" y="{y - 10}" width="11" height="11" fill="{colour[reason]}"/>'
                     f'<text x="{x + 16}" y="{y}" font-size="12" fill="#1d2430">{escape(reason)}</text>')
    parts.append("</svg>")
    return "".join(parts)
