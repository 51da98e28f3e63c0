"""Server-sent events: an incremental decoder (WHATWG HTML §9.2.6), an encoder, and the framing.

Pure: no I/O. The decoder works on bytes and decodes UTF-8 once per complete
line (never per chunk), so a character split across reads is always joined.
Everything that writes or splits SSE does it here (and in `scan.py`, the
same framing in C for runs of events): the relay's frames with our ids, the
heartbeat, `[DONE]`, and `EventListener`, the shape in which a pushing
upstream hands its events on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from promptcast.errors import PromptcastError, SSEProtocolError
from promptcast.wire import scan

__all__ = ["DONE", "HEARTBEAT", "Block", "Decoder", "Event", "EventListener", "Run", "comment",
           "data_frame", "encode", "frames_of", "payload"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str = ""


@dataclass(frozen=True, slots=True)
class Run:
    """Plain events as they came: whole `data: ...` events of one line each, LF-framed."""

    raw: bytes
    lines: list[bytes]  # each event's `data: ...` line, without its line end
    id: str  # the last event id as of these events, as `Event.id`


DONE_DATA = "[DONE]"
DATA_PREFIX = b"data: "
# The line `[DONE]` travels as: how a run of plain events is searched for its end.
DONE_LINE = DATA_PREFIX + DONE_DATA.encode()


class EventListener(Protocol):
    """Takes a stream's events inside the upstream's read callback (push mode).

    One concept, in the three shapes a read can hold, cheapest last: any
    event; one plain `data:` event as its bytes; a run of them as they came.
    """

    def event(self, event: Event) -> None:
        """Any event."""

    def data(self, payload: bytes) -> None:
        """A plain one-line message event: its data, UTF-8, undecoded."""

    def plain(self, run: Run) -> None:
        """A run of plain events as they came (`Decoder.feed_block`): each `data(payload(line))`."""

    def flush(self) -> None:
        """The events of one upstream read were all handed over.

        Also called for reads that end after the stream did, until it is closed.
        """

    def end(self, error: PromptcastError | None) -> None:
        """The upstream ended without a terminal event (None), or failed."""


class Block(NamedTuple):
    """What one read's chunks held (`Decoder.feed_block`), in stream order."""

    before: list[Event]
    run: Run | None
    after: list[Event]
    error: SSEProtocolError | None  # the stream broke after all of the above


