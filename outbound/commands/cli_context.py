"""What every command that writes needs to say who and when: the clock and the acting user."""
from __future__ import annotations

import getpass
import os
from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def default_actor() -> str:
    """`cli:<login name>` as the audit log's actor, or `cli` when the name cannot be found."""
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = None
    return f"cli:{user}" if user else "cli"
