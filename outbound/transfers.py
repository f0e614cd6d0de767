"""Warm transfer: a qualified caller is put on hold in a conference and the first free agent is
called into it, after hearing a short summary; the agent's console gets a context card.

The flow, with the webhooks of `api/routes/conference.py` (all paths under /v1/conference/{id}):

1. The script reaches `transfer`: the voice route returns `begin_transfer`'s TwiML. The caller
   joins conference `transfer-{id}` and hears `wait` (the identification message, then hold
   audio). The first free agent is reserved (available → busy) and called through the adapter
   (a phone) or offered the caller on the console feed (a Twilio Client identity, who accepts
   and connects to `agent`).
2. The agent leg fetches `agent`: a spoken summary, then the conference. The conference's
   `events` callback reports the agent joining: result `agent_joined`; when the call ends after
   that, `transferred`, and the agent goes to wrap_up.
3. An agent leg that is not answered (busy, no-answer, failed, declined) frees the agent and the
   next one is tried. When nobody has joined by the campaign's wait time (`TransferPolicy`), or
   nobody is free at all, the caller is redirected to `no-agent`: told, offered a callback, and
   the callback is scheduled as a pending attempt (so dispatch gates it like any other).
4. The caller leaving the hold first ends the transfer as `caller_hung_up_on_hold`.

Events for a transfer that has ended answer a defined no-op and a TwiML request for it answers
a polite goodbye: a caller is never left in silence, and a late webhook never fails.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from outbound import abandonment, agents, audit, transfer_events
from outbound.agent_tables import Agent, Transfer, TransferPolicy
from outbound.models import Attempt, Campaign, Contact
from telephony.adapter import Adapter, CallRequest, CarrierError

ACTOR = "transfer"
ROUTE_PREFIX = "/v1/conference"
HOLD_MUSIC_URL = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
DEFAULT_WAIT_SECONDS = 45
DEFAULT_CALLBACK_DELAY_SECONDS = 3600
AGENT_RING_SECONDS = 20          # >= 15 s: the ringing rule applies to every outbound leg
OPEN_STATES = ("waiting", "ringing_agent", "connected")
WAITING_STATES = ("waiting", "ringing_agent")
FAILED_LEG_STATUSES = frozenset({"busy", "no-answer", "failed", "canceled"})
OPT_OUT_DIGIT = "9"


class TransferError(ValueError):
    """A transfer cannot be started or changed as asked; the message says why."""


class TransferNotFound(LookupError):
    """No transfer has that id."""


# --- the adapter agent legs go out through ---------------------------------------------------

_adapter: Adapter | None = None


def use_adapter(adapter: Adapter | None) -> None:
    """The adapter `begin_transfer` and the webhooks use when none is passed (the process's
    carrier: the worker or the demo registers its own)."""
    global _adapter
    _adapter = adapter


def current_adapter() -> Adapter | None:
    if _adapter is not None:
        return _adapter
    from outbound.settings import get_settings
    settings = get_settings()
    if settings.telephony != "twilio":
        return None
    from telephony.factory import ConfigError, adapter_from_settings
    try:
        return adapter_from_settings(settings)
    except ConfigError:
        return None


# --- policy ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    wait_seconds: int = DEFAULT_WAIT_SECONDS
    callback_delay_seconds: int = DEFAULT_CALLBACK_DELAY_SECONDS


def policy_for(session: Session, campaign_id: int) -> Policy:
    row = session.get(TransferPolicy, campaign_id)
    return Policy() if row is None else Policy(row.wait_seconds, row.callback_delay_seconds)


def set_policy(session: Session, campaign_id: int, *, wait_seconds: int | None, callback_delay_seconds: int | None,
               actor: str, at: datetime) -> Policy:
    if wait_seconds is not None and not 5 <= wait_seconds <= 600:
        raise TransferError(f"wait_seconds must be between 5 and 600 (how long a caller holds for an "
                            f"agent), got {wait_seconds}")
    if callback_delay_seconds is not None and not 60 <= callback_delay_seconds <= 7 * 86400:
        raise TransferError(f"callback_delay_seconds must be between 60 and 604800, got {callback_delay_seconds}")
    row = session.get(TransferPolicy, campaign_id) or TransferPolicy(campaign_id=campaign_id)
    if wait_seconds is not None:
        row.wait_seconds = wait_seconds
    if callback_delay_seconds is not None:
        row.callback_delay_seconds = callback_delay_seconds
    row.updated_at = at
    session.add(row)
    session.flush()
    audit.append(session, actor=actor, action="transfer.policy", subject=f"campaign:{campaign_id}", at=at,
                 payload={"wait_seconds": row.wait_seconds, "callback_delay_seconds": row.callback_delay_seconds})
    return Policy(row.wait_seconds, row.callback_delay_seconds)


# --- URLs ----------------------------------------------------------------------------------------

def url(public_url: str, transfer_id: int, leaf: str) -> str:
    return f"{public_url.rstrip('/')}{ROUTE_PREFIX}/{transfer_id}/{leaf}"


def conference_name(transfer_id: int) -> str:
    return f"transfer-{transfer_id}"


def transfer_id_from_url(twiml_url: str) -> int | None:
    """`…/v1/conference/12/agent` → 12 (the simulated agents read their conference from it)."""
    head, _, rest = twiml_url.partition(ROUTE_PREFIX + "/")
    number = rest.split("/", 1)[0]
    return int(number) if head and number.isdigit() else None


# --- beginning ---------------------------------------------------------------------------------

def begin_transfer(session: Session, *, attempt_id: int, at: datetime, public_url: str,
                   adapter: Adapter | None = None) -> str:
    """Start (or, on a repeated request, continue) the transfer of the caller on `attempt_id`;
    returns the caller's TwiML. Does not commit: the caller's transaction does."""
    attempt = session.get(Attempt, attempt_id)
    if attempt is None:
        raise TransferError(f"no attempt {attempt_id}: cannot transfer a call that was never placed")
    if not attempt.carrier_id:
        raise TransferError(f"attempt {attempt_id} has no call (no CallSid): there is no caller to transfer")
    existing = open_transfer_for(session, attempt_id)
    if existing is not None:
        return caller_twiml(session, existing, public_url)
    transfer = _create(session, attempt, at)
    _tell_simulator(adapter, transfer)
    if abandonment.is_agent_campaign(session.get(Campaign, attempt.campaign_id)):
        abandonment.record_live_answer(session, attempt, greeted_at=at)
    agent = offer_next_agent(session, transfer, at=at, public_url=public_url, adapter=adapter)
    if agent is None:
        no_agent(session, transfer, at=at, reason="no agent is available")
        return no_agent_twiml(session, transfer, public_url)
    return caller_twiml(session, transfer, public_url)


def _create(session: Session, attempt: Attempt, at: datetime) -> Transfer:
    policy = policy_for(session, attempt.campaign_id)
    transfer = Transfer(attempt_id=attempt.id, campaign_id=attempt.campaign_id, contact_id=attempt.contact_id,
                        conference=f"pending-{attempt.id}-{at.timestamp()}", state="waiting",
                        caller_sid=attempt.carrier_id, began_at=at,
                        wait_until=at + timedelta(seconds=policy.wait_seconds))
    session.add(transfer)
    session.flush()
    transfer.conference = conference_name(transfer.id)
    session.add(transfer)
    session.flush()
    audit.append(session, actor=ACTOR, action="transfer.begun", subject=f"transfer:{transfer.id}", at=at,
                 payload={"attempt_id": attempt.id, "conference": transfer.conference,
                          "wait_until": audit.iso_utc(transfer.wait_until)})
    return transfer


def _tell_simulator(adapter: Adapter | None, transfer: Transfer) -> None:
    # Twilio learns the caller is on hold by running the TwiML returned below; the simulator runs
    # no TwiML, so its simulated agents (telephony.simulated_agents) are told here.
    adapter = adapter or current_adapter()
    simulated = getattr(adapter, "agents", None)
    if simulated is not None and transfer.caller_sid:
        simulated.caller_on_hold(adapter, transfer.caller_sid, transfer.id)


def open_transfer_for(session: Session, attempt_id: int) -> Transfer | None:
    return session.execute(select(Transfer).where(Transfer.attempt_id == attempt_id,
                                                  Transfer.state.in_(OPEN_STATES))
                           .order_by(Transfer.id.desc()).limit(1)).scalar_one_or_none()


def get_transfer(session: Session, transfer_id: int) -> Transfer:
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise TransferNotFound(f"no transfer {transfer_id}")
    return transfer


def offer_next_agent(session: Session, transfer: Transfer, *, at: datetime, public_url: str,
                     adapter: Adapter | None = None) -> Agent | None:
    """Reserve the next free agent and reach them; None when nobody is free (or reachable)."""
    tried = set(transfer.declined_by or [])
    while True:
        agent = agents.reserve_free_agent(session, at=at, exclude=tried)
        if agent is None:
            return None
        tried.add(agent.id)
        transfer.agent_id, transfer.state, transfer.agent_called_at = agent.id, "ringing_agent", at
        transfer.agent_sid = None
        session.add(transfer)
        failure = _reach(session, transfer, agent, at=at, public_url=public_url, adapter=adapter)
        if failure is None:
            session.flush()
            audit.append(session, actor=ACTOR, action="transfer.offered", subject=f"transfer:{transfer.id}",
                         at=at, payload={"agent_id": agent.id, "reach": agent.reach,
                                         "agent_sid": transfer.agent_sid})
            transfer_events.publish_after_commit(session, "offer", transfer.id, agent.id,
                                    {"card_url": f"/v1/transfers/{transfer.id}/card", "agent": agent.name})
            return agent
        transfer.declined_by = sorted(tried)
        # A refused call takes the agent out until someone checks their phone; without any
        # carrier configured the agent is not at fault and stays available.
        status = "available" if failure == NO_CARRIER else "offline"
        agents.set_status(session, agent, status, actor=ACTOR, at=at, reason=f"could not be called: {failure}")


NO_CARRIER = "no carrier adapter is configured for agent calls"


def _reach(session: Session, transfer: Transfer, agent: Agent, *, at: datetime, public_url: str,
           adapter: Adapter | None) -> str | None:
    """Call a phone agent; a console agent (client:NAME) is reached by the offer on the feed and
    connects from the browser to the `agent` TwiML. None when reached, else why not."""
    if agent.reach.startswith("client:"):
        return None
    adapter = adapter or current_adapter()
    if adapter is None:
        return NO_CARRIER
    campaign = session.get(Campaign, transfer.campaign_id)
    status_url = url(public_url, transfer.id, "agent-status")
    try:
        call = adapter.place_call(CallRequest(to=agent.reach, from_=campaign.caller_id,
                                              twiml_url=url(public_url, transfer.id, "agent"),
                                              status_callback=status_url, amd_callback=status_url,
                                              timeout_seconds=AGENT_RING_SECONDS))
    except (CarrierError, ValueError) as error:
        return str(error)[:300]
    transfer.agent_sid = call.sid
    return None


# --- TwiML ---------------------------------------------------------------------------------------

def caller_twiml(session: Session, transfer: Transfer, public_url: str) -> str:
    """The caller into the conference, on hold until the agent enters; the call ends with it."""
    if transfer.state == "ended":
        return ended_twiml(transfer)
    response = VoiceResponse()
    response.say("Please hold while we connect you with a representative.")
    dial = Dial(action=url(public_url, transfer.id, "caller-done"), method="POST")
    dial.conference(transfer.conference, start_conference_on_enter=False, end_conference_on_exit=True,
                    wait_url=url(public_url, transfer.id, "wait"), wait_method="POST", beep=False,
                    status_callback=url(public_url, transfer.id, "events"),
                    status_callback_event="start end join leave", status_callback_method="POST")
    response.append(dial)
    return str(response)


def agent_twiml(session: Session, transfer: Transfer, public_url: str) -> str:
    """The agent hears who is waiting, then joins; leaving ends the conference for both."""
    response = VoiceResponse()
    if transfer.state == "ended":
        response.say("This caller is no longer waiting. Thank you.")
        response.hangup()
        return str(response)
    response.say(spoken_summary(session, transfer))
    dial = Dial()
    dial.conference(transfer.conference, start_conference_on_enter=True, end_conference_on_exit=True,
                    beep=False, status_callback=url(public_url, transfer.id, "events"),
                    status_callback_event="start end join leave", status_callback_method="POST")
    response.append(dial)
    return str(response)


def wait_twiml(session: Session, transfer: Transfer, *, at: datetime, public_url: str,
               adapter: Adapter | None = None) -> str:
    """What the caller hears while holding: first the identification (who calls, and the number
    to call back), then hold audio. Past the wait time, the caller is moved to `no-answer`."""
    response = VoiceResponse()
    if transfer.state in WAITING_STATES and at >= transfer.wait_until:
        expire(session, transfer, at=at, public_url=public_url, adapter=adapter)
    if transfer.state == "ended":
        # The redirect to the callback offer is on its way (a wait URL may only play, say and
        # pause): a word, not silence, until it lands.
        response.say("One moment, please.")
        response.pause(length=2)
        return str(response)
    first = transfer.hold_fetches == 0
    transfer.hold_fetches += 1
    session.add(transfer)
    abandonment.mark_identified(session, transfer.attempt_id)
    if first:
        response.say(identification(session, transfer))
    response.play(HOLD_MUSIC_URL)
    return str(response)


def no_agent_twiml(session: Session, transfer: Transfer, public_url: str) -> str:
    response = VoiceResponse()
    response.say(identification(session, transfer))
    when = transfer.callback_at
    later = f"in about {_minutes(transfer.callback_at - transfer.ended_at)}" if when and transfer.ended_at else "later"
    response.say(f"We are sorry: no representative is free to take your call right now. "
                 f"We will call you back {later}.")
    gather = Gather(input="dtmf speech", num_digits=1, timeout=5, method="POST",
                    action=url(public_url, transfer.id, "callback-reply"))
    gather.say(f"If you do not want a call back, or any more calls from us, press {OPT_OUT_DIGIT} "
               "or say stop.")
    response.append(gather)
    response.say("Thank you. Goodbye.")
    response.hangup()
    return str(response)


def ended_twiml(transfer: Transfer | None) -> str:
    """For any TwiML request about a transfer that is over (or unknown): never silence."""
    response = VoiceResponse()
    response.say("Thank you for holding. This call has ended; we will be in touch. Goodbye.")
    response.hangup()
    return str(response)


def _minutes(delta: timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes >= 90:
        return f"{round(minutes / 60)} hours"
    return "an hour" if minutes >= 55 else f"{minutes} minutes"


def identification(session: Session, transfer: Transfer) -> str:
    campaign = session.get(Campaign, transfer.campaign_id)
    number = " ".join(campaign.caller_id.removeprefix("+1")) if campaign.caller_id else ""
    return (f"This call is from {campaign.name}. You can reach us at {number}. "
            f"To stop our calls, press {OPT_OUT_DIGIT} at any time.")


def spoken_summary(session: Session, transfer: Transfer) -> str:
    card = context_card(session, transfer.id)
    who = card["caller"]
    name = " ".join(part for part in (who["first_name"], who["last_name"]) if part) or "a caller"
    facts = ", ".join(f"{fact['name']} {fact['value']}" for fact in card["facts"][:3])
    basis = card["consent"]["basis"] or "no recorded consent"
    return (f"Transfer from campaign {card['campaign']['name']}: {name}"
            f"{', in ' + who['state'] if who['state'] else ''}. "
            f"{('Learned: ' + facts + '. ') if facts else ''}Consent: {basis}. Connecting now.")


TWIML_LEAVES = ("wait", "agent", "no-agent", "callback-reply", "caller-done")


def twiml_for(session: Session, transfer_id: int, leaf: str, params: dict[str, str], *, at: datetime,
              public_url: str, adapter: Adapter | None = None) -> str:
    """The TwiML at /v1/conference/{transfer_id}/{leaf}: the one answer the HTTP route and the
    simulator give. An unknown or ended transfer gets a goodbye, never an empty document."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        return ended_twiml(None)
    if leaf == "wait":
        return wait_twiml(session, transfer, at=at, public_url=public_url, adapter=adapter)
    if leaf == "agent":
        return agent_twiml(session, transfer, public_url)
    if leaf == "no-agent":
        # Reached without the transfer having given up (a stale redirect): the caller is
        # connected or gone; a goodbye rather than a wrong promise.
        return no_agent_twiml(session, transfer, public_url) if transfer.result == "no_agent" else ended_twiml(transfer)
    if leaf == "callback-reply":
        return callback_reply(session, transfer, params, at=at)
    if leaf == "caller-done":
        return ended_twiml(transfer)
    raise ValueError(f"unknown transfer TwiML {leaf!r}: expected one of {', '.join(TWIML_LEAVES)}")


