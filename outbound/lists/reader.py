"""Reading a contact list file: encoding, delimiter, header and records, streamed.

The file is read in chunks and never held whole. Per file:

- Encoding: a sample (the first 64 KiB) that decodes as UTF-8 (a BOM is dropped) makes the file
  UTF-8; so does a UTF-8 BOM. Otherwise it is Latin-1, which decodes any byte: a legacy export
  that is consistently not UTF-8 is still a list. A byte further on that is not UTF-8 in a file
  judged UTF-8 is not guessed at: its record is rejected as `invalid_utf8`, naming its line, and
  the report shows the bad bytes as U+FFFD. Reading it as Latin-1 would store a wrong name
  without a word.
- Binary junk, spreadsheets, archives and UTF-16 are refused at once with a message saying what
  the file looks like.
- Delimiter: `csv.Sniffer` on the sample's first lines, among , ; tab and |, checked against the
  header line.

Line numbers are the physical lines a text editor shows, the header being line 1 when it is the
first line. A quoted field may hold line breaks; its record is numbered by the line it starts
on. A record may span at most MAX_RECORD_LINES lines and MAX_RECORD_CHARS characters, and a
cell hold at most MAX_FIELD_CHARS (a longer one is rejected as `field_too_long`). A record that
runs past those bounds is one of two things, told apart by the lines it swallowed:

- a stray quote (the swallowed lines look like rows: as many delimiters as the header): the
  record's first line is rejected as `unbalanced_quote` and reading resumes on the next line, so
  one stray quote cannot eat the rest of the file;
- an overlong quoted field (they do not): the whole record, up to the line that closes the
  quote, is ONE reject, `record_too_long`, and reading resumes after it. Its lines are not read
  as rows, so a 5-million-line field is one reject, not five million, and the row after it is
  read as the row it is.

Blank lines, and lines whose cells are all empty, carry nothing and are skipped.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from outbound.lists.errors import EmptyFile, NoDataRows, UnreadableFile

SAMPLE_BYTES = 64 * 1024
SNIFF_LINES = 50
MAX_RECORD_LINES = 100
MAX_LINE_CHARS = 1024 * 1024
# A record of several lines: below the csv module's own field limit (131,072), so ours is met first.
MAX_RECORD_CHARS = 100_000
MAX_FIELD_CHARS = 10_000        # one cell: a name, an address, a note
DELIMITERS = ",;\t|"
_LATIN1_FALLBACK = "outbound-latin1-fallback"
_INVALID_UTF8 = re.compile("[\udc80-\udcff]")     # what surrogateescape makes of a byte that is not UTF-8

# Signatures of files people upload by mistake, and what to tell them.
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?): export the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel or Word file (.xls/.doc): export the sheet as CSV"),
    (b"\x1f\x8b", "a gzip archive: decompress it first"),
    (b"%PDF", "a PDF document, not a CSV"),
    (b"\xff\xfe", "UTF-16 text: save it as UTF-8 CSV"),
    (b"\xfe\xff", "UTF-16 text: save it as UTF-8 CSV"),
)


def _decode_as_latin1(error: UnicodeDecodeError) -> tuple[str, int]:
    return error.object[error.start:error.end].decode("latin-1"), error.end


codecs.register_error(_LATIN1_FALLBACK, _decode_as_latin1)


class Reason:
    RAGGED_ROW = "ragged_row"
    UNBALANCED_QUOTE = "unbalanced_quote"
    LINE_TOO_LONG = "line_too_long"
    MALFORMED_ROW = "malformed_row"
    RECORD_TOO_LONG = "record_too_long"
    FIELD_TOO_LONG = "field_too_long"
    INVALID_UTF8 = "invalid_utf8"


class SourceRow(NamedTuple):       # a tuple: built once per row, a frozen dataclass costs 3x
    line: int
    fields: list[str]
    problem: str | None = None          # a Reason when the row cannot be read as a contact


class MeteredStream(io.RawIOBase):
    """Reads from `raw`, counting the bytes and hashing them, so the caller gets the file's
    size-so-far (progress) and its SHA-256 (audit) without a second pass."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        if not data:
            return 0
        size = len(data)
        buffer[:size] = data
        self.bytes_read += size
        self.sha256.update(data)
        return size


class _Replayed(io.RawIOBase):
    """The sample already taken, then the rest of the stream."""

    def __init__(self, sample: bytes, rest: io.RawIOBase) -> None:
        self._sample = memoryview(sample)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._sample:
            size = min(len(buffer), len(self._sample))
            buffer[:size] = self._sample[:size]
            self._sample = self._sample[size:]
            return size
        return self._rest.readinto(buffer)


