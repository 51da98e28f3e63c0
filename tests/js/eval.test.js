// The evaluation panel's pure parts: test-set reading and writing, its store,
// and the results built from a run's events, with their exports.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { setApiKey } from '../../src/promptcast/static/api-key.js';
import { bars, csvField, EvalResults, heat, pastFigures } from '../../src/promptcast/static/eval-results.js';
import { caseProblem, linesToList, linesToVars, listToLines, parseTestSet, placeholders, SavedTestSets, SOURCE_KEY, StaleTestSet, TESTSET_KEY, TestSetError, TestSetStore, toJSONL, varsToLines } from '../../src/promptcast/static/eval-testset.js';
import { LibraryApi } from '../../src/promptcast/static/library-api.js';

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

describe('test sets', () => {
  test('JSONL: one case a line, blank lines skipped', () => {
    const cases = parseTestSet('{"message": "退款？", "contains": "7 天"}\n\n{"message": "hi"}\n');
    assert.deepEqual(cases, [{ message: '退款？', contains: '7 天' }, { message: 'hi' }]);
  });

  test('a malformed line is named with its problem', () => {
    assert.throws(() => parseTestSet('{"message": "a"}\n{"message": }\n'), (err) => err instanceof TestSetError && err.line === 2 && /^line 2: not valid JSON/.test(err.message));
    assert.throws(() => parseTestSet('{"message": "a", "contain": "x"}\n'), /line 1: unknown key\(s\) contain/);
    assert.throws(() => parseTestSet('{"conversation": [{"role": "assistant", "content": "x"}]}'), /end with the customer/);
    assert.throws(() => parseTestSet('{"message": "a", "max_chars": 0}'), /max_chars/);
    assert.throws(() => parseTestSet('  \n'), /no case/);
  });

  test('a JSON array, or a set with shared vars', () => {
    assert.deepEqual(parseTestSet('[{"message": "a"}]'), [{ message: 'a' }]);
    const cases = parseTestSet('{"vars": {"shop": "Acme"}, "cases": [{"message": "a"}, {"message": "b", "vars": {"shop": "B"}}]}');
    assert.deepEqual(cases.map((c) => c.vars.shop), ['Acme', 'B']);
  });

  test('export writes JSONL that reads back the same', () => {
    const cases = [{ message: 'a', contains: ['x', 'y'] }, { conversation: [{ role: 'user', content: 'b' }] }];
    assert.deepEqual(parseTestSet(toJSONL(cases)), cases);
    assert.equal(toJSONL([]), '');
  });

  test('form fields: lists as lines, vars as name=value', () => {
    assert.equal(listToLines(['a', 'b']), 'a\nb');
    assert.equal(listToLines('a'), 'a');
    assert.equal(linesToList(' a \n\n'), 'a');
    assert.deepEqual(linesToList('a\nb'), ['a', 'b']);
    assert.equal(linesToList('\n'), undefined);
    assert.deepEqual(linesToVars('shop = Acme\nbad line\nwindow=7 天'), { shop: 'Acme', window: '7 天' });
    assert.equal(varsToLines({ a: '1' }), 'a=1');
  });

  test('caseProblem agrees with the server on the main rules', () => {
    assert.equal(caseProblem({ message: 'a' }), null);
    assert.match(caseProblem({ message: 'a', conversation: [] }), /not both/);
    assert.match(caseProblem({ message: '  ' }), /non-empty/);
    assert.match(caseProblem({ message: 'a', not_contains: [] }), /not_contains/);
    assert.match(caseProblem({ message: 'a', starts_with_opening: 'yes' }), /true or false/);
  });

  test('placeholders', () => {
    assert.deepEqual(placeholders('{{shop}} {{ days }} {{shop}} {{退款期限}} {x}'), ['shop', 'days', '退款期限']);
  });

  test('the store keeps the set, and survives damage', async () => {
    const storage = new FakeStorage();
    const store = new TestSetStore(storage);
    assert.deepEqual(await store.load(), []);
    assert.equal(await store.save([{ message: 'a' }]), true);
    assert.deepEqual(await new TestSetStore(storage).load(), [{ message: 'a' }]);
    storage.setItem(TESTSET_KEY, '{broken');
    assert.deepEqual(await store.load(), []);
    assert.deepEqual(await new TestSetStore(null).load(), []);
  });
});

