"""Settings of one `outbound` process, read from the environment and a `.env` file.

The environment wins over `.env`, so a deployment can override a checked-in file without editing
it. `.env` is read from the current directory: the directory `outbound` is started in is the
installation. The parser is deliberately small (KEY=VALUE lines, `#` comments, an optional
`export ` prefix, optional single or double quotes) so that no dependency is needed for it.
"""
from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_FILE_NAME = ".env"
DEFAULT_DATA_DIR = "./.outbound"
DEFAULT_TELEPHONY = "simulator"
# 1 GiB: about 15 million rows of a typical list. Larger files are refused up front, with this
# limit named, rather than half imported; split files import safely one after another.
DEFAULT_MAX_LIST_BYTES = 1024 ** 3
# How long an SQLite writer waits for another writer's lock before giving up (503 in the API).
DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 10_000


class SettingsError(ValueError):
    """A setting or a `.env` line that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    telephony: str = DEFAULT_TELEPHONY              # simulator | twilio
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_base: str | None = None              # e.g. a local Prism mock of the Twilio API
    public_url: str | None = None                   # the URL Twilio signs webhooks against
    max_list_bytes: int = DEFAULT_MAX_LIST_BYTES    # largest contact-list file or upload accepted
    audit_key: str | None = None                    # OUTBOUND_AUDIT_KEY: the audit chain's HMAC key
    audit_key_file: Path | None = None              # OUTBOUND_AUDIT_KEY_FILE; default data_dir/audit.key
    # OUTBOUND_TRUSTED_PROXIES: the reverse proxies whose X-Forwarded-For is believed (addresses or
    # CIDRs). None by default: a client could otherwise name any address and escape the per-address
    # sign-in limit.
    trusted_proxies: tuple[str, ...] = ()
    sqlite_busy_timeout_ms: int = DEFAULT_SQLITE_BUSY_TIMEOUT_MS   # OUTBOUND_SQLITE_BUSY_TIMEOUT_MS


def parse_env_file(text: str, source: str = ENV_FILE_NAME) -> dict[str, str]:
    """KEY=VALUE pairs of a `.env` text. A line that is neither blank, a comment nor KEY=VALUE
    raises, because a silently ignored line is a setting the operator thinks is in effect."""
    values: dict[str, str] = {}
    for line_no, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise SettingsError(f"{source}:{line_no}: expected KEY=VALUE, found {raw_line!r}")
        values[key] = _unquote(value.strip(), f"{source}:{line_no}")
    return values


def _unquote(value: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if end == -1:
            raise SettingsError(f"{where}: unterminated {quote} quote in {value!r}")
        rest = value[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise SettingsError(f"{where}: unexpected text {rest!r} after the quoted value")
        return value[1:end]
    # Unquoted: a ` #` starts a comment; a `#` inside a word (a URL fragment, a token) does not.
    comment_at = value.find(" #")
    return (value[:comment_at] if comment_at != -1 else value).strip()


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return parse_env_file(path.read_text(encoding="utf-8"), source=str(path))


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> Settings:
    """Settings from `environ` (default: os.environ) over `env_file` (default: ./.env)."""
    environ = os.environ if environ is None else environ
    values = {**read_env_file(env_file or Path.cwd() / ENV_FILE_NAME), **environ}

    def get(name: str) -> str | None:
        value = values.get(name)
        return value if value else None        # an empty variable means "not set"

    data_dir = Path(get("OUTBOUND_DATA_DIR") or DEFAULT_DATA_DIR)
    return Settings(
        data_dir=data_dir,
        database_url=get("OUTBOUND_DATABASE_URL") or default_database_url(data_dir),
        telephony=get("OUTBOUND_TELEPHONY") or DEFAULT_TELEPHONY,
        twilio_account_sid=get("OUTBOUND_TWILIO_ACCOUNT_SID"),
        twilio_auth_token=get("OUTBOUND_TWILIO_AUTH_TOKEN"),
        twilio_api_base=get("OUTBOUND_TWILIO_API_BASE"),
        public_url=get("OUTBOUND_PUBLIC_URL"),
        max_list_bytes=_positive_int(get("OUTBOUND_MAX_LIST_BYTES"), "OUTBOUND_MAX_LIST_BYTES",
                                     DEFAULT_MAX_LIST_BYTES),
        audit_key=get("OUTBOUND_AUDIT_KEY"),
        audit_key_file=Path(get("OUTBOUND_AUDIT_KEY_FILE")) if get("OUTBOUND_AUDIT_KEY_FILE") else None,
        trusted_proxies=_proxies(get("OUTBOUND_TRUSTED_PROXIES")),
        sqlite_busy_timeout_ms=_positive_int(get("OUTBOUND_SQLITE_BUSY_TIMEOUT_MS"), "OUTBOUND_SQLITE_BUSY_TIMEOUT_MS",
                                             DEFAULT_SQLITE_BUSY_TIMEOUT_MS, unit="milliseconds"),
    )


def _proxies(raw: str | None) -> tuple[str, ...]:
    """Comma-separated addresses or CIDRs, each checked: a misspelt entry must not be silently
    matched as a literal host name, nor left out."""
    entries = tuple(entry.strip() for entry in (raw or "").split(",") if entry.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"OUTBOUND_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR "
                                "(e.g. 10.0.0.5 or 10.0.0.0/24, comma-separated)") from None
    return entries


def _positive_int(raw: str | None, name: str, default: int, unit: str = "bytes") -> int:
    if raw is None:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: expected a whole number of {unit} above 0, e.g. {default}")
    return value


def default_database_url(data_dir: Path) -> str:
    # Absolute, so the URL means the same file whatever directory a later call runs in.
    return f"sqlite:///{(data_dir / 'outbound.db').resolve()}"


_cache: dict[tuple, Settings] = {}
# The current directory and the `.env` file's mtime are re-read at most this often (a getcwd and
# a stat cost more than the rest of a webhook request) or whenever the OUTBOUND_* variables change.
FILES_RECHECK_SECONDS = 1.0
_files: dict[str, object] = {"environ": None, "checked_at": float("-inf"), "key": None}


def get_settings() -> Settings:
    """The process's settings. Cached under everything they are read from (the OUTBOUND_*
    variables, the current directory and the `.env` file's modification time), so a test that
    changes the environment or the directory gets fresh settings without having to reset."""
    environ = _outbound_environ()
    now = time.monotonic()
    if environ != _files["environ"] or now - _files["checked_at"] >= FILES_RECHECK_SECONDS:
        env_file = Path.cwd() / ENV_FILE_NAME
        _files.update(environ=environ, checked_at=now, key=(environ, str(env_file), _mtime_ns(env_file)))
    key = _files["key"]
    settings = _cache.get(key)
    if settings is None:
        settings = _cache[key] = load_settings(env_file=Path(key[1]))
    return settings


def reset_settings() -> None:
    _cache.clear()
    _files.update(environ=None, checked_at=float("-inf"), key=None)


def _outbound_environ() -> tuple[tuple[bytes, bytes], ...]:
    # The raw bytes mapping behind os.environ: iterating os.environ decodes every variable of the
    # process on each call.
    raw = getattr(os.environ, "_data", None)
    if raw is None:
        return tuple(sorted((k.encode(), v.encode()) for k, v in os.environ.items() if k.startswith("OUTBOUND_")))
    return tuple(sorted(item for item in raw.items() if item[0].startswith(b"OUTBOUND_")))


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
