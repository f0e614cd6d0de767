"""The key of the audit chain's HMAC, kept outside the database.

Whoever can write the database could recompute an unkeyed hash chain after editing it; with a
keyed one they also need this key. It comes from, in order:

1. `OUTBOUND_AUDIT_KEY`: the key itself (at least 32 characters);
2. `OUTBOUND_AUDIT_KEY_FILE`: a file holding it, which must exist (a typo must not silently
   start a new key that no stored event was written with);
3. `audit.key` in `OUTBOUND_DATA_DIR`, created with mode 0600 at first use.

The default file sits next to the SQLite database, which only protects against someone who can
write the database but not read the data directory. In production keep the key elsewhere (a
secret store that sets OUTBOUND_AUDIT_KEY, or a key file on another volume).

A key never stops an append: an opt-out must be stored even when the key is wrong. A wrong key
shows in `outbound audit verify`, which compares the key's id with the one the chain began with.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from outbound.settings import Settings, SettingsError, get_settings

KEY_FILE_NAME = "audit.key"
MIN_KEY_CHARS = 32
_KEY_ID_MESSAGE = b"outbound audit key id"


class AuditKeyError(SettingsError):
    """The audit key cannot be read or is too weak; the message says what to set."""


@dataclass(frozen=True)
class AuditKey:
    secret: bytes
    source: str                      # where it came from, for messages (never the key itself)

    @property
    def key_id(self) -> str:
        """A short public name of the key (an HMAC of a constant): tells keys apart, reveals
        nothing of the secret."""
        return hmac.new(self.secret, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


_cache: dict[tuple, AuditKey] = {}


def current_key(settings: Settings | None = None) -> AuditKey:
    """The key configured for this process (see the module docstring for the order)."""
    settings = settings or get_settings()
    cache_key = (settings.audit_key, settings.audit_key_file, settings.data_dir)
    key = _cache.get(cache_key)
    if key is None:
        key = _cache[cache_key] = _load(settings)
    return key


def _load(settings: Settings) -> AuditKey:
    if settings.audit_key is not None:
        return _checked(settings.audit_key, "OUTBOUND_AUDIT_KEY")
    if settings.audit_key_file is not None:
        path = settings.audit_key_file
        if not path.is_file():
            raise AuditKeyError(f"OUTBOUND_AUDIT_KEY_FILE={path}: no such file; point it at the "
                                "audit key file, or unset it to use audit.key in the data directory")
        return _checked(_read(path), f"OUTBOUND_AUDIT_KEY_FILE={path}")
    path = Path(settings.data_dir) / KEY_FILE_NAME
    if not path.exists():
        _create(path)
    return _checked(_read(path), str(path))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise AuditKeyError(f"{path}: cannot read the audit key ({error})") from None


def _checked(text: str, source: str) -> AuditKey:
    if len(text) < MIN_KEY_CHARS:
        raise AuditKeyError(f"{source}: the audit key has {len(text)} characters, at least "
                            f"{MIN_KEY_CHARS} are needed (e.g. the output of `openssl rand -hex 32`)")
    return AuditKey(text.encode("utf-8"), source)


def _create(path: Path) -> None:
    """Write a new random key, mode 0600, atomically: two processes starting at once must end
    up with the same key, so it is written to a private temporary file and linked into place
    (a link never replaces a file another process linked first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)          # whatever the umask
        os.write(descriptor, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass                                  # another process created it first: use theirs
    finally:
        temporary.unlink()


def keyed_hash(key: AuditKey, text: str) -> str:
    """HMAC-SHA256 of `text` (UTF-8) under `key`, in hex."""
    return hmac.digest(key.secret, text.encode("utf-8"), "sha256").hex()
