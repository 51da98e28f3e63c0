import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { chooseLanguage, detectLanguage, MESSAGES, translate } from '../../src/promptcast/static/i18n.js';
import { formatPercent, formatSeconds, RunClock } from '../../src/promptcast/static/stats.js';

describe('i18n', () => {
  test('follows the browser', () => {
    assert.equal(detectLanguage(['zh-CN', 'en']), 'zh');
    assert.equal(detectLanguage(['zh-Hant-TW']), 'zh');
    assert.equal(detectLanguage(['fr-FR', 'en-GB']), 'en');
    assert.equal(detectLanguage(['de']), 'en');
    assert.equal(detectLanguage([]), 'en');
  });

  test('a saved choice wins', () => {
    assert.equal(chooseLanguage('en', ['zh-CN']), 'en');
    assert.equal(chooseLanguage('xx', ['zh-CN']), 'zh');
    assert.equal(chooseLanguage(null, ['en-US']), 'en');
  });

  test('both languages have the same keys', () => {
    assert.deepEqual(Object.keys(MESSAGES.zh).sort(), Object.keys(MESSAGES.en).sort());
  });

  test('modes read 优化 / 扩写 / 缩写 in Chinese', () => {
    assert.deepEqual(['optimize', 'expand', 'shorten'].map((m) => translate('zh', `type.${m}`)), ['优化', '扩写', '缩写']);
  });

  test('slots are filled, unknown keys fall back', () => {
    assert.equal(translate('en', 'history.count', { n: 3 }), '3 saved');
    assert.equal(translate('zh', 'history.count', { n: 3 }), '已保存 3 条');
    assert.equal(translate('zh', 'no.such.key'), 'no.such.key');
  });

  test('every key named in index.html exists', () => {
    const html = readFileSync(new URL('../../src/promptcast/static/index.html', import.meta.url), 'utf8');
    const keys = [...html.matchAll(/data-i18n(?:-placeholder|-aria-label|-title)?="([^"]+)"/g)].map((m) => m[1]);
    assert.ok(keys.length > 20);
    for (const key of keys) assert.ok(key in MESSAGES.en, `missing ${key}`);
  });

  test('every key built in the page scripts exists', () => {
    for (const state of ['idle', 'waiting', 'streaming', 'resuming', 'done', 'partial', 'cutoff', 'timeout', 'error']) {
      assert.ok(`status.${state}` in MESSAGES.en, state);
    }
    for (const theme of ['auto', 'light', 'dark']) assert.ok(`theme.${theme}` in MESSAGES.en, theme);
    for (const key of ['msg.resuming', 'msg.resumed', 'msg.resumedMany', 'msg.resumeFailed', 'msg.resumeGone', 'msg.resumeFinished', 'stats.resumes']) {
      assert.ok(key in MESSAGES.en && key in MESSAGES.zh, key);
    }
    // Error codes a resumable stream can end with have their own wording.
    for (const code of ['producer_lost', 'abandoned', 'cancelled', 'shutting_down', 'store_unavailable']) {
      assert.ok(`msg.error.${code}` in MESSAGES.en, code);
    }
  });
});

describe('stats', () => {
  test('time to first token, tokens, rate and elapsed', () => {
    const clock = new RunClock(1000);
    assert.deepEqual(clock.figures(1500), { ttftMs: null, tokens: 0, rate: null, elapsedMs: 500, exact: false, resumes: 0 });
    clock.token(1400);
    for (let t = 1500; t <= 2400; t += 100) clock.token(t); // 11 tokens over 1 s
    const live = clock.figures(2400);
    assert.equal(live.ttftMs, 400);
    assert.equal(live.tokens, 11);
    assert.equal(live.rate, 10);
    clock.usage({ completion_tokens: 12 });
    clock.end(3000);
    const final = clock.figures(9999);
    assert.equal(final.tokens, 12);
    assert.equal(final.exact, true);
    assert.equal(final.elapsedMs, 2000);
    assert.equal(final.rate, 11); // (12 - 1) tokens between the first and the last
    assert.equal(final.resumes, 0);
  });

  test('resumes are counted', () => {
    const clock = new RunClock(0);
    clock.resume();
    clock.resume();
    assert.equal(clock.figures(10).resumes, 2);
  });

  test('formatting', () => {
    assert.equal(formatSeconds(420, 'en'), '0.42 s');
    assert.equal(formatSeconds(12345, 'en'), '12.3 s');
    assert.equal(formatSeconds(123456, 'en'), '123 s');
    assert.equal(formatSeconds(null, 'en'), '–');
    assert.equal(formatSeconds(1500, 'zh-CN', '{v} 秒'), '1.50 秒');
    assert.equal(formatPercent(50, 'en'), '+50 %');
    assert.equal(formatPercent(-4.25, 'en'), '−4.3 %');
    assert.equal(formatPercent(null, 'en'), null);
  });
});
