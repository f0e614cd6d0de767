"""The simulator adapter: deterministic, Twilio-shaped, and faithful to how calls end."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from telephony.adapter import CallRequest, CarrierError, SmsRequest
from telephony.simulator import (
    DEFAULT_CALL_OUTCOMES,
    SIM_EPOCH,
    SMS_REPLY_BODIES,
    SimulationProfile,
    SimulatorAdapter,
)

SID = re.compile(r"(CA|SM)[0-9a-f]{32}")
T0 = SIM_EPOCH


def call_request(n: int = 0, timeout: int = 25) -> CallRequest:
    return CallRequest(to=f"+1415555{n:04d}", from_="+14155550100",
                       twiml_url="https://calls.example.com/twiml", status_callback="https://calls.example.com/s",
                       amd_callback="https://calls.example.com/amd", timeout_seconds=timeout)


def sms_request(n: int = 0) -> SmsRequest:
    return SmsRequest(to=f"+1415555{n:04d}", from_="+14155550100", body="Reminder: 10:00 tomorrow",
                      status_callback="https://calls.example.com/sms")


class Recorder:
    """The `deliver` sink: every event in delivery order, and indexed by call or message sid."""

    def __init__(self):
        self.events: list[tuple[str, dict, datetime]] = []
        self.by_sid: dict[str, list[tuple[str, dict, datetime]]] = defaultdict(list)

    def __call__(self, kind: str, params: dict, at: datetime) -> None:
        self.events.append((kind, params, at))
        self.by_sid[params.get("CallSid") or params["MessageSid"]].append((kind, params, at))

    def of(self, sid: str, kind: str | None = None) -> list[tuple[str, dict, datetime]]:
        return [e for e in self.by_sid.get(sid, []) if kind is None or e[0] == kind]

    def statuses(self, sid: str) -> list[str]:
        return [p["CallStatus"] for _, p, _ in self.of(sid, "call-status")]


def simulate(seed, calls: int, texts: int, profile: SimulationProfile | None = None):
    recorder = Recorder()
    simulator = SimulatorAdapter(seed, recorder, profile=profile)
    sids = [simulator.place_call(call_request(n)).sid for n in range(calls)]
    sids += [simulator.send_sms(sms_request(n)).sid for n in range(texts)]
    simulator.advance(T0 + timedelta(days=1))
    return simulator, recorder, sids


def outcome(recorder: Recorder, sid: str) -> str:
    final = recorder.statuses(sid)[-1]
    if final != "completed":
        return final
    [(_, amd, _)] = recorder.of(sid, "amd")
    return "machine" if amd["AnsweredBy"].startswith("machine_") else amd["AnsweredBy"]


# -- determinism --------------------------------------------------------------------------------

def test_same_seed_and_requests_give_identical_event_streams():
    _, first, first_sids = simulate(seed=42, calls=60, texts=60)
    _, second, second_sids = simulate(seed=42, calls=60, texts=60)

    assert first_sids == second_sids
    assert first.events == second.events
    assert len(first.events) > 400


def test_another_seed_gives_another_stream():
    _, first, first_sids = simulate(seed=42, calls=20, texts=0)
    _, other, other_sids = simulate(seed=43, calls=20, texts=0)

    assert set(first_sids).isdisjoint(other_sids)
    assert [e[2] for e in first.events] != [e[2] for e in other.events]


def test_a_calls_draws_do_not_depend_on_what_else_was_sent_or_when_time_advanced():
    lone = Recorder()
    alone = SimulatorAdapter(5, lone)
    sid = alone.place_call(call_request(1)).sid
    alone.advance(T0 + timedelta(hours=2))

    busy = Recorder()
    crowded = SimulatorAdapter(5, busy)
    assert crowded.place_call(call_request(1)).sid == sid
    crowded.send_sms(sms_request(2))
    for minute in range(1, 121):                      # advanced in small steps
        crowded.advance(T0 + timedelta(minutes=minute))

    assert busy.of(sid) == lone.of(sid)


def test_sids_look_like_twilios():
    simulator, recorder, sids = simulate(seed="demo", calls=5, texts=5)
    assert all(SID.fullmatch(sid) for sid in sids)
    assert [sid[:2] for sid in sids] == ["CA"] * 5 + ["SM"] * 5
    assert re.fullmatch(r"AC[0-9a-f]{32}", simulator.account_sid)


# -- the traffic mix ----------------------------------------------------------------------------

def test_outcomes_over_2000_calls_match_the_default_profile():
    _, recorder, sids = simulate(seed=2026, calls=2000, texts=0)

    counted = Counter(outcome(recorder, sid) for sid in sids)

    for name, share in DEFAULT_CALL_OUTCOMES.items():
        # ±3 points is about three standard deviations of a 35% share over 2,000 calls.
        assert abs(counted[name] / 2000 - share) < 0.03, (name, counted)
    assert sum(counted.values()) == 2000


def test_some_answered_calls_reply_by_voice_or_key_and_some_contacts_text_stop():
    _, recorder, sids = simulate(seed=11, calls=2000, texts=0)

    gathers = [p for kind, p, _ in recorder.events if kind == "gather"]
    humans = sum(1 for sid in sids if outcome(recorder, sid) == "human")
    assert 0.10 < len(gathers) / humans < 0.20                      # reply_share 0.15
    assert any("SpeechResult" in p and 0 < float(p["Confidence"]) <= 1 for p in gathers)
    assert any(p.get("Digits") for p in gathers)
    stops = [p for kind, p, _ in recorder.events if kind == "sms-inbound"]
    assert stops and all(p["To"] == "+14155550100" and p["From"].startswith("+1415555") for p in stops)


def test_texts_are_queued_sent_then_delivered_or_fail_with_an_error_code_and_some_get_replies():
    _, recorder, sids = simulate(seed=3, calls=0, texts=600)

    finals = Counter()
    for sid in sids:
        statuses = [p["MessageStatus"] for _, p, _ in recorder.of(sid, "sms-status")]
        assert statuses in (["queued", "sent", "delivered"], ["queued", "sent", "undelivered"],
                            ["queued", "failed"])
        last = recorder.of(sid, "sms-status")[-1][1]
        assert ("ErrorCode" in last) == (statuses[-1] != "delivered")
        finals[statuses[-1]] += 1
    assert 0.90 < finals["delivered"] / 600 < 0.99
    replies = [p for kind, p, _ in recorder.events if kind == "sms-inbound"]
    assert 0.02 < len(replies) / finals["delivered"] < 0.09          # 5.5% of delivered texts
    assert {p["Body"] for p in replies} & set(SMS_REPLY_BODIES["stop"])
    assert all(p["From"].startswith("+1415555") and p["To"] == "+14155550100" for p in replies)


# -- the shape and order of one call's events --------------------------------------------------

def test_each_call_has_twilios_event_order_and_realistic_timings():
    _, recorder, sids = simulate(seed=9, calls=300, texts=0)
    assert [at for _, _, at in recorder.events] == sorted(at for _, _, at in recorder.events)

    for sid in sids:
        status_events = recorder.of(sid, "call-status")
        at = {p["CallStatus"]: when for _, p, when in status_events}
        assert [p["SequenceNumber"] for _, p, _ in status_events] == [str(i) for i in range(len(status_events))]
        assert status_events[0][1]["CallStatus"] == "initiated"
        final = status_events[-1][1]
        kind = outcome(recorder, sid)
        if kind == "failed":
            assert recorder.statuses(sid) == ["initiated", "failed"]
        elif kind in ("no-answer", "busy"):
            assert recorder.statuses(sid) == ["initiated", "ringing", kind]
            if kind == "no-answer":
                assert at["no-answer"] - at["ringing"] == timedelta(seconds=25)
        else:
            assert recorder.statuses(sid) == ["initiated", "ringing", "in-progress", "completed"]
            assert timedelta(seconds=5) <= at["in-progress"] - at["ringing"] <= timedelta(seconds=24)
            [(_, amd, amd_at)] = recorder.of(sid, "amd")
            assert at["in-progress"] < amd_at < at["completed"]
            if kind == "human":
                talk = at["completed"] - at["in-progress"]
                assert timedelta(seconds=20) <= talk <= timedelta(seconds=180)
                assert amd_at - at["in-progress"] <= timedelta(seconds=5)
            assert int(final["CallDuration"]) >= 1
        assert final["Direction"] == "outbound-api" and final["To"].startswith("+1415555")


def test_an_answer_never_comes_after_the_ring_timeout():
    recorder = Recorder()
    simulator = SimulatorAdapter(1, recorder, profile=SimulationProfile(call_outcomes={"human": 1.0}))
    for n in range(200):
        simulator.place_call(call_request(n, timeout=15))
    simulator.advance(T0 + timedelta(hours=1))

    answers = [(p["CallSid"], at) for kind, p, at in recorder.events
               if kind == "call-status" and p["CallStatus"] == "in-progress"]
    assert len(answers) == 200
    for sid, answered in answers:
        assert answered - first_time(recorder, sid, "ringing") < timedelta(seconds=15)


# -- cancel, hang up, conference ----------------------------------------------------------------

def first_time(recorder: Recorder, sid: str, status: str) -> datetime:
    return next(at for kind, p, at in recorder.events if kind == "call-status"
                and p["CallSid"] == sid and p["CallStatus"] == status)


def answered_call(seed: int = 0) -> tuple[SimulatorAdapter, Recorder, str, Recorder]:
    """A call that will be answered by a person: simulated once to learn the timeline, then
    again, identically, by a fresh simulator that the test drives."""
    profile = SimulationProfile(call_outcomes={"human": 1.0}, reply_share=1.0)
    scout = Recorder()
    scouting = SimulatorAdapter(seed, scout, profile=profile)
    sid = scouting.place_call(call_request()).sid
    scouting.advance(T0 + timedelta(hours=1))
    recorder = Recorder()
    simulator = SimulatorAdapter(seed, recorder, profile=profile)
    assert simulator.place_call(call_request()).sid == sid
    return simulator, recorder, sid, scout


def test_cancel_while_ringing_ends_the_call_as_canceled_and_nothing_after_is_delivered():
    simulator, recorder, sid, scout = answered_call()
    ringing = first_time(scout, sid, "ringing")
    simulator.advance(ringing + timedelta(seconds=2))

    call = simulator.cancel(sid)
    simulator.advance(T0 + timedelta(hours=1))

    assert call.status == "canceled"
    assert recorder.statuses(sid) == ["initiated", "ringing", "canceled"]
    final = recorder.of(sid, "call-status")[-1]
    assert final[1]["SequenceNumber"] == "2" and final[1]["CallDuration"] == "0"
    assert final[2] == ringing + timedelta(seconds=2)
    assert recorder.of(sid, "amd") == [] and recorder.of(sid, "gather") == []
    assert simulator.pending() == 0
    assert simulator.fetch_call(sid).status == "canceled"


def test_cancel_before_the_carrier_dials_sends_only_the_final_status():
    simulator, recorder, sid, scout = answered_call()
    simulator.cancel(sid)
    simulator.advance(T0 + timedelta(hours=1))
    assert [p["CallStatus"] for _, p, _ in recorder.events] == ["canceled"]


def test_cancel_does_not_touch_a_call_in_progress_but_hang_up_ends_it_completed():
    simulator, recorder, sid, scout = answered_call()
    answered = first_time(scout, sid, "in-progress")
    simulator.advance(answered + timedelta(seconds=10))

    assert simulator.cancel(sid).status == "in-progress"
    ended = simulator.hang_up(sid)
    simulator.advance(T0 + timedelta(hours=1))

    assert ended.status == "completed" and ended.extra["duration"] == "10"
    assert recorder.statuses(sid) == ["initiated", "ringing", "in-progress", "completed"]
    assert recorder.of(sid, "call-status")[-1][1]["CallDuration"] == "10"


def test_a_hang_up_from_the_webhook_happens_at_the_events_instant():
    profile = SimulationProfile(call_outcomes={"machine": 1.0})
    recorder = Recorder()

    def hang_up_on_machines(kind, params, at):
        recorder(kind, params, at)
        if kind == "amd":
            simulator.hang_up(params["CallSid"])

    simulator = SimulatorAdapter(4, hang_up_on_machines, profile=profile)
    sid = simulator.place_call(call_request()).sid
    simulator.advance(T0 + timedelta(hours=1))

    [(_, _, amd_at)] = recorder.of(sid, "amd")
    assert recorder.of(sid, "call-status")[-1][1]["CallStatus"] == "completed"
    assert recorder.of(sid, "call-status")[-1][2] == amd_at


def test_move_to_conference_needs_a_live_call_and_stops_the_script():
    simulator, recorder, sid, scout = answered_call()
    with pytest.raises(CarrierError) as raised:
        simulator.move_to_conference(sid, "attempt-1", "https://calls.example.com/bridge")
    assert (raised.value.status, raised.value.code) == (400, 21220)

    simulator.advance(first_time(scout, sid, "in-progress"))
    moved = simulator.move_to_conference(sid, "attempt-1", "https://calls.example.com/bridge")
    simulator.advance(T0 + timedelta(hours=1))

    assert moved.extra["conference"] == "attempt-1"
    assert scout.of(sid, "gather") and recorder.of(sid, "gather") == []
    assert recorder.statuses(sid)[-1] == "completed"


# -- reconciliation: the carrier's view at an instant ------------------------------------------

def test_fetch_call_tells_the_status_as_of_the_clock_even_when_no_event_was_delivered():
    now = [T0]
    simulator = SimulatorAdapter(0, Recorder(), clock=lambda: now[0],
                                 profile=SimulationProfile(call_outcomes={"human": 1.0}))
    sid = simulator.place_call(call_request()).sid
    scout = Recorder()
    twin = SimulatorAdapter(0, scout, profile=SimulationProfile(call_outcomes={"human": 1.0}))
    twin.place_call(call_request())
    twin.advance(T0 + timedelta(hours=1))
    ringing, answered, ended = (first_time(scout, sid, s) for s in ("ringing", "in-progress", "completed"))
    [(_, amd, amd_at)] = scout.of(sid, "amd")

    expectations = [(T0, "queued", None), (ringing - timedelta(milliseconds=1), "queued", None),
                    (ringing, "ringing", None), (answered, "in-progress", None),
                    (amd_at, "in-progress", "human"), (ended + timedelta(minutes=5), "completed", "human")]
    for instant, status, answered_by in expectations:
        now[0] = instant
        call = simulator.fetch_call(sid)
        assert (call.status, call.extra["answered_by"]) == (status, answered_by), instant
    assert simulator.fetch_call(sid).extra["duration"] == str(
        -(-(ended - answered) // timedelta(seconds=1)))
    assert simulator.pending() == len(scout.events)    # nothing was delivered


def test_an_unknown_call_is_a_404_and_a_malformed_sid_a_value_error():
    simulator = SimulatorAdapter(0, Recorder())
    with pytest.raises(CarrierError) as raised:
        simulator.fetch_call("CA" + "0" * 32)
    assert (raised.value.status, raised.value.code) == (404, 20404)
    with pytest.raises(ValueError, match="sid must be a call sid"):
        simulator.hang_up("SM" + "0" * 32)


# -- what the simulator refuses ----------------------------------------------------------------

def test_it_refuses_what_the_twilio_adapter_refuses():
    simulator = SimulatorAdapter(0, Recorder())
    with pytest.raises(ValueError, match="at least 15 s"):
        simulator.place_call(call_request(timeout=10))
    with pytest.raises(ValueError, match=r"^to must be an E\.164"):
        simulator.send_sms(SmsRequest(to="4155550101", from_="+14155550100", body="x", status_callback="u"))
    assert simulator.pending() == 0


def test_time_only_moves_forward_and_must_be_aware():
    simulator = SimulatorAdapter(0, Recorder())
    simulator.advance(T0 + timedelta(minutes=5))
    with pytest.raises(ValueError, match="only moves forward"):
        simulator.advance(T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        simulator.advance(datetime(2026, 1, 2))


@pytest.mark.parametrize("profile_args,message", [
    ({"call_outcomes": {"human": 0.5, "busy": 0.4}}, "add up to 1"),
    ({"call_outcomes": {"human": 0.5, "voicemail": 0.5}}, "unknown outcome"),
    ({"sms_replies": {"stop": 0.9, "help": 0.2}}, "at most 1"),
    ({"reply_share": 1.5}, "reply_share must be between 0 and 1"),
])
def test_a_profile_that_cannot_be_drawn_from_is_refused(profile_args, message):
    with pytest.raises(ValueError, match=message):
        SimulationProfile(**profile_args)


def test_an_injected_clock_places_calls_at_its_time():
    at = datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
    recorder = Recorder()
    simulator = SimulatorAdapter(0, recorder, clock=lambda: at)
    simulator.place_call(call_request())
    simulator.advance(at + timedelta(hours=1))
    assert recorder.events[0][2] - at < timedelta(seconds=2)


# --- lookups, as Twilio's lists and fetches answer them ----------------------------------------

def test_find_calls_lists_started_calls_by_to_and_start_time_and_queued_ones_without_a_start():
    simulator = SimulatorAdapter("lookups", Recorder())
    call = simulator.place_call(call_request(1))
    simulator.place_call(call_request(2))                   # another number: never listed
    # Still queued: no StartTime yet, found only as a queued call.
    [queued] = simulator.find_calls("+14155550001", T0)
    assert (queued.sid, queued.status, queued.extra["start_time"]) == (call.sid, "queued", None)
    simulator.advance(T0 + timedelta(seconds=6))            # initiated within 1.5 s, ringing 1-4 s later
    [started] = simulator.find_calls("+14155550001", T0)
    start = started.extra["start_time"]
    assert started.sid == call.sid and started.status != "queued" and T0 < start <= T0 + timedelta(seconds=1.5)
    assert started.extra["from"] == "+14155550100"
    assert simulator.find_calls("+14155550001", start + timedelta(milliseconds=1)) == []
    assert simulator.find_calls("+14155550009", T0) == []


def test_find_messages_lists_only_sent_messages_by_date_sent_and_fetch_message_reads_one():
    profile = SimulationProfile(sms_outcomes={"delivered": 1.0, "undelivered": 0.0, "failed": 0.0})
    simulator = SimulatorAdapter("lookups", Recorder(), profile=profile)
    sms = simulator.send_sms(sms_request(1))
    assert simulator.find_messages("+14155550001", T0) == []           # queued: no DateSent yet
    assert simulator.fetch_message(sms.sid).status == "queued"
    simulator.advance(T0 + timedelta(seconds=30))
    [listed] = simulator.find_messages("+14155550001", T0)
    assert (listed.sid, listed.status, listed.extra["body"]) == (sms.sid, "delivered", "Reminder: 10:00 tomorrow")
    assert simulator.find_messages("+14155550001", listed.extra["date_sent"] + timedelta(milliseconds=1)) == []
    with pytest.raises(CarrierError) as refused:
        simulator.fetch_message("SM" + "0" * 32)
    assert refused.value.status == 404
    with pytest.raises(ValueError, match="message sid"):
        simulator.fetch_message(simulator.place_call(call_request(3)).sid)


def test_events_carry_the_callback_urls_query_as_the_webhook_route_merges_it():
    recorder = Recorder()
    simulator = SimulatorAdapter("query", recorder)
    request = call_request(1)
    call = simulator.place_call(CallRequest(**{**request.__dict__, "status_callback": request.status_callback + "?attempt=7",
                                               "amd_callback": request.amd_callback + "?attempt=7"}))
    sms = simulator.send_sms(SmsRequest(**{**sms_request(2).__dict__,
                                           "status_callback": "https://calls.example.com/sms?attempt=8"}))
    simulator.advance(T0 + timedelta(days=1))
    assert {p["attempt"] for _k, p, _at in recorder.of(call.sid) if _k in ("call-status", "amd")} == {"7"}
    assert {p["attempt"] for _k, p, _at in recorder.of(sms.sid, "sms-status")} == {"8"}
