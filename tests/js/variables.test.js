// Variables of a try run: found in both prompts, filled the same in both, missing ones named.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { extractVariables, fillVariables, missingVariables } from '../../src/promptcast/static/variables.js';

describe('variables', () => {
  test('found in order of first appearance across prompts, once each, spaces tolerated', () => {
    assert.deepEqual(extractVariables('Hi {{name}}, order {{ order_id }}', '{{shop}} and {{name}} again {{order_id}}'), [
      'name',
      'order_id',
      'shop',
    ]);
    assert.deepEqual(extractVariables('你是 {{店铺名}} 的客服'), ['店铺名']);
    assert.deepEqual(extractVariables('no slots, {single} or ${dollar}', null, undefined), []);
  });

  test('filled everywhere, spacing inside braces included; unknown ones stay as written', () => {
    const values = new Map([['shop', '小张的店'], ['name', 'Ada']]);
    assert.equal(fillVariables('{{shop}} / {{ shop }} / {{name}} / {{missing}}', values), '小张的店 / 小张的店 / Ada / {{missing}}');
    assert.equal(fillVariables('{{a}}{{b}}', { a: '1', b: '' }), '1{{b}}');
  });

  test('a value is used as text, never as a replacement pattern', () => {
    assert.equal(fillVariables('{{x}}', { x: '$& and $1' }), '$& and $1');
  });

  test('missing: no value, or an empty one', () => {
    assert.deepEqual(missingVariables(['a', 'b', 'c'], new Map([['a', 'x'], ['b', '']])), ['b', 'c']);
    assert.deepEqual(missingVariables(['a'], { a: 'x' }), []);
  });
});
