"""Reading the text files compliance teams hand us (lists of numbers, CSVs), with one message
per way a file can be unusable."""
from __future__ import annotations

import codecs
from pathlib import Path


def read_text_file(path: Path, error: type[Exception], expected: str) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM; anything else raises `error` naming the
    file and what is wrong (`expected` says what the file should have been, e.g. "a CSV file")."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as missing:
        raise error(f"{path}: no such file") from missing
    except OSError as failure:
        raise error(f"{path}: cannot read ({failure.strerror})") from failure
    if not data.strip():
        raise error(f"{path}: the file is empty")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:4096]:
        raise error(f"{path}: binary data (NUL bytes), not {expected}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as undecodable:
        raise error(f"{path}: not UTF-8 text (byte 0x{data[undecodable.start]:02x} at offset "
                    f"{undecodable.start}); save the list as UTF-8 CSV") from undecodable
