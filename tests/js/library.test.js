import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { getApiKey, setApiKey } from '../../src/promptcast/static/api-key.js';
import { HistoryStore } from '../../src/promptcast/static/history.js';
import { LibraryApi, LibraryError, runToHistoryEntry } from '../../src/promptcast/static/library-api.js';

function json(status, body, headers = {}) {
  return new Response(body === null ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

class FakeStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

const RUN = {
  id: 'abc123',
  kind: 'optimize',
  model: 'qwen-max',
  mode: 'expand',
  request: { prompt: '你是客服', type: 'expand', model: 'qwen-max', opening: '您好' },
  outcome: 'done',
  text: '你是一名客服',
  usage: { prompt_tokens: 10, completion_tokens: 4 },
  ttft_ms: 120.5,
  duration_ms: 900,
  created_at: '2026-12-08T10:00:00.000000Z',
};

describe('LibraryApi', () => {
  test('sends the key, JSON, and reads the ETag', async () => {
    setApiKey('k-1');
    const seen = [];
    const api = new LibraryApi({
      fetch: async (url, init) => {
        seen.push([url, init]);
        return json(200, { id: 'p1' }, { ETag: '"r3"' });
      },
    });
    const { data, etag } = await api.call('PATCH', '/api/prompts/p1', { body: { name: 'n' }, headers: { 'If-Match': '"r2"' } });
    assert.deepEqual(data, { id: 'p1' });
    assert.equal(etag, '"r3"');
    const [url, init] = seen[0];
    assert.equal(url, '/api/prompts/p1');
    assert.equal(init.headers.Authorization, 'Bearer k-1');
    assert.equal(init.headers['If-Match'], '"r2"');
    assert.equal(init.body, '{"name":"n"}');
    setApiKey(null);
    assert.equal(getApiKey(), null);
  });

  test('asks for a key on 401 and 403 until one works or none is given', async () => {
    const answers = [json(401, { error: { code: 'unauthorized', message: 'key' } }), json(403, { error: { code: 'forbidden', message: 'bad' } }), json(200, { ok: true })];
    const asked = [];
    const api = new LibraryApi({
      fetch: async () => answers.shift(),
      onUnauthorized: async (status) => {
        asked.push(status);
        setApiKey(`key-${asked.length}`);
        return true;
      },
    });
    assert.deepEqual((await api.call('GET', '/api/library')).data, { ok: true });
    assert.deepEqual(asked, [401, 403]);
    const refused = new LibraryApi({ fetch: async () => json(401, { error: { code: 'unauthorized', message: 'key' } }), onUnauthorized: async () => false });
    await assert.rejects(refused.call('GET', '/api/library'), (err) => err instanceof LibraryError && err.status === 401);
    setApiKey(null);
  });

  test('errors carry the status, code, message and field', async () => {
    const api = new LibraryApi({ fetch: async () => json(422, { error: { code: 'invalid_request', message: '`name` is empty', field: 'name' } }) });
    await assert.rejects(api.createPrompt({ name: '' }), (err) => err.status === 422 && err.code === 'invalid_request' && err.field === 'name');
    const offline = new LibraryApi({
      fetch: async () => {
        throw new TypeError('Failed to fetch');
      },
    });
    await assert.rejects(offline.info(), (err) => err.code === 'network_error');
  });

  test('query parameters leave out what is empty', async () => {
    let got = null;
    const api = new LibraryApi({
      fetch: async (url) => {
        got = url;
        return json(200, { items: [], next_cursor: null });
      },
    });
    await api.prompts({ q: '退款', tag: '', limit: 20 });
    assert.equal(got, `/api/prompts?q=${encodeURIComponent('退款')}&limit=20`);
  });
});

describe('the history as a cache of the server', () => {
  test('a run becomes a history entry', () => {
    const entry = runToHistoryEntry(RUN);
    assert.equal(entry.runId, 'abc123');
    assert.equal(entry.prompt, '你是客服');
    assert.equal(entry.type, 'expand');
    assert.equal(entry.opening, '您好');
    assert.equal(entry.result, '你是一名客服');
    assert.equal(entry.status, 'done');
    assert.equal(entry.stats.tokens, 4);
    assert.equal(entry.at, Date.parse('2026-12-08T10:00:00Z'));
    assert.equal(runToHistoryEntry({ ...RUN, outcome: 'cancelled' }).status, 'partial');
  });

  test("the server's runs replace the browser's copies; runs made without the library stay", () => {
    let t = Date.parse('2026-12-08T09:00:00Z');
    const store = new HistoryStore(new FakeStorage(), { now: () => (t += 1000) });
    store.add({ prompt: 'local only', result: 'x' });
    store.add({ prompt: 'stale copy', result: 'y', runId: 'gone' });
    store.add({ prompt: 'my copy', result: 'partial', runId: 'abc123' });
    assert.ok(store.merge([runToHistoryEntry(RUN)]));
    assert.deepEqual(store.list().map((e) => [e.prompt, e.result]), [
      ['你是客服', '你是一名客服'],
      ['local only', 'x'],
    ]);
  });
});
