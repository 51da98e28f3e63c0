"""The byte shapes of OpenAI's streamed chunks: which ones can pass through unparsed.

A relay passes most of a stream's chunks on as the upstream wrote them, without
parsing their JSON: those that are plain content (one choice, not finished, no
usage, no error). These checks look at the bytes only, conservatively: any
doubt sends a chunk through the full parse (`openai_compat._OpenAIStream._parse`).
"""

from __future__ import annotations

from promptcast.wire import scan
from promptcast.wire.sse import Run, payload

# How many chunks at the end of a run may be parsed while the rest passes on
# unparsed: a stream's finish chunk, its usage chunk and `[DONE]`. A stream
# that ends with more odd ones takes the event-by-event path, as it did.
MAX_PARSED_TAIL = 3


def plain_head(run: Run) -> tuple[Run | None, list[bytes]]:
    """`run`, or its start before up to 3 odd last chunks if that start is plain; else None.
    Also the lines after it, to be parsed.

    At full speed a stream's last read holds its finish (and usage) chunks
    after hundreds of plain ones: only those few are parsed, not the read. A
    run with an odd chunk anywhere else goes event by event, as before.
    """
    if plain_run(run):
        return run, []
    lines = run.lines
    count = len(lines)
    tail = 0
    while (tail < MAX_PARSED_TAIL and tail < count - 1
           and not plain_content(payload(lines[count - tail - 1]))):
        tail += 1
    # One more scan of the run only when it looks like a stream's end: a plain
    # first chunk, odd last ones (a stream that is never plain pays nothing).
    if tail == 0 or not plain_content(payload(lines[0])):
        return None, lines
    rest = lines[count - tail:]
    cut = len(run.raw) - sum(len(line) + 2 for line in rest)
    head = Run(run.raw[:cut], lines[:count - tail], run.id)
    return (head, rest) if plain_run(head) else (None, lines)


def plain_run(run: Run) -> bool:
    """`_plain_content` of every event of `run`, by C loops over all of them at once."""
    # A run's events are one `data: ` line each: so each line ends the way a
    # plain chunk does when there are as many such ends as lines, and each
    # starts with `{` when the least and the greatest of them do (the lines
    # with a given start are one stretch of the byte order).
    # The searches are `memmem` passes in C (scan.py): CPython's own search for
    # a needle this long in a long buffer is a scalar loop.
    lines, raw = run.lines, run.raw
    events = len(lines)
    return (min(lines)[:7] == b"data: {" and max(lines)[:7] == b"data: {"
            and scan.count(raw, b'"finish_reason":null}]}\n\n') == events
            and scan.count(raw, b'"finish_reason"') == events
            and not scan.contains(raw, b'"error"') and not scan.contains(raw, b'"usage":{'))


def plain_content(data: bytes) -> bool:
    """Whether a message event's data can be passed on unparsed: one choice, not finished,
    no usage, no error.

    Conservative: any doubt (another key order, spacing, several choices, the
    word `"error"` in the text) sends the chunk through the full parse. Like
    the split gateway, it relays such a chunk's JSON text without checking it.
    """
    # OpenAI's own shape first: `choices` last, its one choice ending the object.
    # One line only: a relay frames pass-through data as one `data:` line. A
    # `usage` goes through the parse, which drops it when the client did not ask.
    return (data[:1] == b"{" and data.endswith(b'"finish_reason":null}]}')
            # Not bytes `in` (it makes and drops a TypeError each: relay.Relay.data).
            and data.count(b'"finish_reason"') == 1 and not scan.contains(data, b'"error"')
            and 0x0A not in data and not scan.contains(data, b'"usage":{'))
