// The live figures of a run: time to first token, tokens, tokens per second,
// elapsed. Pure; times are milliseconds from any monotonic clock.

export class RunClock {
  constructor(now) {
    this.startedAt = now;
    this.firstTokenAt = null;
    this.lastTokenAt = null;
    this.endedAt = null;
    this.chunks = 0; // content-bearing chunks: one token each, near enough
    this.usageTokens = null; // completion_tokens from the usage chunk, when sent
    this.resumes = 0; // connections resumed after a drop
  }

  resume() {
    this.resumes += 1;
  }

  token(now) {
    if (this.firstTokenAt === null) this.firstTokenAt = now;
    this.lastTokenAt = now;
    this.chunks += 1;
  }

  usage(usage) {
    const n = usage?.completion_tokens;
    if (Number.isFinite(n) && n >= 0) this.usageTokens = n;
  }

  end(now) {
    if (this.endedAt === null) this.endedAt = now;
  }

  /** The figures at `now` (ignored once the run has ended). */
  figures(now) {
    const at = this.endedAt ?? now;
    const tokens = this.usageTokens ?? this.chunks;
    const ttftMs = this.firstTokenAt === null ? null : this.firstTokenAt - this.startedAt;
    let rate = null;
    if (this.firstTokenAt !== null) {
      // Rate over the generation, from the first token to the last (or to now
      // while the stream is open): the wait for the first token is its own figure.
      const until = this.endedAt !== null ? (this.lastTokenAt ?? at) : at;
      const seconds = (until - this.firstTokenAt) / 1000;
      if (seconds > 0.05 && tokens > 1) rate = (tokens - 1) / seconds;
    }
    return { ttftMs, tokens, rate, elapsedMs: at - this.startedAt, exact: this.usageTokens !== null, resumes: this.resumes };
  }
}

/** "0.42 s", "3.1 s", "72 s" (in the unit pattern of `unitS`, e.g. "{v} s"). */
export function formatSeconds(ms, locale, unitS = '{v} s') {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  const s = Math.max(0, ms) / 1000;
  const digits = s < 10 ? 2 : s < 100 ? 1 : 0;
  const v = new Intl.NumberFormat(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(s);
  return unitS.replace('{v}', v);
}

export function formatCount(n, locale) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return new Intl.NumberFormat(locale).format(n);
}

export function formatRate(rate, locale) {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return '–';
  return new Intl.NumberFormat(locale, { minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(rate);
}

/** "+12.5 %", "−40 %" with a true minus sign; null when there is no base. */
export function formatPercent(percent, locale) {
  if (percent === null || !Number.isFinite(percent)) return null;
  const abs = new Intl.NumberFormat(locale, { maximumFractionDigits: Math.abs(percent) < 10 ? 1 : 0 }).format(Math.abs(percent));
  const sign = percent > 0 ? '+' : percent < 0 ? '−' : '±';
  return `${sign}${abs} %`;
}
