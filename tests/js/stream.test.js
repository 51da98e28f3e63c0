// The streaming client with real WHATWG Response objects (node's fetch types):
// deltas in order, every terminal frame, cut-off streams, HTTP errors, abort.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { classify, consumeStream, readEvents, runStream } from '../../src/promptcast/static/stream.js';

const enc = new TextEncoder();

function chunk(content, extra = {}) {
  return JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
    ...extra,
  });
}

/** A Response whose body yields `parts` (strings or byte arrays) one read each. */
function sseResponse(parts, { status = 200, headers = {}, error = null } = {}) {
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (i < parts.length) {
        const p = parts[i++];
        controller.enqueue(typeof p === 'string' ? enc.encode(p) : p);
      } else if (error) {
        controller.error(error);
      } else {
        controller.close();
      }
    },
  });
  return new Response(body, {
    status,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'x-stream-id': 'k3j9x2', ...headers },
  });
}

function collect() {
  const deltas = [];
  const usages = [];
  return { deltas, usages, handlers: { onDelta: (t) => deltas.push(t), onUsage: (u) => usages.push(u) } };
}

describe('classify', () => {
  test('a content chunk', () => {
    assert.deepEqual(classify({ event: 'message', data: chunk('首先'), id: 'a.1' }), {
      kind: 'chunk',
      text: '首先',
      finishReason: null,
      usage: null,
    });
  });

  test('a usage chunk with no choices', () => {
    const got = classify({ event: 'message', data: JSON.stringify({ choices: [], usage: { completion_tokens: 7 } }), id: '' });
    assert.deepEqual(got, { kind: 'chunk', text: '', finishReason: null, usage: { completion_tokens: 7 } });
  });

  test('[DONE]', () => {
    assert.deepEqual(classify({ event: 'message', data: '[DONE]', id: '' }), { kind: 'done' });
  });

  test('timeout and error frames', () => {
    assert.deepEqual(classify({ event: 'timeout', data: '{"code":"timeout","message":"no token for 30 s"}', id: '' }), {
      kind: 'timeout',
      code: 'timeout',
      message: 'no token for 30 s',
    });
    assert.deepEqual(classify({ event: 'error', data: '{"code":"upstream_error","message":"boom"}', id: '' }), {
      kind: 'error',
      code: 'upstream_error',
      message: 'boom',
    });
    assert.deepEqual(classify({ event: 'error', data: 'not json', id: '' }), { kind: 'error', code: 'error', message: 'not json' });
  });

  test('an error object inside a data chunk', () => {
    assert.deepEqual(classify({ event: 'message', data: '{"error":{"message":"quota"}}', id: '' }), {
      kind: 'error',
      code: 'upstream_error',
      message: 'quota',
    });
  });

  test('unknown events and non-JSON data are ignored', () => {
    assert.equal(classify({ event: 'ping', data: '{}', id: '' }), null);
    assert.equal(classify({ event: 'message', data: 'hello', id: '' }), null);
  });

  test('finish_reason is reported', () => {
    const data = JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'length' }] });
    assert.equal(classify({ event: 'message', data, id: '' }).finishReason, 'length');
  });
});

describe('consumeStream', () => {
  test('deltas in order, usage, then done', async () => {
    const { deltas, usages, handlers } = collect();
    const response = sseResponse([
      ': keep-alive\n\n',
      `id: k.1\ndata: ${chunk('你')}\n\n`,
      `id: k.2\ndata: ${chunk('好')}\n\nid: k.3\ndata: {"choices":[],"usage":{"completion_tokens":2}}\n\n`,
      'id: k.4\ndata: [DONE]\n\n',
    ]);
    const outcome = await consumeStream(response, handlers);
    assert.equal(outcome.status, 'done');
    assert.equal(outcome.lastEventId, 'k.4');
    assert.deepEqual(deltas, ['你', '好']);
    assert.deepEqual(usages, [{ completion_tokens: 2 }]);
  });

  test('UTF-8 bytes of one character split across reads arrive whole', async () => {
    const { deltas, handlers } = collect();
    const bytes = enc.encode(`data: ${chunk('流式输出')}\n\ndata: [DONE]\n\n`);
    const parts = [];
    for (let i = 0; i < bytes.length; i += 5) parts.push(bytes.subarray(i, i + 5));
    const outcome = await consumeStream(sseResponse(parts), handlers);
    assert.equal(outcome.status, 'done');
    assert.equal(deltas.join(''), '流式输出');
  });

  test('a stream that ends without a terminal frame is cut off', async () => {
    const { deltas, handlers } = collect();
    const outcome = await consumeStream(sseResponse([`data: ${chunk('a')}\n\n`, `data: ${chunk('b')}`]), handlers);
    assert.equal(outcome.status, 'cutoff');
    assert.deepEqual(deltas, ['a']);
  });

  test('a body that errors mid-way is cut off, not complete', async () => {
    const { deltas, handlers } = collect();
    const outcome = await consumeStream(sseResponse([`data: ${chunk('a')}\n\n`], { error: new TypeError('network') }), handlers);
    assert.equal(outcome.status, 'cutoff');
    assert.equal(outcome.message, 'network');
    assert.deepEqual(deltas, ['a']);
  });

  test('timeout frame', async () => {
    const outcome = await consumeStream(
      sseResponse([`data: ${chunk('a')}\n\nevent: timeout\ndata: {"code":"timeout","message":"too slow"}\n\n`]),
    );
    assert.deepEqual([outcome.status, outcome.code, outcome.message], ['timeout', 'timeout', 'too slow']);
  });

  test('error frame', async () => {
    const outcome = await consumeStream(sseResponse(['event: error\ndata: {"code":"upstream_error","message":"503"}\n\n']));
    assert.deepEqual([outcome.status, outcome.code, outcome.message], ['error', 'upstream_error', '503']);
  });

  test('nothing after the terminal frame counts', async () => {
    const { deltas, handlers } = collect();
    const outcome = await consumeStream(sseResponse([`data: [DONE]\n\ndata: ${chunk('late')}\n\n`]), handlers);
    assert.equal(outcome.status, 'done');
    assert.deepEqual(deltas, []);
  });

  test('aborting ends the read with status aborted', async () => {
    const controller = new AbortController();
    const body = new ReadableStream({
      start(c) {
        c.enqueue(enc.encode(`data: ${chunk('a')}\n\n`));
        controller.signal.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
      },
    });
    const response = new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    const { deltas, handlers } = collect();
    const pending = consumeStream(response, { ...handlers, onDelta: (t) => { deltas.push(t); controller.abort(); } }, { signal: controller.signal });
    const outcome = await pending;
    assert.equal(outcome.status, 'aborted');
    assert.deepEqual(deltas, ['a']);
  });
});

