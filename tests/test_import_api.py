"""The list-import REST routes: upload, report, rejects CSV."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlmodel import Session

from api.app import create_app
from api.routes import lists as list_routes
from outbound.lists import find_or_create_campaign
from outbound.models import Contact, ListImport

AT = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)
CSV = (b"\xef\xbb\xbfPhone;First Name;Zip\n"
       b"(212) 555-0123;Ann;10001\n"
       b"212.555.0123;Ann again;\n"
       b"+44 20 7946 0958;Nigel;\n"
       b"=2+5;Evil;\n"
       b"(305) 555-0100;Jos\xc3\xa9;33101\n")


@pytest.fixture
def client(engine, api_users):
    app = create_app()
    app.dependency_overrides[list_routes.get_import_engine] = lambda: engine
    api_users.install(app)
    with TestClient(app, headers=api_users.headers("manager")) as client:
        yield client


@pytest.fixture
def campaign_id(engine, api_users) -> int:
    with Session(engine) as session:
        campaign = find_or_create_campaign(session, "spring", AT)
        campaign.owner_id = api_users.ids["manager"]        # a manager uploads to their own campaigns
        campaign_id = campaign.id
        session.commit()
    return campaign_id


def upload(client, campaign_id, data: bytes, **form):
    return client.post(f"/v1/campaigns/{campaign_id}/lists", files={"file": ("list.csv", data, "text/csv")},
                       data=form)


def test_upload_imports_the_good_rows_and_answers_the_counts(client, engine, campaign_id):
    response = upload(client, campaign_id, CSV)
    assert response.status_code == 201, response.text
    body = response.json()
    assert {k: body[k] for k in ("accepted", "duplicates", "rejected", "rejected_by_reason")} == {
        "accepted": 2, "duplicates": 1, "rejected": 2,
        "rejected_by_reason": {"not_us_number": 1, "invalid_number": 1}}
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Contact)).scalar_one() == 2
        assert session.get(ListImport, body["import_id"]).actor == "manager"
    report = client.get(body["report_url"]).json()
    assert (report["accepted"], report["file_name"], report["campaign_id"]) == (2, "list.csv", campaign_id)


def test_rejects_csv_lists_line_reason_and_original_columns_without_formulas(client, campaign_id):
    body = upload(client, campaign_id, CSV).json()
    response = client.get(body["rejects_url"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == [["line", "reason", "Phone", "First Name", "Zip"],
                    ["4", "not_us_number", "'+44 20 7946 0958", "Nigel", ""],
                    ["5", "invalid_number", "'=2+5", "Evil", ""]]


def test_uploading_the_same_file_again_changes_nothing(client, engine, campaign_id):
    upload(client, campaign_id, CSV)
    again = upload(client, campaign_id, CSV).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)


def test_a_map_form_field_names_the_phone_column(client, campaign_id):
    response = upload(client, campaign_id, b"Tel Nr,x\n2125550123,1\n", map="Tel Nr=phone")
    assert response.status_code == 201, response.text
    assert response.json()["accepted"] == 1


def test_a_file_without_phone_column_is_refused_with_the_header_seen(client, campaign_id):
    response = upload(client, campaign_id, b"name,zip\nAnn,10001\n")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert (detail["code"], detail["header"]) == ("no_phone_column", ["name", "zip"])


@pytest.mark.parametrize("data,code", [(b"", "empty_file"), (b"phone\n", "no_rows"),
                                       (b"\x00\x01\x02junk", "unreadable_file")])
def test_unusable_files_are_422_with_a_code(client, campaign_id, data, code):
    response = upload(client, campaign_id, data)
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == code


def test_unknown_campaign_and_import_are_404(client):
    assert upload(client, 999, CSV).status_code == 404
    assert client.get("/v1/imports/999").status_code == 404
    assert client.get("/v1/imports/999/rejects.csv").status_code == 404


def test_a_large_upload_is_streamed_through(client, engine, campaign_id):
    # 60,000 rows (about 1 MB, past Starlette's in-memory spool): stored, counted, none lost.
    rows = b"".join(b"(212) 5%02d-%04d,x\n" % (20 + i // 10000, i % 10000) for i in range(60_000))
    body = upload(client, campaign_id, b"phone,notes\n" + rows).json()
    assert (body["accepted"], body["rejected"]) == (60_000, 0)


def test_an_upload_over_the_limit_is_413_naming_the_limit_and_stores_nothing(client, engine, campaign_id,
                                                                              monkeypatch):
    monkeypatch.setenv("OUTBOUND_MAX_LIST_BYTES", "100000")
    big = b"phone\n" + b"(212) 555-0123\n" * 12_000                  # 180 kB, announced in Content-Length
    response = upload(client, campaign_id, big)
    assert response.status_code == 413
    assert "limit of 100,000 bytes" in response.json()["detail"]["message"]

    def chunks():                                                    # no Content-Length: counted
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"l.csv\"\r\n\r\n"
        for _ in range(20):
            yield big[:10_000]
    chunked = client.post(f"/v1/campaigns/{campaign_id}/lists", content=chunks(),
                          headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert chunked.status_code == 413 and "limit of 100,000 bytes" in chunked.text
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Contact)).scalar_one() == 0


@pytest.mark.parametrize("sent", ["../../etc/list.csv", "C:\\Users\\ann\\Desktop\\list.csv", "/tmp/x/list.csv"])
def test_an_upload_is_stored_under_its_base_name(client, engine, campaign_id, sent):
    response = client.post(f"/v1/campaigns/{campaign_id}/lists", files={"file": (sent, CSV, "text/csv")})
    assert response.status_code == 201, response.text
    assert response.json()["rejects_stored_per_reason"] == 1_000
    with Session(engine) as session:
        assert session.get(ListImport, response.json()["import_id"]).file_name == "list.csv"
    assert client.get(response.json()["report_url"]).json()["file_name"] == "list.csv"
