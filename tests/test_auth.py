"""Authentication: API tokens, browser sessions with CSRF, roles, and the bootstrap CLI."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from api import auth, login_throttle
from api.routes import campaigns as campaign_routes
from api.routes import lists as list_routes
from api.routes import login as login_routes
from outbound.cli import app as cli
from outbound.db import get_engine
from outbound.models import ApiToken, AuditEvent, Campaign, User, WebSession
from outbound.users import add_user, hash_password, password_matches

PASSWORD = "correct horse battery"
CAMPAIGN = {"name": "spring", "channel": "sms", "purpose": "informational", "caller_id": "+12125550100",
            "script": "Your appointment is tomorrow. Reply STOP to opt out."}


@pytest.fixture
def app(env_api_users) -> FastAPI:
    # Only the routers these tests use: the test does not depend on other modules being complete.
    app = FastAPI()
    for module in (login_routes, campaign_routes, list_routes):
        app.include_router(module.router)
    return app


@pytest.fixture
def manager_with_password(env_api_users) -> str:
    with Session(get_engine()) as session:
        add_user(session, "mia", "manager", password=PASSWORD, actor="test", at=datetime.now(timezone.utc))
        session.commit()
    return "mia"


def sign_in(client: TestClient, name: str, password: str = PASSWORD, next_url: str = ""):
    form = client.get("/login")
    token = re.search(r'name="form_token" value="([^"]+)"', form.text).group(1)
    return client.post("/login", data={"name": name, "password": password, "form_token": token,
                                       "next": next_url}, follow_redirects=False)


def session_csrf(client: TestClient) -> str:
    page = client.get("/logout")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


# --- passwords and tokens at rest ---------------------------------------------------------------

def test_passwords_are_scrypt_hashed_with_a_salt_and_checked():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("scrypt$") and first != second and PASSWORD not in first
    assert password_matches(PASSWORD, first) and not password_matches(PASSWORD + "!", first)
    assert not password_matches(PASSWORD, None) and not password_matches(PASSWORD, "garbage")


def test_only_the_sha256_of_a_token_is_stored(env_api_users):
    token = env_api_users.tokens["admin"]
    with Session(get_engine()) as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert all(token not in value for value in stored)


# --- bearer tokens ------------------------------------------------------------------------------

def test_anonymous_is_401_with_a_bearer_challenge(app):
    response = TestClient(app).get("/v1/campaigns/1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "outbound token create" in response.json()["detail"]


@pytest.mark.parametrize("header", ["Bearer obt_not-a-real-token", "Basic YWxpY2U6c2VjcmV0", "Bearer"])
def test_a_wrong_credential_is_401(app, header):
    response = TestClient(app).get("/v1/campaigns/1", headers={"Authorization": header})
    assert response.status_code == 401


def test_a_wrong_token_is_401_even_with_a_valid_session_cookie(app, manager_with_password):
    client = TestClient(app)
    sign_in(client, manager_with_password)
    assert client.post("/v1/campaigns", json=CAMPAIGN,
                       headers={"Authorization": "Bearer obt_wrong"}).status_code == 401


def test_a_wrong_role_is_403_and_names_the_role_needed(app, env_api_users):
    response = TestClient(app).post("/v1/campaigns", json=CAMPAIGN, headers=env_api_users.headers("compliance"))
    assert response.status_code == 403
    assert response.json()["detail"] == "role 'compliance' may not do this; it needs manager"
    assert TestClient(app).post("/v1/campaigns", json=CAMPAIGN,
                                headers=env_api_users.headers("admin")).status_code == 403   # admin is no superuser


def test_the_right_role_gets_in_and_is_the_audit_actor(app, env_api_users):
    response = TestClient(app).post("/v1/campaigns", json=CAMPAIGN, headers=env_api_users.headers("manager"))
    assert response.status_code == 201, response.text
    with Session(get_engine()) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign.created")).one()
        campaign = session.get(Campaign, response.json()["id"])
    assert event.actor == "manager" and campaign.owner_id == env_api_users.ids["manager"]


def test_a_revoked_token_and_a_deactivated_user_are_401_at_once(app, env_api_users, cli_runner):
    headers = env_api_users.headers("compliance")
    client = TestClient(app)
    assert client.get("/v1/campaigns/999", headers=headers).status_code == 404
    assert cli_runner.invoke(cli, ["user", "deactivate", "compliance"]).exit_code == 0
    assert client.get("/v1/campaigns/999", headers=headers).status_code == 401
    assert cli_runner.invoke(cli, ["user", "activate", "compliance"]).exit_code == 0
    assert client.get("/v1/campaigns/999", headers=headers).status_code == 404
    with Session(get_engine()) as session:
        token_id = session.scalars(select(ApiToken.id).join(User, User.id == ApiToken.user_id)
                                   .where(User.name == "compliance")).one()
    assert cli_runner.invoke(cli, ["token", "revoke", str(token_id)]).exit_code == 0
    assert client.get("/v1/campaigns/999", headers=headers).status_code == 401


def test_a_manager_sees_and_changes_only_their_own_campaigns(app, env_api_users):
    client = TestClient(app)
    mine = client.post("/v1/campaigns", json=CAMPAIGN, headers=env_api_users.headers("manager")).json()["id"]
    _, other = env_api_users.add("max", "manager")
    assert client.get(f"/v1/campaigns/{mine}", headers=other).status_code == 404
    assert client.post(f"/v1/campaigns/{mine}/start", headers=other).status_code == 404
    assert client.get(f"/v1/campaigns/{mine}", headers=env_api_users.headers("compliance")).status_code == 200
    assert client.get(f"/v1/campaigns/{mine}", headers=env_api_users.headers("manager")).status_code == 200


# --- browser sessions and CSRF ------------------------------------------------------------------

def test_sign_in_sets_an_http_only_session_cookie_and_goes_to_the_role_home(app, manager_with_password):
    client = TestClient(app)
    response = sign_in(client, manager_with_password)
    assert response.status_code == 303 and response.headers["location"] == "/manager"
    cookie = response.headers["set-cookie"]
    assert "outbound_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    with Session(get_engine()) as session:
        [stored] = session.scalars(select(WebSession)).all()
    assert stored.session_hash != client.cookies.get(auth.SESSION_COOKIE)     # only its digest is kept
    assert client.get("/v1/campaigns/999").status_code == 404                # authenticated, no such campaign


def test_wrong_password_re_shows_the_form_with_the_name(app, manager_with_password):
    client = TestClient(app)
    response = sign_in(client, manager_with_password, password="wrong password")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text and 'value="mia"' in response.text
    assert auth.SESSION_COOKIE not in client.cookies
    assert sign_in(client, "nobody").status_code == 401


def test_the_login_form_refuses_a_post_it_did_not_issue(app, manager_with_password):
    client = TestClient(app)
    response = client.post("/login", data={"name": "mia", "password": PASSWORD, "form_token": "forged"})
    assert response.status_code == 403 and auth.SESSION_COOKIE not in client.cookies


def test_repeated_wrong_passwords_make_the_name_wait_then_the_window_passes(app, manager_with_password):
    clock = [datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)]
    app.dependency_overrides[auth.get_now] = lambda: clock[0]
    client = TestClient(app)
    for _ in range(login_throttle.NAME_FAILURES):
        assert sign_in(client, "MIA", password="guess").status_code == 401      # names are case-folded
    refused = sign_in(client, manager_with_password)                             # even the right password
    assert refused.status_code == 429 and "Too many failed sign-ins; try again in 15 minutes." in refused.text
    assert int(refused.headers["retry-after"]) == 15 * 60 and auth.SESSION_COOKIE not in client.cookies
    clock[0] += login_throttle.WINDOW
    assert sign_in(client, manager_with_password).status_code == 303


def test_a_successful_sign_in_clears_the_count_of_failures(app, manager_with_password):
    client = TestClient(app)
    for _ in range(login_throttle.NAME_FAILURES - 1):
        sign_in(client, manager_with_password, password="guess")
    assert sign_in(client, manager_with_password).status_code == 303
    for _ in range(login_throttle.NAME_FAILURES - 1):
        assert sign_in(client, manager_with_password, password="guess").status_code == 401
    assert sign_in(client, manager_with_password).status_code == 303


def test_one_address_spraying_many_names_is_made_to_wait():
    throttle, at = login_throttle.LoginThrottle(), datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
    for index in range(login_throttle.ADDRESS_FAILURES):
        assert throttle.wait(f"user{index}", "203.0.113.9", at) is None
        throttle.failed(f"user{index}", "203.0.113.9", at)
    assert throttle.wait("someone-else", "203.0.113.9", at) == login_throttle.WINDOW
    assert throttle.wait("someone-else", "198.51.100.1", at) is None


def test_a_spray_of_made_up_names_keeps_the_counts_bounded_and_the_guessed_name_waiting():
    throttle, at = login_throttle.LoginThrottle(), datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
    for _ in range(login_throttle.NAME_FAILURES):
        throttle.failed("mia", None, at)
    assert throttle.wait("mia", None, at) is not None
    for index in range(login_throttle.MAX_KEYS):                 # the spray: each name fails once
        throttle.failed(f"made-up-{index}", f"198.51.{index // 250}.{index % 250}", at)
    assert len(throttle._failures) <= login_throttle.MAX_KEYS
    assert throttle.wait("mia", None, at) is not None             # not cleared by the spray
    newest = f"made-up-{login_throttle.MAX_KEYS - 1}"
    assert list(throttle._failures)[-1].startswith("address:") and f"name:{newest}" in throttle._failures


def test_when_every_count_is_an_offender_the_oldest_goes_first():
    throttle, at = login_throttle.LoginThrottle(), datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
    for index in range(login_throttle.MAX_KEYS + 10):
        for _ in range(login_throttle.NAME_FAILURES):
            throttle.failed(f"guessed-{index}", None, at)
    assert len(throttle._failures) == login_throttle.MAX_KEYS
    assert throttle.wait("guessed-0", None, at) is None
    assert throttle.wait(f"guessed-{login_throttle.MAX_KEYS + 9}", None, at) is not None


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _failed_sign_ins_from_made_up_addresses(base: str, count: int) -> list[int]:
    import httpx

    statuses = []
    with httpx.Client(base_url=base) as client:
        for index in range(count):
            token = re.search(r'name="form_token" value="([^"]+)"', client.get("/login").text).group(1)
            statuses.append(client.post("/login", data={"name": f"nobody-{index}", "password": "wrong password",
                                                        "form_token": token},
                                        headers={"X-Forwarded-For": f"203.0.113.{index}"}).status_code)
    return statuses


@pytest.mark.parametrize("trusted,limited", [(None, True), ("127.0.0.1", False)])
def test_x_forwarded_for_is_believed_only_from_configured_proxies(outbound_env, trusted, limited):
    import os
    import subprocess
    import sys
    import time

    import httpx

    # The server runs this tree's code, whatever the installed package points at.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if trusted:
        env["OUTBOUND_TRUSTED_PROXIES"] = trusted
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", "from outbound.cli import app; app()", "serve",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/login", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        statuses = _failed_sign_ins_from_made_up_addresses(base, login_throttle.ADDRESS_FAILURES + 1)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert statuses[:-1] == [401] * login_throttle.ADDRESS_FAILURES
    # Untrusted, the header names nothing: every try comes from 127.0.0.1, whose budget runs out.
    assert statuses[-1] == (429 if limited else 401)


def test_trusted_proxies_must_be_addresses_or_networks():
    from outbound.settings import SettingsError, load_settings

    assert load_settings({"OUTBOUND_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16"}).trusted_proxies == (
        "10.0.0.5", "192.168.0.0/16")
    assert load_settings({}).trusted_proxies == ()
    with pytest.raises(SettingsError, match="'proxy.local' is not an IP address or CIDR"):
        load_settings({"OUTBOUND_TRUSTED_PROXIES": "10.0.0.5,proxy.local"})


@pytest.mark.parametrize("next_url,location", [
    ("/manager/campaigns/3", "/manager/campaigns/3"),
    ("//evil.example/x", "/manager"),
    ("https://evil.example/", "/manager"),
    ("/\\evil.example", "/manager"),
])
def test_next_only_leads_to_a_path_on_this_site(app, manager_with_password, next_url, location):
    assert sign_in(TestClient(app), manager_with_password, next_url=next_url).headers["location"] == location


def test_a_cookie_authenticated_write_needs_the_sessions_csrf_token(app, manager_with_password):
    client = TestClient(app)
    sign_in(client, manager_with_password)
    refused = client.post("/v1/campaigns", json=CAMPAIGN)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert client.post("/v1/campaigns", json=CAMPAIGN, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    token = session_csrf(client)
    created = client.post("/v1/campaigns", json=CAMPAIGN, headers={"X-CSRF-Token": token})
    assert created.status_code == 201, created.text
    # A plain HTML form sends it as the csrf_token field instead (here: a list upload).
    campaign_id = created.json()["id"]
    files = {"file": ("list.csv", b"phone\n2125550123\n", "text/csv")}
    assert client.post(f"/v1/campaigns/{campaign_id}/lists", files=files).status_code == 403
    uploaded = client.post(f"/v1/campaigns/{campaign_id}/lists", files=files, data={"csrf_token": token})
    assert uploaded.status_code == 201, uploaded.text


def test_an_expired_session_is_401(app, manager_with_password, monkeypatch):
    client = TestClient(app)
    sign_in(client, manager_with_password)
    later = datetime.now(timezone.utc) + timedelta(hours=12, minutes=1)
    monkeypatch.setattr(auth, "get_now", lambda: later)
    assert client.get("/v1/campaigns/999").status_code == 401


def test_sign_out_needs_csrf_and_ends_the_session(app, manager_with_password):
    client = TestClient(app)
    sign_in(client, manager_with_password)
    token = session_csrf(client)
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    with Session(get_engine()) as session:
        assert session.scalars(select(WebSession)).all() == []
    client.cookies.clear()
    assert client.get("/v1/campaigns/999").status_code == 401


# --- the bootstrap CLI --------------------------------------------------------------------------

def test_user_add_and_token_create_bootstrap_the_first_admin(outbound_env, cli_runner):
    added = cli_runner.invoke(cli, ["user", "add", "alice", "--role", "admin", "--password-stdin"],
                              input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    created = cli_runner.invoke(cli, ["token", "create", "alice", "--json"])
    token = json.loads(created.stdout)["token"]
    assert token.startswith("obt_") and len(token) > 40
    listed = cli_runner.invoke(cli, ["token", "list", "--json"]).stdout
    assert token not in listed and json.loads(listed)["prefix"] == token[:10]
    with Session(get_engine()) as session:
        assert password_matches(PASSWORD, session.scalars(select(User.password_hash)).one())
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["user.created", "token.created"]


@pytest.mark.parametrize("args,message", [
    (["user", "add", "bob", "--role", "boss"], "role: one of manager, compliance, agent, admin"),
    (["user", "add", "bob", "--role", "admin", "--password-stdin"], "password: at least 10 characters"),
    (["user", "add", " ", "--role", "admin"], "name: 1 to 100 printable characters"),
    (["user", "add", "42", "--role", "admin"], "would read as a user id"),
])
def test_user_add_refuses_unusable_input_naming_the_field(outbound_env, cli_runner, args, message):
    result = cli_runner.invoke(cli, args, input="short\n")
    assert result.exit_code == 2 and message in result.output


def test_user_add_refuses_a_name_taken_and_token_create_an_unknown_user(outbound_env, cli_runner):
    assert cli_runner.invoke(cli, ["user", "add", "bob", "--role", "agent"]).exit_code == 0
    again = cli_runner.invoke(cli, ["user", "add", "bob", "--role", "agent"])
    assert again.exit_code == 2 and "already exists" in again.output
    unknown = cli_runner.invoke(cli, ["token", "create", "nobody"])
    assert unknown.exit_code == 1 and "no user 'nobody'" in unknown.output


@pytest.mark.parametrize("name", ["42", "nul\x00name", "9" * 40])
def test_names_that_cannot_be_users_sign_in_nobody(app, manager_with_password, name):
    assert sign_in(TestClient(app), name).status_code == 401
