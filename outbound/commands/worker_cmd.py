"""`outbound worker`: run the dispatch loop, the lease reaper and housekeeping until stopped.

Start as many as you like against one PostgreSQL database; on SQLite, one. SIGTERM or SIGINT
stops it after the ticks in progress. The telephony adapter is the configured one
(OUTBOUND_TELEPHONY: simulator, the default, or twilio).
"""
from __future__ import annotations

import logging
from datetime import datetime

import typer
from rich.console import Console

from outbound.db import ensure_schema, get_engine, session_scope
from outbound.settings import Settings, get_settings

err = Console(stderr=True)
EXIT_CONFIG = 2


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    worker_id: str | None = typer.Option(None, "--worker-id", help="Name stamped on claims (default host:pid:random)."),
    batch_size: int = typer.Option(100, "--batch-size", min=1, help="Attempts claimed per dispatch tick."),
    dispatch_interval: float = typer.Option(2.0, "--dispatch-interval", min=0.05, help="Seconds between dispatch ticks."),
    seed: int | None = typer.Option(None, help="Simulator seed (default: random, so a restarted worker never reuses a call sid)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log every tick."),
) -> None:
    """Claim due attempts, ask the gate, store each decision, then dial."""
    from consent.registry_store import RegistryStore
    from scheduler.dispatch import CallbackUrls, DispatchConfig
    from scheduler.worker import Intervals, Worker, default_worker_id, utc_now

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # APScheduler logs every job run at INFO: the worker's own tick summaries say more.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = get_settings()
    engine = get_engine()
    ensure_schema(engine)
    try:
        adapter = build_adapter(settings, engine, seed=seed, clock=utc_now)
    except AdapterUnavailable as error:
        err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    config = DispatchConfig(batch_size=batch_size, pacing_window_seconds=dispatch_interval,
                            callbacks=CallbackUrls(base=(settings.public_url or "http://localhost:8000").rstrip("/")))
    Worker(engine=engine, adapter=adapter, registry=RegistryStore(settings.data_dir / "registry"),
           worker_id=worker_id or default_worker_id(), config=config,
           intervals=Intervals(dispatch=dispatch_interval)).run()


class AdapterUnavailable(RuntimeError):
    pass


def build_adapter(settings: Settings, engine, *, seed: int | None, clock):
    """The configured carrier adapter (`telephony.factory`). The simulator delivers its events
    through the same handling Twilio's webhooks take (`outbound.carrier_events.handle_webhook`)."""
    from telephony.factory import adapter_from_settings
    from telephony.simulator import SimulationProfile

    built: dict = {}

    def deliver(kind: str, params: dict, at: datetime) -> str | None:
        from telephony.call_requests import handle_carrier_event
        try:
            with session_scope(engine) as session:
                # The adapter sends the one reply an inbound text may get (opt-out confirmation);
                # a TwiML request (answer URL, a reply) answers the conversation's next step.
                return handle_carrier_event(session, kind, params, at, adapter=built.get("adapter"),
                                            public_url=settings.public_url)
        except Exception:
            # One event that cannot be applied must not stop the others; the reaper reconciles
            # the attempt from the carrier if its final status is what was lost.
            logging.getLogger(__name__).exception("simulated %s event could not be applied", kind)

    try:
        built["adapter"] = adapter_from_settings(settings, deliver=deliver, clock=clock, seed=seed,
                                                 profile=SimulationProfile(converse=True))
    except (ValueError, ImportError) as error:
        raise AdapterUnavailable(str(error)) from None
    if settings.telephony == "simulator":
        _simulate_agents(built["adapter"], engine, settings.public_url)
    return built["adapter"]


def _simulate_agents(simulator, engine, public_url: str | None) -> None:
    """With the simulated carrier, the agents on file (reached by phone) answer and join
    transfers as simulated people do; agents added later are not simulated until a restart."""
    from outbound.agents import list_agents
    from telephony.simulated_agents import SimulatedAgents, attach

    with session_scope(engine) as session:
        numbers = [agent.reach for agent in list_agents(session) if agent.reach.startswith("+")]
    attach(simulator, SimulatedAgents(numbers), engine=engine, public_url=public_url)
