"""The simulator adapter: a seeded, deterministic stand-in for the carrier (the embedded default).

It never touches the database. Each call or text gets a timeline drawn from a traffic profile
(answer mix, ring and talk times, replies, STOP texts) in simulated time, and `advance(until)`
hands every event due by then to `deliver(kind, params, at)`, in time order, with `params` shaped
exactly like Twilio's webhook form parameters. The webhook code path implements `deliver`, so the
simulator exercises the same code a real carrier would.

Determinism: a call's or text's draws come from its own generator, seeded with (seed, channel,
counter), so the same seed and the same requests give the same sids, timings and outcomes, byte
for byte, whatever else was placed in between or when `advance` was called.

Time: with `clock` given, now is `clock()`; without, the simulator keeps its own clock, starting
at SIM_EPOCH and moved only by `advance`. While an event is being delivered, now is that event's
instant, so what the handler asks (hang up, move to a conference) happens at that point of the
timeline. Nothing sleeps.
"""
from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qsl, urlsplit

from telephony.adapter import (
    CallRequest,
    CarrierCall,
    CarrierError,
    SmsRequest,
    require_call_sid,
    require_e164,
    require_message_sid,
    validate_call_request,
    validate_sms_request,
)

# Returns the TwiML when the event is a TwiML request (kind "twiml"), else nothing.
Deliver = Callable[[str, dict[str, str], datetime], "str | None"]
Clock = Callable[[], datetime]

SIM_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
API_VERSION = "2010-04-01"
EVENT_KINDS = ("call-status", "amd", "sms-status", "sms-inbound", "gather", "twiml")

# Shares of placed calls by how they end. "unknown" and "fax" are AMD verdicts Twilio really
# returns; they keep the webhook code honest about answers that are neither human nor machine.
DEFAULT_CALL_OUTCOMES = {"human": 0.35, "machine": 0.20, "no-answer": 0.30, "busy": 0.08,
                         "failed": 0.02, "unknown": 0.04, "fax": 0.01}
ANSWERED_OUTCOMES = ("human", "machine", "unknown", "fax")
# With MachineDetection=DetectMessageEnd, Twilio reports a machine when its greeting has ended.
MACHINE_VERDICTS = {"machine_end_beep": 0.7, "machine_end_silence": 0.2, "machine_end_other": 0.1}
DEFAULT_SMS_OUTCOMES = {"delivered": 0.95, "undelivered": 0.03, "failed": 0.02}
# Shares of delivered texts that get an answer; the rest get none.
DEFAULT_SMS_REPLIES = {"stop": 0.03, "help": 0.005, "question": 0.02}

# Twilio's error codes on a text that did not arrive.
SMS_ERROR_CODES = {"undelivered": ("30003", "30005", "30006"), "failed": ("30007", "30008")}

SPOKEN_REPLIES = {"Yes, I'm interested.": 30, "Can you call me back tomorrow afternoon?": 20,
                  "I'm not interested.": 20, "Stop calling me.": 10,
                  "Please take me off your list.": 5, "You have the wrong number.": 8,
                  "What is this about?": 7}
KEY_PRESSES = {"1": 50, "2": 25, "9": 25}
SMS_REPLY_BODIES = {
    # Twilio's own opt-out keywords, and a plain-language revocation, which counts as one too.
    "stop": ("STOP", "Stop", "UNSUBSCRIBE", "quit", "Please stop texting me"),
    "help": ("HELP", "Help"),
    "question": ("Who is this?", "What is this about?", "Can you call me tomorrow?"),
}

FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

# Conversations (profile.converse): who picks up, and what they say to each question. A persona
# answers every gather the same way (after a reprompt too), so each script path is exercised.
DEFAULT_PERSONAS = {"interested": 0.35, "callback": 0.15, "not_interested": 0.18, "opt_out_spoken": 0.07,
                    "opt_out_key": 0.05, "wrong_number": 0.05, "confused": 0.10, "silent": 0.05}
