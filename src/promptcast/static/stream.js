// The page's streaming client: POST /optimize-stream, read the SSE body with
// fetch + ReadableStream, and report what happens as plain callbacks.
//
// No DOM here, so node's test runner can drive it with real Response objects.
// The pieces are separate on purpose: `readEvents` turns any byte stream into
// SSE events, `classify` gives one event its meaning in our wire contract,
// and `consumeStream` runs a Response to its outcome. Resuming a dropped
// stream (GET /optimize-stream/<id> with Last-Event-ID) can reuse all three.

import { SSEParser } from './sse-parser.js';

/**
 * Yield the SSE events of a byte stream as they complete.
 * Returns normally at the end of the stream; breaking out cancels the body.
 * @param {ReadableStream<Uint8Array>} body
 * @param {SSEParser} [parser]
 */
export async function* readEvents(body, parser = new SSEParser()) {
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        finished = true;
        yield* parser.end();
        return;
      }
      if (value && value.byteLength) yield* parser.feed(value);
    }
  } finally {
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
 * @param {Response} response
 * @param {{
 *   onDelta?: (text: string) => void,
 *   onUsage?: (usage: object) => void,
 *   onEvent?: (ev: object) => void,
 * }} [handlers]
 * @param {{signal?: AbortSignal}} [options]
 */
export async function consumeStream(response, handlers = {}, { signal } = {}) {
  const parser = new SSEParser();
  const outcome = { status: 'cutoff', code: null, message: null, finishReason: null, lastEventId: '' };
  try {
    for await (const ev of readEvents(response.body, parser)) {
      outcome.lastEventId = parser.lastEventId;
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

/**
 * Start one run: POST the request and consume the stream.
 *
 * Besides the statuses of `consumeStream`, the outcome can be:
 *  - `http_error`     a non-200 answer before the stream (code, message, field, httpStatus)
 *  - `network_error`  the request never got an answer
 *
 * @param {{
 *   fetch?: typeof fetch,
 *   url?: string,
 *   request: {prompt: string, type: string, model: string, opening: string | null},
 *   signal?: AbortSignal,
 *   onOpen?: (info: {streamId: string | null}) => void,
 *   onDelta?: (text: string) => void,
 *   onUsage?: (usage: object) => void,
 * }} options
 */
export async function runStream({ fetch: fetchImpl = globalThis.fetch, url = '/optimize-stream', request, signal, ...handlers }) {
  let response;
  try {
    response = await fetchImpl(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify(request),
      signal,
      cache: 'no-store',
    });
  } catch (err) {
    if (signal?.aborted || err?.name === 'AbortError') return { status: 'aborted', code: null, message: null };
    return { status: 'network_error', code: 'network_error', message: err?.message ?? String(err) };
  }
  if (!response.ok) return { status: 'http_error', ...(await readHttpError(response)) };
  const type = response.headers.get('content-type') || '';
  if (!type.toLowerCase().startsWith('text/event-stream') || !response.body) {
    try {
      await response.body?.cancel();
    } catch {
      // ignore: we only wanted to release the connection
    }
    return {
      status: 'http_error',
      httpStatus: response.status,
      code: 'bad_response',
      message: `expected text/event-stream, got ${type || 'no content type'}`,
      field: null,
    };
  }
  const streamId = response.headers.get('x-stream-id');
  handlers.onOpen?.({ streamId });
  const outcome = await consumeStream(response, handlers, { signal });
  return { ...outcome, streamId };
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