# --- events --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventResult:
    transfer_id: int | None
    action: str                  # what was done, or `ignored`
    detail: str = ""
    state: str | None = None
    result: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"transfer_id": self.transfer_id, "action": self.action, "detail": self.detail,
                "state": self.state, "result": self.result}


def _outcome(transfer: Transfer, action: str, detail: str = "") -> EventResult:
    return EventResult(transfer.id, action, detail, transfer.state, transfer.result)


def handle_conference_event(session: Session, transfer_id: int, params: dict[str, str], *, at: datetime,
                            adapter: Adapter | None = None) -> EventResult:
    """Twilio's conference statusCallback (StatusCallbackEvent: conference-start | -end,
    participant-join | -leave). For an unknown or ended transfer: a defined no-op."""
    transfer = session.get(Transfer, transfer_id)
    event = params.get("StatusCallbackEvent", "")
    if transfer is None:
        return EventResult(transfer_id, "ignored", f"no transfer {transfer_id}")
    if transfer.state == "ended":
        return _outcome(transfer, "ignored", f"{event}: transfer already ended ({transfer.result})")
    call_sid = params.get("CallSid", "")
    is_caller = bool(call_sid) and call_sid == transfer.caller_sid
    if event == "participant-join" and not is_caller:
        return _agent_joined(session, transfer, call_sid, at)
    if event == "participant-leave" or event == "conference-end":
        if transfer.state == "connected":
            return _finish(session, transfer, "transferred", at=at, agent_status="wrap_up", adapter=adapter)
        if is_caller or event == "conference-end":
            return _finish(session, transfer, "caller_hung_up_on_hold", at=at, agent_status="available",
                           adapter=adapter, caller_left=True)
    return _outcome(transfer, "noted", event or "no StatusCallbackEvent")


