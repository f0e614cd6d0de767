"""Bytes depend on the scenario alone (DESIGN.md, "The gate contract"; issue 12 section 4).

A decision's bytes must not depend on which scenarios the same process decided before it, nor on
how a run was split across processes. Each run here starts from a rule pack rebuilt from its JSON
(empty memos, as a fresh worker process has), and scenarios crowd the same UTC minutes, with
different seconds, around the instants where windows open and close, in several zones.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from consent.check import check_lines
from consent.rules import RulePack, load_pack

PACK_JSON = load_pack().to_json()
PROPERTY = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# FL closes at 20:00 Eastern, the federal window at 21:00 local; 208 spans Mountain and Pacific,
# 850 Eastern and Central; 801 is Utah (holidays), 405 Oklahoma, 212 New York.
PHONES = ["+13055550123", "+18505550123", "+12085550123", "+18015550123", "+14055550123",
          "+12125550123", "+19285550123"]
# UTC minutes around window edges: closes (where the second within the minute changes the
# words), an opening, a Sunday and Utah's 24 July holiday.
CLOSES = [datetime(2026, 7, 16, 0, 0, tzinfo=timezone.utc),     # 20:00 EDT: FL closes
          datetime(2026, 7, 16, 1, 0, tzinfo=timezone.utc),     # 21:00 EDT: federal close
          datetime(2026, 7, 16, 2, 0, tzinfo=timezone.utc),     # 21:00 CDT
          datetime(2026, 7, 16, 3, 0, tzinfo=timezone.utc)]     # 21:00 MDT
EDGES = [*CLOSES, *CLOSES,
         datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc),     # 08:00 EDT: opens
         datetime(2026, 7, 19, 16, 0, tzinfo=timezone.utc),     # Sunday
         datetime(2026, 7, 24, 15, 0, tzinfo=timezone.utc)]     # Utah's Pioneer Day
CONSENT = {"kind": "written", "channels": ["voice", "sms"], "purposes": ["telemarketing", "informational"],
           "granted_at": "2026-01-01T00:00:00Z"}
DNC = {"national": {"listed": False, "registered_on": None, "synced_at": "2026-07-10T00:00:00Z"}}


def _instant(edge: datetime, minutes: int, seconds: int, micro: int, offset_hours: int) -> str:
    when = edge + timedelta(minutes=minutes, seconds=seconds, microseconds=micro)
    return when.astimezone(timezone(timedelta(hours=offset_hours))).isoformat().replace("+00:00", "Z")


@st.composite
def runs(draw) -> list[str]:
    """2-10 lines crowding one or two UTC minutes next to a window edge, for one or two phones."""
    edges = draw(st.lists(st.sampled_from(EDGES), min_size=1, max_size=2))
    minutes = draw(st.lists(st.sampled_from([0, 0, -1, 1]), min_size=1, max_size=2))
    phones = draw(st.lists(st.sampled_from(PHONES), min_size=1, max_size=2))
    instants = st.builds(_instant, st.sampled_from(edges), st.sampled_from(minutes),
                         st.sampled_from([0, 0, 1, 30, 59]), st.sampled_from([0, 0, 0, 500_000]),
                         st.sampled_from([0, -4, -7]))
    return draw(st.lists(scenarios(instants, st.sampled_from(phones)), min_size=2, max_size=10))


@st.composite
def scenarios(draw, instants, phones) -> str:
    at = draw(instants)
    channel = draw(st.sampled_from(["voice", "sms"]))
    raw = {"at": at, "channel": channel, "purpose": draw(st.sampled_from(["telemarketing", "informational"])),
           "contact": {"phone": draw(phones), "line_type": "mobile"},
           "consents": [CONSENT], "dnc": DNC}
    if channel == "voice":
        raw["voice"] = draw(st.sampled_from(["live", "artificial"]))
    state = draw(st.sampled_from([None, None, "FL", "UT", "ID", "OK"]))
    if state:
        raw["contact"]["state"] = state
    if draw(st.integers(0, 3)) == 0:    # earlier attempts: caps count them
        raw["history"] = [{"at": draw(instants), "channel": "voice"} for _ in range(draw(st.integers(1, 3)))]
    if draw(st.integers(0, 9)) == 0:    # now and then a line that is not a valid scenario
        return json.dumps({**raw, "automated": "false"})
    return json.dumps(raw)


def _fresh_run(lines: list[str]) -> list[str]:
    """Decide lines in order, as one fresh process would."""
    return [output for _, output, _ in check_lines(lines, RulePack.from_json(PACK_JSON))]


@PROPERTY
@given(runs(), st.randoms(use_true_random=False), st.data())
def test_bytes_do_not_depend_on_order_split_or_history(lines, rng, data):
    alone = [_fresh_run([line])[0] for line in lines]
    assert _fresh_run(lines) == alone

    order = list(range(len(lines)))
    rng.shuffle(order)
    shuffled = _fresh_run([lines[index] for index in order])
    assert [shuffled[order.index(index)] for index in range(len(lines))] == alone

    cut = data.draw(st.integers(1, len(lines) - 1))
    assert _fresh_run(lines[:cut]) + _fresh_run(lines[cut:]) == alone
    # A process that decided everything once already answers the same again.
    pack = RulePack.from_json(PACK_JSON)
    list(check_lines(reversed(lines), pack))
    assert [output for _, output, _ in check_lines(lines, pack)] == alone


def test_the_same_minute_decided_at_the_close_and_just_after():
    """The reproduction: 20:00:30 EDT first, then 20:00:00 EDT (Florida's close) in one process."""
    base = {"channel": "voice", "purpose": "telemarketing", "voice": "live", "automated": False,
            "contact": {"phone": "+13055550123"}, "dnc": DNC}
    after = json.dumps({**base, "at": "2026-07-16T00:00:30Z"})
    at_close = json.dumps({**base, "at": "2026-07-16T00:00:00Z"})
    together = _fresh_run([after, at_close])
    assert together == [_fresh_run([after])[0], _fresh_run([at_close])[0]]
    assert "at the 20:00 close" in together[1] and "after 20:00" in together[0]


def test_gate_check_prints_the_same_bytes_however_the_file_is_split(cli_runner, outbound_env, tmp_path, monkeypatch):
    from outbound.cli import app
    from outbound.commands import gate_cmd

    base = {"channel": "voice", "purpose": "telemarketing", "voice": "live", "automated": False, "dnc": DNC}
    lines = [json.dumps({**base, "at": f"2026-07-16T0{hour}:00:{second:02d}Z", "contact": {"phone": phone}})
             for hour in (0, 1) for second in (30, 0, 59, 0) for phone in ("+13055550123", "+12125550123")]
    path = tmp_path / "same_minutes.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    alone = "".join(_fresh_run([line])[0] + "\n" for line in lines)
    serial = cli_runner.invoke(app, ["gate", "check", str(path), "--workers", "1"])
    assert serial.exit_code == 0, serial.output
    assert serial.stdout == alone
    monkeypatch.setattr(gate_cmd, "PARALLEL_FROM_BYTES", 0)
    for chunk in (1, 3, 5):
        monkeypatch.setattr(gate_cmd, "CHUNK_LINES", chunk)
        parallel = cli_runner.invoke(app, ["gate", "check", str(path), "--workers", "2"])
        assert parallel.exit_code == 0, parallel.output
        assert parallel.stdout == alone, chunk