describe('readEvents', () => {
  test('breaking out cancels the body', async () => {
    let cancelled = false;
    const body = new ReadableStream({
      start(c) {
        c.enqueue(enc.encode('data: 1\n\ndata: 2\n\n'));
      },
      cancel() {
        cancelled = true;
      },
    });
    for await (const ev of readEvents(body)) {
      assert.equal(ev.data, '1');
      break;
    }
    assert.ok(cancelled);
  });
});

describe('runStream', () => {
  test('posts JSON with Accept: text/event-stream and reports the stream id', async () => {
    let seen;
    const fetch = async (url, init) => {
      seen = { url, init };
      return sseResponse([`data: ${chunk('ok')}\n\ndata: [DONE]\n\n`]);
    };
    const opened = [];
    const request = { prompt: 'p', type: 'optimize', model: 'local', opening: null };
    const outcome = await runStream({ fetch, request, onOpen: (info) => opened.push(info) });
    assert.equal(seen.url, '/optimize-stream');
    assert.equal(seen.init.method, 'POST');
    assert.equal(seen.init.headers.Accept, 'text/event-stream');
    assert.equal(seen.init.headers['Content-Type'], 'application/json');
    assert.deepEqual(JSON.parse(seen.init.body), { ...request, resumable: true });
    assert.deepEqual(opened, [{ streamId: 'k3j9x2' }]);
    assert.equal(outcome.status, 'done');
    assert.equal(outcome.streamId, 'k3j9x2');
  });

  test('an HTTP error before the stream carries code, message and field', async () => {
    const fetch = async () =>
      new Response(JSON.stringify({ error: { code: 'model_unavailable', message: 'set DASHSCOPE_API_KEY', field: 'model' } }), {
        status: 400,
        headers: { 'content-type': 'application/json' },
      });
    const outcome = await runStream({ fetch, request: {} });
    assert.equal(outcome.status, 'http_error');
    assert.equal(outcome.httpStatus, 400);
    assert.equal(outcome.code, 'model_unavailable');
    assert.equal(outcome.message, 'set DASHSCOPE_API_KEY');
    assert.equal(outcome.field, 'model');
  });

  test('an HTTP error without a JSON body falls back to its text', async () => {
    const fetch = async () => new Response('Bad Gateway', { status: 502, statusText: 'Bad Gateway' });
    const outcome = await runStream({ fetch, request: {} });
    assert.deepEqual([outcome.status, outcome.code, outcome.message, outcome.field], ['http_error', 'http_502', 'Bad Gateway', null]);
  });

  test('a 200 that is not an event stream is an error, not an empty result', async () => {
    const fetch = async () => new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } });
    const outcome = await runStream({ fetch, request: {} });
    assert.equal(outcome.status, 'http_error');
    assert.equal(outcome.code, 'bad_response');
  });

  test('a network failure', async () => {
    const fetch = async () => {
      throw new TypeError('Failed to fetch');
    };
    const outcome = await runStream({ fetch, request: {} });
    assert.deepEqual([outcome.status, outcome.message], ['network_error', 'Failed to fetch']);
  });

  test('an abort before the answer', async () => {
    const controller = new AbortController();
    const fetch = (_url, init) =>
      new Promise((_resolve, reject) => {
        init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      });
    const pending = runStream({ fetch, request: {}, signal: controller.signal });
    controller.abort();
    assert.equal((await pending).status, 'aborted');
  });
});