def _agent_joined(session: Session, transfer: Transfer, call_sid: str, at: datetime) -> EventResult:
    if transfer.state == "connected":
        return _outcome(transfer, "ignored", "agent already joined")
    if transfer.agent_sid is None and call_sid:
        transfer.agent_sid = call_sid          # a console agent's browser leg
    transfer.state, transfer.result, transfer.agent_joined_at = "connected", "agent_joined", at
    session.add(transfer)
    session.flush()
    abandonment.agent_connected(session, transfer.attempt_id, at)
    audit.append(session, actor=ACTOR, action="transfer.agent_joined", subject=f"transfer:{transfer.id}",
                 at=at, payload={"agent_id": transfer.agent_id, "agent_sid": transfer.agent_sid,
                                 "waited_seconds": (at - transfer.began_at).total_seconds()})
    transfer_events.publish_after_commit(session, "joined", transfer.id, transfer.agent_id)
    return _outcome(transfer, "agent_joined")


def handle_agent_call_status(session: Session, transfer_id: int, params: dict[str, str], *, at: datetime,
                             public_url: str, adapter: Adapter | None = None) -> EventResult:
    """The agent leg's status callback: a leg that was not answered frees the agent and the next
    one is tried; with none left, the caller gets the no-agent path."""
    transfer = session.get(Transfer, transfer_id)
    status = params.get("CallStatus", "")
    if transfer is None:
        return EventResult(transfer_id, "ignored", f"no transfer {transfer_id}")
    if transfer.state == "ended" or params.get("CallSid") != transfer.agent_sid:
        return _outcome(transfer, "ignored", f"{status}: not the current agent leg of an open transfer")
    if transfer.state == "ringing_agent" and (status in FAILED_LEG_STATUSES or status == "completed"):
        return _next_agent_or_give_up(session, transfer, at=at, public_url=public_url, adapter=adapter,
                                      why=f"agent leg {status}")
    return _outcome(transfer, "noted", status)


