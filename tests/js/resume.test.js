// Resuming a dropped stream: the pure decisions (backoff schedule, dedupe by
// id, what an outcome or a resume answer means) and runStream's reconnects,
// driven with a fake fetch, a fake clock and real WHATWG Response objects.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  afterConnection,
  EventLedger,
  eventSeq,
  RESUME_BUDGET_MS,
  resumeAnswer,
  resumeDelay,
  resumeSchedule,
} from '../../src/promptcast/static/resume.js';
import { cancelStream, consumeStream, runStream } from '../../src/promptcast/static/stream.js';

const enc = new TextEncoder();
const SID = 'Ab-_c9xYz012';

function chunk(content) {
  return JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] });
}

/** Stored events as the server frames them: `id: <sid>.<n>`. */
const ev = (n, content) => `id: ${SID}.${n}\ndata: ${chunk(content)}\n\n`;
const done = (n) => `id: ${SID}.${n}\ndata: [DONE]\n\n`;
/** A frame about the connection: no id of its own. */
const bare = (code) => `event: error\ndata: {"code":"${code}","message":"${code} happened"}\n\n`;

/** A Response whose body yields `parts` one read each, then ends (or errors, or hangs). */
function sse(parts, { status = 200, headers = {}, error = null, hang = false, streamId = SID } = {}) {
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (i < parts.length) controller.enqueue(enc.encode(parts[i++]));
      else if (error) controller.error(error);
      else if (!hang) controller.close();
      else return new Promise(() => {}); // never another byte
    },
  });
  const h = { 'content-type': 'text/event-stream; charset=utf-8', ...headers };
  if (streamId) h['x-stream-id'] = streamId;
  return new Response(body, { status, headers: h });
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

/**
 * A fake fetch answering call i with answers[i] (a Response, an Error to
 * throw, or a function of (url, init)); records every call.
 */
function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push({ url, init });
    const answer = answers[calls.length - 1];
    if (answer === undefined) throw new Error(`unexpected request #${calls.length}: ${init.method} ${url}`);
    const value = typeof answer === 'function' ? await answer(url, init) : answer;
    if (value instanceof Error) throw value;
    return value;
  };
  return { fetch, calls };
}

/** A fake clock: `wait` records each delay and moves time on. */
function fakeClock() {
  const clock = { t: 0, waits: [] };
  clock.now = () => clock.t;
  clock.wait = async (ms, signal) => {
    clock.waits.push(ms);
    clock.t += ms;
    return !signal?.aborted;
  };
  return clock;
}

async function run(answers, options = {}) {
  const { fetch, calls } = fakeFetch(answers);
  const clock = fakeClock();
  const deltas = [];
  const log = [];
  const outcome = await runStream({
    fetch,
    request: { prompt: 'p', type: 'optimize', model: 'm', opening: null },
    wait: clock.wait,
    now: clock.now,
    resume: { jitter: 0 },
    onDelta: (t) => deltas.push(t),
    onDropped: ({ reason }) => log.push(`dropped: ${reason}`),
    onResumed: ({ resumes }) => log.push(`resumed ${resumes}`),
    ...options,
  });
  return { outcome, calls, clock, text: deltas.join(''), deltas, log };
}

const network = () => new TypeError('network error');

describe('backoff', () => {
  test('0.5 s, 1 s, 2 s, then every 4 s', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => resumeDelay(a, 0)), [500, 1000, 2000, 4000, 4000, 4000]);
  });

  test('gives up once an attempt would start past the 30 s budget', () => {
    assert.equal(RESUME_BUDGET_MS, 30_000);
    assert.deepEqual(resumeSchedule(), [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500]);
    assert.equal(resumeDelay(8, 27_500), null);
    assert.equal(resumeDelay(3, 26_000), 4000);
    assert.equal(resumeDelay(3, 26_001), null);
  });

  test('jitter only shortens a delay, by up to its fraction', () => {
    assert.equal(resumeDelay(0, 0, { jitter: 0.2, random: () => 0.5 }), 450);
    assert.equal(resumeDelay(3, 0, { jitter: 0.2, random: () => 0 }), 4000);
    assert.equal(resumeDelay(3, 0, { jitter: 0.2, random: () => 0.999999 }), 3200);
  });

  test('custom delays and budget', () => {
    assert.deepEqual(resumeSchedule({ delays: [100, 200], budgetMs: 1000 }), [100, 300, 500, 700, 900]);
  });
});

