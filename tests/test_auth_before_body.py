"""Writes under /v1 are authenticated, and their role checked, before their body is read: an
anonymous 50 MB upload is answered 401 without the server taking in a byte of it."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from asgi_support import ReadCounter

UPLOADS = ["/v1/campaigns/1/lists", "/v1/consent/import", "/v1/scrub", "/v1/dnc/state/FL", "/v1/dnc/litigator",
           "/v1/dnc/national", "/v1/dnc/national/changes"]
FIFTY_MB = b"phone\n" + b"2125550123\n" * (50 * 1024 * 1024 // 11)


@pytest.fixture
def counted(api_users):
    app = create_app()
    api_users.install(app)
    wrapped = ReadCounter(app)
    with TestClient(wrapped) as client:
        yield client, wrapped


@pytest.mark.parametrize("path", UPLOADS)
def test_an_anonymous_50_mb_upload_is_401_and_none_of_it_is_read(counted, path):
    client, app = counted
    started = time.monotonic()
    response = client.post(path, files={"file": ("list.csv", FIFTY_MB, "text/csv")})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert app.bytes_read == 0
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("path,role", [("/v1/campaigns/1/lists", "agent"), ("/v1/campaigns/1/lists", "compliance"),
                                       ("/v1/consent/import", "manager"), ("/v1/dnc/national", "admin")])
def test_a_wrong_role_is_403_before_the_body_is_read(counted, api_users, path, role):
    client, app = counted
    response = client.post(path, files={"file": ("list.csv", FIFTY_MB[:5_000_000], "text/csv")},
                           headers=api_users.headers(role))
    assert response.status_code == 403, response.text
    assert app.bytes_read == 0


def test_a_wrong_token_is_401_invalid_token_before_the_body_is_read(counted):
    client, app = counted
    response = client.post("/v1/consent/import", files={"file": ("c.csv", FIFTY_MB[:5_000_000], "text/csv")},
                           headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]
    assert app.bytes_read == 0


def test_json_writes_are_refused_unread_too(counted, api_users):
    client, app = counted
    response = client.post("/v1/consent", content=b'{"phone": "' + b"1" * 5_000_000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and app.bytes_read == 0
    response = client.post("/v1/users", json={"name": "x", "role": "admin"}, headers=api_users.headers("manager"))
    assert response.status_code == 403 and app.bytes_read == 0


def test_the_right_role_still_gets_its_body_read(counted, api_users):
    client, app = counted
    response = client.post("/v1/consent/import", files={"file": ("c.csv", b"phone\n", "text/csv")},
                           headers=api_users.headers("compliance"))
    assert response.status_code not in (401, 403), response.text
    assert app.bytes_read > 0
