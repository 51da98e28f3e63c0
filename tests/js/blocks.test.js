import assert from 'node:assert/strict';
import { test } from 'node:test';

import { stableBoundary } from '../../src/promptcast/static/blocks.js';

test('no blank line, no boundary', () => {
  assert.equal(stableBoundary('# Title\nsome text', 0), 0);
});

test('cut after the last blank line once the next block has started', () => {
  const text = '# Title\n\nFirst paragraph.\n\nSecond';
  assert.equal(text.slice(stableBoundary(text, 0)), 'Second');
});

test('a blank line at the very end is not a boundary yet', () => {
  assert.equal(stableBoundary('para one\n\n', 0), 0);
});

test('blank lines inside a code fence do not count', () => {
  const text = 'intro\n\n```js\nconst a = 1;\n\nconst b = 2;\n```\n\nafter';
  assert.equal(text.slice(stableBoundary(text, 0)), 'after');
  const open = 'intro\n\n```js\nconst a = 1;\n\nconst b';
  assert.equal(open.slice(stableBoundary(open, 0)), '```js\nconst a = 1;\n\nconst b');
});

test('a tilde fence is closed only by tildes', () => {
  const text = '~~~\n```\n\nstill code\n~~~\n\nout';
  assert.equal(text.slice(stableBoundary(text, 0)), 'out');
});

test('an indented line after a blank continues the block', () => {
  const text = '- item\n\n  more of the item\n\n- next';
  assert.equal(text.slice(stableBoundary(text, 0)), '- next');
  assert.equal(stableBoundary('- item\n\n  more', 0), 0);
});

test('scanning starts at `from`', () => {
  const text = 'a\n\nb\n\nc';
  const first = stableBoundary(text, 0);
  assert.equal(text.slice(first), 'c');
  assert.equal(stableBoundary(text, first), first);
});

test('CRLF text', () => {
  const text = 'a\r\n\r\nb';
  assert.equal(text.slice(stableBoundary(text, 0)), 'b');
});
