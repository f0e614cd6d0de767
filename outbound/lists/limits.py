"""The largest list file accepted (OUTBOUND_MAX_LIST_BYTES), checked before anything is read."""
from __future__ import annotations

from outbound.lists.errors import FileTooLarge
from outbound.settings import get_settings


def max_list_bytes() -> int:
    return get_settings().max_list_bytes


def check_list_size(size: int | None, limit: int | None = None) -> None:
    """Raise FileTooLarge when `size` (None: unknown, nothing to check) is over the limit."""
    limit = max_list_bytes() if limit is None else limit
    if size is not None and size > limit:
        raise FileTooLarge(size, limit)
