"""The name an uploaded file is stored under: its base name, printable, bounded."""
from __future__ import annotations

from pathlib import PureWindowsPath

MAX_NAME_CHARS = 200


def base_name(filename: str | None, default: str) -> str:
    """The last part of the name a client sent, whether it wrote its folders with / or \\
    (`../../x.csv`, `C:\\Users\\ann\\x.csv`): where the file sat on someone's disk is not the
    engine's to keep, and a path in a stored name misleads whoever reads the report or the audit."""
    name = PureWindowsPath(filename or "").name          # splits on both separators
    name = "".join(char for char in name if char.isprintable()).strip()
    return name[:MAX_NAME_CHARS] if name not in ("", ".", "..") else default
