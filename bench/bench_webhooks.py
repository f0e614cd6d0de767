"""Webhook benchmark: signed Twilio call-status events through uvicorn, on loopback.

    .venv/bin/python bench/bench_webhooks.py [--requests 10000] [--concurrency 50] [--workers 1]
    .venv/bin/python bench/bench_webhooks.py --requests 40000 --seconds 15    # wrk (apt-get install wrk)

Target (issue 4): >= 1,000 signed requests/s with p99 latency < 50 ms.

What runs: `uvicorn api.app:create_app --factory` on 127.0.0.1 (a free port) against a fresh
SQLite file pre-seeded with dialing attempts; a bounded-concurrency httpx.AsyncClient sends
`--requests` signed call-status events (initiated, ringing, in-progress, completed + human for
each call, in order per call, so concurrent delivery also reorders some of them), then stops.
Every request does the real work: signature check, claim, attempt update, audit append, commit.
Signatures are computed before the clock starts (Twilio signs on its side).

Read the figures with the machine in mind: the load generator and the server share the cores,
and by Little's law the mean latency is concurrency / throughput, so at 50 in flight a p99 under
50 ms needs well over 1,000 req/s.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select
from sqlmodel import Session
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outbound.db import ensure_schema, make_engine  # noqa: E402
from outbound.models import Attempt, Campaign, Contact  # noqa: E402

TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://calls.example.com"
PATH = "/v1/twilio/call-status"
STATUSES = ("initiated", "ringing", "in-progress", "completed")
TARGET_RPS = 1_000
TARGET_P99_MS = 50.0
WARMUP_CALLS = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(url: str, calls: int) -> list[str]:
    """A running campaign with `calls` dialing attempts; their CallSids."""
    engine = make_engine(url)
    ensure_schema(engine)
    now = datetime.now(UTC)
    sids = [f"CA{index:032x}" for index in range(calls)]
    with Session(engine) as session:
        campaign = Campaign(name="bench", status="running", voice="live", caller_id="+12125550100", created_at=now, updated_at=now)
        session.add(campaign)
        session.flush()
        contacts = [Contact(campaign_id=campaign.id, e164=f"+1212{5550000 + i:07d}",
                            phone_raw="bench", created_at=now) for i in range(calls)]
        session.add_all(contacts)
        session.flush()
        session.add_all(Attempt(campaign_id=campaign.id, contact_id=contact.id, channel="voice", status="dialing",
                                due_at=now, carrier_id=sid, carrier_status="queued", created_at=now, updated_at=now)
                        for contact, sid in zip(contacts, sids))
        session.commit()
    engine.dispose()
    return sids


def signed_requests(sids: list[str]) -> list[tuple[bytes, str]]:
    """(form body, X-Twilio-Signature) for every event of every call, call by call."""
    validator = RequestValidator(TOKEN)
    requests = []
    for sid in sids:
        for sequence, status in enumerate(STATUSES):
            params = {"AccountSid": "AC" + "0" * 32, "CallSid": sid, "CallStatus": status,
                      "SequenceNumber": str(sequence), "Direction": "outbound-api"}
            if status == "completed":
                params.update(AnsweredBy="human", CallDuration="31")
            requests.append((urlencode(params).encode(), validator.compute_signature(PUBLIC_URL + PATH, params)))
    return requests


def start_server(url: str, port: int, workers: int, workdir: Path) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OUTBOUND_")},
           "OUTBOUND_DATABASE_URL": url, "OUTBOUND_PUBLIC_URL": PUBLIC_URL,
           "OUTBOUND_TWILIO_AUTH_TOKEN": TOKEN, "OUTBOUND_TELEPHONY": "simulator",
           "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log", "--workers", str(workers),
               # Idle keep-alive connections outlive a loaded machine's pauses: a server closing one
               # while the client reuses it is a client error no real carrier would cause.
               "--timeout-keep-alive", "60"]
    return subprocess.Popen(command, cwd=workdir, env=env)


def wait_until_serving(base: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with status {server.returncode}")
        try:
            if httpx.get(base + "/openapi.json", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"uvicorn did not answer on {base} within {timeout:.0f} s")


async def drive(base: str, requests: list[tuple[bytes, str]], concurrency: int) -> tuple[list[float], Counter, float]:
    """Send every request with at most `concurrency` in flight; latencies (s), statuses, elapsed."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    queue = iter(requests)                  # shared: each worker takes the next one in order
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency,
                          keepalive_expiry=60.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:
        async def worker() -> None:
            for body, signature in queue:
                started = time.perf_counter()
                try:
                    response = await client.post(PATH, content=body, headers={
                        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
                except httpx.TransportError as error:     # counted, never hidden: the run fails
                    statuses[type(error).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, statuses, time.perf_counter() - started


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def final_states(url: str) -> dict[tuple[str, str | None], int]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = session.execute(select(Attempt.status, Attempt.outcome, func.count())
                               .group_by(Attempt.status, Attempt.outcome)).all()
    engine.dispose()
    return {(status, outcome): n for status, outcome, n in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--generator", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator: wrk (C, Debian package `wrk`; the default when installed) or "
                             "httpx (Python: on 2 cores it saturates a core itself and measures mostly itself)")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk: how long to send")
    args = parser.parse_args()
    if args.generator == "wrk":
        return run_wrk(args)
    calls = -(-args.requests // len(STATUSES))

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'outbound.db'}"
        sids = seed(url, calls + WARMUP_CALLS)
        warmup = signed_requests(sids[:WARMUP_CALLS])
        measured = signed_requests(sids[WARMUP_CALLS:])[:args.requests]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, port, args.workers, workdir)
        try:
            wait_until_serving(base, server)
            asyncio.run(drive(base, warmup, min(args.concurrency, 10)))
            latencies, statuses, elapsed = asyncio.run(drive(base, measured, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=30)
        states = final_states(url)

    latencies.sort()
    rps = len(latencies) / elapsed
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    print(f"requests: {len(latencies):,} signed call-status events, {args.concurrency} in flight, "
          f"{args.workers} uvicorn worker(s), {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"responses: {dict(statuses)}")
    print(f"throughput: {rps:,.0f} req/s over {elapsed:.2f} s (target >= {TARGET_RPS:,}): "
          f"{'PASS' if rps >= TARGET_RPS else 'FAIL'}")
    print(f"latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
          f"mean {statistics.fmean(latencies) * 1000:.1f} ms (target p99 < {TARGET_P99_MS:.0f} ms): "
          f"{'PASS' if p99 < TARGET_P99_MS else 'FAIL'}")
    print(f"attempts after the run: {dict(sorted(states.items(), key=str))}")
    ok = statuses == Counter({200: args.requests}) and rps >= TARGET_RPS and p99 < TARGET_P99_MS
    return 0 if ok else 1


def run_wrk(args) -> int:
    """The same server and events, driven by wrk: `--requests` unique events are prepared
    (make it more than the server can take in `--seconds`, or events start to repeat)."""
    calls = -(-args.requests // len(STATUSES))
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'outbound.db'}"
        sids = seed(url, calls + WARMUP_CALLS)
        events = workdir / "events.tsv"
        events.write_text("".join(f"{signature}\t{body.decode()}\n"
                                  for body, signature in signed_requests(sids[WARMUP_CALLS:])))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, port, args.workers, workdir)
        threads = 2
        try:
            wait_until_serving(base, server)
            asyncio.run(drive(base, signed_requests(sids[:WARMUP_CALLS]), 10))
            output = subprocess.run(
                ["wrk", f"-t{threads}", f"-c{args.concurrency}", f"-d{args.seconds:g}s", "--latency",
                 "-s", str(Path(__file__).with_name("webhooks_wrk.lua")), base, "--", str(events), str(threads)],
                capture_output=True, text=True, check=True).stdout
        finally:
            server.terminate()
            server.wait(timeout=30)
        states = final_states(url)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50, p99 = (_wrk_ms(output, share) for share in ("50%", "99%"))
    sent = int(re.search(r"(\d+) requests in", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    print(f"wrk: {sent:,} signed call-status events ({len(STATUSES) * calls:,} prepared), {args.concurrency} "
          f"connections, {args.workers} uvicorn worker(s), {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"responses not 2xx: {int(bad.group(1)) if bad else 0}")
    print(f"throughput: {rps:,.0f} req/s (target >= {TARGET_RPS:,}): {'PASS' if rps >= TARGET_RPS else 'FAIL'}")
    print(f"latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < {TARGET_P99_MS:.0f} ms): "
          f"{'PASS' if p99 < TARGET_P99_MS else 'FAIL'}")
    print(f"attempts after the run: {dict(sorted(states.items(), key=str))}")
    return 0 if not bad and rps >= TARGET_RPS and p99 < TARGET_P99_MS else 1


def _wrk_ms(output: str, share: str) -> float:
    value, unit = re.search(rf"{re.escape(share)}\s+([\d.]+)(us|ms|s)", output).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


if __name__ == "__main__":
    sys.exit(main())