describe('dedupe by id', () => {
  test('the sequence number of this stream’s ids only', () => {
    assert.equal(eventSeq(`${SID}.1`, SID), 1);
    assert.equal(eventSeq(`${SID}.1234`, SID), 1234);
    assert.equal(eventSeq(`other.3`, SID), null);
    assert.equal(eventSeq(`${SID}.`, SID), null);
    assert.equal(eventSeq(`${SID}.x1`, SID), null);
    assert.equal(eventSeq(`${SID}.-1`, SID), null);
    assert.equal(eventSeq(SID, SID), null);
    assert.equal(eventSeq('', SID), null);
    assert.equal(eventSeq(`${SID}.1`, null), null);
  });

  test('new, duplicate, gap, unnumbered', () => {
    const ledger = new EventLedger(SID);
    assert.equal(ledger.accept(`${SID}.1`), 'new');
    assert.equal(ledger.accept(`${SID}.2`), 'new');
    assert.equal(ledger.accept(`${SID}.2`), 'duplicate');
    assert.equal(ledger.accept(`${SID}.1`), 'duplicate');
    assert.equal(ledger.accept(`${SID}.4`), 'gap');
    assert.deepEqual([ledger.lastId, ledger.lastSeq], [`${SID}.2`, 2], 'a gap is not taken');
    assert.equal(ledger.accept(`${SID}.3`), 'new');
    assert.equal(ledger.accept('k.9'), 'unnumbered');
    assert.equal(ledger.lastId, `${SID}.3`);
  });

  test('a replay that overlaps what arrived is appended once', async () => {
    const ledger = new EventLedger(SID);
    const deltas = [];
    const handlers = { onDelta: (t) => deltas.push(t) };
    const first = await consumeStream(sse([ev(1, 'a'), ev(2, 'b')]), handlers, { ledger });
    assert.deepEqual([first.status, first.lastEventId, first.newEvents], ['cutoff', `${SID}.2`, 2]);
    const second = await consumeStream(sse([ev(1, 'a'), ev(2, 'b'), ev(3, 'c'), done(4)]), handlers, { ledger });
    assert.deepEqual([second.status, second.lastEventId, second.newEvents], ['done', `${SID}.4`, 2]);
    assert.equal(deltas.join(''), 'abc');
  });

  test('a gap stops the read before the missing events', async () => {
    const ledger = new EventLedger(SID);
    const deltas = [];
    const got = await consumeStream(sse([ev(1, 'a'), ev(3, 'c'), done(4)]), { onDelta: (t) => deltas.push(t) }, { ledger });
    assert.deepEqual([got.status, got.code, got.lastEventId], ['cutoff', 'gap', `${SID}.1`]);
    assert.deepEqual(deltas, ['a']);
  });

  test('an id-less error frame is the connection’s, a stored one is the stream’s', async () => {
    const connection = await consumeStream(sse([ev(1, 'a'), bare('producer_lost')]), {}, { ledger: new EventLedger(SID) });
    assert.deepEqual([connection.status, connection.code, connection.ownId], ['error', 'producer_lost', false]);
    const first = await consumeStream(sse([bare('shutting_down')]), {}, { ledger: new EventLedger(SID) });
    assert.deepEqual([first.status, first.ownId], ['error', false]);
    const stored = `id: ${SID}.2\nevent: error\ndata: {"code":"shutting_down","message":"bye"}\n\n`;
    const stream = await consumeStream(sse([ev(1, 'a'), stored]), {}, { ledger: new EventLedger(SID) });
    assert.deepEqual([stream.status, stream.code, stream.ownId], ['error', 'shutting_down', true]);
  });
});

