// The evaluation panel's pure parts: test-set reading and writing, its store,
// and the results built from a run's events, with their exports.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { bars, csvField, EvalResults, heat } from '../../src/promptcast/static/eval-results.js';
import { caseProblem, linesToList, linesToVars, listToLines, parseTestSet, placeholders, TESTSET_KEY, TestSetError, TestSetStore, toJSONL, varsToLines } from '../../src/promptcast/static/eval-testset.js';

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
