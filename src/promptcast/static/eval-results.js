// An evaluation run's results on the page, built from its events as they come.
//
// Pure: no DOM. `apply()` takes one `/eval` event (`cell`, `delta`,
// `judgement`, `summary`) and says which cell changed; the matrix redraws only
// that one. Exports: JSON (summary, cells, judgements) and CSV (one row a cell).

export const CELL_STATES = ['pending', 'streaming', 'done', 'error'];

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

export class EvalResults {
  /**
   * @param {string[]} prompts the prompts' names, in run order
   * @param {object[]} cases the cases, as sent
   */
  constructor(prompts, cases) {
    this.prompts = prompts;
    this.cases = cases;
    this.cells = new Map();
    for (const p of prompts) for (let c = 0; c < cases.length; c++) this.cells.set(key(p, c), blank());
    this.pairs = []; // pairwise judgements, as received
    this.summary = null;
    this.judgements = [];
  }

  cell(prompt, index) {
    return this.cells.get(key(prompt, index));
  }

  /**
   * Take one event of the run.
   * @returns {{kind: string, prompt?: string, case?: number} | null} what changed
   */
  apply(ev) {
    if (!['cell', 'delta', 'judgement', 'summary'].includes(ev.event)) return null;
    const body = parse(ev.data);
    if (body === null || typeof body !== 'object') return null;
    if (ev.event === 'summary') {
      this.summary = body;
      return { kind: 'summary' };
    }
    if (ev.event === 'judgement' && Array.isArray(body.pair)) {
      this.pairs.push(body);
      this.judgements.push(body);
      return { kind: 'pair', case: body.case };
    }
    const cell = this.cell(body.prompt, body.case);
    if (!cell) return null;
    if (ev.event === 'delta') {
      if (cell.state === 'pending') cell.state = 'streaming';
      if (cell.state === 'streaming') cell.text += String(body.text ?? '');
    } else if (ev.event === 'cell') {
      cell.state = body.error ? 'error' : 'done';
      cell.text = body.error ? '' : String(body.text ?? '');
      cell.checks = Array.isArray(body.checks) ? body.checks : [];
      cell.error = body.error ?? null;
      cell.latencyMs = body.latency_ms ?? null;
    } else {
      this.judgements.push(body);
      cell.judged = true;
      cell.score = typeof body.score === 'number' ? body.score : null;
      cell.reason = body.reason ?? null;
      cell.judgeError = body.error ?? null;
      cell.raw = body.raw ?? null;
    }
    return { kind: ev.event, prompt: body.prompt, case: body.case };
  }

  /** How many cells have finished (done or failed). */
  get finished() {
    let n = 0;
    for (const cell of this.cells.values()) n += cell.state === 'done' || cell.state === 'error';
    return n;
  }

  /** Whether the cell passed every rule: true, false, or null when the case has none. */
  static passed(cell) {
    if (cell.state !== 'done' || cell.checks.length === 0) return null;
    return cell.checks.every((c) => c.pass);
  }

  /** The run as one JSON document: what "Export JSON" saves. */
  toJSON() {
    const cells = [];
    for (const p of this.prompts) {
      for (let c = 0; c < this.cases.length; c++) {
        const cell = this.cell(p, c);
        cells.push({ prompt: p, case: c, state: cell.state, text: cell.text, checks: cell.checks, error: cell.error, score: cell.score, reason: cell.reason, judge_error: cell.judgeError, raw: cell.raw, latency_ms: cell.latencyMs });
      }
    }
    return { summary: this.summary, prompts: this.prompts, cases: this.cases, cells, pairs: this.pairs };
  }

  /** One row a cell, spreadsheet-safe: what "Export CSV" saves. */
  toCSV() {
    const header = ['prompt', 'case', 'id', 'message', 'answer', 'rules_passed', 'checks', 'score', 'judge_reason', 'error', 'latency_ms'];
    const rows = [header];
    for (const p of this.prompts) {
      for (let c = 0; c < this.cases.length; c++) {
        const cell = this.cell(p, c);
        const source = this.cases[c];
        const message = source.message ?? source.conversation?.at(-1)?.content ?? '';
        const passed = EvalResults.passed(cell);
        rows.push([
          p, c, source.id ?? '', message, cell.text,
          passed === null ? '' : passed ? 'yes' : 'no',
          cell.checks.map((x) => `${x.pass ? 'pass' : 'fail'} ${x.kind}: ${x.reason}`).join('; '),
          cell.score ?? '', cell.reason ?? cell.judgeError?.message ?? '',
          cell.error ? `${cell.error.code}: ${cell.error.message}` : '',
          cell.latencyMs ?? '',
        ]);
      }
    }
    return rows.map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
  }
}

function key(prompt, index) {
  return `${index}\u0000${prompt}`;
}

function blank() {
  return { state: 'pending', text: '', checks: [], error: null, latencyMs: null, judged: false, score: null, reason: null, judgeError: null, raw: null };
}

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
 * A text that a spreadsheet would run as a formula (=, +, -, @ first) gets a
 * leading apostrophe: model output is untrusted.
 */
export function csvField(value) {
  let text = String(value ?? '');
  if (/^[=+\-@\t\r]/.test(text) && typeof value !== 'number') text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The heat map's colour class for a cell: by score when judged, else by its rules. */
export function heat(cell) {
  if (cell.state === 'error') return 'error';
  if (cell.state !== 'done') return 'pending';
  if (cell.score !== null) return `score-${Math.max(0, Math.min(10, Math.round(cell.score)))}`;
  const passed = EvalResults.passed(cell);
  return passed === null ? 'unchecked' : passed ? 'pass' : 'fail';
}

/** The bars of one prompt from the summary: each a 0-1 value with its interval, if any. */
export function bars(promptSummary) {
  const out = [];
  const rules = promptSummary.rules;
  if (rules?.pass_rate !== null && rules?.pass_rate !== undefined) out.push({ key: 'rules', value: rules.pass_rate, interval: rules.interval });
  const mean = promptSummary.judge?.mean;
  if (mean !== null && mean !== undefined) out.push({ key: 'score', value: mean / 10, interval: null, label: mean.toFixed(1) });
  const pairwise = promptSummary.pairwise;
  if (pairwise?.win_rate !== null && pairwise?.win_rate !== undefined) out.push({ key: 'win', value: pairwise.win_rate, interval: pairwise.win_interval });
  return out;
}

/** A kept evaluation's headline figures, a prompt at a time: rules passed, judge mean, win rate. */
export function pastFigures(summary) {
  const pct = (x) => `${Math.round(x * 1000) / 10} %`;
  return (summary?.prompts ?? [])
    .map((p) => {
      const parts = [];
      if (p.rules?.pass_rate !== null && p.rules?.pass_rate !== undefined) parts.push(pct(p.rules.pass_rate));
      if (p.judge?.mean !== null && p.judge?.mean !== undefined) parts.push(p.judge.mean.toFixed(1));
      if (p.pairwise?.win_rate !== null && p.pairwise?.win_rate !== undefined) parts.push(`${pct(p.pairwise.win_rate)} ↑`);
      return `${p.name}: ${parts.join(' · ') || '–'}`;
    })
    .join(' | ');
}
