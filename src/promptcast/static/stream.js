// The page's streaming client: POST /optimize-stream, read the SSE body with
// fetch + ReadableStream, and report what happens as plain callbacks.
//
// No DOM here, so node's test runner can drive it with real Response objects.
// The pieces are separate on purpose: `readEvents` turns any byte stream into
// SSE events, `classify` gives one event its meaning in our wire contract,
// and `consumeStream` runs a Response to its outcome. `runStream` POSTs with
// `"resumable": true` and, when a connection breaks before the terminal frame,
// reconnects to GET /optimize-stream/<id> with Last-Event-ID (the decisions
// are in resume.js), so the text continues with no duplicate and no gap.

import { authHeaders } from './api-key.js';
import { afterConnection, EventLedger, resumeAnswer, resumeDelay } from './resume.js';
import { SSEParser } from './sse-parser.js';

/**
 * Yield the SSE events of a byte stream as they complete.
 * Returns normally at the end of the stream; breaking out cancels the body,
 * and so does `signal` (even for a body that does not watch it, like a
 * hand-made Response), which ends the events.
 * @param {ReadableStream<Uint8Array>} body
 * @param {SSEParser} [parser]
 * @param {{onBytes?: (n: number) => void, signal?: AbortSignal}} [options]
 *   `onBytes` is called on every read, heartbeats included
 */
export async function* readEvents(body, parser = new SSEParser(), { onBytes, signal } = {}) {
  const reader = body.getReader();
  let finished = false;
  const onAbort = () => reader.cancel(signal.reason).catch(() => {});
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (signal?.aborted) {
        const err = new Error('the read was aborted');
        err.name = 'AbortError';
        throw err;
      }
      if (done) {
        finished = true;
        yield* parser.end();
        return;
      }
      if (value && value.byteLength) {
        onBytes?.(value.byteLength);
        yield* parser.feed(value);
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!finished) {
      try {
        await reader.cancel();
      } catch {
        // the stream is already errored or aborted; nothing left to release
      }
    }
    reader.releaseLock();
  }
}

function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Give one SSE event its meaning in the promptcast wire contract.
 * @param {{event: string, data: string, id: string}} ev
 * @returns {null
 *   | {kind: 'chunk', text: string, finishReason: string | null, usage: object | null}
 *   | {kind: 'done'}
 *   | {kind: 'timeout' | 'error', code: string, message: string}}
 */
export function classify(ev) {
  if (ev.event === 'timeout' || ev.event === 'error') {
    const body = parseJSON(ev.data);
    const code = body && typeof body.code === 'string' ? body.code : ev.event === 'timeout' ? 'timeout' : 'error';
    const message = body && typeof body.message === 'string' ? body.message : ev.data;
    return { kind: ev.event, code, message };
  }
  if (ev.event !== 'message') return null; // unknown event types are not ours to act on
  if (ev.data.trim() === '[DONE]') return { kind: 'done' };
  const chunk = parseJSON(ev.data);
  if (!chunk || typeof chunk !== 'object') return null;
  if (chunk.error) {
    const err = chunk.error;
    return {
      kind: 'error',
      code: typeof err.code === 'string' ? err.code : 'upstream_error',
      message: typeof err.message === 'string' ? err.message : String(err),
    };
  }
  let text = '';
  let finishReason = null;
  const choice = Array.isArray(chunk.choices) ? chunk.choices.find((c) => (c?.index ?? 0) === 0) : null;
  if (choice) {
    const content = choice.delta?.content ?? choice.text;
    if (typeof content === 'string') text = content;
    if (typeof choice.finish_reason === 'string') finishReason = choice.finish_reason;
  }
  const usage = chunk.usage && typeof chunk.usage === 'object' ? chunk.usage : null;
  return { kind: 'chunk', text, finishReason, usage };
}