def _decodes(data: bytes) -> bool:
    """Whether `data` is valid UTF-8 (callers test `isascii()` first: no call per ASCII chunk)."""
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class Decoder:
    """Incremental event-stream decoder: `feed` bytes as they arrive, then `close`.

    Lines end at CR, LF or CRLF only. A line without its end that grows past
    `max_line_bytes`, or an event whose data grows past `max_event_bytes`,
    raises `SSEProtocolError`; after that the decoder keeps raising it.
    """

    __slots__ = (
        "_bom_head",
        "_data",
        "_data_len",
        "_error",
        "_errors",
        "_event",
        "_id",
        "_last_event_id",
        "_max_event",
        "_max_line",
        "_partial",
        "_retry",
        "_skip_lf",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = 1 << 20,
        max_event_bytes: int = 1 << 20,
        strict_utf8: bool = False,
    ) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        # The standard replaces invalid UTF-8 with U+FFFD; a relay that must not
        # pass on corrupted text asks for `strict_utf8` and gets an error instead.
        self._errors = "strict" if strict_utf8 else "replace"
        self._last_event_id = ""
        self._retry: int | None = None
        self._error: SSEProtocolError | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        # None once the stream start is past; until then, the bytes seen so far
        # (a strict prefix of the BOM, which may arrive split across reads).
        self._bom_head: bytes | None = b""
        # A read ended in CR: an LF opening the next read belongs to that line end.
        self._skip_lf = False
        self._partial = bytearray()  # the current line, still without its end
        self._data: list[bytes] = []  # data values; decoded once, at dispatch
        self._data_len = 0
        self._event = b""
        # The last-event-id buffer; ids are few, so it is kept decoded.
        self._id = self._last_event_id

    @property
    def last_event_id(self) -> str:
        """The id as of the last blank line: what to send as `Last-Event-ID`."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The last valid `retry:` value in milliseconds, or None."""
        return self._retry

    def feed(self, chunk: bytes) -> list[Event]:
        """Decode the next bytes of the stream; return the events they complete."""
        if self._error is not None:
            raise self._error
        if not chunk:
            return []
        if self._bom_head is not None:
            head = self._bom_head + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._bom_head = head
                return []
            self._bom_head = None
            chunk = head[3:] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if 0x0D in chunk:
            # A CR ends its line at once (no waiting for the next read to see
            # whether an LF follows), so normalise CRLF and CR to LF here.
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        partial = self._partial
        if end < 0:
            # Only the new bytes are scanned, so a long line fed in small
            # pieces costs linear time.
            partial += chunk
            if len(partial) > self._max_line:
                self._fail_line(len(partial))
            return []
        if partial:
            partial += memoryview(chunk)[:end]
            block = bytes(partial)
            partial.clear()
        else:
            block = chunk[:end]
        if end + 1 < len(chunk):
            partial += memoryview(chunk)[end + 1 :]
            if len(partial) > self._max_line:
                self._fail_line(len(partial))
        try:
            return self._lines(block)
        except SSEProtocolError as exc:
            self._error = exc
            raise

    def simple_event(self, chunk: bytes) -> bytes | None:
        """The data of `chunk` if it is exactly one `data: ...` event, LF-framed; else None.

        The relay's fast path: most reads of an LLM stream carry one event of
        one data line. Valid only where `feed` would give that same one event:
        at an event boundary, past the stream's start, data within the limits
        and UTF-8 (when strict). None means "use `feed`", never an error.
        """
        # `_at_boundary()`, inline: this is once an event.
        if (self._error is not None or self._bom_head is not None or self._skip_lf
                or self._partial or self._data or self._event):
            return None
        size = len(chunk)
        # Its first line end is the byte before the last one (memchr, where a count
        # would step through every byte); int needles: no TypeError made.
        if (size > self._max_line or chunk[:6] != b"data: " or chunk[-2:] != b"\n\n"
                or chunk.find(0x0A) != size - 2 or 0x0D in chunk):
            return None
        data = chunk[6:-2]
        if len(data) >= self._max_event:
            return None
        if self._errors == "strict" and not data.isascii() and not _decodes(data):
            return None  # `feed` says what is wrong
        self._last_event_id = self._id
        return data

    def feed_block(self, chunks: list[bytes]) -> Block:
        """`feed` for one read's `chunks`, with its run of plain events left undecoded.

        The relay's fast path at full speed: the run (whole `data: ...` events
        of one line each, LF-framed, as they came) is checked all at once, in
        one C pass (`scan.data_lines`) rather than a Python step per line, and
        passed on without being decoded. Chunks until the first event boundary
        (the end of an event a previous read began), and a read that is
        anything else (CR line ends, comments, other fields), are fed one by
        one, as `feed` would be: a chunk that breaks the stream ends the
        block, after the events of the chunks before it.
        """
        if self._error is not None:
            raise self._error
        before: list[Event] = []
        count = len(chunks)
        i = 0
        if self._bom_head == b"" and count and chunks[0] and chunks[0][0] != _BOM[0]:
            # A stream's first read, and no BOM: settled here, so the first
            # events can be a run too, not go through `feed` one by one.
            self._bom_head = None
        try:
            while i < count and not self._at_boundary():
                before += self.feed(chunks[i])
                i += 1
            rest = b"".join(chunks[i:] if i else chunks)
            size = len(rest)
            end = rest.rfind(b"\n\n") + 2
            run = self._plain_run(rest[:end] if end < size else rest) if end > 1 else None
            if run is None:
                while i < count:
                    before += self.feed(chunks[i])
                    i += 1
                return Block(before, None, [], None)
            self._last_event_id = self._id
        except SSEProtocolError as exc:
            return Block(before, None, [], exc)
        if end == size:  # the read ended with an event, as it mostly does
            return Block(before, run, [], None)
        try:
            return Block(before, run, self.feed(rest[end:]), None)
        except SSEProtocolError as exc:
            return Block(before, run, [], exc)

    def _at_boundary(self) -> bool:
        """Between events, past the stream's start: nothing pending."""
        return not (self._bom_head is not None or self._skip_lf or self._partial
                    or self._data or self._event)

    def _plain_run(self, raw: bytes) -> Run | None:
        """`raw` as a `Run` if it is whole `data: ...` events of one line each, within limits."""
        if len(raw) >= self._max_line or len(raw) >= self._max_event:
            return None
        lines = scan.data_lines(raw)  # one pass in C (scan.py)
        if lines is None:
            return None
        if self._errors == "strict" and not raw.isascii() and not _decodes(raw):
            return None  # `feed` says what is wrong
        return Run(raw, lines, self._id)

    def close(self) -> list[Event]:
        """End of stream: discard an unterminated event and get ready for a new stream.

        `last_event_id` and `retry` are kept, as a reconnect needs them.
        """
        if self._error is not None:
            raise self._error
        self._reset_stream()
        return []

    def _fail_line(self, size: int) -> None:
        self._error = SSEProtocolError(
            f"SSE line longer than max_line_bytes={self._max_line} "
            f"({size} bytes without a line end)"
        )
        raise self._error

    def _lines(self, block: bytes) -> list[Event]:
        """Process complete lines (`block` holds them, joined by LF)."""
        events: list[Event] = []
        check_len = len(block) > self._max_line
        data = self._data
        for line in block.split(b"\n"):
            if not line:
                # Blank line: dispatch. The id is committed even with no data.
                self._last_event_id = self._id
                if data:
                    try:
                        text = b"\n".join(data).decode("utf-8", self._errors)
                    except UnicodeDecodeError as exc:
                        self._error = SSEProtocolError(
                            f"the event stream is not valid UTF-8 ({exc.reason} at byte "
                            f"{exc.start} of an event)"
                        )
                        raise self._error from None
                    events.append(
                        Event(
                            text,
                            self._event.decode("utf-8", "replace") if self._event else "message",
                            self._id,
                        )
                    )
                    data.clear()
                    self._data_len = 0
                self._event = b""
                continue
            if check_len and len(line) > self._max_line:
                raise SSEProtocolError(
                    f"SSE line longer than max_line_bytes={self._max_line} ({len(line)} bytes)"
                )
            # The common case first: `data: ` with its one space.
            if line.startswith(b"data: "):
                value = line[6:]
                name = b"data"
            else:
                name, colon, value = line.partition(b":")
                if colon:
                    if not name:
                        continue  # comment
                    if value.startswith(b" "):
                        value = value[1:]
            if name == b"data":
                self._data_len += len(value) + 1
                if self._data_len > self._max_event:
                    raise SSEProtocolError(
                        f"SSE event data longer than max_event_bytes={self._max_event}"
                    )
                data.append(value)
            elif name == b"event":
                self._event = value
            elif name == b"id":
                if 0 not in value:
                    self._id = value.decode("utf-8", "replace")
            # bytes.isdigit() is ASCII-only and False for b"".
            elif name == b"retry" and value.isdigit():
                self._retry = int(value)
        return events