def decline(session: Session, transfer: Transfer, agent: Agent, *, actor: str, at: datetime,
            public_url: str, adapter: Adapter | None = None) -> EventResult:
    if transfer.state != "ringing_agent" or transfer.agent_id != agent.id:
        raise TransferError(f"transfer {transfer.id} is not being offered to agent {agent.name!r} "
                            f"(state {transfer.state})")
    if transfer.agent_sid:
        _hang_up(adapter, transfer.agent_sid)
    audit.append(session, actor=actor, action="transfer.declined", subject=f"transfer:{transfer.id}",
                 at=at, payload={"agent_id": agent.id})
    return _next_agent_or_give_up(session, transfer, at=at, public_url=public_url, adapter=adapter,
                                  why=f"declined by {agent.name}")


def accept(session: Session, transfer: Transfer, agent: Agent, *, actor: str, at: datetime) -> dict[str, Any]:
    """The console agent takes the offer; their browser then connects to the `agent` TwiML."""
    if transfer.state != "ringing_agent" or transfer.agent_id != agent.id:
        raise TransferError(f"transfer {transfer.id} is not being offered to agent {agent.name!r} "
                            f"(state {transfer.state})")
    audit.append(session, actor=actor, action="transfer.accepted", subject=f"transfer:{transfer.id}",
                 at=at, payload={"agent_id": agent.id})
    transfer_events.publish_after_commit(session, "accepted", transfer.id, agent.id)
    return {"transfer_id": transfer.id, "conference": transfer.conference,
            "connect": {"transfer": str(transfer.id)}}


