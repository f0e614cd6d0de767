"""Why a whole list file is refused. Row-level problems are reject reasons, not exceptions."""
from __future__ import annotations

from collections.abc import Sequence


class ListFileError(ValueError):
    """The file cannot be imported at all; the message says what was seen and what to do."""

    code = "list_file_error"


class EmptyFile(ListFileError):
    code = "empty_file"

    def __init__(self) -> None:
        super().__init__("the file is empty: expected a CSV with a header line and one contact per line")


class NoDataRows(ListFileError):
    code = "no_rows"

    def __init__(self, header: Sequence[str]) -> None:
        self.header = tuple(header)
        super().__init__(f"the file has a header ({', '.join(map(repr, self.header))}) but no contact rows")


class UnreadableFile(ListFileError):
    code = "unreadable_file"


class NoPhoneColumn(ListFileError):
    code = "no_phone_column"

    def __init__(self, header: Sequence[str]) -> None:
        self.header = tuple(header)
        super().__init__(
            f"no phone column in the header {', '.join(map(repr, self.header))}: name one phone, "
            f"phone_number, mobile, cell or number, or map it with --map 'COLUMN=phone'")


class BadColumnMap(ListFileError):
    code = "bad_column_map"


class FileTooLarge(ListFileError):
    code = "file_too_large"

    def __init__(self, size: int, limit: int, *, exact: bool = True) -> None:
        self.size, self.limit = size, limit
        seen = f"the file is {size:,} bytes" if exact else f"the file is over {size:,} bytes"
        super().__init__(
            f"{seen}, over the limit of {limit:,} bytes (OUTBOUND_MAX_LIST_BYTES): split it into "
            f"smaller files (importing them one after another is safe, duplicates are skipped) or "
            f"raise the limit")
