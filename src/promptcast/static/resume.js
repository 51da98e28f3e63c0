// Resuming a dropped stream: the pure decisions, kept apart from the I/O in
// stream.js so node's test runner can check each one with fakes.
//
// The server's contract (issue 4): a stream POSTed with `"resumable": true`
// carries `X-Stream-Id: <id>` and `id: <id>.<n>` on every stored event (n
// counts from 1). `GET /optimize-stream/<id>` with `Last-Event-ID: <id>.<n>`
// replays everything after n, then follows the live tail to the same terminal
// frame; 204 once the terminal frame was delivered; 404 once the stream is
// gone. A frame WITHOUT an id of its own (`producer_lost`, `store_unavailable`,
// `shutting_down`) is about the connection, not part of the stream.

/** Delays between reconnect attempts (ms): doubling, then steady at the last. */
export const RESUME_DELAYS = [500, 1000, 2000, 4000];
/** Give up once this long has passed since the connection dropped (the server's grace period). */
export const RESUME_BUDGET_MS = 30_000;
/** Codes of id-less error frames that end only the connection: try again. */
export const TRANSIENT_CODES = new Set(['shutting_down', 'store_unavailable']);
/** HTTP statuses of a resume request that are worth another try. */
const RETRY_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * How long to wait before reconnect attempt number `attempt` (0-based), or
 * null to give up because the attempt would start past the budget.
 * `random` in [0, 1) spreads many clients' retries (jitter shortens a delay
 * by up to that fraction), so a replica's crash does not bring them all back
 * in the same millisecond.
 * @param {number} attempt
 * @param {number} elapsedMs time since the connection dropped
 * @param {{delays?: number[], budgetMs?: number, jitter?: number, random?: () => number}} [options]
 * @returns {number | null}
 */
export function resumeDelay(attempt, elapsedMs, { delays = RESUME_DELAYS, budgetMs = RESUME_BUDGET_MS, jitter = 0, random = Math.random } = {}) {
  const base = delays[Math.min(attempt, delays.length - 1)];
  const delay = Math.round(base * (1 - jitter * random()));
  if (elapsedMs + delay > budgetMs) return null;
  return delay;
}

/** The whole schedule (ms after the drop at which each attempt starts), ignoring request time. */
export function resumeSchedule(options = {}) {
  const times = [];
  let at = 0;
  for (let attempt = 0; ; attempt++) {
    const delay = resumeDelay(attempt, at, { ...options, jitter: 0 });
    if (delay === null) return times;
    at += delay;
    times.push(at);
  }
}

/**
 * The sequence number in an event id `<streamId>.<n>`, or null when the id is
 * not one of this stream's.
 * @param {string} id
 * @param {string | null} streamId
 */
export function eventSeq(id, streamId) {
  if (!id || !streamId) return null;
  const dot = id.lastIndexOf('.');
  if (dot < 0 || id.slice(0, dot) !== streamId) return null;
  const tail = id.slice(dot + 1);
  if (!/^[0-9]{1,15}$/.test(tail)) return null;
  return Number(tail);
}

/**
 * What the page has of one stream across its connections: the last event id
 * (for Last-Event-ID), and its sequence number, to drop what a replay sends
 * twice and to notice a gap.
 */
export class EventLedger {
  /** @param {string | null} streamId */
  constructor(streamId = null) {
    this.streamId = streamId;
    this.lastId = '';
    this.lastSeq = 0;
  }

  /**
   * Judge an event that carried an id of its own.
   *  - `new`        the next event: take it (and remember its id)
   *  - `duplicate`  already taken: skip it
   *  - `gap`        events are missing before it: do not take it, resume from lastId
   *  - `unnumbered` not an id of this stream (an older server): take it, nothing to check
   * @param {string} id
   * @returns {'new' | 'duplicate' | 'gap' | 'unnumbered'}
   */
  accept(id) {
    const seq = eventSeq(id, this.streamId);
    if (seq === null) return 'unnumbered';
    if (seq <= this.lastSeq) return 'duplicate';
    if (seq !== this.lastSeq + 1) return 'gap';
    this.lastSeq = seq;
    this.lastId = id;
    return 'new';
  }
}

/**
 * After one connection's outcome (from consumeStream), what next:
 *  - `finish`  the outcome stands (a terminal frame, a stop, or nothing to resume)
 *  - `resume`  reconnect with Last-Event-ID
 * An id-less `event: error` is the connection's, not the stream's: the
 * transient codes are retried, `producer_lost` (the generation is gone) and
 * any other code stand.
 * @param {{status: string, code?: string | null, ownId?: boolean}} outcome
 * @param {boolean} resumable the server gave a stream id
 * @returns {'finish' | 'resume'}
 */
export function afterConnection(outcome, resumable) {
  if (!resumable) return 'finish';
  switch (outcome.status) {
    case 'cutoff':
      return 'resume';
    case 'error':
      return outcome.ownId === false && TRANSIENT_CODES.has(outcome.code) ? 'resume' : 'finish';
    default:
      return 'finish';
  }
}

/**
 * The meaning of the answer to `GET /optimize-stream/<id>`:
 *  - `stream`    200 with an event stream: read it
 *  - `finished`  204: the terminal frame was already delivered
 *  - `gone`      404: the server no longer has the stream
 *  - `retry`     a passing failure (5xx, 429, 408, ...): try again
 *  - `fail`      anything else (a 4xx that will not change)
 * @param {number} status
 * @param {string} [contentType]
 */
export function resumeAnswer(status, contentType = '') {
  if (status === 200) return contentType.toLowerCase().startsWith('text/event-stream') ? 'stream' : 'retry';
  if (status === 204) return 'finished';
  if (status === 404 || status === 410) return 'gone';
  if (RETRY_STATUSES.has(status)) return 'retry';
  return 'fail';
}