/**
 * Read an /optimize-stream response to its end.
 *
 * Outcome `status` is one of:
 *  - `done`     the stream ended with `data: [DONE]`
 *  - `timeout`  an `event: timeout` frame (code, message)
 *  - `error`    an `event: error` frame or an error chunk (code, message)
 *  - `cutoff`   the body ended (or broke) without a terminal frame
 *  - `aborted`  the signal fired (the person pressed Stop)
 *
 * `ownId` tells whether the terminal frame carried an `id:` of its own: the
 * server's id-less frames (`producer_lost`, `store_unavailable`,
 * `shutting_down`) end the connection, not the stream. Since the id persists
 * across events, an event "has its own id" when it differs from the previous
 * event's on this connection (the server never repeats one).
 *
 * With a `ledger` (resume.js), events already seen on an earlier connection
 * are skipped, and a gap ends the read as `cutoff` with code `gap`, so the
 * caller resumes from the last event it has. `newEvents` counts the events
 * taken from this response.
 *
 * @param {Response} response
 * @param {{
 *   onDelta?: (text: string) => void,
 *   onUsage?: (usage: object) => void,
 *   onEvent?: (ev: object) => void,
 *   onBytes?: (n: number) => void,
 * }} [handlers]
 * @param {{signal?: AbortSignal, ledger?: EventLedger | null}} [options]
 */
export async function consumeStream(response, handlers = {}, { signal, ledger = null } = {}) {
  const parser = new SSEParser();
  const outcome = {
    status: 'cutoff',
    code: null,
    message: null,
    finishReason: null,
    lastEventId: ledger ? ledger.lastId : '',
    ownId: false,
    newEvents: 0,
  };
  let previousId = '';
  try {
    for await (const ev of readEvents(response.body, parser, { onBytes: handlers.onBytes, signal })) {
      const ownId = ev.id !== previousId;
      previousId = ev.id;
      if (ownId && ledger) {
        const verdict = ledger.accept(ev.id);
        if (verdict === 'duplicate') continue;
        if (verdict === 'gap') {
          outcome.code = 'gap';
          outcome.message = `events missing before ${ev.id} (last received: ${ledger.lastId || 'none'})`;
          break;
        }
      }
      outcome.lastEventId = ledger ? ledger.lastId : parser.lastEventId;
      outcome.newEvents += 1;
      handlers.onEvent?.(ev);
      const meaning = classify(ev);
      if (!meaning) continue;
      if (meaning.kind === 'chunk') {
        if (meaning.text) handlers.onDelta?.(meaning.text);
        if (meaning.usage) handlers.onUsage?.(meaning.usage);
        if (meaning.finishReason) outcome.finishReason = meaning.finishReason;
        continue;
      }
      outcome.status = meaning.kind;
      outcome.ownId = ownId;
      if (meaning.kind !== 'done') {
        outcome.code = meaning.code;
        outcome.message = meaning.message;
      }
      break; // exactly one terminal frame: nothing after it counts
    }
  } catch (err) {
    if (signal?.aborted || err?.name === 'AbortError') {
      outcome.status = 'aborted';
    } else {
      outcome.status = 'cutoff';
      outcome.message = err?.message ?? String(err);
    }
    return outcome;
  }
  if (outcome.status === 'cutoff' && signal?.aborted) outcome.status = 'aborted';
  return outcome;
}

/** Wait `ms`; resolves false at once if `signal` fires first. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(false);
      return;
    }
    const done = (value) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(value);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** An AbortController that also fires when `parent` does. */
function childController(parent) {
  const controller = new AbortController();
  const onAbort = () => controller.abort(parent.reason);
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener('abort', onAbort, { once: true });
  return { controller, dispose: () => parent?.removeEventListener('abort', onAbort) };
}

async function release(response) {
  try {
    await response.body?.cancel();
  } catch {
    // ignore: we only wanted to release the connection
  }
}

function isEventStream(response) {
  const type = response.headers.get('content-type') || '';
  return type.toLowerCase().startsWith('text/event-stream') && Boolean(response.body);
}

/**
 * Tell the server to stop a resumable stream's generation: `DELETE
 * /optimize-stream/<id>`, fire-and-forget, with `keepalive` so it is sent
 * even while the page unloads. Resolves true when the server accepted (202).
 * @param {string | null} streamId
 * @param {{fetch?: typeof fetch, url?: string}} [options]
 */
export function cancelStream(streamId, { fetch: fetchImpl = globalThis.fetch, url = '/optimize-stream' } = {}) {
  if (!streamId) return Promise.resolve(false);
  try {
    return Promise.resolve(
      fetchImpl(`${url}/${encodeURIComponent(streamId)}`, { method: 'DELETE', headers: authHeaders(), keepalive: true, cache: 'no-store' }),
    ).then(
      (response) => response.status === 202,
      () => false,
    );
  } catch {
    return Promise.resolve(false);
  }
}

