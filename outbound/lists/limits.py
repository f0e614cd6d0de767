"""The largest list file accepted (OUTBOUND_MAX_LIST_BYTES), checked before anything is read, and
how many rejected rows of one reason an import keeps."""
from __future__ import annotations

from outbound.lists.errors import FileTooLarge
from outbound.settings import get_settings

# Every reject is counted, per reason; the report keeps the first rows of each reason, which are
# enough to see what is wrong with a file. A broken file must not cost a row in the database for
# each of its millions of lines.
MAX_STORED_REJECTS_PER_REASON = 1_000


def max_list_bytes() -> int:
    return get_settings().max_list_bytes


def check_list_size(size: int | None, limit: int | None = None) -> None:
    """Raise FileTooLarge when `size` (None: unknown, nothing to check) is over the limit."""
    limit = max_list_bytes() if limit is None else limit
    if size is not None and size > limit:
        raise FileTooLarge(size, limit)
