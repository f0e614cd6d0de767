"""Simulated agents: phones the simulator answers as agents do, after seeded delays.

Attach them to a `SimulatorAdapter` (`attach(simulator, agents)`): a call the engine places to
one of their numbers is then not drawn from the traffic profile; the agent answers after
`answer_seconds` (or, with `no_answer_share`, never: a no-answer after the ring timeout),
hears the summary (`summary_seconds`) and joins the conference, as Twilio would run the agent
TwiML. Their events go, like every simulator event, to `deliver(kind, params, at)`:

- `conference-agent-status`: the agent leg's status callbacks (Twilio: the `agent-status` URL);
- `conference-events`: conference participant-join / participant-leave (Twilio: `events`);
- `agent-disposition`: after the caller hangs up and `wrap_up_seconds`, the agent's
  disposition, as the console would post it (`POST /v1/transfers/{id}/disposition`).

Both carry `transfer_id`, which Twilio carries in the callback URL's path. The caller's side
(`caller_on_hold`): the caller's hang-up, already on the simulator's timeline, is reported as
the caller leaving the conference.

Determinism: each agent leg draws from its own generator seeded with (seed, "agent", counter).
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from telephony.adapter import CallRequest, CarrierCall, validate_call_request

AGENT_STATUS_KIND = "conference-agent-status"
CONFERENCE_KIND = "conference-events"
DISPOSITION_KIND = "agent-disposition"
KINDS = (AGENT_STATUS_KIND, CONFERENCE_KIND, DISPOSITION_KIND)
DISPOSITIONS = {"interested": 0.4, "sale": 0.2, "not_interested": 0.3, "callback": 0.1}


@dataclass(frozen=True)
class AgentBehaviour:
    answer_seconds: tuple[float, float] = (0.3, 1.5)     # console/headset agents pick up fast
    summary_seconds: tuple[float, float] = (0.2, 0.5)    # the whisper before joining
    wrap_up_seconds: tuple[float, float] = (10.0, 40.0)  # caller gone until the disposition
    no_answer_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.no_answer_share <= 1.0:
            raise ValueError(f"no_answer_share must be between 0 and 1, got {self.no_answer_share}")


class SimulatedAgents:
    def __init__(self, numbers: Iterable[str], behaviour: AgentBehaviour | None = None):
        self.numbers = frozenset(numbers)
        self.behaviour = behaviour or AgentBehaviour()
        self.legs: dict[str, int] = {}               # agent CallSid -> transfer id
        self.holding: dict[str, int] = {}            # caller CallSid -> transfer id
        self._placed = 0

    def handles(self, to: str) -> bool:
        return to in self.numbers

    # -- the agent leg ------------------------------------------------------------------------

    def place_call(self, simulator, request: CallRequest) -> CarrierCall:
        """Called by `SimulatorAdapter.place_call` for an agent's number."""
        from telephony.simulator import _Call, _rng, _seconds, _sid

        validate_call_request(request)
        transfer_id = _transfer_id(request.twiml_url)
        self._placed += 1
        number = self._placed
        sid = _sid("CA", simulator.seed, "agent", number)
        rng = _rng(simulator.seed, "agent", number)
        now = simulator.now()
        call = _Call(sid=sid, to=request.to, from_=request.from_, statuses=[(now, "queued")])
        simulator._calls[sid] = call
        self.legs[sid] = transfer_id
        ringing = now + timedelta(milliseconds=200)
        self._status(simulator, call, ringing, "ringing", transfer_id, resource="ringing")
        if rng.random() < self.behaviour.no_answer_share:
            self._status(simulator, call, ringing + timedelta(seconds=request.timeout_seconds), "no-answer",
                         transfer_id, resource="no-answer")
        else:
            answered = ringing + _seconds(rng, self.behaviour.answer_seconds)
            call.answered_at = answered
            self._status(simulator, call, answered, "in-progress", transfer_id, resource="in-progress")
            joined = answered + _seconds(rng, self.behaviour.summary_seconds)
            self._conference(simulator, call, joined, "participant-join", transfer_id)
            self._wrap_up(simulator, rng, call, transfer_id, joined)
        return CarrierCall(sid=sid, status="queued", extra={"to": call.to, "from": call.from_})

    def caller_on_hold(self, simulator, caller_sid: str, transfer_id: int) -> None:
        """The caller entered the conference: their scripted hang-up becomes a participant-leave."""
        call = simulator._calls.get(caller_sid)
        if call is None or caller_sid in self.holding:
            return
        self.holding[caller_sid] = transfer_id
        ends = call.ended_at()
        if ends is not None:
            self._conference(simulator, call, ends, "participant-leave", transfer_id)

    def _wrap_up(self, simulator, rng: random.Random, call, transfer_id: int, joined: datetime) -> None:
        from telephony.simulator import _choose, _seconds

        caller = next((simulator._calls[sid] for sid, held in self.holding.items() if held == transfer_id), None)
        caller_ends = caller.ended_at() if caller is not None else None
        if caller_ends is None or caller_ends <= joined:
            return                  # the caller is gone before the agent is there: nothing to wrap up
        # The conference ends with the caller (endConferenceOnExit): so does the agent leg.
        self._status(simulator, call, caller_ends, "completed", transfer_id, resource="completed")
        at = caller_ends + _seconds(rng, self.behaviour.wrap_up_seconds)
        simulator._schedule(at, DISPOSITION_KIND, {"transfer_id": str(transfer_id),
                                                   "disposition": _choose(rng, DISPOSITIONS)})

    # -- events -----------------------------------------------------------------------------

    def route(self, kind: str, params: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The simulator's own status events for an agent leg (a hang-up, a cancel) belong to
        the agent-status callback, not to the attempts' webhook."""
        sid = params.get("CallSid", "")
        if kind == "call-status" and sid in self.legs:
            return AGENT_STATUS_KIND, {**params, "transfer_id": str(self.legs[sid])}
        return kind, params

    def _status(self, simulator, call, at: datetime, status: str, transfer_id: int, *, resource: str) -> None:
        call.statuses.append((at, resource))
        params = {**simulator._call_params(call, status), "CallbackSource": "call-progress-events",
                  "transfer_id": str(transfer_id)}
        simulator._schedule(at, AGENT_STATUS_KIND, params, call)

    def _conference(self, simulator, call, at: datetime, event: str, transfer_id: int) -> None:
        params = {"AccountSid": simulator.account_sid, "ConferenceSid": f"CF{call.sid[2:]}",
                  "FriendlyName": f"transfer-{transfer_id}", "StatusCallbackEvent": event,
                  "CallSid": call.sid, "Timestamp": at.isoformat(), "transfer_id": str(transfer_id)}
        simulator._schedule(at, CONFERENCE_KIND, params, call if event != "participant-leave" else None)


def _transfer_id(twiml_url: str) -> int:
    """`…/v1/conference/12/agent` → 12: the agent TwiML names the transfer's conference."""
    _, _, rest = twiml_url.partition("/v1/conference/")
    number = rest.split("/", 1)[0]
    if not number.isdigit():
        raise ValueError(f"twiml_url {twiml_url!r} is not a transfer's agent URL (…/v1/conference/ID/agent)")
    return int(number)


def attach(simulator, agents: SimulatedAgents, *, engine=None, public_url: str | None = None) -> SimulatedAgents:
    """Give `simulator` these agents. With `engine`, the agents' events (and the simulator's own
    status events of agent legs) are handled here, through `outbound.transfers`, before the
    simulator's `deliver` sees any other event."""
    simulator.agents = agents
    if engine is not None:
        original = simulator._deliver
        base = public_url or _default_public_url()

        def deliver(kind: str, params: dict[str, str], at: datetime):
            kind, params = agents.route(kind, params)
            if kind not in KINDS:
                return original(kind, params, at)
            from sqlmodel import Session

            from outbound.transfers import deliver_simulated
            with Session(engine) as session:
                deliver_simulated(session, kind, params, at, public_url=base, adapter=simulator)
            return None

        simulator._deliver = deliver
    return agents


def _default_public_url() -> str:
    from telephony.call_requests import DEFAULT_PUBLIC_URL
    return DEFAULT_PUBLIC_URL


def _transfer_twiml(session, match, form: dict[str, str], at: datetime, *, adapter=None, public_url: str) -> str:
    """The simulator's TwiML requests for /v1/conference/{id}/{leaf}: the HTTP route's answer."""
    from outbound.transfers import twiml_for
    twiml = twiml_for(session, int(match.group(1)), match.group(2), form, at=at, public_url=public_url,
                      adapter=adapter)
    session.commit()
    return twiml


def _register_twiml_routes() -> None:
    from telephony.call_requests import register_twiml_route
    register_twiml_route(r"^/v1/conference/(\d+)/(wait|agent|no-agent|callback-reply|caller-done)$",
                         _transfer_twiml)


_register_twiml_routes()


def default_agents(count: int = 4) -> SimulatedAgents:
    """`count` agents at fictional numbers (555-01xx, reserved for fiction)."""
    return SimulatedAgents([f"+1212555{150 + index:04d}" for index in range(count)])