def _next_agent_or_give_up(session: Session, transfer: Transfer, *, at: datetime, public_url: str,
                           adapter: Adapter | None, why: str) -> EventResult:
    previous = session.get(Agent, transfer.agent_id) if transfer.agent_id else None
    transfer.declined_by = sorted({*(transfer.declined_by or []), *([previous.id] if previous else [])})
    if previous is not None and previous.status == "busy":
        agents.set_status(session, previous, "available", actor=ACTOR, at=at, reason=why)
    transfer_events.publish_after_commit(session, "declined", transfer.id, previous.id if previous else None,
                                         {"why": why})
    if at < transfer.wait_until and offer_next_agent(session, transfer, at=at, public_url=public_url,
                                                     adapter=adapter) is not None:
        return _outcome(transfer, "next_agent", why)
    expire(session, transfer, at=at, public_url=public_url, adapter=adapter, reason=why)
    return _outcome(transfer, "no_agent", why)


def expire(session: Session, transfer: Transfer, *, at: datetime, public_url: str,
           adapter: Adapter | None = None, reason: str = "no agent joined in time") -> None:
    """No agent joined: free whoever was rung, schedule the callback and redirect the caller to
    the no-agent message (told, callback offered)."""
    if transfer.agent_sid:
        _hang_up(adapter, transfer.agent_sid)
    agent = session.get(Agent, transfer.agent_id) if transfer.agent_id else None
    if agent is not None and agent.status == "busy":
        agents.set_status(session, agent, "available", actor=ACTOR, at=at, reason=reason)
    no_agent(session, transfer, at=at, reason=reason)
    adapter = adapter or current_adapter()
    if adapter is not None and transfer.caller_sid:
        try:
            _redirect(adapter, transfer.caller_sid, url(public_url, transfer.id, "no-agent"), transfer.conference)
        except (CarrierError, ValueError) as error:
            # The caller already left: record it, the callback stands.
            transfer.caller_left_at = transfer.caller_left_at or at
            transfer.disposition_note = f"redirect to no-agent failed: {error}"[:500]
            session.add(transfer)


