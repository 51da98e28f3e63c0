import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { HISTORY_KEY, HISTORY_LIMIT, HistoryStore } from '../../src/promptcast/static/history.js';

class FakeStorage {
  constructor({ quota = Infinity } = {}) {
    this.map = new Map();
    this.quota = quota;
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    if (String(v).length > this.quota) throw new DOMException('full', 'QuotaExceededError');
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

function clock(start = 1_700_000_000_000) {
  let t = start;
  return () => (t += 1000);
}

const run = (i, extra = {}) => ({ prompt: `prompt ${i}`, type: 'optimize', model: 'local', opening: null, result: `result ${i}`, status: 'done', ...extra });

describe('HistoryStore', () => {
  test('newest first, with id and time', () => {
    const store = new HistoryStore(new FakeStorage(), { now: clock() });
    store.add(run(1));
    store.add(run(2));
    const list = store.list();
    assert.deepEqual(list.map((e) => e.prompt), ['prompt 2', 'prompt 1']);
    assert.ok(list[0].id && list[0].id !== list[1].id);
    assert.ok(list[0].at > list[1].at);
  });

  test(`keeps the last ${HISTORY_LIMIT}`, () => {
    const store = new HistoryStore(new FakeStorage(), { now: clock() });
    for (let i = 1; i <= HISTORY_LIMIT + 5; i++) store.add(run(i));
    const list = store.list();
    assert.equal(list.length, HISTORY_LIMIT);
    assert.equal(list[0].prompt, `prompt ${HISTORY_LIMIT + 5}`);
    assert.equal(list.at(-1).prompt, 'prompt 6');
  });

  test('survives a new instance on the same storage (a reload)', () => {
    const storage = new FakeStorage();
    new HistoryStore(storage, { now: clock() }).add(run(1, { opening: '您好', stats: { tokens: 3 } }));
    const [entry] = new HistoryStore(storage).list();
    assert.equal(entry.prompt, 'prompt 1');
    assert.equal(entry.opening, '您好');
    assert.deepEqual(entry.stats, { tokens: 3 });
    assert.ok(storage.getItem(HISTORY_KEY));
  });

  test('get, remove, clear', () => {
    const store = new HistoryStore(new FakeStorage(), { now: clock() });
    const a = store.add(run(1));
    const b = store.add(run(2));
    assert.equal(store.get(a.id).prompt, 'prompt 1');
    assert.equal(store.remove(a.id), true);
    assert.equal(store.remove(a.id), false);
    assert.deepEqual(store.list().map((e) => e.id), [b.id]);
    store.remove(b.id);
    assert.deepEqual(store.list(), []);
    store.add(run(3));
    store.clear();
    assert.deepEqual(store.list(), []);
  });

  test('search: every word, case-insensitive, across prompt, result, opening, model and mode', () => {
    const store = new HistoryStore(new FakeStorage(), { now: clock() });
    store.add(run(1, { prompt: 'Customer SERVICE bot', result: '客服机器人' }));
    store.add(run(2, { prompt: 'code reviewer', model: 'qwen-max', type: 'shorten' }));
    store.add(run(3, { prompt: 'travel guide', opening: '欢迎来到杭州' }));
    assert.deepEqual(store.search('service').map((e) => e.prompt), ['Customer SERVICE bot']);
    assert.deepEqual(store.search('客服').map((e) => e.prompt), ['Customer SERVICE bot']);
    assert.deepEqual(store.search('QWEN shorten').map((e) => e.prompt), ['code reviewer']);
    assert.deepEqual(store.search('杭州').map((e) => e.prompt), ['travel guide']);
    assert.deepEqual(store.search('code guide'), []);
    assert.equal(store.search('  ').length, 3);
  });

  test('damaged or foreign data reads as empty, and bad entries are skipped', () => {
    const storage = new FakeStorage();
    storage.setItem(HISTORY_KEY, '{not json');
    assert.deepEqual(new HistoryStore(storage).list(), []);
    storage.setItem(HISTORY_KEY, '{"a":1}');
    assert.deepEqual(new HistoryStore(storage).list(), []);
    storage.setItem(HISTORY_KEY, JSON.stringify([{ id: 'x', prompt: 'p', result: 'r' }, { id: 3 }, null]));
    assert.deepEqual(new HistoryStore(storage).list().map((e) => e.id), ['x']);
  });

  test('a full storage drops the oldest entries to make room', () => {
    const storage = new FakeStorage({ quota: 1500 });
    const store = new HistoryStore(storage, { now: clock() });
    for (let i = 1; i <= 20; i++) assert.ok(store.add(run(i, { result: 'r'.repeat(200) })));
    const list = store.list();
    assert.ok(list.length > 1 && list.length < 20);
    assert.equal(list[0].prompt, 'prompt 20');
  });

  test('an entry too big to store at all is refused and the rest kept', () => {
    const storage = new FakeStorage({ quota: 1000 });
    const store = new HistoryStore(storage, { now: clock() });
    store.add(run(1));
    assert.equal(store.add(run(2, { result: 'x'.repeat(5000) })), null);
    assert.deepEqual(store.list().map((e) => e.prompt), ['prompt 1']);
  });

  test('no storage (disabled): nothing kept, nothing thrown', () => {
    const store = new HistoryStore(null);
    assert.equal(store.add(run(1)), null);
    assert.deepEqual(store.list(), []);
    const throwing = { getItem() { throw new Error('denied'); }, setItem() { throw new Error('denied'); }, removeItem() { throw new Error('denied'); } };
    const store2 = new HistoryStore(throwing);
    assert.deepEqual(store2.list(), []);
    assert.equal(store2.add(run(1)), null);
    store2.clear();
  });
});