def _field_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {name} must not contain CR or LF: {value!r}")
    return value


def encode(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event frame: fields id, event, retry, then one `data:` line per line of `data`."""
    head = ""
    if id is not None:
        if "\0" in id:
            raise ValueError(f"SSE id must not contain NUL: {id!r}")
        head += f"id: {_field_value('id', id)}\n"
    if event is not None:
        head += f"event: {_field_value('event', event)}\n"
    if retry is not None:
        if retry < 0:
            raise ValueError(f"SSE retry must be >= 0: {retry}")
        head += f"retry: {int(retry)}\n"
    if "\r" in data or "\n" in data:
        data = data.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\ndata: ")
    return f"{head}data: {data}\n\n".encode()


def comment(text: str = "keep-alive") -> bytes:
    """A comment frame (a heartbeat); each line of `text` becomes one comment line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\n: ")
    return f": {text}\n\n".encode()


HEARTBEAT = comment("keep-alive")
DONE = Event(DONE_DATA)


# The event types that end a stream, besides `data: [DONE]` (DESIGN.md's wire contract).
TERMINAL_TYPES = ("error", "timeout")


def is_terminal(event: Event) -> bool:
    """Whether `event` ends its stream: `[DONE]`, or an `error` or `timeout` event."""
    kind = event.event
    return kind in TERMINAL_TYPES or (kind == "message" and event.data == DONE_DATA)


def payload(line: bytes) -> bytes:
    """The data of a run's line (`data: <payload>`)."""
    return line[6:]


# A plain one-line message event with our id: prefix (`id: <stream>.`), number, data.
_DATA_FRAME = b"%s%d\ndata: %s\n\n"
_LINE_FRAME = b"%s%d\n%s\n\n"


def data_frame(id_prefix: bytes, seq: int, data: bytes) -> bytes:
    """One plain event's frame, with its id (`<id_prefix><seq>`): what `encode` makes of it."""
    return _DATA_FRAME % (id_prefix, seq, data)


def frames_of(id_prefix: bytes, first: int, lines: list[bytes], *, apart: bool) -> list[bytes]:
    """A run's lines framed with ids from `first` on: one bytes for all (a C pass), or one
    frame each when `apart`."""
    if not apart:
        return [scan.frame(id_prefix, first, lines)]
    ids = range(first, first + len(lines))
    return [_LINE_FRAME % (id_prefix, n, line) for n, line in zip(ids, lines, strict=True)]