describe('what an outcome or a resume answer means', () => {
  test('after a connection', () => {
    const cases = [
      [{ status: 'done' }, true, 'finish'],
      [{ status: 'aborted' }, true, 'finish'],
      [{ status: 'timeout', ownId: true }, true, 'finish'],
      [{ status: 'cutoff' }, true, 'resume'],
      [{ status: 'cutoff', code: 'gap' }, true, 'resume'],
      [{ status: 'cutoff' }, false, 'finish'],
      [{ status: 'error', code: 'shutting_down', ownId: false }, true, 'resume'],
      [{ status: 'error', code: 'store_unavailable', ownId: false }, true, 'resume'],
      [{ status: 'error', code: 'producer_lost', ownId: false }, true, 'finish'],
      [{ status: 'error', code: 'shutting_down', ownId: true }, true, 'finish'],
      [{ status: 'error', code: 'upstream_error', ownId: true }, true, 'finish'],
      [{ status: 'error', code: 'cancelled', ownId: true }, true, 'finish'],
      [{ status: 'error', code: 'shutting_down', ownId: false }, false, 'finish'],
    ];
    for (const [outcome, resumable, want] of cases) {
      assert.equal(afterConnection(outcome, resumable), want, JSON.stringify([outcome, resumable]));
    }
  });

  test('the answer to GET /optimize-stream/<id>', () => {
    assert.equal(resumeAnswer(200, 'text/event-stream; charset=utf-8'), 'stream');
    assert.equal(resumeAnswer(200, 'text/html'), 'retry');
    assert.equal(resumeAnswer(204), 'finished');
    assert.equal(resumeAnswer(404), 'gone');
    for (const status of [408, 429, 500, 502, 503, 504]) assert.equal(resumeAnswer(status), 'retry', status);
    for (const status of [400, 401, 403, 422]) assert.equal(resumeAnswer(status), 'fail', status);
  });
});

