// The page's SSE parser against the shared cases (tests/sse_cases.json, also
// read by the Python decoder's tests): each case fed whole, one byte at a
// time, and split in two at every byte position.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { parseAll, SSELineTooLong, SSEParser } from '../../src/promptcast/static/sse-parser.js';

const CASES = JSON.parse(readFileSync(new URL('../sse_cases.json', import.meta.url), 'utf8'));

function bytesOf(c) {
  if (c.input_hex !== undefined) return Uint8Array.from(Buffer.from(c.input_hex, 'hex'));
  return new TextEncoder().encode(c.input);
}

function feedChunks(chunks) {
  const parser = new SSEParser();
  const events = [];
  for (const chunk of chunks) events.push(...parser.feed(chunk));
  events.push(...parser.end());
  return events;
}

test('the shared case file is there and not empty', () => {
  assert.ok(Array.isArray(CASES) && CASES.length > 0);
});

describe('shared cases', () => {
  for (const c of CASES) {
    describe(c.name, () => {
      const bytes = bytesOf(c);

      test('whole', () => {
        assert.deepEqual(feedChunks([bytes]), c.events);
      });

      test('one byte at a time', () => {
        const chunks = [];
        for (let i = 0; i < bytes.length; i++) chunks.push(bytes.subarray(i, i + 1));
        assert.deepEqual(feedChunks(chunks), c.events);
      });

      test('split at every byte position', () => {
        for (let i = 0; i <= bytes.length; i++) {
          const got = feedChunks([bytes.subarray(0, i), bytes.subarray(i)]);
          assert.deepEqual(got, c.events, `split at byte ${i}`);
        }
      });
    });
  }
});

describe('parser details', () => {
  test('a CR ending one read and an LF starting the next are one line end', () => {
    const enc = new TextEncoder();
    const parser = new SSEParser();
    assert.deepEqual(parser.feed(enc.encode('data: a\r')), []);
    assert.deepEqual(parser.feed(enc.encode('\n\r')), [{ event: 'message', data: 'a', id: '' }]);
    assert.deepEqual(parser.feed(enc.encode('\ndata: b\n\n')), [{ event: 'message', data: 'b', id: '' }]);
  });

  test('a CR at the end of a read dispatches without waiting for the next read', () => {
    const parser = new SSEParser();
    assert.deepEqual(parser.feed(new TextEncoder().encode('data: a\r\r')), [{ event: 'message', data: 'a', id: '' }]);
  });

  test('events come out as soon as their blank line arrives', () => {
    const parser = new SSEParser();
    const enc = new TextEncoder();
    assert.deepEqual(parser.feed(enc.encode('data: 首')), []);
    assert.deepEqual(parser.feed(enc.encode('先\n')), []);
    assert.deepEqual(parser.feed(enc.encode('\n')), [{ event: 'message', data: '首先', id: '' }]);
  });

  test('a Chinese character split across reads is joined', () => {
    const bytes = new TextEncoder().encode('data: 你好\n\n');
    const parser = new SSEParser();
    const events = [...parser.feed(bytes.subarray(0, 7)), ...parser.feed(bytes.subarray(7, 9)), ...parser.feed(bytes.subarray(9))];
    assert.deepEqual(events, [{ event: 'message', data: '你好', id: '' }]);
  });

  test('retry takes ASCII digits only', () => {
    const parser = new SSEParser();
    parser.feed(new TextEncoder().encode('retry: 1500\n\nretry: 2x\n\nretry: ٣\n\n'));
    assert.equal(parser.retry, 1500);
  });

  test('lastEventId persists on the parser for a reconnect', () => {
    const parser = new SSEParser();
    parser.feed(new TextEncoder().encode('id: s1.4\ndata: a\n\n: keep-alive\n\n'));
    assert.equal(parser.lastEventId, 's1.4');
  });

  test('string input is accepted and its leading BOM stripped', () => {
    assert.deepEqual(parseAll('\ufeffdata: a\n\n'), [{ event: 'message', data: 'a', id: '' }]);
  });

  test('ArrayBuffer input is accepted', () => {
    const bytes = new TextEncoder().encode('data: a\n\n');
    const parser = new SSEParser();
    assert.deepEqual(parser.feed(bytes.buffer.slice(0)), [{ event: 'message', data: 'a', id: '' }]);
  });

  test('feeding after end() is an error', () => {
    const parser = new SSEParser();
    parser.end();
    assert.throws(() => parser.feed('data: a\n\n'));
  });

  test('an 8 MB data line parses, fed in 64 KiB reads, in linear time', () => {
    const payload = 'x'.repeat(8 * 1024 * 1024);
    const bytes = new TextEncoder().encode(`data: ${payload}\n\n`);
    const parser = new SSEParser();
    const events = [];
    const t0 = performance.now();
    for (let i = 0; i < bytes.length; i += 65536) events.push(...parser.feed(bytes.subarray(i, i + 65536)));
    events.push(...parser.end());
    const ms = performance.now() - t0;
    assert.equal(events.length, 1);
    assert.equal(events[0].data.length, payload.length);
    assert.ok(ms < 5000, `took ${ms} ms`);
  });

  test('a line past the cap fails clearly', () => {
    const parser = new SSEParser({ maxLine: 1024 });
    assert.throws(() => parser.feed('data: ' + 'x'.repeat(2000)), SSELineTooLong);
    const split = new SSEParser({ maxLine: 1024 });
    assert.throws(() => {
      for (let i = 0; i < 40; i++) split.feed('x'.repeat(50));
    }, SSELineTooLong);
  });

  test('many data lines past the cap fail clearly', () => {
    const parser = new SSEParser({ maxLine: 1024 });
    assert.throws(() => parser.feed('data: xxxxxxxxxx\n'.repeat(200)), SSELineTooLong);
  });
});