class ListReader:
    """Header and records of one list file. Opening it reads the sample, the header and the first
    record, so every whole-file problem is raised before anything is stored."""

    def __init__(self, stream: BinaryIO) -> None:
        self.meter = MeteredStream(stream)
        sample = _read_sample(self.meter)
        self.encoding = detect_encoding(sample)
        # Latin-1 decodes every byte; in a UTF-8 file a byte that is not UTF-8 becomes a lone
        # surrogate, which no valid text contains, so its line can be told and rejected.
        self._text = io.TextIOWrapper(io.BufferedReader(_Replayed(sample, self.meter), 1 << 20),
                                      encoding=self.encoding, errors="surrogateescape", newline="")
        self._invalid_utf8 = False      # a line of the record being read had such a byte
        self.delimiter = sniff_delimiter(_decode_sample(sample, self.encoding))
        self._pending: deque[tuple[int, str]] = deque()
        self._line_no = 0
        self._records = self._read_records()
        self.header, self.header_line = self._read_header()
        self._first = self._first_data_row()

    def rows(self) -> Iterator[SourceRow]:
        """Every record after the header: good ones with their fields, bad ones with a problem."""
        yield self._first
        width = len(self.header)
        for row in self._records:
            yield row if row.problem or len(row.fields) == width else _check_width(row, width)

    @property
    def bytes_read(self) -> int:
        return self.meter.bytes_read

    def _read_header(self) -> tuple[list[str], int]:
        for row in self._records:
            if row.problem:
                raise UnreadableFile(f"line {row.line}: the header line cannot be read ({row.problem})")
            header = [field.strip() for field in row.fields]
            header[0] = header[0].removeprefix("\ufeff").removeprefix("ï»¿")
            return header, row.line
        raise EmptyFile()

    def _first_data_row(self) -> SourceRow:
        for row in self._records:
            return row if row.problem else _check_width(row, len(self.header))
        raise NoDataRows(self.header)

    def _read_records(self) -> Iterator[SourceRow]:
        """Records with the physical line each starts on. One csv reader runs over the file (a
        reader per line costs more than the parse); it is replaced only after a record it could
        not finish (a quote left open too long, a NUL), with the lines after that record's first
        given back to the new one, or skipped with it when they were the inside of one field."""
        while True:
            feed = _LineFeed(self._next_line)
            reader = csv.reader(feed, delimiter=self.delimiter)
            try:
                for fields in reader:
                    line_no, chars = feed.record_start, feed.record_chars
                    feed.start_record()
                    if not any(fields):
                        self._invalid_utf8 = False
                        continue            # a blank line, or only delimiters: nothing to import
                    yield self._record(line_no, fields, chars)
                return
            except _RecordTooLong:
                problem = Reason.UNBALANCED_QUOTE
            except csv.Error:
                problem = Reason.MALFORMED_ROW
            abandoned = self._abandoned(feed.record_lines, problem)
            self._invalid_utf8 = False          # lines given back are looked at again when re-read
            yield abandoned

    def _record(self, line_no: int, fields: list[str], chars: int) -> SourceRow:
        if self._invalid_utf8:
            self._invalid_utf8 = False
            return SourceRow(line_no, [_replace_invalid(field)[:200] for field in fields], Reason.INVALID_UTF8)
        # The record's length bounds its longest cell: only a long record needs its cells measured.
        if chars > MAX_FIELD_CHARS and max(map(len, fields)) > MAX_FIELD_CHARS:
            return SourceRow(line_no, [field[:200] for field in fields], Reason.FIELD_TOO_LONG)
        return SourceRow(line_no, fields)

    def _abandoned(self, lines: list[tuple[int, str]], problem: str) -> SourceRow:
        """The one reject for a record the csv reader could not finish; the lines after its first
        are given back (a stray quote) or skipped to the end of its quoted field (too long)."""
        first_no, first_line = lines[0]
        rest = lines[1:]
        if len(first_line) > MAX_LINE_CHARS:
            problem = Reason.LINE_TOO_LONG
            self._pending.extendleft(reversed(rest))
        elif problem == Reason.UNBALANCED_QUOTE and not self._look_like_rows(rest):
            problem = Reason.RECORD_TOO_LONG
            self._skip_quoted_field(rest)
        else:
            self._pending.extendleft(reversed(rest))
        return SourceRow(first_no, [_replace_invalid(first_line.rstrip("\r\n"))[:200]], problem)

    def _look_like_rows(self, lines: list[tuple[int, str]]) -> bool:
        """Whether most of `lines` have a row's delimiters. Before the header is known, or with
        one column, rows cannot be told from text: they are taken as rows (the safe side)."""
        width = len(getattr(self, "header", ()))
        texts = [line for _no, line in lines if line.strip()]
        if width < 2 or not texts:
            return True
        rows = sum(1 for line in texts if line.count(self.delimiter) >= width - 1)
        return 2 * rows >= len(texts)

    def _skip_quoted_field(self, lines: list[tuple[int, str]]) -> None:
        """Drop lines up to the one that closes the open quote: inside a quoted field quotes come
        in doubled pairs, so it is the first line with an odd number of them. Lines after it that
        were already read are given back."""
        for i, (_no, line) in enumerate(lines):
            if line.count('"') % 2:
                self._pending.extendleft(reversed(lines[i + 1:]))
                return
        while (item := self._next_line()) is not None:
            if item[1].count('"') % 2:
                return

    def _next_line(self) -> tuple[int, str] | None:
        if self._pending:
            line_no, line = self._pending.popleft()
        else:
            line = self._text.readline(MAX_LINE_CHARS + 1)
            if not line:
                return None
            self._line_no += 1
            line_no = self._line_no
            if len(line) > MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                self._skip_rest_of_line()
        if not line.isascii() and _INVALID_UTF8.search(line):
            self._invalid_utf8 = True
        return line_no, line

    def _skip_rest_of_line(self) -> None:
        while (chunk := self._text.readline(MAX_LINE_CHARS)) and not chunk.endswith(("\n", "\r")):
            pass


