// An incremental Server-Sent Events parser: bytes in, events out.
//
// Follows the WHATWG HTML "event stream interpretation" rules (see
// shared/SSE-NOTES.md): UTF-8 whatever the charset says, one leading BOM
// stripped, CR / LF / CRLF line ends (a CR ending one read and an LF starting
// the next are one line end), comments, fields with and without a colon,
// `id` persisting across events, `retry` with ASCII digits only, and an
// unterminated event discarded at the end of the stream.
//
// Pure: no DOM, no I/O. Feed it Uint8Array chunks (or strings, already
// decoded) and it returns the events that completed, shaped
// `{event, data, id}` where `id` is the last-event-id buffer at dispatch.

const CR = 13;
const LF = 10;
const COLON = 58;
const SPACE = 32;

/** The longest line (and the largest data buffer) accepted, in UTF-16 units. */
export const DEFAULT_MAX_LINE = 16 * 1024 * 1024;

export class SSELineTooLong extends Error {
  constructor(limit) {
    super(`event stream line longer than ${limit} characters`);
    this.name = 'SSELineTooLong';
    this.limit = limit;
  }
}

export class SSEParser {
  /**
   * @param {{maxLine?: number}} [options]
   */
  constructor({ maxLine = DEFAULT_MAX_LINE } = {}) {
    // ignoreBOM: false (the default) makes the decoder drop exactly one
    // leading BOM, even when its bytes arrive in separate reads.
    this._decoder = new TextDecoder('utf-8');
    this._maxLine = maxLine;
    this._pending = ''; // the start of a line whose end has not arrived
    this._skipLF = false; // the previous text ended with CR
    this._data = '';
    this._hasData = false;
    this._type = '';
    this._closed = false;
    this._started = false; // any text seen yet (for the BOM of string input)
    /** The last-event-id buffer (persists across events). */
    this.lastEventId = '';
    /** The reconnection time the stream asked for, in ms, or null. */
    this.retry = null;
  }

  /**
   * Feed one chunk of the stream.
   * @param {Uint8Array | ArrayBuffer | string} chunk
   * @returns {{event: string, data: string, id: string}[]}
   */
  feed(chunk) {
    if (this._closed) throw new Error('SSEParser.feed() after end()');
    let text;
    if (typeof chunk === 'string') {
      text = !this._started && chunk.charCodeAt(0) === 0xfeff ? chunk.slice(1) : chunk;
    } else {
      text = this._decoder.decode(chunk instanceof ArrayBuffer ? new Uint8Array(chunk) : chunk, { stream: true });
    }
    if (text.length > 0) this._started = true;
    const events = [];
    this._consume(text, events);
    return events;
  }

  /**
   * Mark the end of the stream. Flushes the decoder (a truncated character
   * becomes U+FFFD) and discards any event that lacks its blank line.
   * @returns {{event: string, data: string, id: string}[]}
   */
  end() {
    if (this._closed) return [];
    const events = [];
    this._consume(this._decoder.decode(), events);
    this._closed = true;
    this._pending = '';
    this._data = '';
    this._hasData = false;
    this._type = '';
    return events;
  }

  _consume(text, events) {
    let start = 0;
    const n = text.length;
    if (this._skipLF && n > 0) {
      if (text.charCodeAt(0) === LF) start = 1;
      this._skipLF = false;
    }
    let i = start;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== CR && c !== LF) {
        i++;
        continue;
      }
      const line = this._pending === '' ? text.slice(start, i) : this._pending + text.slice(start, i);
      this._pending = '';
      this._checkLength(line.length);
      this._line(line, events);
      if (c === CR) {
        if (i + 1 < n) {
          if (text.charCodeAt(i + 1) === LF) i++;
        } else {
          this._skipLF = true;
        }
      }
      i++;
      start = i;
    }
    if (start < n) {
      this._pending += text.slice(start);
      this._checkLength(this._pending.length);
    }
  }

  _checkLength(length) {
    if (length > this._maxLine) throw new SSELineTooLong(this._maxLine);
  }

  _line(line, events) {
    if (line === '') {
      this._dispatch(events);
      return;
    }
    if (line.charCodeAt(0) === COLON) return; // comment (heartbeat)
    const colon = line.indexOf(':');
    let field;
    let value;
    if (colon === -1) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      const from = line.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1;
      value = line.slice(from);
    }
    switch (field) {
      case 'event':
        this._type = value;
        break;
      case 'data':
        this._data += value + '\n';
        this._hasData = true;
        this._checkLength(this._data.length);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retry = Number.parseInt(value, 10);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  _dispatch(events) {
    if (!this._hasData) {
      this._type = '';
      return;
    }
    const data = this._data.endsWith('\n') ? this._data.slice(0, -1) : this._data;
    events.push({ event: this._type === '' ? 'message' : this._type, data, id: this.lastEventId });
    this._data = '';
    this._hasData = false;
    this._type = '';
  }
}

/**
 * Parse a whole stream at once (handy in tests and for small bodies).
 * @param {Uint8Array | string} input
 */
export function parseAll(input) {
  const parser = new SSEParser();
  return [...parser.feed(input), ...parser.end()];
}