/**
 * Start one run: POST the request (always resumable) and consume the stream,
 * resuming it when a connection breaks before the terminal frame.
 *
 * Besides the statuses of `consumeStream`, the outcome can be:
 *  - `http_error`     a non-200 answer before the stream (code, message, field, httpStatus)
 *  - `network_error`  the request never got an answer
 * and a `cutoff` after a drop carries the code `resume_failed` (every retry
 * failed within the budget), `resume_gone` (404: the server no longer has the
 * stream) or `resume_finished` (204 although this page never got the terminal
 * frame). The outcome also has `streamId` and `resumes` (reconnections that
 * the server accepted).
 *
 * @param {{
 *   fetch?: typeof fetch,
 *   url?: string,
 *   request: {prompt: string, type: string, model: string, opening: string | null},
 *   signal?: AbortSignal,
 *   resume?: {delays?: number[], budgetMs?: number, jitter?: number, random?: () => number,
 *             connectTimeoutMs?: number, stallMs?: number},
 *   wait?: (ms: number, signal?: AbortSignal) => Promise<boolean>,
 *   now?: () => number,
 *   onOpen?: (info: {streamId: string | null}) => void,
 *   onDelta?: (text: string) => void,
 *   onUsage?: (usage: object) => void,
 *   onDropped?: (info: {reason: string, attempt: number}) => void,
 *   onResumed?: (info: {resumes: number, attempt: number}) => void,
 * }} options
 */
