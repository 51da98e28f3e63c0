// A try column's stream: the messages it sends and how its answer is read.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { setApiKey } from '../../src/promptcast/static/api-key.js';
import { runChat, tryMessages } from '../../src/promptcast/static/chat-stream.js';

const enc = new TextEncoder();

function chunk(content) {
  return JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] });
}

function sse(parts, init = {}) {
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (i < parts.length) controller.enqueue(enc.encode(parts[i++]));
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8', 'x-stream-id': 'abc' }, ...init });
}

describe('tryMessages', () => {
  test('system, the opening as the bot’s first turn, then the conversation', () => {
    assert.deepEqual(tryMessages('你是客服。', '您好！', [{ role: 'user', content: '能退款吗？' }]), [
      { role: 'system', content: '你是客服。' },
      { role: 'assistant', content: '您好！' },
      { role: 'user', content: '能退款吗？' },
    ]);
    assert.deepEqual(
      tryMessages('S', null, [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
        { role: 'user', content: 'c' },
      ]).map((m) => m.role),
      ['system', 'user', 'assistant', 'user'],
    );
  });
});

describe('runChat', () => {
  test('POSTs a streaming chat completion and reads the answer to [DONE]', async () => {
    const calls = [];
    const deltas = [];
    const fetch = async (url, init) => {
      calls.push([url, init]);
      return sse([`data: ${chunk('你')}\n\n`, `data: ${chunk('好')}\n\n: keep-alive\n\n`, 'data: [DONE]\n\n']);
    };
    const outcome = await runChat({ fetch, model: 'qwen-max', messages: [{ role: 'user', content: 'hi' }], onDelta: (t) => deltas.push(t) });
    assert.equal(outcome.status, 'done');
    assert.deepEqual(deltas, ['你', '好']);
    const [url, init] = calls[0];
    assert.equal(url, '/v1/chat/completions');
    assert.equal(init.method, 'POST');
    assert.deepEqual(JSON.parse(init.body), {
      model: 'qwen-max',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
      metadata: { promptcast_kind: 'try' },
    });
    assert.equal(init.headers.Authorization, undefined);
  });

  test('carries the page’s API key, and its run kind', async () => {
    setApiKey('k-try');
    try {
      let seen = null;
      const fetch = async (url, init) => {
        seen = init;
        return sse(['data: [DONE]\n\n']);
      };
      await runChat({ fetch, model: 'm', messages: [], kind: 'chat' });
      assert.equal(seen.headers.Authorization, 'Bearer k-try');
      assert.deepEqual(JSON.parse(seen.body).metadata, { promptcast_kind: 'chat' });
    } finally {
      setApiKey(null);
    }
  });

  test('a mid-stream error chunk (OpenAI’s shape on /v1) is an error', async () => {
    const fetch = async () => sse([`data: ${chunk('部分')}\n\n`, 'data: {"error": {"code": "upstream_error", "message": "dropped"}}\n\n']);
    const outcome = await runChat({ fetch, model: 'm', messages: [] });
    assert.equal(outcome.status, 'error');
    assert.equal(outcome.message, 'dropped');
  });

  test('an HTTP error names its field', async () => {
    const fetch = async () =>
      new Response(JSON.stringify({ error: { code: 'model_not_found', message: "unknown model 'x'", field: 'model' } }), {
        status: 404,
        headers: { 'content-type': 'application/json' },
      });
    const outcome = await runChat({ fetch, model: 'x', messages: [] });
    assert.deepEqual([outcome.status, outcome.httpStatus, outcome.code, outcome.field], ['http_error', 404, 'model_not_found', 'model']);
  });

  test('a body that ends without [DONE] is cut off; abort and network errors are told apart', async () => {
    assert.equal((await runChat({ fetch: async () => sse([`data: ${chunk('x')}\n\n`]), model: 'm', messages: [] })).status, 'cutoff');
    const controller = new AbortController();
    controller.abort();
    const aborted = await runChat({
      fetch: async () => {
        throw new DOMException('aborted', 'AbortError');
      },
      model: 'm',
      messages: [],
      signal: controller.signal,
    });
    assert.equal(aborted.status, 'aborted');
    const down = await runChat({
      fetch: async () => {
        throw new TypeError('Failed to fetch');
      },
      model: 'm',
      messages: [],
    });
    assert.deepEqual([down.status, down.message], ['network_error', 'Failed to fetch']);
  });
});
