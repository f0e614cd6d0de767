"""`outbound demo`: the sample campaign through the real pipeline, against the simulator."""
from __future__ import annotations

import json

from sqlalchemy import text

from outbound.cli import app
from outbound.db import get_engine


def test_demo_runs_the_sample_campaign_to_completion_through_the_gate(cli_runner, outbound_env):
    result = cli_runner.invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout.splitlines()[-1])
    assert set(counts) >= {"allowed", "deferred", "blocked", "blocked_by_reason", "completed", "transferred"}
    # The bundled facts put contacts behind each kind of block.
    assert {"consent_missing", "consent_revoked", "dnc_internal", "dnc_national"} <= set(counts["blocked_by_reason"])
    assert counts["called"] > 500 and counts["completed"] > 500
    engine = get_engine()
    with engine.connect() as connection:
        transferred = connection.execute(text("SELECT count(*) FROM transfers WHERE result = 'transferred'")).scalar_one()
    # Qualified callers reach the simulated agents, and the count printed is the one stored.
    assert counts["transferred"] == transferred > 0
    with engine.connect() as connection:
        # Nothing was dialed without a stored allow, and no attempt was dialed twice.
        undecided = connection.execute(text(
            "SELECT count(*) FROM attempts a LEFT JOIN decisions d ON d.id = a.decision_id "
            "WHERE a.carrier_id IS NOT NULL AND (d.verdict IS NULL OR d.verdict <> 'allow')")).scalar_one()
        sids = connection.execute(text("SELECT count(carrier_id), count(DISTINCT carrier_id) FROM attempts")).one()
        status = connection.execute(text("SELECT status FROM campaigns")).scalar_one()
        some_ids = [row[0] for row in connection.execute(text("SELECT id FROM decisions ORDER BY id LIMIT 5"))]
    assert undecided == 0
    assert sids[0] == sids[1]
    assert status == "completed"
    for decision_id in some_ids:
        replay = cli_runner.invoke(app, ["gate", "replay", decision_id, "--json"])
        assert replay.exit_code == 0, replay.output
    assert cli_runner.invoke(app, ["audit", "verify"]).exit_code == 0
