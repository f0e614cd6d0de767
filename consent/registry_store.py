"""The National Do Not Call Registry as a compact, memory-mapped store on disk.

About 250 million numbers do not belong in SQL rows. Each area code (NPA) present in the data
gets one bitset of 10,000,000 bits (1.25 MB): bit `n` is set when the number `NPA` + `n` (the
seven digits after the area code, read as an integer) is on the registry.

Layout under the store's folder (normally `<OUTBOUND_DATA_DIR>/registry/`):

    manifest.json            the current version: area codes in file order, entries, the files
                             ingested (sha256, line counts, area codes), change lists applied,
                             and `coverage`: each area code held with its own synced_at,
                             baseline date and the files it came from
    gen-<version>/bitsets.bin
                             the bitsets of every present area code, back to back, in the
                             manifest's `area_codes` order; bits are least-significant first

All bitsets of a version sit in one file so that a batch lookup is a single vectorised gather
over one mapping, whatever area codes the batch holds. A build (full download or change list)
writes a new `gen-*` folder, syncs it, then replaces `manifest.json` with `os.replace`; a reader
sees the old version or the new one, never half a build. Readers re-read the manifest when it
changes, so a long-running worker picks up a new download without restarting.

Coverage and freshness are per area code. The FTC delivers one file per area code, so a full
load replaces the area codes that have numbers in its files and keeps the others, each with its
own date; `replace_all` makes the files the whole registry. A change list renews the date of the
held area codes it has lines for. An area code with no full list has no coverage: its numbers get
`synced_at: None`, and the gate blocks telemarketing to them (`dnc_data_stale`).

Input accepted (the FTC's column order is not published, see tcpa-rules §4.1), so fields are
recognised by what they hold, separated by commas (or tabs, semicolons, bars) and optionally
quoted: the number as `AAANNNNNNN`, `AAA,NNNNNNN`, `212-555-0123`, `(212) 555-0123` or
`+1AAANNNNNNN`; an add/delete flag `A`/`ADD`/`ADDED`/`ADDITION` or `D`/`DEL`/`DELETE`/
`DELETED`/`DELETION` (any case), before or after the number, or a `+`/`-` prefix; dates
(`YYYY-MM-DD[THH:MM[:SS]]`, `MM/DD/YYYY`, `YYYYMMDD`) and times anywhere, kept out of the store.
A first line of column titles (`phone,flag,date`) is a header. Whitespace, CRLF endings, a UTF-8
BOM and blank lines are tolerated; UTF-16 files are decoded. Plain text, `.zip` (every member
that is not a folder), or a folder of such files.

- full lists need a number per line (an addition flag is tolerated, a deletion is not);
- change lists need a number and a flag; within one change list the last line for a number wins.

A load is atomic: a single malformed line anywhere (anything else, a second number or flag, an
impossible date, an area code or exchange not starting with 2-9), a sync date later than the
load, or no number at all raises and changes nothing, renewing no date.
"""
from __future__ import annotations

import codecs
import contextlib
import fcntl
import functools
import hashlib
import json
import mmap
import os
import re
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np

NUMBERS_PER_NPA = 10_000_000
BYTES_PER_NPA = NUMBERS_PER_NPA // 8
FIRST_NPA = 200                      # NANP area codes start with 2-9
NPA_SLOTS = 1000
MANIFEST_NAME = "manifest.json"
BITSETS_NAME = "bitsets.bin"
FORMAT = 2                           # 2: per-area-code coverage (sync date and files of each)
MALFORMED_SAMPLES = 100              # malformed lines reported one by one; the rest are counted
READ_BYTES = 8 << 20                 # text is parsed in blocks of this size: temporaries stay small
LOOKUP_BATCH = 65536                 # lookups run in cache-sized slices: big temporaries page-fault
MAX_LINE_BYTES = 1 << 20             # a longer "line" is junk: cut it so memory stays bounded
STALE_AFTER_DAYS = 31


class RegistryInputError(ValueError):
    """Input the store cannot use at all (missing file, broken zip, no valid number anywhere)."""


class RegistryUnavailable(RuntimeError):
    """An operation needs a national registry baseline and none has been ingested."""


class MalformedInput(RegistryInputError):
    """A load refused whole because some of its lines are malformed: nothing changed, no date
    was renewed. `samples` names the first bad lines (file, line number, why, text)."""

    def __init__(self, files: Sequence[Path], lines: int, malformed: int, samples: list["MalformedLine"]) -> None:
        self.lines, self.malformed, self.samples = lines, malformed, samples
        first = samples[0] if samples else None
        where = f"; first: {first.file}:{first.line}: {first.reason}: {first.text!r}" if first else ""
        bad_files = list(dict.fromkeys(sample.file for sample in samples)) or [str(p) for p in files]
        named = ", ".join(bad_files[:3]) + (f" and {len(bad_files) - 3} more files" if len(bad_files) > 3 else "")
        super().__init__(f"{malformed:,} malformed line{'s' if malformed != 1 else ''} in {named}: "
                         "nothing was loaded and no sync date was renewed; fix or remove those lines "
                         f"and load again{where}")

    def to_dict(self) -> dict:
        return {"error": str(self), "loaded": False, "lines": self.lines, "malformed": self.malformed,
                "malformed_samples": [asdict(sample) for sample in self.samples]}


@dataclass
class MalformedLine:
    file: str
    line: int
    reason: str
    text: str


@dataclass
class FileReport:
    path: str
    sha256: str
    bytes: int
    lines: int = 0
    numbers: int = 0                 # valid number lines (duplicates included)
    malformed: int = 0
    members: list[str] = field(default_factory=list)
    additions: int = 0               # change lists only
    deletions: int = 0
    skipped: str | None = None       # why a change list was not applied
    area_codes: list[int] = field(default_factory=list)   # area codes with numbers in the file


@dataclass
class IngestReport:
    version: str
    synced_at: str
    entries: int                     # distinct numbers in the store after the build
    area_codes: int                  # area codes in the store after the build
    lines: int
    malformed: int
    malformed_samples: list[MalformedLine]
    files: list[FileReport]
    seconds: float
    area_codes_loaded: list[str] = field(default_factory=list)   # replaced by this load
    area_codes_kept: list[str] = field(default_factory=list)     # held before, not in this load
    area_codes_dropped: list[str] = field(default_factory=list)  # removed by replace_all
    replace_all: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChangeReport:
    version: str
    synced_at: str
    entries: int
    added: int                       # numbers newly on the list
    removed: int                     # numbers newly off the list
    additions: int                   # addition lines read (a number already listed counts here only)
    deletions: int
    lines: int
    malformed: int
    malformed_samples: list[MalformedLine]
    files: list[FileReport]
    seconds: float
    area_codes_renewed: list[str] = field(default_factory=list)  # held area codes the lists touched

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Reading input files