export async function runStream({
  fetch: fetchImpl = globalThis.fetch,
  url = '/optimize-stream',
  request,
  signal,
  resume = {},
  wait = sleep,
  now = () => performance.now(),
  ...handlers
}) {
  const { connectTimeoutMs = 10_000, stallMs = 0, ...schedule } = resume;
  if (schedule.jitter === undefined) schedule.jitter = 0.2;

  // One connection: a child of the run's signal, so a stalled read (no byte,
  // not even a heartbeat, for `stallMs`) can be ended without ending the run.
  const connect = async (target, init, timeoutMs) => {
    const { controller, dispose } = childController(signal);
    let timedOut = false;
    const timer = timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          controller.abort();
        }, timeoutMs)
      : 0;
    try {
      const response = await fetchImpl(target, { ...init, signal: controller.signal, cache: 'no-store' });
      return { response, controller, dispose };
    } catch (err) {
      dispose();
      if (signal?.aborted) return { aborted: true };
      return { error: timedOut ? `no answer within ${timeoutMs / 1000} s` : (err?.message ?? String(err)) };
    } finally {
      clearTimeout(timer);
    }
  };

  const read = async ({ response, controller, dispose }, ledger) => {
    let stalled = false;
    let timer = 0;
    const arm = () => {
      if (!stallMs) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        controller.abort();
      }, stallMs);
    };
    arm();
    try {
      const outcome = await consumeStream(response, { ...handlers, onBytes: arm }, { signal: controller.signal, ledger });
      if (outcome.status === 'aborted' && !signal?.aborted) {
        outcome.status = 'cutoff';
        outcome.message = stalled ? `nothing arrived for ${stallMs / 1000} s` : outcome.message;
      }
      return outcome;
    } finally {
      clearTimeout(timer);
      dispose();
    }
  };

  const first = await connect(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...authHeaders() },
    body: JSON.stringify({ ...request, resumable: true }),
  });
  if (first.aborted) return { status: 'aborted', code: null, message: null, resumes: 0 };
  if (first.error) return { status: 'network_error', code: 'network_error', message: first.error, resumes: 0 };
  const { response } = first;
  if (!response.ok || !isEventStream(response)) {
    first.dispose();
    if (!response.ok) return { status: 'http_error', ...(await readHttpError(response)), resumes: 0 };
    const type = response.headers.get('content-type') || '';
    await release(response);
    return {
      status: 'http_error',
      httpStatus: response.status,
      code: 'bad_response',
      message: `expected text/event-stream, got ${type || 'no content type'}`,
      field: null,
      resumes: 0,
    };
  }
  const streamId = response.headers.get('x-stream-id');
  handlers.onOpen?.({ streamId });
  const ledger = new EventLedger(streamId);
  const target = `${url}/${encodeURIComponent(streamId ?? '')}`;
  let resumes = 0;
  let finishReason = null; // may arrive on an earlier connection than the terminal frame
  const result = (outcome, extra = {}) => ({
    ...outcome,
    ...extra,
    finishReason,
    lastEventId: ledger.lastId || outcome.lastEventId,
    streamId,
    resumes,
  });

  let outcome = await read(first, ledger);
  finishReason = outcome.finishReason ?? finishReason;
  // A drop episode: from a break to the next connection that delivers an
  // event. Connections that the server accepts but that break again before
  // any new event do not restart the clock, so a path that always breaks
  // still gives up within the budget.
  let episode = null;
  for (;;) {
    if (afterConnection(outcome, Boolean(streamId)) === 'finish') return result(outcome);
    if (episode === null || outcome.newEvents > 0) episode = { droppedAt: now(), attempt: 0 };
    let reason = outcome.message ?? outcome.code ?? 'the connection ended';
    handlers.onDropped?.({ reason, attempt: episode.attempt });
    let next = null;
    while (next === null) {
      const delay = resumeDelay(episode.attempt, now() - episode.droppedAt, schedule);
      if (delay === null) return result(outcome, { status: 'cutoff', code: 'resume_failed', message: reason });
      if (!(await wait(delay, signal)) || signal?.aborted) return result(outcome, { status: 'aborted', code: null, message: null });
      episode.attempt += 1;
      const headers = { Accept: 'text/event-stream', ...authHeaders() };
      if (ledger.lastId) headers['Last-Event-ID'] = ledger.lastId;
      const attempt = await connect(target, { method: 'GET', headers }, connectTimeoutMs);
      if (attempt.aborted) return result(outcome, { status: 'aborted', code: null, message: null });
      if (attempt.error) {
        reason = attempt.error;
        continue;
      }
      const answer = resumeAnswer(attempt.response.status, attempt.response.headers.get('content-type') || '');
      if (answer === 'stream') {
        next = attempt;
        resumes += 1;
        handlers.onResumed?.({ resumes, attempt: episode.attempt });
        break;
      }
      attempt.dispose();
      if (answer === 'retry') {
        reason = `HTTP ${attempt.response.status}`;
        await release(attempt.response);
        continue;
      }
      if (answer === 'finished') {
        // Only the terminal frame's id makes the server answer 204; a page
        // that had that frame would not be here, so how it ended is unknown.
        return result(outcome, {
          status: 'cutoff',
          code: 'resume_finished',
          message: 'the server says the stream already ended, but its last frame never arrived',
        });
      }
      const failure = await readHttpError(attempt.response);
      return result(outcome, { status: 'cutoff', code: answer === 'gone' ? 'resume_gone' : 'resume_failed', message: failure.message });
    }
    outcome = await read(next, ledger);
    finishReason = outcome.finishReason ?? finishReason;
  }
}

/**
 * Read the JSON error body `{"error": {"code", "message", "field"?}}` of a
 * failed request, falling back to the status line when it is not JSON.
 * @param {Response} response
 */
export async function readHttpError(response) {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // the body broke too; the status is all we have
  }
  const body = parseJSON(text);
  const err = body && typeof body === 'object' ? body.error : undefined;
  if (err && typeof err === 'object') {
    return {
      httpStatus: response.status,
      code: typeof err.code === 'string' ? err.code : `http_${response.status}`,
      message: typeof err.message === 'string' ? err.message : `HTTP ${response.status}`,
      field: typeof err.field === 'string' ? err.field : null,
    };
  }
  const detail = text.trim().slice(0, 300);
  return {
    httpStatus: response.status,
    code: `http_${response.status}`,
    message: detail || `HTTP ${response.status} ${response.statusText || ''}`.trim(),
    field: null,
  };
}

/** The result view's state for each way a run ends (`runStream`'s outcome). */
export const OUTCOME_STATE = Object.freeze({
  done: 'done',
  aborted: 'partial',
  cutoff: 'cutoff',
  timeout: 'timeout',
  error: 'error',
  http_error: 'error',
  network_error: 'error',
});
