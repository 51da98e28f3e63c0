import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  charLength,
  containsNumber,
  extractNumbers,
  extractPlaceholders,
  extractQuoted,
  lengthChange,
  review,
} from '../../src/promptcast/static/review.js';

describe('length', () => {
  test('counts characters, not UTF-16 units', () => {
    assert.equal(charLength('你好😀'), 3);
  });

  test('change in percent', () => {
    assert.deepEqual(lengthChange('abcd', 'abcdef'), { before: 4, after: 6, delta: 2, percent: 50 });
    assert.equal(lengthChange('', 'x').percent, null);
  });
});

describe('placeholders', () => {
  test('found once each, inner spaces tolerated', () => {
    assert.deepEqual(extractPlaceholders('Hi {{name}}, {{ order_id }} and {{name}} again'), [
      { name: 'name', raw: '{{name}}' },
      { name: 'order_id', raw: '{{ order_id }}' },
    ]);
  });

  test('review lists the missing ones, spacing changes do not count as missing', () => {
    const r = review({ original: 'Dear {{name}}, order {{ id }} ships {{date}}.', result: 'Hello {{ name }}, order {{id}} ships soon.' });
    assert.deepEqual(r.placeholders, { total: 3, missing: ['{{date}}'] });
  });
});

describe('numbers', () => {
  test('integers, decimals, thousands, percents; list markers skipped', () => {
    const text = '1. Reply within 24 hours.\n2) Refunds up to 1,000.50 yuan, 15% off\n3、Call 400-820-8820';
    assert.deepEqual(extractNumbers(text), ['24', '1,000.50', '15%', '400', '820', '8820']);
  });

  test('full-width digits are folded', () => {
    assert.deepEqual(extractNumbers('最多３天'), ['3']);
    assert.ok(containsNumber('3 days', '3'));
  });

  test('numbers inside placeholders are left to the placeholder check', () => {
    assert.deepEqual(extractNumbers('Use {{slot1}} then 7'), ['7']);
  });

  test('a number does not survive inside a longer one', () => {
    assert.ok(!containsNumber('within 240 hours', '24'));
    assert.ok(!containsNumber('1.5', '5'));
    assert.ok(containsNumber('within 24 hours.', '24'));
    assert.ok(containsNumber('（24小时）', '24'));
  });

  test('review lists the missing numbers', () => {
    const r = review({ original: 'Answer within 24 hours, refunds within 7 days.', result: '24小时内回复。' });
    assert.deepEqual(r.numbers, { total: 2, missing: ['7'] });
  });
});

describe('quoted strings', () => {
  test('straight, curly and CJK quotes and backticks', () => {
    const text = 'Say "hello there", then “稍等”, ‘ok’, 「您好」, 『注意』 and run `npm test`.';
    assert.deepEqual(
      extractQuoted(text).map((q) => q.inner),
      ['hello there', '稍等', 'ok', '您好', '注意', 'npm test'],
    );
  });

  test('apostrophes are not quotes', () => {
    assert.deepEqual(extractQuoted("don't and it's fine, but 'yes' is quoted"), [{ inner: 'yes', raw: "'yes'" }]);
  });

  test('a quote surviving with other quote marks counts as kept', () => {
    const r = review({ original: 'Always say "Thank you for waiting".', result: 'Always say “Thank you for waiting”.' });
    assert.deepEqual(r.quoted, { total: 1, missing: [] });
  });

  test('review lists the missing quotes as they were written', () => {
    const r = review({ original: '回复“您好，请稍等”并说 "bye"', result: '回复“您好”' });
    assert.deepEqual(r.quoted.missing, ['“您好，请稍等”', '"bye"']);
  });
});

describe('opening', () => {
  test('verbatim or not; absent when empty', () => {
    assert.deepEqual(review({ original: 'x', result: '开场白：您好，我是小助手。', opening: '您好，我是小助手。' }).opening, {
      text: '您好，我是小助手。',
      verbatim: true,
    });
    assert.equal(review({ original: 'x', result: '您好，我是助手。', opening: '您好，我是小助手。' }).opening.verbatim, false);
    assert.equal(review({ original: 'x', result: 'y', opening: '  ' }).opening, null);
    assert.equal(review({ original: 'x', result: 'y', opening: null }).opening, null);
  });
});

test('a full review of a faithful rewrite', () => {
  const original = 'You are {{bot}}. Reply within 2 minutes. Greet with "Hi!".';
  const result = '# Role\nYou are {{bot}}.\n\n- Reply within 2 minutes.\n- Greet with "Hi!".';
  const r = review({ original, result, opening: 'Hi!' });
  assert.deepEqual(r.placeholders.missing, []);
  assert.deepEqual(r.numbers.missing, []);
  assert.deepEqual(r.quoted.missing, []);
  assert.equal(r.opening.verbatim, true);
  assert.ok(r.length.percent > 0);
});
