// One chat completion streamed from POST /v1/chat/completions: what a try
// column runs. An ordinary stream through the same relay as a rewrite (same
// timeouts, heartbeats and terminal frames) but not resumable: Stop, or the
// tab closing, ends the connection, and the server cancels the upstream.
//
// No DOM here; node's test runner drives it with real Response objects.

import { authHeaders } from './api-key.js';
import { consumeStream, readHttpError } from './stream.js';

/**
 * The messages of a try: the prompt as the system message, the opening line
 * as the bot's first turn, then the conversation so far.
 * @param {string} system the prompt, its variables filled
 * @param {string | null} opening
 * @param {{role: 'user' | 'assistant', content: string}[]} turns
 */
export function tryMessages(system, opening, turns) {
  const messages = [{ role: 'system', content: system }];
  if (opening) messages.push({ role: 'assistant', content: opening });
  for (const turn of turns) messages.push({ role: turn.role, content: turn.content });
  return messages;
}

/**
 * Stream one chat completion. Resolves to the outcome of `consumeStream`
 * (`done`, `timeout`, `error`, `cutoff`, `aborted`), or `http_error` (code,
 * message, field, httpStatus) / `network_error` when it never started.
 * @param {{
 *   fetch?: typeof fetch,
 *   url?: string,
 *   model: string,
 *   messages: {role: string, content: string}[],
 *   signal?: AbortSignal,
 *   onOpen?: (info: {streamId: string | null}) => void,
 *   onDelta?: (text: string) => void,
 *   onUsage?: (usage: object) => void,
 *   kind?: string,
 * }} options `kind`: what the library's run record calls it ("try": a try column)
 */
export async function runChat({ fetch: fetchImpl = globalThis.fetch, url = '/v1/chat/completions', model, messages, signal, kind = 'try', ...handlers }) {
  let response;
  try {
    response = await fetchImpl(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...authHeaders() },
      // OpenAI's `metadata` tags: the server records the run under this kind.
      body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true }, metadata: { promptcast_kind: kind } }),
      signal,
      cache: 'no-store',
    });
  } catch (err) {
    if (signal?.aborted) return { status: 'aborted', code: null, message: null };
    return { status: 'network_error', code: 'network_error', message: err?.message ?? String(err) };
  }
  if (!response.ok) return { status: 'http_error', ...(await readHttpError(response)) };
  handlers.onOpen?.({ streamId: response.headers.get('x-stream-id') });
  return consumeStream(response, handlers, { signal });
}
