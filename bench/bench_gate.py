"""Gate benchmarks: `evaluate` throughput on one core, and `outbound gate check` over JSONL.

    .venv/bin/python bench/bench_gate.py [--decisions 200000] [--lines 100000]

Targets (issue 2): evaluate with facts preloaded and contacts resolved >= 100,000 decisions/s on
one core; `gate check` over a 100k-line JSONL file >= 10,000 scenarios/s.

The target is checked on the instants the engine decides at: a dispatch batch's ticks, and a
campaign week's daytime. The year spread is a stress figure with no target: random instants over
a whole year, so nearly every defer is explained at a minute no other decision shares, and each
place's windows are derived for every block of days; it prints how far it is from the pace.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from consent.gate import evaluate
from consent.rules import load_pack
from consent.scenario import parse_scenario

# Area codes across every US zone, the multi-zone ones and the strict states.
NPAS = ["212", "305", "208", "775", "214", "801", "401", "215", "601", "405", "410", "503", "907",
        "617", "312", "404", "702", "602", "605", "701", "928", "808", "860", "505", "206", "615"]
STATES = [None, None, "NY", "FL", "TX", "UT", "CA", "PA", "OK", "MD"]


def scenario(rng: random.Random, spread: str = "campaign") -> dict:
    """A realistic mix: mostly consented telemarketing, some DNC, caps history, informational.

    spread "dispatch": one batch instant per simulated tick (20 ticks of a July afternoon), as a
    dispatch batch decides many contacts at once; "campaign": any quarter hour of one campaign
    week during US daytime (13:00-24:00 UTC); "year": any day and hour of 2026, mostly cold
    caches and many defers.
    """
    if spread == "dispatch":
        month, day, hour = 7, 15, 14 + rng.randint(0, 9)
    elif spread == "campaign":
        month, day, hour = 7, rng.randint(13, 19), rng.randint(13, 23)
    else:
        month, day, hour = rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23)
    minute = rng.choice([0, 30]) if spread == "dispatch" else rng.choice([0, 15, 30, 45])
    at = f"2026-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00Z"
    channel = rng.choice(["voice", "voice", "sms"])
    item = {
        "at": at, "channel": channel, "purpose": rng.choice(["telemarketing"] * 3 + ["informational"]),
        "automated": rng.random() < 0.8,
        "contact": {"phone": f"+1{rng.choice(NPAS)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}",
                    "state": rng.choice(STATES), "line_type": rng.choice(["mobile", "landline", "unknown"])},
        "consents": [{"kind": "written" if rng.random() < 0.9 else "express", "channels": ["voice", "sms"],
                      "purposes": ["telemarketing", "informational"], "granted_at": "2025-06-01T00:00:00Z",
                      "expires_at": None, "evidence": "cert"}] if rng.random() < 0.85 else [],
        "revocations": [{"at": "2025-09-01T00:00:00Z", "channels": ["sms"], "via": "sms_stop"}] if rng.random() < 0.05 else [],
        "dnc": {"national": {"listed": rng.random() < 0.1, "registered_on": None,
                             "synced_at": at[:8] + "01T00:00:00Z"},
                "state": [], "internal": rng.random() < 0.01, "litigator": False},
        "ebr": {"last_transaction_at": None, "last_inquiry_at": None},
        "history": [{"at": at[:11] + "00:00:00Z", "channel": "voice"}] * rng.choice([0, 0, 1, 3]),
    }
    if channel == "voice":
        item["voice"] = rng.choice(["live", "live", "prerecorded", "artificial"])
    return item


def bench_evaluate(count: int, spread: str) -> tuple[float, dict[str, int]]:
    rng = random.Random(42)
    pack = load_pack()
    parsed = [parse_scenario(scenario(rng, spread)) for _ in range(count)]
    started = time.perf_counter()
    verdicts = Counter(evaluate(request, facts, pack, at).verdict.value for request, facts, at in parsed)
    return count / (time.perf_counter() - started), dict(verdicts)


def bench_gate_check(lines: int) -> tuple[float, float]:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scenarios.jsonl"
        with path.open("w") as out:
            for _ in range(lines):
                out.write(json.dumps(scenario(rng)) + "\n")
        command = [sys.executable, "-m", "outbound.cli", "gate", "check", str(path)]
        started = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - started
        decided = result.stdout.count(b"\n")
        if result.returncode != 0 or decided != lines:
            raise SystemExit(f"gate check failed (exit {result.returncode}, {decided} lines): {result.stderr[-500:]!r}")
        return lines / elapsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    for spread in ("dispatch", "campaign"):
        rate, verdicts = bench_evaluate(args.decisions, spread)
        print(f"evaluate ({spread} spread, cold caches): {rate:,.0f} decisions/s on one core over "
              f"{args.decisions:,} scenarios {verdicts} (target >= 100,000)  "
              f"{'OK' if rate >= 100_000 else 'BELOW TARGET'}")
    rate, verdicts = bench_evaluate(args.decisions, "year")
    print(f"evaluate (year spread, cold caches; stress figure, no target): {rate:,.0f} decisions/s on one core "
          f"over {args.decisions:,} scenarios {verdicts} ({rate / 100_000:.0%} of the target pace)")
    rate, elapsed = bench_gate_check(args.lines)
    print(f"gate check: {rate:,.0f} scenarios/s over a {args.lines:,}-line JSONL file, {elapsed:.1f} s end to end "
          f"incl. start-up (target >= 10,000)  {'OK' if rate >= 10_000 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
