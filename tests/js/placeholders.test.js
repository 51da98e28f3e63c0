// Template slots, on the cases the server's meta-prompt is tested with.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { findSlots } from '../../src/promptcast/static/placeholders.js';
import { review } from '../../src/promptcast/static/review.js';

const CASES = JSON.parse(readFileSync(new URL('../placeholder_cases.json', import.meta.url), 'utf8'));

describe('placeholders', () => {
  for (const { text, slots } of CASES) {
    test(`as the server finds them: ${text.slice(0, 40)}`, () => {
      assert.deepEqual(findSlots(text).map((s) => s.raw), slots);
    });
  }

  test('the review checks every syntax', () => {
    const r = review({
      original: 'Hi {name}, order %(id)s for ${shop}, greet [CUSTOMER] and {{ agent }}.',
      result: 'Hello {name}, order for ${shop}, greet [CUSTOMER] and {{agent}}.',
    });
    assert.deepEqual(r.placeholders, { total: 5, missing: ['%(id)s'] });
  });
});
