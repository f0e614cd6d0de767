"""API users for tests: one user per role with a token (the `api_users` fixtures build on it).

Kept out of conftest.py so a test can import it: `from conftest import ...` is ambiguous once
tests/browser/ has a conftest of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session


@dataclass
class ApiUsers:
    """One user per role, each with an API token, in the test's database.

    `headers(role)` is the Authorization header of that role's user; `install(app)` makes the
    app's authentication read this database (the routes' own session overrides do not reach it)."""

    engine: Engine
    tokens: dict[str, str]
    ids: dict[str, int]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def install(self, app) -> None:
        from api.auth import get_auth_engine

        app.dependency_overrides[get_auth_engine] = lambda: self.engine

    def add(self, name: str, role: str) -> tuple[int, dict[str, str]]:
        """Another user (e.g. a second manager); returns its id and headers."""
        from datetime import datetime, timezone

        from outbound.users import add_user, create_token

        at = datetime.now(timezone.utc)
        with Session(self.engine) as session:
            user = add_user(session, name, role, password=None, actor="test", at=at)
            token = create_token(session, user, actor="test", at=at).token
            session.commit()
            return user.id, {"Authorization": f"Bearer {token}"}