PERSONA_SPEECH = {
    "interested": ("Yes, I own my home.", "Yeah, I'm interested."),
    "callback": ("Can you call me back after 5 pm?", "I'm busy, call me back tomorrow afternoon."),
    "not_interested": ("No, I'm not interested.", "No, we rent."),
    "opt_out_spoken": ("Stop calling me.", "Please take me off your list."),
    "wrong_number": ("You have the wrong number.",),
    "confused": ("What is this about?", "Sorry, who?"),
}
PERSONA_KEYS = {"interested": "1", "not_interested": "2", "opt_out_key": "9"}
WORDS_PER_SECOND = 2.5                  # a synthetic voice at ~150 words a minute


@dataclass(frozen=True)
class SimulationProfile:
    """The traffic the simulator draws from. Durations are (low, high) seconds, uniform."""

    call_outcomes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CALL_OUTCOMES))
    reply_share: float = 0.15            # of human answers: the person says something or presses a key
    speech_share: float = 0.7            # of those replies: spoken (the rest: a key press)
    # Conversations: the answer URL is fetched and its TwiML followed, the person replying to
    # each <Gather> per `personas` (then reply_share is not used: every human answers).
    converse: bool = False
    personas: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PERSONAS))
    stop_text_after_call: float = 0.01   # of human answers: an SMS STOP to the caller ID afterwards
    sms_outcomes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SMS_OUTCOMES))
    sms_replies: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SMS_REPLIES))
    dial_seconds: tuple[float, float] = (0.2, 1.5)        # queued until initiated
    setup_seconds: tuple[float, float] = (1.0, 4.0)       # initiated until ringing
    ring_seconds: tuple[float, float] = (5.0, 25.0)       # ringing until answered
    busy_seconds: tuple[float, float] = (2.0, 8.0)        # ringing until busy
    talk_seconds: tuple[float, float] = (20.0, 180.0)     # answered until a person hangs up
    human_amd_seconds: tuple[float, float] = (2.0, 4.5)   # answered until AnsweredBy=human
    greeting_seconds: tuple[float, float] = (6.0, 20.0)   # answered until a machine's beep
    voicemail_seconds: tuple[float, float] = (15.0, 40.0)  # beep until our message ends
    sms_send_seconds: tuple[float, float] = (1.0, 5.0)
    sms_delivery_seconds: tuple[float, float] = (1.0, 12.0)
    sms_reply_seconds: tuple[float, float] = (60.0, 7200.0)
    stop_text_seconds: tuple[float, float] = (30.0, 1800.0)  # call end until the STOP text

    def __post_init__(self) -> None:
        _require_distribution("call_outcomes", self.call_outcomes, DEFAULT_CALL_OUTCOMES, total=1.0)
        _require_distribution("sms_outcomes", self.sms_outcomes, DEFAULT_SMS_OUTCOMES, total=1.0)
        _require_distribution("sms_replies", self.sms_replies, DEFAULT_SMS_REPLIES, total=None)
        _require_distribution("personas", self.personas, DEFAULT_PERSONAS, total=1.0)
        for name in ("reply_share", "speech_share", "stop_text_after_call"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")


def _require_distribution(name: str, shares: Mapping[str, float], known: Mapping[str, float],
                          total: float | None) -> None:
    unknown = set(shares) - set(known)
    if unknown:
        raise ValueError(f"{name}: unknown outcome(s) {sorted(unknown)}; known: {sorted(known)}")
    if any(share < 0 for share in shares.values()):
        raise ValueError(f"{name}: shares must not be negative, got {dict(shares)}")
    added = sum(shares.values())
    if total is not None and not math.isclose(added, total, abs_tol=1e-9):
        raise ValueError(f"{name}: shares must add up to {total}, they add up to {added}")
    if total is None and added > 1.0:
        raise ValueError(f"{name}: shares must add up to at most 1, they add up to {added}")


@dataclass(order=True)
class _Event:
    at: datetime
    order: int                              # scheduling order: ties at one instant keep it
    kind: str = field(compare=False)
    params: dict[str, str] = field(compare=False)
    cut: bool = field(default=False, compare=False)


@dataclass
class _Message:
    sid: str
    to: str
    from_: str
    body: str
    statuses: list[tuple[datetime, str]] = field(default_factory=list)

    def status_at(self, at: datetime) -> str:
        current = "queued"
        for since, status in self.statuses:
            if since > at:
                break
            current = status
        return current

    def date_sent(self, at: datetime) -> datetime | None:
        """Twilio's DateSent: set once the message left Twilio ("sent"); None before, and for a
        message that failed without being sent."""
        for since, status in self.statuses:
            if status == "sent" and since <= at:
                return since
        return None


@dataclass
class _Call:
    sid: str
    to: str
    from_: str
    statuses: list[tuple[datetime, str]]     # resource status from each instant on
    answered_at: datetime | None = None
    verdict: tuple[datetime, str] | None = None   # (when, AnsweredBy)
    conference: str | None = None
    events: list[_Event] = field(default_factory=list)
    twiml_url: str | None = None
    talk: random.Random | None = None        # draws of the person in a conversation
    persona: str | None = None
    callback_query: dict[str, str] = field(default_factory=dict)   # the status callback URL's query
    amd_query: dict[str, str] = field(default_factory=dict)

    started_at: datetime | None = None       # the "initiated" instant

    def start_time(self) -> datetime | None:
        """Twilio's StartTime: when the call left the queue (initiated); None for a call
        cancelled in the queue. (The caller also checks it is not after now.)"""
        ended = self.ended_at()
        if self.started_at is None or (ended is not None and self.started_at > ended):
            return None
        return self.started_at

    def status_at(self, at: datetime) -> str:
        current = self.statuses[0][1]
        for since, status in self.statuses:
            if since > at:
                break
            current = status
        return current

    def ended_at(self) -> datetime | None:
        since, status = self.statuses[-1]
        return since if status in FINAL_CALL_STATUSES else None


class SimulatorAdapter:
    name = "simulator"

    def __init__(self, seed: int | str, deliver: Deliver, clock: Clock | None = None,
                 profile: SimulationProfile | None = None):
        self.seed = seed
        self.profile = profile or SimulationProfile()
        self.account_sid = _sid("AC", seed, "account", 0)
        self._deliver = deliver
        self._clock = clock
        self._now = SIM_EPOCH
        self._delivering_at: datetime | None = None
        self._queue: list[_Event] = []
        self._pending = 0
        self._scheduled = 0
        self._counters = {"call": 0, "sms": 0, "inbound": 0}
        self._calls: dict[str, _Call] = {}
        self._messages: dict[str, _Message] = {}
        self.agents = None   # telephony.simulated_agents.SimulatedAgents, set by simulated_agents.attach

    # -- time ------------------------------------------------------------------------------

    def now(self) -> datetime:
        if self._delivering_at is not None:
            return self._delivering_at
        if self._clock is None:
            return self._now
        return _utc(self._clock(), "clock()")

    def advance(self, until: datetime) -> int:
        """Deliver, in time order, every event due by `until`; the number delivered. Events that
        handlers schedule on the way are delivered too when they fall due by `until`."""
        until = _utc(until, "until")
        if self._clock is None and until < self._now:
            raise ValueError(f"until {until.isoformat()} is before the simulated clock "
                             f"{self._now.isoformat()}; simulated time only moves forward")
        delivered = 0
        while self._queue and self._queue[0].at <= until:
            event = heapq.heappop(self._queue)
            if event.cut:
                continue
            self._pending -= 1
            # Handlers act at the event's instant, whatever the outer clock says. An exception
            # from the handler propagates and the event stays delivered, as a failed webhook
            # does at Twilio; `fetch_call` is how the state is reconciled.
            self._delivering_at = event.at
            if self._clock is None:
                self._now = event.at
            try:
                answer = self._deliver(event.kind, dict(event.params), event.at)
                if event.kind == "twiml":
                    self._follow_twiml(event.params["CallSid"], answer, event.at)
            finally:
                self._delivering_at = None
            delivered += 1
        if self._clock is None:
            self._now = until
        return delivered

    def pending(self) -> int:
        return self._pending

    # -- the adapter ----------------------------------------------------------------------

    def place_call(self, request: CallRequest) -> CarrierCall:
        validate_call_request(request)
        if self.agents is not None and self.agents.handles(request.to):
            return self.agents.place_call(self, request)     # an agent leg of a warm transfer
        number = self._next("call")
        sid = _sid("CA", self.seed, "call", number)
        rng = _rng(self.seed, "call", number)
        call = _Call(sid=sid, to=request.to, from_=request.from_, statuses=[(self.now(), "queued")],
                     twiml_url=request.twiml_url, talk=_rng(self.seed, "talk", number),
                     callback_query=_query(request.status_callback), amd_query=_query(request.amd_callback))
        self._calls[sid] = call
        self._script_call(call, rng, request.timeout_seconds)
        return CarrierCall(sid=sid, status="queued", extra={"to": call.to, "from": call.from_})

    def send_sms(self, request: SmsRequest) -> CarrierCall:
        validate_sms_request(request)
        number = self._next("sms")
        sid = _sid("SM", self.seed, "sms", number)
        self._script_sms(sid, request, _rng(self.seed, "sms", number))
        return CarrierCall(sid=sid, status="queued", extra={"to": request.to, "from": request.from_})

    def cancel(self, sid: str) -> CarrierCall:
        """Like Twilio: a queued or ringing call ends as canceled; any other is left as it is."""
        call = self._call(sid)
        now = self.now()
        if call.status_at(now) in ("queued", "ringing"):
            self._end_call(call, now, "canceled")
        return self._snapshot(call, now)

    def hang_up(self, sid: str) -> CarrierCall:
        call = self._call(sid)
        now = self.now()
        status = call.status_at(now)
        if status in ("queued", "ringing"):
            self._end_call(call, now, "canceled")
        elif status == "in-progress":
            self._end_call(call, now, "completed")
        return self._snapshot(call, now)

    def move_to_conference(self, sid: str, conference: str, twiml_url: str) -> CarrierCall:
        call = self._call(sid)
        now = self.now()
        if call.status_at(now) != "in-progress":
            raise CarrierError(f"Twilio error 21220 (HTTP 400) on POST /Calls/{sid}.json: "
                               "Call is not in-progress. Cannot redirect.",
                               status=400, code=21220)
        # The script stops where the conference starts: replies it would have heard are gone.
        self._cut(call, after=now, kinds={"gather", "twiml"})
        call.conference = conference
        return self._snapshot(call, now)

    def redirect(self, sid: str, twiml_url: str) -> CarrierCall:
        """Like Twilio's call update with a new Url: what the call was doing stops, the URL is fetched."""
        call = self._call(sid)
        now = self.now()
        if call.status_at(now) != "in-progress":
            raise CarrierError(f"Twilio error 21220 (HTTP 400) on POST /Calls/{sid}.json: "
                               "Call is not in-progress. Cannot redirect.", status=400, code=21220)
        self._cut(call, after=now, kinds={"gather", "twiml"})
        self._request_twiml(call, now, twiml_url)
        return self._snapshot(call, now)

    def fetch_call(self, sid: str) -> CarrierCall:
        """The call as the carrier sees it now, whether or not its events were delivered."""
        call = self._call(sid)
        return self._snapshot(call, self.now())

    def fetch_message(self, sid: str) -> CarrierCall:
        require_message_sid(sid)
        message = self._messages.get(sid)
        if message is None:
            raise _not_found(f"/Messages/{sid}.json")
        return self._message_snapshot(message, self.now())

    def find_calls(self, to: str, started_after: datetime) -> list[CarrierCall]:
        """As Twilio's list by To and StartTime>=, plus its list by To and Status=queued."""
        require_e164("to", to)
        now, after = self.now(), _utc(started_after, "started_after")
        found = []
        for call in self._calls.values():
            if call.to != to or call.statuses[0][0] > now:
                continue
            started = call.start_time()
            if (started is not None and after <= started <= now) or call.status_at(now) == "queued":
                found.append(self._snapshot(call, now))
        return found

    def find_messages(self, to: str, sent_after: datetime) -> list[CarrierCall]:
        """As Twilio's list by To and DateSent>=: a message not yet sent is not listed."""
        require_e164("to", to)
        now, after = self.now(), _utc(sent_after, "sent_after")
        return [self._message_snapshot(message, now) for message in self._messages.values()
                if message.to == to and (sent := message.date_sent(now)) is not None and sent >= after]

    def _message_snapshot(self, message: _Message, at: datetime) -> CarrierCall:
        return CarrierCall(sid=message.sid, status=message.status_at(at),
                           extra={"to": message.to, "from": message.from_, "body": message.body,
                                  "date_sent": message.date_sent(at)})

    # -- call timelines -------------------------------------------------------------------

    def _script_call(self, call: _Call, rng: random.Random, ring_timeout: int) -> None:
        p = self.profile
        outcome = _choose(rng, p.call_outcomes)
        initiated = call.statuses[0][0] + _seconds(rng, p.dial_seconds)
        call.started_at = initiated
        self._call_status(call, initiated, "initiated")
        if outcome == "failed":
            # A call that fails (unreachable network, invalid number) does so before it rings.
            self._finish(call, initiated + _seconds(rng, (0.5, 3.0)), "failed")
            return
        ringing = initiated + _seconds(rng, p.setup_seconds)
        self._call_status(call, ringing, "ringing", resource_status="ringing")
        if outcome == "no-answer":
            self._finish(call, ringing + timedelta(seconds=ring_timeout), "no-answer")
        elif outcome == "busy":
            self._finish(call, ringing + _seconds(rng, p.busy_seconds), "busy")
        else:
            # An answer after the ring timeout would be a no-answer: keep answers inside it.
            low, high = p.ring_seconds
            ring = _seconds(rng, (min(low, ring_timeout - 1), min(high, ring_timeout - 1)))
            self._script_answer(call, rng, outcome, ringing + ring)

    def _script_answer(self, call: _Call, rng: random.Random, outcome: str, answered: datetime) -> None:
        p = self.profile
        call.answered_at = answered
        self._call_status(call, answered, "in-progress", resource_status="in-progress")
        if outcome == "machine":
            verdict_at = answered + _seconds(rng, p.greeting_seconds)
            verdict = _choose(rng, MACHINE_VERDICTS)
            ends = verdict_at + _seconds(rng, p.voicemail_seconds)
        elif outcome == "fax":
            verdict_at, verdict = answered + _seconds(rng, p.human_amd_seconds), "fax"
            ends = verdict_at + _seconds(rng, (3.0, 8.0))
        else:
            verdict_at = answered + _seconds(rng, p.human_amd_seconds)
            verdict = outcome            # human | unknown
            ends = answered + _seconds(rng, p.talk_seconds)
        self._amd(call, verdict_at, verdict)
        if p.converse:
            self._begin_conversation(call, answered, outcome)
        elif outcome == "human" and rng.random() < p.reply_share:
            self._gather(call, rng, start=verdict_at + timedelta(seconds=1), end=ends - timedelta(seconds=1))
        self._finish(call, ends, "completed")
        if outcome == "human" and rng.random() < p.stop_text_after_call:
            body = rng.choice(SMS_REPLY_BODIES["stop"])
            self._inbound_sms(call.sid, call.to, call.from_, body, ends + _seconds(rng, p.stop_text_seconds))

    def _call_status(self, call: _Call, at: datetime, status: str, resource_status: str | None = None,
                     extra: dict[str, str] | None = None) -> None:
        if resource_status is not None:
            call.statuses.append((at, resource_status))
        sequence = sum(1 for e in call.events if e.kind == "call-status" and not e.cut)
        params = {**call.callback_query, **self._call_params(call, status), "CallbackSource": "call-progress-events",
                  "SequenceNumber": str(sequence), "Timestamp": format_datetime(at), **(extra or {})}
        self._schedule(at, "call-status", params, call)

    def _finish(self, call: _Call, at: datetime, status: str) -> None:
        talk = (at - call.answered_at).total_seconds() if call.answered_at and status == "completed" else 0
        self._call_status(call, at, status, resource_status=status,
                          extra={"CallDuration": str(math.ceil(talk))})

    def _amd(self, call: _Call, at: datetime, verdict: str) -> None:
        call.verdict = (at, verdict)
        detection_ms = int((at - call.answered_at).total_seconds() * 1000)
        params = {**call.amd_query, "AccountSid": self.account_sid, "CallSid": call.sid, "AnsweredBy": verdict,
                  "MachineDetectionDuration": str(detection_ms)}
        self._schedule(at, "amd", params, call)

    def _gather(self, call: _Call, rng: random.Random, start: datetime, end: datetime) -> None:
        at = start + timedelta(milliseconds=rng.randint(0, (end - start) // timedelta(milliseconds=1)))
        if rng.random() < self.profile.speech_share:
            reply = {"SpeechResult": _choose(rng, SPOKEN_REPLIES),
                     "Confidence": f"{rng.uniform(0.55, 0.98):.8f}"}
        else:
            reply = {"Digits": _choose(rng, KEY_PRESSES)}
        self._schedule(at, "gather", {**self._call_params(call, "in-progress"), **reply}, call)

    # -- conversations (profile.converse) ----------------------------------------------------

    def _begin_conversation(self, call: _Call, answered: datetime, outcome: str) -> None:
        """At the answer the carrier fetches the answer URL; who answered decides the replies."""
        call.persona = _choose(call.talk, self.profile.personas) if outcome == "human" else "silent"
        if call.twiml_url:
            self._request_twiml(call, answered, call.twiml_url)

    def _request_twiml(self, call: _Call, at: datetime, url: str, reply: dict[str, str] | None = None) -> None:
        self._schedule(at, "twiml", {**self._call_params(call, "in-progress"), "Url": url, **(reply or {})}, call)

    def _follow_twiml(self, sid: str, twiml: str | None, at: datetime) -> None:
        """Play the answered TwiML in simulated time: speak, listen (the persona replies), follow a
        redirect, join a conference, or hang up; a document that ends hangs up, as Twilio does."""
        call = self._calls[sid]
        if call.status_at(at) != "in-progress":
            return
        if twiml is None:
            # Twilio's "application error" on a failed fetch: it apologises and hangs up.
            self._end_call(call, at + timedelta(seconds=3), "completed")
            return
        clock = at
        for verb in _twiml_verbs(twiml):
            if verb.tag == "Say":
                clock += _speaking(verb.text or "")
            elif verb.tag == "Pause":
                clock += timedelta(seconds=int(verb.get("length", "1")))
            elif verb.tag == "Play":
                clock += timedelta(seconds=5)
            elif verb.tag == "Gather":
                clock += sum((_speaking(say.text or "") for say in verb.iter("Say")), timedelta())
                self._answer_gather(call, verb, clock)
                return
            elif verb.tag == "Redirect":
                self._request_twiml(call, clock, (verb.text or "").strip())
                return
            elif verb.tag == "Dial":
                conference = verb.find("Conference")
                call.conference = conference.text if conference is not None else "dial"
                return
            elif verb.tag in ("Hangup", "Reject"):
                break
        ended = call.ended_at()
        if ended is None or clock < ended:      # unless the person hangs up first
            self._end_call(call, clock, "completed")

    def _answer_gather(self, call: _Call, gather, spoken_until: datetime) -> None:
        ended = call.ended_at()
        reply = self._persona_reply(call)
        at = spoken_until + (_seconds(call.talk, (0.8, 2.5)) if reply
                             else timedelta(seconds=int(gather.get("timeout", "5"))))
        if ended is not None and at >= ended:
            return                              # the person hangs up first
        self._request_twiml(call, at, gather.get("action", ""), reply)

    def _persona_reply(self, call: _Call) -> dict[str, str]:
        persona, rng = call.persona or "silent", call.talk
        if persona == "silent":
            return {}
        key = PERSONA_KEYS.get(persona)
        if key and (persona not in PERSONA_SPEECH or rng.random() >= self.profile.speech_share):
            return {"Digits": key}
        return {"SpeechResult": rng.choice(PERSONA_SPEECH[persona]),
                "Confidence": f"{rng.uniform(0.55, 0.98):.8f}"}

    def _end_call(self, call: _Call, at: datetime, status: str) -> None:
        """Cut what had not happened by `at` and end the call there with `status`."""
        self._cut(call, after=at)
        call.statuses = [(since, s) for since, s in call.statuses if since <= at]
        if call.verdict and call.verdict[0] > at:
            call.verdict = None
        if call.answered_at and call.answered_at > at:
            call.answered_at = None
        self._finish(call, at, status)

    def _cut(self, call: _Call, after: datetime, kinds: set[str] | None = None) -> None:
        for event in call.events:
            if event.at > after and not event.cut and (kinds is None or event.kind in kinds):
                event.cut = True
                self._pending -= 1

    def _call_params(self, call: _Call, status: str) -> dict[str, str]:
        return {"AccountSid": self.account_sid, "ApiVersion": API_VERSION, "CallSid": call.sid,
                "CallStatus": status, "Called": call.to, "Caller": call.from_,
                "Direction": "outbound-api", "From": call.from_, "To": call.to}

    def _snapshot(self, call: _Call, at: datetime) -> CarrierCall:
        status = call.status_at(at)
        ended = call.ended_at()
        duration = None
        if status in FINAL_CALL_STATUSES and ended is not None:
            talked = (ended - call.answered_at).total_seconds() if call.answered_at else 0
            duration = str(math.ceil(talked))
        answered_by = call.verdict[1] if call.verdict and call.verdict[0] <= at else None
        started = call.start_time()
        return CarrierCall(sid=call.sid, status=status,
                           extra={"to": call.to, "from": call.from_, "direction": "outbound-api",
                                  "duration": duration, "answered_by": answered_by,
                                  "conference": call.conference,
                                  "start_time": started if started is not None and started <= at else None})

    # -- text timelines -------------------------------------------------------------------

    def _script_sms(self, sid: str, request: SmsRequest, rng: random.Random) -> None:
        p = self.profile
        outcome = _choose(rng, p.sms_outcomes)
        base = {**_query(request.status_callback), "AccountSid": self.account_sid, "ApiVersion": API_VERSION,
                "From": request.from_, "To": request.to, "MessageSid": sid, "SmsSid": sid}
        at = self.now()
        self._messages[sid] = _Message(sid=sid, to=request.to, from_=request.from_, body=request.body)
        self._sms_status(sid, at, base, "queued")
        if outcome == "failed":
            # Twilio could not send it at all (e.g. a carrier-level block): no "sent" before it.
            self._sms_status(sid, at + _seconds(rng, p.sms_send_seconds), base, "failed",
                             rng.choice(SMS_ERROR_CODES["failed"]))
            return
        at += _seconds(rng, p.sms_send_seconds)
        self._sms_status(sid, at, base, "sent")
        at += _seconds(rng, p.sms_delivery_seconds)
        if outcome == "undelivered":
            self._sms_status(sid, at, base, "undelivered", rng.choice(SMS_ERROR_CODES["undelivered"]))
            return
        self._sms_status(sid, at, base, "delivered")
        reply = _choose(rng, p.sms_replies, remainder="none")
        if reply != "none":
            body = rng.choice(SMS_REPLY_BODIES[reply])
            self._inbound_sms(sid, request.to, request.from_, body, at + _seconds(rng, p.sms_reply_seconds))

    def _sms_status(self, sid: str, at: datetime, base: dict[str, str], status: str,
                    error_code: str | None = None) -> None:
        params = {**base, "MessageStatus": status, "SmsStatus": status}
        self._messages[sid].statuses.append((at, status))
        if error_code:
            params["ErrorCode"] = error_code
        self._schedule(at, "sms-status", params)

    def _inbound_sms(self, parent_sid: str, from_: str, to: str, body: str, at: datetime) -> None:
        sid = _sid("SM", self.seed, "inbound", self._next("inbound"))
        params = {"AccountSid": self.account_sid, "ApiVersion": API_VERSION, "MessageSid": sid,
                  "SmsSid": sid, "SmsMessageSid": sid, "From": from_, "To": to, "Body": body,
                  "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received"}
        self._schedule(at, "sms-inbound", params, self._calls.get(parent_sid))

    # -- plumbing -------------------------------------------------------------------------

    def _schedule(self, at: datetime, kind: str, params: dict[str, str], call: _Call | None = None) -> None:
        """Queue an event; one that belongs to a call is listed on it, so a hang-up can cut it."""
        self._scheduled += 1
        event = _Event(at=at, order=self._scheduled, kind=kind, params=params)
        heapq.heappush(self._queue, event)
        self._pending += 1
        if call is not None:
            call.events.append(event)

    def _next(self, channel: str) -> int:
        self._counters[channel] += 1
        return self._counters[channel]

    def _call(self, sid: str) -> _Call:
        require_call_sid(sid)
        call = self._calls.get(sid)
        if call is None:
            raise _not_found(f"/Calls/{sid}.json")
        return call


def _not_found(resource: str) -> CarrierError:
    """Twilio's 404 for a resource it does not hold, word for word as the SDK reports it."""
    return CarrierError(f"Twilio error 20404 (HTTP 404) on GET {resource}: "
                        f"The requested resource {resource} was not found", status=404, code=20404)


def _query(url: str | None) -> dict[str, str]:
    # The webhook route merges a callback URL's query into the form parameters (signed, both):
    # the simulator's events carry it the same way, e.g. the attempt id dispatch puts there.
    return dict(parse_qsl(urlsplit(url).query)) if url else {}


def _twiml_verbs(twiml: str):
    import xml.etree.ElementTree as ElementTree
    return list(ElementTree.fromstring(twiml))


def _speaking(text: str) -> timedelta:
    return timedelta(milliseconds=round(1000 * max(1, len(text.split())) / WORDS_PER_SECOND))


def _sid(prefix: str, seed: int | str, channel: str, number: int) -> str:
    digest = hashlib.sha256(f"{seed}/{channel}/{number}".encode()).hexdigest()
    return prefix + digest[:32]


def _rng(seed: int | str, channel: str, number: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes
    # (unlike hash(), which PYTHONHASHSEED randomises).
    return random.Random(f"{seed}/{channel}/{number}")


def _choose(rng: random.Random, shares: Mapping[str, float], remainder: str | None = None) -> str:
    names, weights = list(shares), list(shares.values())
    if remainder is not None:
        names.append(remainder)
        weights.append(max(0.0, 1.0 - sum(weights)))
    return rng.choices(names, weights=weights)[0]


def _seconds(rng: random.Random, bounds: tuple[float, float]) -> timedelta:
    # Whole milliseconds: Twilio's timestamps are no finer, and it keeps instants exact.
    low, high = bounds
    return timedelta(milliseconds=rng.randint(round(low * 1000), round(high * 1000)))


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