describe('test sets in the library', () => {
  function json(status, body, headers = {}) {
    return new Response(body === null ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
  }

  /** A LibraryApi on a scripted fetch: each call answered by `answer(method, url, init)`. */
  function library(answer) {
    const seen = [];
    const api = new LibraryApi({
      fetch: async (url, init) => {
        seen.push({ method: init.method, url, headers: init.headers, body: init.body ? JSON.parse(init.body) : undefined });
        return answer(init.method, url, init);
      },
    });
    return { sets: new SavedTestSets(api), seen };
  }

  test('the store remembers which saved set the table came from', () => {
    const storage = new FakeStorage();
    const store = new TestSetStore(storage);
    assert.equal(store.loadSource(), null);
    store.saveSource({ id: 't1', name: '电商', etag: '"r2"', changed: false });
    assert.deepEqual(new TestSetStore(storage).loadSource(), { id: 't1', name: '电商', etag: '"r2"', changed: false });
    storage.setItem(SOURCE_KEY, '{"id": 3}');
    assert.equal(store.loadSource(), null);
    store.saveSource(null);
    assert.equal(storage.getItem(SOURCE_KEY), null);
  });

  test('load, save as new, save over with If-Match, delete; the key is sent', async () => {
    setApiKey('k-sets');
    try {
      const set = { id: 't1', name: '电商', count: 1, etag: '"r1"', cases: [{ message: '在吗' }] };
      const { sets, seen } = library((method, url) => {
        if (method === 'GET' && url.startsWith('/api/testsets?')) return json(200, { items: [set], next_cursor: null });
        if (method === 'GET') return json(200, set, { ETag: '"r1"' });
        if (method === 'POST') return json(201, { ...set, id: 't2' }, { ETag: '"r1"' });
        if (method === 'PATCH') return json(200, { ...set, etag: '"r2"' }, { ETag: '"r2"' });
        return new Response(null, { status: 204 });
      });
      assert.deepEqual(await sets.list(), [set]);
      const { source, cases } = await sets.load('t1');
      assert.deepEqual(source, { id: 't1', name: '电商', etag: '"r1"', changed: false });
      assert.deepEqual(cases, [{ message: '在吗' }]);
      assert.deepEqual(await sets.create('电商 2', cases), { id: 't2', name: '电商', etag: '"r1"', changed: false });
      assert.deepEqual(await sets.replace(source, [{ message: '退货' }]), { id: 't1', name: '电商', etag: '"r2"', changed: false });
      assert.equal(await sets.unchanged(source), true);
      assert.equal(await sets.unchanged({ ...source, etag: '"r0"' }), false);
      await sets.remove('t1');
      assert.deepEqual(seen.map((c) => `${c.method} ${c.url}`), [
        'GET /api/testsets?limit=200', 'GET /api/testsets/t1', 'POST /api/testsets', 'PATCH /api/testsets/t1',
        'GET /api/testsets/t1', 'GET /api/testsets/t1', 'DELETE /api/testsets/t1',
      ]);
      assert.deepEqual(seen[2].body, { name: '电商 2', cases: [{ message: '在吗' }] });
      assert.deepEqual(seen[3].body, { cases: [{ message: '退货' }] });
      assert.equal(seen[3].headers['If-Match'], '"r1"');
      assert.ok(seen.every((c) => c.headers.Authorization === 'Bearer k-sets'));
    } finally {
      setApiKey(null);
    }
  });

  test('saving over a set changed elsewhere is a StaleTestSet; other refusals pass through', async () => {
    const { sets } = library((method) =>
      method === 'PATCH'
        ? json(412, { error: { code: 'precondition_failed', message: 'changed since that ETag' } })
        : json(422, { error: { code: 'invalid_request', message: 'too long', field: 'name' } }),
    );
    await assert.rejects(sets.replace({ id: 't1', name: '电商', etag: '"r1"' }, []), (err) => err instanceof StaleTestSet && err.message.includes('电商'));
    await assert.rejects(sets.create('x'.repeat(300), []), (err) => err.status === 422 && err.field === 'name');
  });
});

describe('kept evaluations', () => {
  test('headline figures per prompt', () => {
    const summary = {
      prompts: [
        { name: 'v1', rules: { pass_rate: 0.6667 }, judge: { mean: 5 }, pairwise: { win_rate: 0 } },
        { name: 'v2', rules: { pass_rate: null }, judge: { mean: null }, pairwise: null },
      ],
    };
    assert.equal(pastFigures(summary), 'v1: 66.7 % · 5.0 · 0 % ↑ | v2: –');
    assert.equal(pastFigures({}), '');
  });
});

const ev = (event, body) => ({ event, data: JSON.stringify(body), id: '' });

describe('results', () => {
  const cases = [{ id: 'r1', message: 'refund?' }, { message: 'hi' }];

  test('a cell goes pending → streaming → done, and the judgement lands on it', () => {
    const results = new EvalResults(['v1', 'v2'], cases);
    assert.equal(results.cell('v1', 0).state, 'pending');
    assert.deepEqual(results.apply(ev('delta', { prompt: 'v1', case: 0, text: 'We ' })), { kind: 'delta', prompt: 'v1', case: 0 });
    results.apply(ev('delta', { prompt: 'v1', case: 0, text: 'refund' }));
    assert.equal(results.cell('v1', 0).state, 'streaming');
    assert.equal(results.cell('v1', 0).text, 'We refund');
    results.apply(ev('cell', { prompt: 'v1', case: 0, text: 'We refund.', checks: [{ kind: 'contains', pass: true, reason: 'ok' }], latency_ms: 12 }));
    results.apply(ev('judgement', { prompt: 'v1', case: 0, score: 8, reason: 'fine' }));
    const cell = results.cell('v1', 0);
    assert.equal(cell.state, 'done');
    assert.equal(cell.text, 'We refund.');
    assert.equal(cell.score, 8);
    assert.equal(EvalResults.passed(cell), true);
    assert.equal(heat(cell), 'score-8');
    assert.equal(results.finished, 1);
  });

  test('errors, judge errors, pairs, the summary, and junk', () => {
    const results = new EvalResults(['v1', 'v2'], cases);
    results.apply(ev('cell', { prompt: 'v2', case: 1, checks: [], error: { code: 'upstream_rate_limited', message: 'slow down' } }));
    assert.equal(results.cell('v2', 1).state, 'error');
    assert.equal(heat(results.cell('v2', 1)), 'error');
    results.apply(ev('cell', { prompt: 'v1', case: 1, text: 'x', checks: [{ kind: 'max_chars', pass: false, reason: 'long' }] }));
    results.apply(ev('judgement', { prompt: 'v1', case: 1, error: { code: 'judge_unparsable', message: 'not JSON' }, raw: 'meh' }));
    assert.equal(results.cell('v1', 1).raw, 'meh');
    assert.equal(heat(results.cell('v1', 1)), 'fail');
    assert.deepEqual(results.apply(ev('judgement', { pair: ['v1', 'v2'], case: 1, winner: 'tie', consistent: false })), { kind: 'pair', case: 1 });
    assert.deepEqual(results.apply(ev('summary', { prompts: [] })), { kind: 'summary' });
    assert.equal(results.apply({ event: 'cell', data: '{bad', id: '' }), null);
    assert.equal(results.apply(ev('cell', { prompt: 'nobody', case: 0 })), null);
    assert.equal(results.apply({ event: 'message', data: '[DONE]', id: '' }), null);
  });

  test('CSV: one row a cell, quoted where needed, no formula injection', () => {
    const results = new EvalResults(['v1'], cases);
    results.apply(ev('cell', { prompt: 'v1', case: 0, text: '=HYPERLINK("x"), then\na line', checks: [] }));
    const lines = results.toCSV().split('\r\n');
    assert.equal(lines[0], 'prompt,case,id,message,answer,rules_passed,checks,score,judge_reason,error,latency_ms');
    assert.ok(lines[1].startsWith('v1,0,r1,refund?,"\'=HYPERLINK(""x""), then\na line"'));
    assert.equal(csvField(-3), '-3');
    assert.equal(csvField('-3'), "'-3");
    assert.equal(csvField('plain'), 'plain');
  });

  test('JSON export holds every cell and the summary', () => {
    const results = new EvalResults(['v1', 'v2'], cases);
    results.apply(ev('summary', { cases: 2 }));
    const doc = results.toJSON();
    assert.equal(doc.cells.length, 4);
    assert.deepEqual(doc.summary, { cases: 2 });
    assert.deepEqual(doc.prompts, ['v1', 'v2']);
  });

  test('bars come from the summary figures that exist', () => {
    assert.deepEqual(bars({ rules: { pass_rate: 0.5, interval: [0.2, 0.8] }, judge: { mean: 7.25 }, pairwise: null }).map((b) => [b.key, b.value]), [['rules', 0.5], ['score', 0.725]]);
    assert.deepEqual(bars({ rules: { pass_rate: null }, judge: { mean: null }, pairwise: { win_rate: 1, win_interval: [0.5, 1] } }).map((b) => b.key), ['win']);
  });
});