def _redirect(adapter: Adapter, sid: str, twiml_url: str, conference: str) -> None:
    # `redirect` is the call update with a new Url; an adapter without it (older fakes) has
    # move_to_conference, which is the same request to the carrier.
    redirect = getattr(adapter, "redirect", None)
    if redirect is not None:
        redirect(sid, twiml_url)
    else:
        adapter.move_to_conference(sid, conference, twiml_url)


def no_agent(session: Session, transfer: Transfer, *, at: datetime, reason: str) -> None:
    transfer.callback_attempt_id, transfer.callback_at = schedule_callback(session, transfer, at=at)
    _end(session, transfer, "no_agent", at=at, detail=reason)
    abandonment.no_agent(session, transfer.attempt_id, at)


def schedule_callback(session: Session, transfer: Transfer, *, at: datetime) -> tuple[int, datetime]:
    """The contact's next attempt in the campaign, due after the campaign's callback delay: a
    pending one (a retry) is moved there, otherwise one is created. Dispatch takes it through the
    gate like any other, so the callback is gated too."""
    due = at + timedelta(seconds=policy_for(session, transfer.campaign_id).callback_delay_seconds)
    same_contact = (Attempt.campaign_id == transfer.campaign_id) & (Attempt.contact_id == transfer.contact_id)
    attempt = session.execute(select(Attempt).where(same_contact, Attempt.status == "pending",
                                                    Attempt.id != transfer.attempt_id)
                              .order_by(Attempt.attempt_no)).scalars().first()
    if attempt is None:
        last = session.execute(select(func.max(Attempt.attempt_no)).where(same_contact)).scalar_one()
        campaign = session.get(Campaign, transfer.campaign_id)
        attempt = Attempt(campaign_id=transfer.campaign_id, contact_id=transfer.contact_id, channel=campaign.channel,
                          status="pending", attempt_no=(last or 0) + 1, due_at=due, created_at=at, updated_at=at)
    attempt.due_at, attempt.updated_at = due, at
    session.add(attempt)
    session.flush()
    audit.append(session, actor=ACTOR, action="transfer.callback_scheduled", subject=f"transfer:{transfer.id}",
                 at=at, payload={"attempt_id": attempt.id, "due_at": audit.iso_utc(due),
                                 "note": "due time only: the gate decides at dispatch"})
    return attempt.id, due


def cancel_callback(session: Session, transfer: Transfer, *, at: datetime, why: str) -> bool:
    attempt = session.get(Attempt, transfer.callback_attempt_id) if transfer.callback_attempt_id else None
    if attempt is None or attempt.status != "pending":
        return False
    attempt.status, attempt.outcome, attempt.updated_at = "cancelled", "callback_declined", at
    session.add(attempt)
    audit.append(session, actor=ACTOR, action="transfer.callback_cancelled", subject=f"transfer:{transfer.id}",
                 at=at, payload={"attempt_id": attempt.id, "why": why})
    return True


def _finish(session: Session, transfer: Transfer, result: str, *, at: datetime, agent_status: str,
            adapter: Adapter | None, caller_left: bool = False) -> EventResult:
    if caller_left:
        transfer.caller_left_at = at
        if transfer.agent_sid and transfer.state == "ringing_agent":
            _hang_up(adapter, transfer.agent_sid)
        abandonment.no_agent(session, transfer.attempt_id, at)
    agent = session.get(Agent, transfer.agent_id) if transfer.agent_id else None
    if agent is not None and agent.status == "busy":
        agents.set_status(session, agent, agent_status, actor=ACTOR, at=at, reason=result)
    _end(session, transfer, result, at=at)
    return _outcome(transfer, result)


def _end(session: Session, transfer: Transfer, result: str, *, at: datetime, detail: str = "") -> None:
    transfer.state, transfer.result, transfer.ended_at = "ended", result, at
    session.add(transfer)
    session.flush()
    audit.append(session, actor=ACTOR, action="transfer.ended", subject=f"transfer:{transfer.id}", at=at,
                 payload={"result": result, "agent_id": transfer.agent_id, "detail": detail,
                          "callback_attempt_id": transfer.callback_attempt_id})
    transfer_events.publish_after_commit(session, "ended", transfer.id, transfer.agent_id, {"result": result})


def _hang_up(adapter: Adapter | None, sid: str) -> None:
    adapter = adapter or current_adapter()
    if adapter is None:
        return
    try:
        adapter.hang_up(sid)
    except (CarrierError, ValueError):
        pass                   # already gone: nothing to stop


