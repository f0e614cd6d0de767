"""POST /v1/scrub answers what `outbound scrub` does, from an upload."""
from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from api.app import create_app
from outbound.cli import app


def test_scrub_upload_counts_and_rows(cli_runner, env_api_users, tmp_path):
    assert cli_runner.invoke(app, ["dnc", "add", "+12125550123", "--reason", "asked on the phone"]).exit_code == 0
    registry = tmp_path / "registry.txt"            # data for both area codes: none would be national_not_loaded
    registry.write_text("2125559999\n3055559999\n")
    assert cli_runner.invoke(app, ["dnc", "import", "national", str(registry)]).exit_code == 0
    body = "name,phone\nAda,(212) 555-0123\nBob,+1 305 555 0199\nEve,not a number\nMal,=HYPERLINK(\"x\")\n"
    client = TestClient(create_app(), headers=env_api_users.headers("manager"))
    report = client.post("/v1/scrub", files={"file": ("list.csv", body, "text/csv")})
    assert report.status_code == 200, report.text
    counts = report.json()
    assert counts["rows"] == 4 and counts["counts"]["internal"] == 1 and counts["invalid"] == 2
    rows = client.post("/v1/scrub?format=csv", files={"file": ("list.csv", body, "text/csv")})
    assert rows.status_code == 200
    table = list(csv.DictReader(io.StringIO(rows.text)))
    assert [row["blocked_by"] for row in table] == ["internal", "", "invalid_number", "invalid_number"]
    assert table[3]["phone"].startswith("'=")          # formula injection is defused
    refused = client.post("/v1/scrub", files={"file": ("list.csv", "name,city\nAda,Paris\n", "text/csv")})
    assert refused.status_code == 422
    assert "name, city" in refused.json()["detail"]