@dataclass
class _Source:
    """One stream of text lines: a plain file or one member of a zip."""

    label: str
    open: Callable[[], BinaryIO]


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named, and every non-hidden file under folders named, in a stable (sorted) order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise RegistryInputError(f"{path}: the folder holds no files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise RegistryInputError(f"{path}: not a regular file or folder")
        else:
            raise RegistryInputError(f"{path}: no such file or folder")
    if not files:
        raise RegistryInputError("no input files given")
    return files


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _sources(path: Path, report: FileReport) -> list[_Source]:
    """The text streams inside `path`: itself, or each file member of a zip."""
    if not zipfile.is_zipfile(path):
        return [_Source(str(path), lambda: path.open("rb"))]
    try:
        archive = zipfile.ZipFile(path)
        members = [info for info in archive.infolist()
                   if not info.is_dir() and not info.filename.startswith("__MACOSX/")]
    except (zipfile.BadZipFile, OSError) as error:
        raise RegistryInputError(f"{path}: not a readable zip file ({error})") from error
    if not members:
        raise RegistryInputError(f"{path}: the zip file holds no files")
    report.members = [info.filename for info in members]
    return [_Source(f"{path}:{info.filename}", lambda info=info: archive.open(info)) for info in members]


def _blocks(handle: BinaryIO, digest: "hashlib._Hash | None") -> Iterator[bytes]:
    """Blocks of whole lines, each ending with a newline; UTF-16 input is re-encoded to ASCII.

    The bytes read feed `digest` as they come, so a plain file is read once for hash and parse."""
    head = handle.read(READ_BYTES)
    if digest is not None:
        digest.update(head)
    decoder = None
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
    elif head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    carry = b""
    block = head
    while block:
        if decoder is not None:
            block = decoder.decode(block).encode("ascii", errors="replace")
        block = carry + block
        cut = block.rfind(b"\n") + 1
        if cut:
            yield block[:cut]
            carry = block[cut:]
        else:
            carry = block
        if len(carry) > MAX_LINE_BYTES:      # binary junk with no line breaks
            yield carry + b"\n"
            carry = b""
        block = handle.read(READ_BYTES)
        if digest is not None:
            digest.update(block)
    if carry:
        yield carry + b"\n"


_FULL_LINE = re.compile(rb"^\s*(\d{3})\s*,?\s*(\d{7})\s*$")
# The commonest change-list shape, decoded without splitting fields: AAA,NNNNNNN,F[,YYYY-MM-DD]
# or AAANNNNNNN,F[,YYYY-MM-DD].
_CHANGE_LINE = re.compile(
    rb"^\s*(?P<npa>\d{3})\s*,?\s*(?P<line>\d{7})\s*,\s*(?P<flag>[AaDd])\s*(?:,\s*(?P<date>\d{4}-\d{2}-\d{2})\s*)?$")
_ADD_FLAGS = {b"A", b"ADD", b"ADDED", b"ADDITION"}
_DELETE_FLAGS = {b"D", b"DEL", b"DELETE", b"DELETED", b"DELETION"}
_FIELD_SEPARATORS = re.compile(rb"[,;\t|]")
_QUOTES = b"\"' "
_NUMBER_FIELD = re.compile(rb"^[+-]?[\d\s().-]+$")
_SIGNED = re.compile(rb"^([+-])\s*\d")
_NUMBER_SEPARATORS = b" \t().-+"
_DATE_FIELDS = ((re.compile(rb"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
                (re.compile(rb"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"), None),
                (re.compile(rb"^\d{1,2}/\d{1,2}/\d{4}$"), "%m/%d/%Y"),
                (re.compile(rb"^\d{1,2}/\d{1,2}/\d{2}$"), "%m/%d/%y"),
                (re.compile(rb"^\d{8}$"), "%Y%m%d"))
_TIME_FIELD = re.compile(rb"^\d{1,2}:\d{2}(:\d{2})?$")
_HEADER_FIELD = re.compile(rb"^[A-Za-z][A-Za-z _./#()-]*$")


def _nanp_problem(npa: bytes, exchange_first: int) -> str | None:
    if npa[0] < ord("2"):
        return f"area code {npa.decode()} is not a NANP area code (must start with 2-9)"
    if exchange_first < ord("2"):
        return "exchange must start with 2-9"
    return None


def _shown(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return text if len(text) <= 60 else text[:57] + "..."


def _fields(raw: bytes) -> list[bytes]:
    """The non-empty fields of a line, unquoted: `"212","5550123"` and `212, 5550123` alike."""
    fields = (field.strip().strip(_QUOTES) for field in _FIELD_SEPARATORS.split(raw.strip()))
    return [field for field in fields if field]


def is_header_line(raw: bytes) -> bool:
    """A column-title line such as `phone,flag,date`: words only, no digit, not just flags."""
    fields = _fields(raw)
    return (bool(fields) and all(_HEADER_FIELD.match(field) for field in fields)
            and not all(field.upper() in _ADD_FLAGS | _DELETE_FLAGS for field in fields))


@functools.lru_cache(maxsize=4096)                   # a change list repeats a few dates
def _date_problem(field: bytes) -> str | None | bool:
    """False when `field` is not shaped like a date or time; None for a real one; else why not."""
    if _TIME_FIELD.match(field):
        return None
    for pattern, layout in _DATE_FIELDS:
        if pattern.match(field):
            try:
                if layout is None:
                    datetime.fromisoformat(field.decode().replace("Z", "+00:00"))
                else:
                    datetime.strptime(field.decode(), layout)
            except ValueError:
                return f"{field.decode()!r} is not a valid date"
            return None
    return False


def _looks_like_date(field: bytes) -> bool:
    """A cheap test before the date patterns: numbers are far commoner than dates."""
    return (b"/" in field or b":" in field or field[4:5] == b"-"
            or (len(field) == 8 and field.isdigit()))


@dataclass
class _LineParts:
    """What one registry line says: its number's digits, an add/delete flag, a +/- prefix."""

    digits: bytes = b""
    area_code: bytes = b""           # a 3-digit field waiting for its 7-digit number
    flag: bytes | None = None
    sign: bytes | None = None


def _read_number_field(field: bytes, parts: _LineParts) -> str | None:
    """Fold one digits field into `parts`; why it cannot be read, or None."""
    sign = field[:1] if field[:1] in (b"+", b"-") and _SIGNED.match(field) else None
    digits = field.translate(None, _NUMBER_SEPARATORS)
    if sign == b"+" and len(digits) == 11 and digits[:1] == b"1":
        sign = None                              # E.164 (+1AAANNNNNNN), not an addition prefix
    if sign is not None:
        if parts.sign is not None or parts.digits or parts.area_code:
            return "a +/- prefix inside the line"
        parts.sign = sign
    if parts.digits:
        return "more than one phone number on the line"
    if len(digits) == 11 and digits[:1] == b"1":
        digits = digits[1:]
    if len(digits) == 10 and not parts.area_code:
        parts.digits = digits
    elif len(digits) == 3 and not parts.area_code:
        parts.area_code = digits
    elif len(digits) == 7 and parts.area_code:
        parts.digits, parts.area_code = parts.area_code + digits, b""
    elif len(digits) == 7:
        return f"{field.decode(errors='replace')!r}: seven digits without an area code"
    else:
        return f"{field.decode(errors='replace')!r}: {len(digits)} digits, not a 10-digit phone number"
    return None


def _read_line_parts(raw: bytes) -> _LineParts | str:
    """Every field of a line sorted into number, flag and date; why a field is unusable otherwise.

    The FTC does not publish its column order, so fields are recognised by what they hold."""
    parts = _LineParts()
    for field in _fields(raw):
        upper = field.upper()
        if upper in _ADD_FLAGS or upper in _DELETE_FLAGS:
            if parts.flag is not None:
                return "more than one add/delete flag"
            parts.flag = upper
            continue
        date = _date_problem(field) if _looks_like_date(field) else False
        if date is None:
            continue
        if date is not False:
            return date
        if _NUMBER_FIELD.match(field):
            problem = _read_number_field(field, parts)
            if problem:
                return problem
        elif field.isalpha() and len(field) <= 3:
            return f"unknown change flag {field.decode()!r} (use A or D)"
        else:
            return f"{_shown(field)!r} is neither a phone number, an A/D flag nor a date"
    if parts.area_code:
        return "a 3-digit area code without its 7-digit number"
    if not parts.digits:
        return "no phone number on the line"
    return parts


def parse_full_line(raw: bytes) -> int | str | None:
    """The 10-digit number on one full-list line, None for a blank line, or why it is malformed.

    A full list holds numbers only; an addition flag (or a date) beside one is tolerated, a
    deletion is not: it means a change list was given as a full list."""
    if not raw.strip():
        return None
    match = _FULL_LINE.match(raw)
    if match:
        npa, line = match.groups()
        return _nanp_problem(npa, line[0]) or int(npa + line)
    parts = _read_line_parts(raw)
    if isinstance(parts, str):
        return parts
    if parts.sign == b"-" or (parts.flag is not None and parts.flag in _DELETE_FLAGS):
        return "a deletion in a full list: load change lists with `outbound dnc import changes`"
    return _nanp_problem(parts.digits[:3], parts.digits[3]) or int(parts.digits)


def parse_change_line(raw: bytes) -> tuple[int, bool] | str | None:
    """(number, is_addition) for one change-list line, None for a blank line, or why it is malformed."""
    if not raw.strip():
        return None
    match = _CHANGE_LINE.match(raw)
    if match and (match["date"] is None or _date_problem(match["date"]) is None):
        problem = _nanp_problem(match["npa"], match["line"][0])
        return problem or (int(match["npa"] + match["line"]), match["flag"] in b"Aa")
    parts = _read_line_parts(raw)
    if isinstance(parts, str):
        return parts
    if parts.sign and parts.flag:
        return "both a +/- prefix and an A/D flag"
    if parts.sign:
        addition = parts.sign == b"+"
    elif parts.flag:
        addition = parts.flag in _ADD_FLAGS
    else:
        return "no add/delete flag: a change list line needs A or D, or a +/- prefix"
    return _nanp_problem(parts.digits[:3], parts.digits[3]) or (int(parts.digits), addition)


def _without_header(block: bytes) -> bytes:
    """The first block of a file with its first non-blank line blanked when that is a header.

    The line stays (empty) so that every later line keeps its number; a header-like line
    anywhere else is malformed."""
    start = 0
    while start < len(block):
        end = block.find(b"\n", start)
        end = len(block) if end < 0 else end
        line = block[start:end]
        if line.strip():
            return block[:start] + block[end:] if is_header_line(line) else block
        start = end + 1
    return block


class _LineAccounting:
    """Counts lines and keeps the first malformed ones, across every file of one build."""

    def __init__(self) -> None:
        self.lines = 0
        self.malformed = 0
        self.samples: list[MalformedLine] = []

    def malformed_line(self, report: FileReport, label: str, line_number: int, reason: str, raw: bytes) -> None:
        report.malformed += 1
        self.malformed += 1
        if len(self.samples) < MALFORMED_SAMPLES:
            self.samples.append(MalformedLine(label, line_number, reason, _shown(raw)))


# Where the ten digits sit in a line `AAANNNNNNN` and in a line `AAA,NNNNNNN`.
_DIGIT_OFFSETS_PLAIN = tuple(range(10))
_DIGIT_OFFSETS_COMMA = (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)


def _decode_digit_columns(buf: np.ndarray, starts: np.ndarray, offsets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(numbers, valid) of the lines starting at `starts` with digits at `offsets`.

    Works one digit column at a time on contiguous 1-D arrays: a 2-D gather (lines x 10) is
    ten times slower. Bytes below '0' wrap around to values above 9 after the subtraction."""
    npa = np.zeros(len(starts), dtype=np.int32)
    line = np.zeros(len(starts), dtype=np.int32)
    valid = np.ones(len(starts), dtype=bool)
    for index, offset in enumerate(offsets):
        digit = buf[starts + offset] - np.uint8(48)
        lowest = 2 if index in (0, 3) else 0        # area code and exchange start with 2-9
        valid &= (digit <= 9) & (digit >= lowest)
        accumulator = npa if index < 3 else line
        accumulator *= 10
        accumulator += digit
    return npa.astype(np.int64) * NUMBERS_PER_NPA + line, valid


def _parse_full_block(block: bytes, first_line: int, on_malformed) -> np.ndarray:
    """Numbers (int64, 10 digits) of a block of whole lines.

    Lines shaped exactly `AAANNNNNNN` or `AAA,NNNNNNN` (with LF or CRLF) are decoded with array
    operations; this is what a real download holds, and pure Python would take minutes for 250
    million lines. Every other line (whitespace, junk, blank) goes through `parse_full_line`."""
    buf = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    stops = ends - ((ends > starts) & (buf[ends - 1] == 13))
    lengths = stops - starts
    numbers = np.zeros(len(ends), dtype=np.int64)
    fast = np.zeros(len(ends), dtype=bool)
    comma_at = np.minimum(starts + 3, len(buf) - 1)
    for shape, offsets in ((lengths == 10, _DIGIT_OFFSETS_PLAIN),
                           ((lengths == 11) & (buf[comma_at] == 44), _DIGIT_OFFSETS_COMMA)):
        rows = np.flatnonzero(shape)
        if not len(rows):
            continue
        decoded, valid = _decode_digit_columns(buf, starts[rows], offsets)
        rows = rows[valid]
        numbers[rows] = decoded[valid]
        fast[rows] = True
    for row in np.flatnonzero(~fast).tolist():
        raw = block[starts[row]:ends[row]]
        parsed = parse_full_line(raw)
        if isinstance(parsed, int):
            numbers[row] = parsed
            fast[row] = True
        elif parsed is not None:
            on_malformed(first_line + row, parsed, raw)
    return numbers[fast]


class _Accumulator:
    """Marks numbers during a full build: one byte per possible number, packed into bits at the end.

    Setting bytes by fancy indexing costs about 1 ns a number; setting bits directly needs
    `np.bitwise_or.at`, about 50 ns. The byte array spans every NANP area code (8 GB of address
    space) but is an anonymous mapping without reserve: only the pages of area codes present are
    ever backed by memory (10 MB each, so ~3 GB for the whole registry)."""

    def __init__(self) -> None:
        size = (NPA_SLOTS - FIRST_NPA) * NUMBERS_PER_NPA
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
        self._map = mmap.mmap(-1, size, flags=flags)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            # 2 MB pages: a sparse area code touches every 4 KB page, and 750,000 page faults
            # cost seconds; huge pages cut them 500-fold where the kernel allows it.
            self._map.madvise(mmap.MADV_HUGEPAGE)
        self.marks = np.frombuffer(self._map, dtype=np.bool_)
        self.present = np.zeros(NPA_SLOTS, dtype=bool)

    def add(self, numbers: np.ndarray) -> list[int]:
        """Mark `numbers`; the area codes they are in."""
        if not len(numbers):
            return []
        self.marks[numbers - FIRST_NPA * NUMBERS_PER_NPA] = True
        npas = numbers // NUMBERS_PER_NPA
        low, high = int(npas.min()), int(npas.max())
        if low == high:                       # a per-area-code file: skip the count
            self.present[low] = True
            return [low]
        present = np.bincount(npas, minlength=NPA_SLOTS).astype(bool)
        self.present |= present
        return np.flatnonzero(present).tolist()

    def area_codes(self) -> list[int]:
        return np.flatnonzero(self.present).tolist()

    def bitset(self, npa: int) -> tuple[np.ndarray, int]:
        start = (npa - FIRST_NPA) * NUMBERS_PER_NPA
        marks = self.marks[start:start + NUMBERS_PER_NPA]
        return np.packbits(marks, bitorder="little"), int(np.count_nonzero(marks))

    def close(self) -> None:
        del self.marks
        self._map.close()


# ---------------------------------------------------------------------------------------------
# The store


def _iso(instant: datetime) -> str:
    if instant.tzinfo is None:
        raise ValueError("naive datetime: give instants with a time zone (UTC)")
    return instant.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def not_in_future(instant: datetime, now: datetime | None, what: str) -> datetime:
    """`instant`, or RegistryInputError when it is later than `now` (default: the real clock).

    Data cannot have been obtained after the moment it is loaded; a future date would keep it
    "fresh" past the 31-day limit."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: give instants with a time zone (UTC)")
    now = now or datetime.now(timezone.utc)
    if instant > now:
        raise RegistryInputError(f"{what} {_iso(instant)} is in the future (now {_iso(now)}): "
                                 "give when the data was actually obtained")
    return instant


def coverage_of(manifest: dict) -> dict[str, dict]:
    """{area code "NPA": {synced_at, baseline_synced_at, files, ...}} of the area codes with data.

    A store built before coverage was recorded (format 1) had one sync date for everything."""
    if "coverage" in manifest:
        return manifest["coverage"]
    names = [entry["name"] for entry in manifest["files"]]
    return {f"{npa:03d}": {"synced_at": manifest["synced_at"], "baseline_synced_at": manifest["baseline_synced_at"],
                           "files": names} for npa in manifest["area_codes"]}


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a file created or renamed in it) survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ten_digits(phone: str | int) -> int | None:
    """The 10-digit NANP number of `+1AAANNNNNNN`, `1AAANNNNNNN`, `AAANNNNNNN` or an int, else None."""
    if isinstance(phone, (int, np.integer)):
        value = int(phone)
    else:
        text = phone.strip()
        text = text[1:] if text.startswith("+") else text
        if not text.isdigit() or not text.isascii():
            return None
        value = int(text)
    if 10_000_000_000 <= value < 20_000_000_000:     # leading country code 1
        value -= 10_000_000_000
    npa, exchange = divmod(value, NUMBERS_PER_NPA)
    if not (FIRST_NPA <= npa < NPA_SLOTS and exchange >= 2_000_000):
        return None
    return value


def numbers_of(phones: Sequence[str | int]) -> np.ndarray:
    """10-digit int64 values of phones (0 for an invalid one), E.164 strings decoded as arrays.

    Scrubs and dispatch hand over E.164 strings; one Python call per string would cap lookups
    near a million a second, so `+1AAANNNNNNN` strings are read as a character matrix and only
    the others go through `ten_digits`."""
    if not len(phones):
        return np.zeros(0, dtype=np.int64)
    try:
        same_length = set(map(len, phones)) == {12}
        text = "".join(phones).encode("ascii") if same_length else None
    except (TypeError, UnicodeEncodeError):                  # ints, or non-ASCII characters
        text = None
    if text is not None:
        return _e164_matrix(np.frombuffer(text, dtype=np.uint8).reshape(len(phones), 12), phones)
    return np.fromiter((ten_digits(p) or 0 for p in phones), dtype=np.int64, count=len(phones))


def _e164_matrix(codes: np.ndarray, phones: Sequence[str | int]) -> np.ndarray:
    """Numbers of twelve-character ASCII strings, one per row of `codes`."""
    numbers = np.zeros(len(codes), dtype=np.int64)
    valid = (codes[:, 0] == ord("+")) & (codes[:, 1] == ord("1"))
    for column in range(2, 12):
        digit = codes[:, column] - np.uint8(48)              # wraps below '0' to above 9
        valid &= digit <= 9
        if column in (2, 5):                                 # area code and exchange start 2-9
            valid &= digit >= 2
        numbers = numbers * 10 + digit.astype(np.int64)
    numbers[~valid] = 0
    for row in np.flatnonzero(~valid).tolist():             # other spellings, one by one
        numbers[row] = ten_digits(phones[row]) or 0
    return numbers


class _View:
    """One version of the store, mapped read-only."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        self.manifest = manifest
        self.base = np.full(NPA_SLOTS, -1, dtype=np.int64)      # first bit of each area code's bitset
        for index, npa in enumerate(manifest["area_codes"]):
            self.base[npa] = index * NUMBERS_PER_NPA
        path = folder / manifest["generation"] / BITSETS_NAME
        with path.open("rb") as handle:
            self.map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.bits = np.frombuffer(self.map, dtype=np.uint8)
        self.coverage = coverage_of(manifest)
        self.covered = np.zeros(NPA_SLOTS, dtype=bool)      # area codes with registry data
        self.covered[[int(npa) for npa in self.coverage]] = True

    def synced_at(self, number: int) -> str | None:
        """The sync date of the number's area code; None when its area code has no data."""
        held = self.coverage.get(f"{number // NUMBERS_PER_NPA:03d}")
        return held["synced_at"] if held else None

    def bitset_bytes(self, npa: int) -> memoryview:
        """The stored bitset of one area code (it must be in the store)."""
        start = int(self.base[npa]) // 8
        return memoryview(self.map)[start:start + BYTES_PER_NPA]

    def contains(self, number: int) -> bool:
        npa, line = divmod(number, NUMBERS_PER_NPA)
        base = int(self.base[npa])
        if base < 0:
            return False
        position = base + line
        return bool(self.map[position >> 3] >> (position & 7) & 1)

    def contains_array(self, numbers: np.ndarray) -> np.ndarray:
        out = np.zeros(len(numbers), dtype=bool)
        in_range = (numbers >= FIRST_NPA * NUMBERS_PER_NPA) & (numbers < NPA_SLOTS * NUMBERS_PER_NPA)
        if not in_range.all():
            out[in_range] = self.contains_array(numbers[in_range])
            return out
        for start in range(0, len(numbers), LOOKUP_BATCH):
            chunk = numbers[start:start + LOOKUP_BATCH]
            npas = chunk // NUMBERS_PER_NPA
            bases = self.base[npas]
            positions = chunk - npas * NUMBERS_PER_NPA
            positions += bases
            np.maximum(positions, 0, out=positions)          # absent area codes read bit 0, masked below
            found = (np.take(self.bits, positions >> 3) >> (positions & 7).astype(np.uint8)) & 1
            out[start:start + LOOKUP_BATCH] = found.astype(bool) & (bases >= 0)
        return out

    def close(self) -> None:
        del self.bits
        self.map.close()


class RegistryStore:
    """The national registry under `path`. Reads are lock-free; builds take an exclusive lock."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._view: _View | None = None
        self._manifest_stamp: tuple | None = None

    # -- reading ------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def manifest(self) -> dict | None:
        """The current manifest, or None when nothing has been ingested."""
        view = self._current_view()
        return view.manifest if view else None

    def _current_view(self) -> _View | None:
        try:
            stat = self.manifest_path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._view is None or stamp != self._manifest_stamp:
            if self._view is not None:
                self._view.close()
                self._view = None
            self._view = self._open_view()
            self._manifest_stamp = stamp
        return self._view

    def _open_view(self) -> _View:
        # A build may swap the manifest and remove an old generation between our two reads:
        # read the manifest again and retry once.
        for attempt in (1, 2):
            manifest = json.loads(self.manifest_path.read_text())
            try:
                return _View(self.path, manifest)
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def contains(self, phone: str | int) -> bool:
        """Whether a number (`+1AAANNNNNNN`, `AAANNNNNNN` or an int) is on the registry."""
        number = ten_digits(phone)
        if number is None:
            raise ValueError(f"not a NANP number: {phone!r}")
        view = self._current_view()
        return bool(view and view.contains(number))

    def contains_many(self, phones: Sequence[str | int] | np.ndarray) -> list[bool]:
        """Membership of many numbers at once. Invalid numbers answer False: check validity
        first (the scrub marks them `invalid_number`)."""
        if isinstance(phones, np.ndarray) and phones.dtype.kind in "iu":
            return self.contains_array(phones.astype(np.int64, copy=False)).tolist()
        return self.contains_array(numbers_of(phones)).tolist()

    def contains_array(self, numbers: np.ndarray) -> np.ndarray:
        """The fast path: 10-digit numbers as int64 in, booleans out (~50 million a second)."""
        view = self._current_view()
        if view is None:
            return np.zeros(len(numbers), dtype=bool)
        return view.contains_array(numbers)

    def status(self) -> dict:
        """What the store holds. `synced_at` is the oldest area code's sync (the data is only as
        fresh as that); `coverage` gives each held area code's sync date and files."""
        view = self._current_view()
        if view is None:
            return {"entries": 0, "area_codes": 0, "version": None, "synced_at": None,
                    "baseline_synced_at": None, "files": [], "changes": [], "size_bytes": 0,
                    "path": str(self.path), "area_codes_held": [], "oldest_synced_at": None,
                    "newest_synced_at": None, "coverage": {}}
        manifest, coverage = view.manifest, view.coverage
        bitsets = self.path / manifest["generation"] / BITSETS_NAME
        synced = sorted(held["synced_at"] for held in coverage.values())
        return {"entries": manifest["entries"], "area_codes": len(manifest["area_codes"]),
                "version": manifest["version"], "synced_at": synced[0] if synced else None,
                "baseline_synced_at": manifest["baseline_synced_at"], "files": manifest["files"],
                "changes": manifest["changes"], "size_bytes": bitsets.stat().st_size,
                "path": str(self.path), "area_codes_held": sorted(coverage),
                "oldest_synced_at": synced[0] if synced else None,
                "newest_synced_at": synced[-1] if synced else None,
                "coverage": {npa: {**held, "entries": manifest["entries_by_area_code"].get(str(int(npa)), 0)}
                             for npa, held in sorted(coverage.items())}}

    def national_fact(self, phone: str) -> dict:
        """The gate's `dnc.national` fact for one number, as of its own area code's data.

        `synced_at` is None when that area code has no registry data (never loaded, or only
        seen in a change list): the gate then fails closed for telemarketing."""
        view = self._current_view()
        number = ten_digits(phone)
        if view is None or number is None:
            return {"listed": False, "registered_on": None, "synced_at": None}
        return {"listed": bool(view.contains(number)), "registered_on": None,
                "synced_at": view.synced_at(number)}

    def covered_array(self, numbers: np.ndarray) -> np.ndarray:
        """Whether each 10-digit number's area code has registry data (False for invalid ones)."""
        view = self._current_view()
        if view is None:
            return np.zeros(len(numbers), dtype=bool)
        npas = numbers // NUMBERS_PER_NPA
        in_range = (npas >= FIRST_NPA) & (npas < NPA_SLOTS)
        return view.covered[np.where(in_range, npas, 0)] & in_range

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None

    # -- building -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _build_lock(self) -> Iterator[None]:
        """One build at a time (two imports started together would otherwise both swap)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ingest_full(self, paths: Iterable[str | os.PathLike], synced_at: datetime, *,
                    replace_all: bool = False, now: datetime | None = None) -> IngestReport:
        """Load full lists, one area code (or state, or the whole registry) per file.

        Each area code with numbers in the files replaces that area code's data: its numbers,
        its sync date, the files it came from. Area codes not in the files are kept with their
        own dates, since the FTC delivers one file per area code. `replace_all` makes the files
        the whole registry instead: an area code absent from them is dropped, so it has no data
        and telemarketing to it is blocked.

        Atomic: a malformed line, a sync date later than `now`, or no number at all raises and
        changes nothing."""
        started = time.perf_counter()
        synced = _iso(not_in_future(synced_at, now, "the sync date"))
        files = expand_paths(paths)
        accounting = _LineAccounting()
        accumulator = _Accumulator()
        try:
            reports = [self._read_full_file(path, accumulator, accounting) for path in files]
            if accounting.malformed:
                raise MalformedInput(files, accounting.lines, accounting.malformed, accounting.samples)
            loaded = accumulator.area_codes()
            if not loaded:
                # An empty or failed download must not silently empty the registry: every
                # number would then look unlisted.
                raise RegistryInputError(
                    f"no valid number in {', '.join(str(p) for p in files)}: store left unchanged "
                    f"({accounting.malformed} malformed lines)")
            with self._build_lock():
                view = self._current_view()
                previous = view.manifest["area_codes"] if view else []
                kept = [] if replace_all or view is None else sorted(set(previous) - set(loaded))
                generation = self._new_building_folder()
                try:
                    manifest = self._full_manifest(generation, view, accumulator, loaded, kept,
                                                   reports, synced, replace_all)
                    self._publish(generation, manifest)
                except BaseException:
                    shutil.rmtree(generation, ignore_errors=True)
                    raise
        finally:
            accumulator.close()
        return IngestReport(version=manifest["version"], synced_at=synced, entries=manifest["entries"],
                            area_codes=len(manifest["area_codes"]), lines=accounting.lines,
                            malformed=accounting.malformed, malformed_samples=accounting.samples,
                            files=reports, seconds=round(time.perf_counter() - started, 3),
                            area_codes_loaded=[f"{npa:03d}" for npa in loaded],
                            area_codes_kept=[f"{npa:03d}" for npa in kept],
                            area_codes_dropped=[f"{npa:03d}" for npa in sorted(set(previous) - set(loaded) - set(kept))],
                            replace_all=replace_all)

    def _full_manifest(self, generation: Path, view: _View | None, accumulator: _Accumulator,
                       loaded: list[int], kept: list[int], reports: list[FileReport], synced: str,
                       replace_all: bool) -> dict:
        """Write the bitsets of a full load into `generation` and return its manifest: the
        loaded area codes from the files, the kept ones copied from the current version."""
        fresh = set(loaded)
        area_codes = sorted(fresh | set(kept))
        old_entries = view.manifest["entries_by_area_code"] if view else {}

        def bitset_of(npa: int):
            if npa in fresh:
                return accumulator.bitset(npa)
            return view.bitset_bytes(npa), old_entries[str(npa)]
        entries_by_npa = _write_bitsets(generation / BITSETS_NAME, bitset_of, area_codes)
        built = _iso(datetime.now(timezone.utc))
        old_coverage = view.coverage if view else {}
        coverage = {f"{npa:03d}": old_coverage[f"{npa:03d}"] for npa in kept if f"{npa:03d}" in old_coverage}
        for npa in loaded:
            coverage[f"{npa:03d}"] = {"synced_at": synced, "baseline_synced_at": synced, "loaded_at": built,
                                      "files": [Path(r.path).name for r in reports if npa in r.area_codes]}
        new_files = [{**_file_entry(report), "area_codes": report.area_codes, "synced_at": synced}
                     for report in reports]
        still_backing = [entry for entry in (view.manifest["files"] if view else [])
                         if set(entry.get("area_codes", view.manifest["area_codes"])) & set(kept)]
        changes = [] if replace_all or view is None else view.manifest["changes"]
        files = still_backing + new_files
        baseline = min(held["baseline_synced_at"] for held in coverage.values())
        return {"format": FORMAT, "bit_order": "little", "built_at": built,
                "version": _version(baseline, [f["sha256"] for f in files] + [c["sha256"] for c in changes],
                                    changes=len(changes)),
                "synced_at": min(held["synced_at"] for held in coverage.values()),
                "baseline_synced_at": baseline, "area_codes": area_codes,
                "entries_by_area_code": {str(k): v for k, v in entries_by_npa.items()},
                "entries": sum(entries_by_npa.values()), "files": files, "changes": changes,
                "coverage": coverage}

    def _read_full_file(self, path: Path, accumulator: _Accumulator, accounting: _LineAccounting) -> FileReport:
        is_zip = zipfile.is_zipfile(path)
        report = FileReport(str(path), sha256="", bytes=path.stat().st_size)
        digest = None if is_zip else hashlib.sha256()
        for source in _sources(path, report):
            line_number = 1
            with _opened(source) as handle, _damaged_zip_is_input_error(path):
                for block in _blocks(handle, digest):
                    if line_number == 1:
                        block = _without_header(block)

                    def on_malformed(number, reason, raw, label=source.label):
                        accounting.malformed_line(report, label, number, reason, raw)
                    numbers = _parse_full_block(block, line_number, on_malformed)
                    lines_in_block = block.count(b"\n")
                    line_number += lines_in_block
                    report.lines += lines_in_block
                    report.numbers += len(numbers)
                    report.area_codes.extend(accumulator.add(numbers))
        report.area_codes = sorted(set(report.area_codes))
        accounting.lines += report.lines
        report.sha256 = file_sha256(path) if is_zip else digest.hexdigest()
        return report

    def apply_changes(self, paths: Iterable[str | os.PathLike], at: datetime,
                      now: datetime | None = None) -> ChangeReport:
        """Apply change lists (additions and deletions) on top of the current version.

        A change list renews, to `at`, the sync date of each held area code it has lines for;
        an area code it does not mention keeps its date (nothing shows the list covered it).
        Additions in an area code without a full list are stored but give it no coverage.

        A change list already applied (same sha256) is skipped: replaying an old diff after a
        newer one could re-add a number since deleted, and would claim a fresh `synced_at`.
        Atomic: a malformed line anywhere, or `at` later than `now`, raises and changes nothing."""
        started = time.perf_counter()
        not_in_future(at, now, "the sync date")
        files = expand_paths(paths)
        with self._build_lock():
            view = self._current_view()
            if view is None:
                raise RegistryUnavailable("no national registry data: import a full download first "
                                          "(outbound dnc import national PATH)")
            manifest = view.manifest
            applied = {change["sha256"] for change in manifest["changes"]}
            accounting = _LineAccounting()
            reports, numbers, additions = [], [], []
            for path in files:
                report, file_numbers, file_additions = _read_change_file(path, accounting)
                if report.sha256 in applied:
                    report.skipped = "already applied"
                else:
                    applied.add(report.sha256)
                    numbers.append(file_numbers)
                    additions.append(file_additions)
                reports.append(report)
            if accounting.malformed:
                raise MalformedInput(files, accounting.lines, accounting.malformed, accounting.samples)
            numbers_all = np.concatenate(numbers) if numbers else np.zeros(0, np.int64)
            additions_all = np.concatenate(additions) if additions else np.zeros(0, bool)
            numbers_all, additions_all = _last_change_wins(numbers_all, additions_all)
            generation, new_manifest, added, removed = self._build_changed(view, numbers_all, additions_all)
            try:
                renewed = self._finish_changes(generation, manifest, new_manifest, reports, at)
            except BaseException:
                shutil.rmtree(generation, ignore_errors=True)
                raise
        return ChangeReport(version=new_manifest["version"], synced_at=new_manifest["synced_at"],
                            entries=new_manifest["entries"], added=added, removed=removed,
                            additions=sum(r.additions for r in reports if not r.skipped),
                            deletions=sum(r.deletions for r in reports if not r.skipped),
                            lines=accounting.lines, malformed=accounting.malformed,
                            malformed_samples=accounting.samples, files=reports,
                            seconds=round(time.perf_counter() - started, 3),
                            area_codes_renewed=renewed)

    def _finish_changes(self, generation: Path, manifest: dict, new_manifest: dict,
                        reports: list[FileReport], at: datetime) -> list[str]:
        """Record the change lists in the new manifest and publish the new version; the area
        codes whose sync date the lists renewed."""
        synced = _iso(at)
        applied_now = [report for report in reports if not report.skipped]
        new_manifest["changes"] = manifest["changes"] + [
            {**_file_entry(report), "applied_at": synced, "additions": report.additions,
             "deletions": report.deletions, "area_codes": report.area_codes} for report in applied_now]
        # A change list is the registry as of its download: it renews the sync date of the
        # held area codes it touches (never backwards). The baseline dates stay, so status can
        # still ask for a fresh full download.
        coverage = {npa: dict(held) for npa, held in coverage_of(manifest).items()}
        renewed = set()
        for report in applied_now:
            for npa in (f"{code:03d}" for code in report.area_codes if f"{code:03d}" in coverage):
                held = coverage[npa]
                if _parse_iso(held["synced_at"]) < at:
                    held["synced_at"] = synced
                held["last_change_list"] = Path(report.path).name
                renewed.add(npa)
        new_manifest.update(format=FORMAT, coverage=coverage,
                            synced_at=min((held["synced_at"] for held in coverage.values()), default=None))
        new_manifest["version"] = _version(
            new_manifest["baseline_synced_at"],
            [f["sha256"] for f in manifest["files"]] + [c["sha256"] for c in new_manifest["changes"]],
            changes=len(new_manifest["changes"]))
        new_manifest["built_at"] = _iso(datetime.now(timezone.utc))
        self._publish(generation, new_manifest)
        return sorted(renewed)

    def _build_changed(self, view: _View, numbers: np.ndarray, additions: np.ndarray):
        """A new generation: the current bitsets copied, then the changes written into the copy."""
        manifest = dict(view.manifest)
        area_codes = list(manifest["area_codes"])
        entries_by_npa = {int(k): v for k, v in manifest["entries_by_area_code"].items()}
        npas = numbers // NUMBERS_PER_NPA
        new_npas = sorted(set(np.unique(npas[additions]).tolist()) - set(area_codes))
        area_codes.extend(new_npas)                    # appended: existing offsets stay valid
        generation = self._new_building_folder()
        target = generation / BITSETS_NAME
        shutil.copyfile(self.path / manifest["generation"] / BITSETS_NAME, target)
        with target.open("r+b") as handle:
            handle.truncate(len(area_codes) * BYTES_PER_NPA)
        base = np.full(NPA_SLOTS, -1, dtype=np.int64)
        base[area_codes] = np.arange(len(area_codes), dtype=np.int64) * NUMBERS_PER_NPA
        was_listed = view.contains_array(numbers)
        # A deletion of a number in an area code never ingested has nothing to clear.
        known = base[npas] >= 0
        positions = base[npas] + numbers - npas * NUMBERS_PER_NPA
        masks = (np.uint8(1) << (positions & 7).astype(np.uint8)).astype(np.uint8)
        bits = np.memmap(target, dtype=np.uint8, mode="r+")
        set_rows = additions & ~was_listed
        clear_rows = ~additions & was_listed & known
        np.bitwise_or.at(bits, positions[set_rows] >> 3, masks[set_rows])
        np.bitwise_and.at(bits, positions[clear_rows] >> 3, ~masks[clear_rows])
        bits.flush()
        del bits
        for npa, count in zip(*np.unique(npas[set_rows], return_counts=True)):
            entries_by_npa[int(npa)] = entries_by_npa.get(int(npa), 0) + int(count)
        for npa, count in zip(*np.unique(npas[clear_rows], return_counts=True)):
            entries_by_npa[int(npa)] -= int(count)
        _fsync_file(target)
        manifest.update(area_codes=area_codes, entries=sum(entries_by_npa.values()),
                        entries_by_area_code={str(k): v for k, v in entries_by_npa.items()})
        return generation, manifest, int(set_rows.sum()), int(clear_rows.sum())

    def _new_building_folder(self) -> Path:
        folder = self.path / f".building-{os.getpid()}-{time.time_ns()}"
        folder.mkdir(parents=True)
        return folder

    def _publish(self, building: Path, manifest: dict) -> None:
        """Make `building` the current version: rename it, then swap the manifest atomically."""
        generation = f"gen-{manifest['version']}-{time.time_ns()}"
        os.replace(building, self.path / generation)
        manifest["generation"] = generation
        temporary = self.path / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
        with temporary.open("w") as handle:
            json.dump(manifest, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        previous = self._current_view()
        os.replace(temporary, self.manifest_path)
        fsync_dir(self.path)
        self._remove_old_generations(keep={generation, previous.manifest["generation"] if previous else ""})

    def _remove_old_generations(self, keep: set[str]) -> None:
        """Older versions go; the one just replaced stays for readers that read its manifest a
        moment ago (a reader holding a mapping keeps its data even after unlink)."""
        for child in self.path.iterdir():
            if child.is_dir() and child.name.startswith(("gen-", ".building-")) and child.name not in keep:
                if child.name.startswith(".building-") and _build_in_progress(child):
                    continue
                shutil.rmtree(child, ignore_errors=True)


def _build_in_progress(folder: Path) -> bool:
    """A `.building-<pid>-...` folder of a process still alive is another build's work."""
    try:
        pid = int(folder.name.split("-")[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


@contextlib.contextmanager
def _opened(source: _Source) -> Iterator[BinaryIO]:
    handle = source.open()
    try:
        yield handle
    finally:
        handle.close()


@contextlib.contextmanager
def _damaged_zip_is_input_error(path: Path) -> Iterator[None]:
    """A zip whose member fails its CRC or inflation is bad input, not a crash."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise RegistryInputError(f"{path}: damaged zip file ({error}); download it again") from error


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _write_bitsets(target: Path, bitset_of: Callable[[int], tuple], area_codes: list[int]) -> dict[int, int]:
    """Write each area code's bitset, in order; {area code: numbers listed}."""
    entries: dict[int, int] = {}
    with target.open("wb") as handle:
        for npa in area_codes:
            bitset, count = bitset_of(npa)
            handle.write(bitset)
            entries[npa] = count
        handle.flush()
        os.fsync(handle.fileno())
    return entries


def _read_change_file(path: Path, accounting: _LineAccounting) -> tuple[FileReport, np.ndarray, np.ndarray]:
    """(report, numbers, is_addition) of one change list (plain or zip), in file order."""
    is_zip = zipfile.is_zipfile(path)
    report = FileReport(str(path), sha256="", bytes=path.stat().st_size)
    digest = None if is_zip else hashlib.sha256()
    numbers: list[int] = []
    additions: list[bool] = []
    for source in _sources(path, report):
        line_number = 0
        with _opened(source) as handle, _damaged_zip_is_input_error(path):
            for block in _blocks(handle, digest):
                if line_number == 0:
                    block = _without_header(block)
                for raw in block.split(b"\n")[:-1]:
                    line_number += 1
                    parsed = parse_change_line(raw)
                    if isinstance(parsed, tuple):
                        numbers.append(parsed[0])
                        additions.append(parsed[1])
                    elif parsed is not None:
                        accounting.malformed_line(report, source.label, line_number, parsed, raw)
        report.lines += line_number
    accounting.lines += report.lines
    report.sha256 = file_sha256(path) if is_zip else digest.hexdigest()
    additions_array = np.array(additions, dtype=bool)
    numbers_array = np.array(numbers, dtype=np.int64)
    report.additions = int(additions_array.sum())
    report.deletions = len(additions) - report.additions
    report.area_codes = np.unique(numbers_array // NUMBERS_PER_NPA).tolist()
    return report, numbers_array, additions_array


def _last_change_wins(numbers: np.ndarray, additions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One change per number: the last in file order (added then deleted means deleted)."""
    if not len(numbers):
        return numbers, additions
    reversed_numbers = numbers[::-1]
    unique, first_in_reversed = np.unique(reversed_numbers, return_index=True)
    return unique, additions[::-1][first_in_reversed]


def _file_entry(report: FileReport) -> dict:
    entry = {"name": Path(report.path).name, "path": report.path, "sha256": report.sha256,
             "bytes": report.bytes, "lines": report.lines, "numbers": report.numbers or
             (report.additions + report.deletions), "malformed": report.malformed}
    if report.members:
        entry["members"] = report.members
    return entry


def _version(synced_at: str, hashes: list[str], changes: int = 0) -> str:
    """`<baseline synced_at>.<change lists applied>.<12 hex of the input hashes>`: readable and
    unique to the data it was built from."""
    digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:12]
    stamp = _parse_iso(synced_at).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}.{changes}.{digest}"


def age_days(synced_at: str | None, now: datetime) -> float | None:
    """Days between a sync and `now`; None when there never was one."""
    synced = _parse_iso(synced_at)
    return None if synced is None else (now - synced).total_seconds() / 86400