def sweep(session: Session, *, at: datetime, public_url: str, adapter: Adapter | None = None) -> int:
    """Expire every transfer whose wait is over (housekeeping: the wait URL does it too, but a
    caller whose hold audio is not re-fetched must not wait for ever). Returns how many."""
    overdue = session.execute(select(Transfer).where(Transfer.state.in_(WAITING_STATES),
                                                     Transfer.wait_until <= at)).scalars().all()
    for transfer in overdue:
        expire(session, transfer, at=at, public_url=public_url, adapter=adapter)
    return len(overdue)


# --- the agent's side -----------------------------------------------------------------------------

DISPOSITIONS = ("sale", "interested", "callback", "not_interested", "wrong_number", "do_not_call", "other")


def set_disposition(session: Session, transfer: Transfer, disposition: str, note: str | None, *, actor: str,
                    at: datetime, available: bool = True) -> Transfer:
    """The agent's word on the call; ends their wrap-up (back to available unless told not to)."""
    if disposition not in DISPOSITIONS:
        raise TransferError(f"disposition: {disposition!r} is not one of {', '.join(DISPOSITIONS)}")
    if transfer.agent_joined_at is None:
        raise TransferError(f"transfer {transfer.id} never reached an agent ({transfer.result or transfer.state}): "
                            "there is no conversation to give a disposition to")
    transfer.disposition, transfer.disposition_note = disposition, (note or None)
    session.add(transfer)
    session.flush()
    audit.append(session, actor=actor, action="transfer.disposition", subject=f"transfer:{transfer.id}", at=at,
                 payload={"disposition": disposition, "note": note})
    agent = session.get(Agent, transfer.agent_id) if transfer.agent_id else None
    if agent is not None and agent.status == "wrap_up" and available:
        agents.set_status(session, agent, "available", actor=actor, at=at, reason="disposition given")
    if disposition == "do_not_call":
        _revoke(session, transfer, actor=actor, at=at, via="agent",
                via_note=f"agent disposition do_not_call on transfer {transfer.id}" + (f": {note[:200]}" if note else ""))
    return transfer


def _revoke(session: Session, transfer: Transfer, *, actor: str, at: datetime, via: str, via_note: str) -> None:
    """Store the opt-out (a do-not-call request: the ledger lists the number internally too),
    committed, naming how it came: the agent's disposition, or the caller's key or words."""
    from consent import records
    from consent.ledger_io import RevocationVia
    from consent.types import Channel

    phone = session.get(Contact, transfer.contact_id).e164
    records.revoke(session, phone, {Channel.VOICE, Channel.SMS}, RevocationVia(via), at, actor=actor, at=at,
                   audit=audit.append, note=via_note)


def callback_reply(session: Session, transfer: Transfer, params: dict[str, str], *, at: datetime) -> str:
    """The caller's answer to the callback offer: 9 or a spoken opt-out cancels the callback and
    is stored as a revocation before the goodbye is said."""
    from consent import opt_out_words

    digits, speech = params.get("Digits", ""), params.get("SpeechResult", "")
    response = VoiceResponse()
    if digits == OPT_OUT_DIGIT or (speech and opt_out_words.opt_out(speech)):
        cancel_callback(session, transfer, at=at, why="caller opted out")
        _revoke(session, transfer, actor=ACTOR, at=at, via="keypress" if digits == OPT_OUT_DIGIT else "spoken",
                via_note=f"opt-out at the callback offer of transfer {transfer.id}: {digits or speech[:200]!r}")
        response.say("You will not receive any more calls from us. Goodbye.")
    else:
        response.say("Thank you. We will call you back. Goodbye.")
    response.hangup()
    return str(response)


# --- the context card ------------------------------------------------------------------------------

def context_card(session: Session, transfer_id: int) -> dict[str, Any]:
    """What the agent sees: the caller, the script path so far, facts learned, the consent basis
    and its evidence, prior attempts."""
    from consent import records
    from consent.types import Channel, Purpose
    from outbound.campaigns import campaign_seller

    transfer = get_transfer(session, transfer_id)
    contact = session.get(Contact, transfer.contact_id)
    campaign = session.get(Campaign, transfer.campaign_id)
    # The campaign's seller's consent only: the one that let the call through.
    ledger = records.ledger_view(session, contact.e164, transfer.began_at, channels=(Channel(campaign.channel),),
                                 purposes=(Purpose(campaign.purpose),), seller=campaign_seller(campaign))
    relied = [reliance.as_dict() for reliance in ledger.reliance]
    path, facts = _conversation(session, transfer)
    return {
        "transfer": {"id": transfer.id, "state": transfer.state, "result": transfer.result,
                     "conference": transfer.conference, "began_at": audit.iso_utc(transfer.began_at),
                     "wait_until": audit.iso_utc(transfer.wait_until)},
        "campaign": {"id": campaign.id, "name": campaign.name, "purpose": campaign.purpose},
        "caller": {"phone": contact.e164, "first_name": contact.first_name, "last_name": contact.last_name,
                   "state": contact.state, "zip": contact.zip, "email": contact.email,
                   "attributes": contact.attributes or {}},
        "script_path": path,
        "facts": facts,
        "consent": {"basis": _basis(relied), "relied_on": relied,
                    "evidence": [event for event in ledger.as_dict()["history"]]},
        "prior_attempts": _prior_attempts(session, contact, transfer.attempt_id),
    }


