// The session's versions: pure transitions and the store on a fake storage.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  currentVersion,
  emptySession,
  latestRewrite,
  LocalVersionStore,
  validSession,
  VERSION_LIMIT,
  VERSIONS_KEY,
  versionLabel,
  versionOf,
  withCurrent,
  withRewrite,
} from '../../src/promptcast/static/versions.js';

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

const ORIGINAL = '你是 {{shop}} 的客服助手。';

describe('versions', () => {
  test('the first rewrite starts a session: the original is v0, the rewrite v1 and current', () => {
    const s = withRewrite(emptySession(), { original: ORIGINAL, opening: '您好！', text: 'v1 text', model: 'qwen-max', mode: 'optimize' }, 5);
    assert.equal(s.original, ORIGINAL);
    assert.equal(s.opening, '您好！');
    assert.deepEqual(s.versions.map((v) => [v.n, v.source, v.text]), [[0, 'original', ORIGINAL], [1, 'rewrite', 'v1 text']]);
    assert.equal(s.current, 1);
    assert.equal(currentVersion(s).model, 'qwen-max');
    assert.equal(versionOf(s, 1).parent, 0);
    assert.equal(latestRewrite(s).n, 1);
    assert.equal(latestRewrite(emptySession()), null);
  });

  test('each revision is the next version, with its parent and feedback', () => {
    let s = withRewrite(emptySession(), { original: ORIGINAL, text: 'v1' });
    s = withRewrite(s, { original: ORIGINAL, text: 'v2', source: 'iterate', feedback: '更简洁', parent: 1 });
    s = withCurrent(s, 1);
    s = withRewrite(s, { original: ORIGINAL, text: 'v3', source: 'iterate', feedback: '不要反问用户', parent: 1 });
    assert.deepEqual(s.versions.map((v) => [v.n, v.parent ?? null]), [[0, null], [1, 0], [2, 1], [3, 1]]);
    assert.equal(s.current, 3);
    assert.equal(versionOf(s, 3).feedback, '不要反问用户');
  });

  test('a rewrite without a parent revises the current version', () => {
    let s = withRewrite(emptySession(), { original: ORIGINAL, text: 'v1' });
    s = withRewrite(s, { original: ORIGINAL, text: 'v2' });
    s = withCurrent(s, 1);
    s = withRewrite(s, { original: ORIGINAL, text: 'v3', source: 'compare', model: 'gpt-4o-mini' });
    assert.equal(versionOf(s, 3).parent, 1);
    assert.equal(versionOf(s, 3).source, 'compare');
  });

  test('another original starts a new session', () => {
    let s = withRewrite(emptySession(), { original: ORIGINAL, text: 'v1' });
    s = withRewrite(s, { original: 'Another prompt', text: 'other v1' });
    assert.equal(s.original, 'Another prompt');
    assert.deepEqual(s.versions.map((v) => v.text), ['Another prompt', 'other v1']);
  });

  test('restoring makes a version current; an unknown one changes nothing', () => {
    let s = withRewrite(emptySession(), { original: ORIGINAL, text: 'v1' });
    s = withRewrite(s, { original: ORIGINAL, text: 'v2' });
    assert.equal(withCurrent(s, 1).current, 1);
    assert.equal(withCurrent(s, 0).current, 0);
    assert.equal(withCurrent(s, 9), s);
  });

  test('past the limit the oldest rewrites give way, never the original', () => {
    let s = emptySession();
    for (let i = 1; i <= VERSION_LIMIT + 5; i++) s = withRewrite(s, { original: ORIGINAL, text: `v${i}` });
    assert.equal(s.versions.length, VERSION_LIMIT);
    assert.equal(s.versions[0].source, 'original');
    assert.equal(s.versions[1].n, 7);
    assert.equal(s.versions.at(-1).n, VERSION_LIMIT + 5);
  });

  test('labels', () => {
    assert.equal(versionLabel({ n: 0 }), 'Original');
    assert.equal(versionLabel({ n: 0 }, '原始'), '原始');
    assert.equal(versionLabel({ n: 12 }), 'v12');
  });

  test('damaged sessions read as empty, bad versions are dropped, a lost current falls back', () => {
    assert.deepEqual(validSession(null), emptySession());
    assert.deepEqual(validSession({ original: 5 }), emptySession());
    assert.deepEqual(validSession({ original: 'x', versions: [{ n: 1, text: 'a', source: 'rewrite' }] }), emptySession());
    const s = validSession({
      original: 'x',
      versions: [{ n: 0, text: 'x', source: 'original' }, { n: 1, text: 5, source: 'rewrite' }, { n: 2, text: 'b', source: 'iterate' }],
      current: 1,
    });
    assert.deepEqual(s.versions.map((v) => v.n), [0, 2]);
    assert.equal(s.current, 2);
  });
});

describe('LocalVersionStore', () => {
  test('keeps the session across instances (a reload)', async () => {
    const storage = new FakeStorage();
    const store = new LocalVersionStore(storage, { now: () => 42 });
    assert.deepEqual(await store.load(), emptySession());
    await store.add({ original: ORIGINAL, text: 'v1', model: 'local', mode: 'expand' });
    await store.add({ original: ORIGINAL, text: 'v2', source: 'iterate', feedback: 'shorter', parent: 1 });
    await store.setCurrent(1);
    const again = await new LocalVersionStore(storage).load();
    assert.equal(again.current, 1);
    assert.deepEqual(again.versions.map((v) => [v.n, v.text, v.at]), [[0, ORIGINAL, 42], [1, 'v1', 42], [2, 'v2', 42]]);
    assert.ok(storage.getItem(VERSIONS_KEY));
  });

  test('damaged storage reads as no session; clear forgets it', async () => {
    const storage = new FakeStorage();
    storage.setItem(VERSIONS_KEY, '{not json');
    const store = new LocalVersionStore(storage);
    assert.deepEqual(await store.load(), emptySession());
    await store.add({ original: 'p', text: 'v1' });
    assert.deepEqual(await store.clear(), emptySession());
    assert.equal(storage.getItem(VERSIONS_KEY), null);
  });

  test('without storage it works for the page’s lifetime', async () => {
    const store = new LocalVersionStore(null);
    const s = await store.add({ original: 'p', text: 'v1' });
    assert.equal(s.current, 1);
    assert.equal((await store.load()).versions.length, 2);
  });

  test('a full storage keeps the newest versions that fit; the page keeps all', async () => {
    const storage = new FakeStorage({ quota: 400 });
    const store = new LocalVersionStore(storage);
    let s;
    for (let i = 1; i <= 6; i++) s = await store.add({ original: 'p', text: `version ${i} `.repeat(4) });
    assert.equal(s.versions.length, 7);
    const stored = JSON.parse(storage.getItem(VERSIONS_KEY));
    assert.ok(stored.versions.length < 7 && stored.versions.length >= 2);
    assert.equal(stored.versions[0].source, 'original');
    assert.equal(stored.versions.at(-1).n, 6);
  });
});