class _RecordTooLong(Exception):
    pass


class _LineFeed:
    """Feeds physical lines to a csv reader and remembers the lines of the record in progress:
    its first line number (the record's line), and the lines to give back if it is abandoned."""

    def __init__(self, next_line) -> None:
        self._next_line = next_line
        self.record_lines: list[tuple[int, str]] = []
        self.record_start = 0
        self.record_chars = 0

    def start_record(self) -> None:
        self.record_lines = []
        self.record_chars = 0

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        item = self._next_line()
        if item is None:
            raise StopIteration
        lines = self.record_lines
        if not lines:
            self.record_start = item[0]
        lines.append(item)
        self.record_chars += len(item[1])
        if len(lines) > MAX_RECORD_LINES or len(item[1]) > MAX_LINE_CHARS or (
                self.record_chars > MAX_RECORD_CHARS and len(lines) > 1):
            raise _RecordTooLong()
        return item[1]


def _check_width(row: SourceRow, width: int) -> SourceRow:
    fields = row.fields
    if len(fields) == width:
        return row
    # Trailing empty cells (a spreadsheet's "a,b,c,,") shift nothing; anything else might have
    # moved a ZIP into the state column, so the row is not trusted.
    if len(fields) > width and not any(f.strip() for f in fields[width:]):
        return SourceRow(row.line, fields[:width])
    return SourceRow(row.line, fields, Reason.RAGGED_ROW)


def _replace_invalid(text: str) -> str:
    """`text` with each byte that was not UTF-8 shown as U+FFFD (a lone surrogate cannot be stored)."""
    if text.isascii() or not _INVALID_UTF8.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_sample(stream: io.RawIOBase) -> bytes:
    chunks, size = [], 0
    while size < SAMPLE_BYTES:
        chunk = stream.read(SAMPLE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def detect_encoding(sample: bytes) -> str:
    """'utf-8-sig' or 'latin-1' for a file starting with `sample`; refuses what is not text."""
    if not sample.strip(b" \t\r\n\xef\xbb\xbf"):
        raise EmptyFile()
    for magic, description in _MAGIC:
        if sample.startswith(magic):
            raise UnreadableFile(f"the file is {description}")
    if b"\x00" in sample:
        at = sample.index(b"\x00")
        raise UnreadableFile(f"the file is binary, not CSV text (a NUL byte at offset {at})")
    try:
        # final=False: the sample may end inside a multi-byte character.
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(sample, final=False)
        encoding = "utf-8-sig"
    except UnicodeDecodeError:
        # A BOM says the file is UTF-8 with a broken line. Without one, a bad byte this early
        # says a legacy (Latin-1) export: a few UTF-8-looking pairs before it prove nothing.
        if sample.startswith(codecs.BOM_UTF8):
            text, encoding = _decode_sample(sample, "utf-8-sig"), "utf-8-sig"
        else:
            text, encoding = sample.decode("latin-1"), "latin-1"
    if _looks_binary(text):
        raise UnreadableFile("the file is binary, not CSV text (too many control characters)")
    return encoding


def _looks_binary(text: str) -> bool:
    # C0 controls only: Latin-1 decodes Windows-1252 smart quotes to C1 codes, which are text.
    controls = sum(1 for ch in text if (ch < " " and ch not in "\t\r\n\f\v") or ch == "\x7f")
    return controls > max(2, len(text) // 100)


def _decode_sample(sample: bytes, encoding: str) -> str:
    return codecs.getincrementaldecoder(encoding)(_LATIN1_FALLBACK).decode(sample, final=False)


def sniff_delimiter(sample_text: str) -> str:
    """The delimiter of the sample's first lines; ',' for a one-column file."""
    lines = sample_text.splitlines(keepends=True)
    if len(lines) > 1:
        lines = lines[:-1]      # the last line of a sample may be cut short
    head = "".join(lines[:SNIFF_LINES])
    header_line = lines[0] if lines else ""
    try:
        delimiter = csv.Sniffer().sniff(head, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = None
    if delimiter is not None and delimiter in header_line:
        return delimiter
    # The sniffer found nothing consistent (one column, ragged lines): trust the header line.
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","