def _basis(relied: list[dict[str, Any]]) -> str | None:
    """`written consent: consent#12: written, granted …`, or why none is relied on."""
    for item in relied:
        if item["kind"]:
            return f"{item['kind']} consent: {item['reason']}"
    return relied[0]["reason"] if relied else None


def _conversation(session: Session, transfer: Transfer) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The turns of this call (node by node) and every fact learned about the phone, from the
    conversation memory."""
    from outbound.memory_tables import ConversationFact, ConversationTurn

    turns = session.execute(select(ConversationTurn).where(ConversationTurn.attempt_id == transfer.attempt_id)
                            .order_by(ConversationTurn.turn_no)).scalars().all()
    phone = session.get(Contact, transfer.contact_id).e164
    facts = session.execute(select(ConversationFact).where(ConversationFact.phone == phone)
                            .order_by(ConversationFact.at.desc(), ConversationFact.id.desc())).scalars().all()
    path = [{"turn": turn.turn_no, "node": turn.node, "said": turn.said, "heard": turn.heard,
             "intent": turn.intent, "action": turn.action, "at": audit.iso_utc(turn.at)} for turn in turns]
    learned = [{"name": fact.kind, "value": fact.value, "detail": fact.detail, "at": audit.iso_utc(fact.at),
                "attempt_id": fact.attempt_id} for fact in facts]
    return path, learned


def _prior_attempts(session: Session, contact: Contact, current_attempt_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Attempt, Campaign.name).join(Contact, Contact.id == Attempt.contact_id)
        .join(Campaign, Campaign.id == Attempt.campaign_id)
        .where(Contact.e164 == contact.e164, Attempt.id != current_attempt_id)
        .order_by(Attempt.due_at.desc()).limit(20)).all()
    return [{"attempt_id": attempt.id, "campaign": name, "channel": attempt.channel, "status": attempt.status,
             "outcome": attempt.outcome, "answered_by": attempt.answered_by,
             "at": audit.iso_utc(attempt.dispatched_at or attempt.due_at)} for attempt, name in rows]


def transfer_dict(transfer: Transfer) -> dict[str, Any]:
    def iso(value):
        return audit.iso_utc(value) if value else None
    return {"id": transfer.id, "attempt_id": transfer.attempt_id, "campaign_id": transfer.campaign_id,
            "contact_id": transfer.contact_id, "agent_id": transfer.agent_id, "conference": transfer.conference,
            "state": transfer.state, "result": transfer.result, "began_at": iso(transfer.began_at),
            "wait_until": iso(transfer.wait_until), "agent_called_at": iso(transfer.agent_called_at),
            "agent_joined_at": iso(transfer.agent_joined_at), "ended_at": iso(transfer.ended_at),
            "callback_attempt_id": transfer.callback_attempt_id, "callback_at": iso(transfer.callback_at),
            "disposition": transfer.disposition, "disposition_note": transfer.disposition_note}


# --- the simulator's transfer events --------------------------------------------------------------

SIMULATED_KINDS = ("conference-agent-status", "conference-events", "agent-disposition")


def deliver_simulated(session: Session, kind: str, params: dict[str, str], at: datetime, *, public_url: str,
                      adapter: Adapter | None = None) -> EventResult:
    """One event of `telephony.simulated_agents`, through the handlers the webhooks use (the
    transfer id is in the params, as Twilio has it in the callback URL). Commits."""
    transfer_id = int(params["transfer_id"])
    if kind == "conference-agent-status":
        result = handle_agent_call_status(session, transfer_id, params, at=at, public_url=public_url, adapter=adapter)
    elif kind == "conference-events":
        result = handle_conference_event(session, transfer_id, params, at=at, adapter=adapter)
    elif kind == "agent-disposition":
        result = _simulated_disposition(session, transfer_id, params["disposition"], at=at)
    else:
        raise ValueError(f"unknown transfer event kind {kind!r}: expected one of {', '.join(SIMULATED_KINDS)}")
    session.commit()
    return result


def _simulated_disposition(session: Session, transfer_id: int, disposition: str, *, at: datetime) -> EventResult:
    transfer = session.get(Transfer, transfer_id)
    if transfer is None or transfer.agent_joined_at is None or transfer.disposition is not None:
        return EventResult(transfer_id, "ignored", "no conversation to give a disposition to")
    agent = session.get(Agent, transfer.agent_id) if transfer.agent_id else None
    set_disposition(session, transfer, disposition, "simulated agent", actor=f"agent:{agent.name if agent else '?'}",
                    at=at)
    return _outcome(transfer, "disposition", disposition)