describe('runStream resumes', () => {
  test('a broken body resumes with Last-Event-ID, with no duplicate and no gap', async () => {
    const { outcome, calls, text, log, clock } = await run([
      sse([ev(1, 'Hel'), ev(2, 'lo'), `id: ${SID}.3\ndata: {"cho`], { error: network() }),
      // The replay overlaps what arrived (a server may resend): dropped by id.
      sse([ev(2, 'lo'), ev(3, ', '), ev(4, 'world'), done(5)], { streamId: null }),
    ]);
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'Hello, world');
    assert.deepEqual([outcome.resumes, outcome.streamId, outcome.lastEventId], [1, SID, `${SID}.5`]);
    assert.equal(JSON.parse(calls[0].init.body).resumable, true);
    assert.equal(calls[1].url, `/optimize-stream/${SID}`);
    assert.equal(calls[1].init.method, 'GET');
    assert.equal(calls[1].init.headers['Last-Event-ID'], `${SID}.2`);
    assert.equal(calls[1].init.headers.Accept, 'text/event-stream');
    assert.deepEqual(clock.waits, [500]);
    assert.deepEqual(log, ['dropped: network error', 'resumed 1']);
  });

  test('a finish_reason that came before the drop is kept', async () => {
    const length = `id: ${SID}.2\ndata: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n`;
    const { outcome } = await run([sse([ev(1, 'a'), length], { error: network() }), sse([done(3)])]);
    assert.deepEqual([outcome.status, outcome.finishReason, outcome.resumes], ['done', 'length', 1]);
  });

  test('a body that ends without its terminal frame resumes too', async () => {
    const { outcome, text, calls } = await run([sse([ev(1, 'a')]), sse([ev(2, 'b'), done(3)])]);
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'ab');
    assert.equal(calls.length, 2);
  });

  test('a drop before the first event resumes from the start (no Last-Event-ID)', async () => {
    const { outcome, text, calls } = await run([sse([], { error: network() }), sse([ev(1, 'a'), done(2)])]);
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'a');
    assert.equal(calls[1].init.headers['Last-Event-ID'], undefined);
  });

  test('failed attempts back off, then one succeeds', async () => {
    const { outcome, text, clock, log } = await run([
      sse([ev(1, 'a')], { error: network() }),
      network(),
      json(503, { error: { code: 'store_unavailable', message: 'redis is down' } }),
      sse([ev(2, 'b'), done(3)]),
    ]);
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'ab');
    assert.deepEqual(clock.waits, [500, 1000, 2000]);
    assert.equal(outcome.resumes, 1);
    assert.deepEqual(log, ['dropped: network error', 'resumed 1']);
  });

  test('only when every retry fails is the result cut off, within the budget', async () => {
    const answers = [sse([ev(1, 'kept')], { error: network() }), ...Array.from({ length: 20 }, network)];
    const { outcome, text, clock, calls } = await run(answers);
    assert.deepEqual([outcome.status, outcome.code, outcome.message], ['cutoff', 'resume_failed', 'network error']);
    assert.equal(text, 'kept');
    assert.deepEqual(clock.waits, [500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000]);
    assert.ok(clock.t <= RESUME_BUDGET_MS);
    assert.equal(calls.length, 1 + clock.waits.length);
    assert.equal(outcome.resumes, 0);
  });

  test('404: the stream is gone, the partial text is kept and marked cut off', async () => {
    const { outcome, text } = await run([
      sse([ev(1, 'part')], { error: network() }),
      json(404, { error: { code: 'not_found', message: 'no stream: it has expired' } }),
    ]);
    assert.deepEqual([outcome.status, outcome.code, outcome.message], ['cutoff', 'resume_gone', 'no stream: it has expired']);
    assert.equal(text, 'part');
  });

  test('204 without the terminal frame here is cut off, not complete', async () => {
    const { outcome } = await run([sse([ev(1, 'part')], { error: network() }), new Response(null, { status: 204 })]);
    assert.deepEqual([outcome.status, outcome.code], ['cutoff', 'resume_finished']);
  });

  test('a 4xx that will not change ends the retries', async () => {
    const { outcome, calls } = await run([
      sse([ev(1, 'a')], { error: network() }),
      json(422, { error: { code: 'invalid_request', message: 'Last-Event-ID belongs to another stream' } }),
    ]);
    assert.deepEqual([outcome.status, outcome.code], ['cutoff', 'resume_failed']);
    assert.equal(calls.length, 2);
  });

  test('producer_lost on a resume connection: the generation is gone', async () => {
    const { outcome, text, calls } = await run([
      sse([ev(1, 'a')], { error: network() }),
      sse([ev(2, 'b'), bare('producer_lost')]),
    ]);
    assert.deepEqual([outcome.status, outcome.code], ['error', 'producer_lost']);
    assert.equal(text, 'ab');
    assert.equal(calls.length, 2);
  });

  test('shutting_down and store_unavailable without an id: keep retrying', async () => {
    const { outcome, text, calls, log } = await run([
      sse([ev(1, 'a'), bare('shutting_down')]),
      sse([ev(2, 'b'), bare('store_unavailable')]),
      sse([ev(3, 'c'), done(4)]),
    ]);
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'abc');
    assert.equal(calls[2].init.headers['Last-Event-ID'], `${SID}.2`);
    assert.deepEqual(log, ['dropped: shutting_down happened', 'resumed 1', 'dropped: store_unavailable happened', 'resumed 2']);
  });

  test('a stored terminal error (with its id) is final, whatever its code', async () => {
    const stored = `id: ${SID}.2\nevent: error\ndata: {"code":"shutting_down","message":"bye"}\n\n`;
    const { outcome, calls } = await run([sse([ev(1, 'a'), stored])]);
    assert.deepEqual([outcome.status, outcome.code], ['error', 'shutting_down']);
    assert.equal(calls.length, 1);
  });

  test('a replay with a gap is resumed again from the last event received', async () => {
    const { outcome, text, calls } = await run([
      sse([ev(1, 'a')], { error: network() }),
      sse([ev(3, 'c'), done(4)]),
      sse([ev(2, 'b'), ev(3, 'c'), done(4)]),
    ]);
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'abc');
    assert.equal(calls[2].init.headers['Last-Event-ID'], `${SID}.1`);
  });

  test('connections that are accepted but break at once do not restart the budget', async () => {
    const answers = [sse([ev(1, 'a')], { error: network() }), ...Array.from({ length: 20 }, () => sse([], { error: network() }))];
    const { outcome, clock } = await run(answers);
    assert.deepEqual([outcome.status, outcome.code], ['cutoff', 'resume_failed']);
    assert.ok(clock.t <= RESUME_BUDGET_MS);
    assert.equal(outcome.resumes, clock.waits.length);
  });

  test('a connection that delivers events starts a new budget', async () => {
    const answers = [sse([ev(1, 'a')], { error: network() })];
    for (let n = 2; n <= 12; n++) answers.push(sse([ev(n, String.fromCharCode(96 + n))], { error: network() }));
    answers.push(sse([done(13)]));
    const { outcome, text, clock } = await run(answers);
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'abcdefghijkl');
    assert.deepEqual(new Set(clock.waits), new Set([500]), 'each drop starts again at 0.5 s');
    assert.equal(outcome.resumes, 12);
  });

  test('no X-Stream-Id (a server without resumable streams): cut off, no resume', async () => {
    const { outcome, calls } = await run([sse([`data: ${chunk('a')}\n\n`], { error: network(), streamId: null })]);
    assert.equal(outcome.status, 'cutoff');
    assert.equal(calls.length, 1);
  });

  test('stopping during the backoff ends the run as aborted, with no more requests', async () => {
    const controller = new AbortController();
    const { outcome, calls } = await run([sse([ev(1, 'a')], { error: network() })], {
      signal: controller.signal,
      onDropped: () => controller.abort(),
    });
    assert.equal(outcome.status, 'aborted');
    assert.equal(calls.length, 1);
  });

  test('stopping during a resumed read ends the run as aborted', async () => {
    const controller = new AbortController();
    const { outcome, text } = await run([
      sse([ev(1, 'a')], { error: network() }),
      (_url, init) => {
        const body = new ReadableStream({
          start(c) {
            c.enqueue(enc.encode(ev(2, 'b')));
            init.signal.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
          },
        });
        return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
      },
    ], { signal: controller.signal, onDelta: (t) => t === 'b' && controller.abort() });
    assert.equal(outcome.status, 'aborted');
    assert.equal(text, '');
  });

  test('a read that stalls (no byte, not even a heartbeat) is resumed', async () => {
    const { outcome, text, log } = await run(
      [sse([ev(1, 'a'), ': keep-alive\n\n'], { hang: true }), sse([ev(2, 'b'), done(3)])],
      { resume: { jitter: 0, stallMs: 50 } },
    );
    assert.equal(outcome.status, 'done');
    assert.equal(text, 'ab');
    assert.deepEqual(log, ['dropped: nothing arrived for 0.05 s', 'resumed 1']);
  });

  test('a resume request that gets no answer in time is retried', async () => {
    const { outcome, calls } = await run(
      [
        sse([ev(1, 'a')], { error: network() }),
        (_url, init) => new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')))),
        sse([ev(2, 'b'), done(3)]),
      ],
      { resume: { jitter: 0, connectTimeoutMs: 30 } },
    );
    assert.equal(outcome.status, 'done');
    assert.equal(calls.length, 3);
  });
});

describe('cancelStream', () => {
  test('DELETE /optimize-stream/<id> with keepalive', async () => {
    const { fetch, calls } = fakeFetch([json(202, { id: SID, status: 'cancelling' })]);
    assert.equal(await cancelStream(SID, { fetch }), true);
    assert.equal(calls[0].url, `/optimize-stream/${SID}`);
    assert.equal(calls[0].init.method, 'DELETE');
    assert.equal(calls[0].init.keepalive, true);
  });

  test('best effort: failures resolve false, no id sends nothing', async () => {
    assert.equal(await cancelStream(SID, { fetch: fakeFetch([network()]).fetch }), false);
    assert.equal(await cancelStream(SID, { fetch: fakeFetch([json(404, {})]).fetch }), false);
    const { fetch, calls } = fakeFetch([]);
    assert.equal(await cancelStream(null, { fetch }), false);
    assert.equal(calls.length, 0);
    const throwing = () => {
      throw new TypeError('keepalive budget exceeded');
    };
    assert.equal(await cancelStream(SID, { fetch: throwing }), false);
  });
});
