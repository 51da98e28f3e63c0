// The results of a run drawn on the page: the matrix (a row per case, a column
// per prompt), filled cell by cell as the run streams; the summary table; a
// bar chart per prompt (SVG) and a per-case heat map (CSS classes, no inline style).
//
// Model output only ever goes in as text (textContent), never as markup.

import { bars, EvalResults, heat } from './eval-results.js';

const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function caseLabel(source, index) {
  const text = source.message ?? source.conversation?.at(-1)?.content ?? '';
  return { id: source.id ?? `#${index + 1}`, text: text.length > 140 ? `${text.slice(0, 140)}…` : text };
}

function percent(value) {
  return value === null || value === undefined ? '–' : `${(value * 100).toFixed(1)} %`;
}

export class EvalMatrix {
  /**
   * @param {{matrix: HTMLTableElement, summary: HTMLElement, chart: SVGSVGElement, heatmap: HTMLElement}} elements
   * @param {{t: (key: string, params?: object) => string}} i18n
   */
  constructor(elements, i18n) {
    this.el = elements;
    this.i18n = i18n;
    this.results = null;
    this._nodes = new Map(); // "case\0prompt" -> the cell's element
    this._heat = new Map();
    this._pairs = new Map(); // case -> its row's pair element
  }

  /** Start drawing a run of `results` (an EvalResults): every cell pending. */
  begin(results) {
    this.results = results;
    this._nodes.clear();
    this._heat.clear();
    this._pairs.clear();
    this._drawMatrix();
    this._drawHeatmap();
    this.el.summary.replaceChildren();
    this.el.chart.replaceChildren();
  }

  /** Redraw what one applied event changed (`EvalResults.apply`'s answer). */
  update(change) {
    if (!change || !this.results) return;
    if (change.kind === 'summary') {
      this._drawSummary();
      this._drawChart();
      return;
    }
    if (change.kind === 'pair') {
      this._drawPairs(change.case);
      return;
    }
    this._drawCell(change.prompt, change.case);
  }

  /** Labels in the current language. */
  relabel() {
    if (!this.results) return;
    this._drawMatrix();
    this._drawHeatmap();
    for (let c = 0; c < this.results.cases.length; c++) this._drawPairs(c);
    if (this.results.summary) {
      this._drawSummary();
      this._drawChart();
    }
  }

  _drawMatrix() {
    const { t } = this.i18n;
    const { prompts, cases } = this.results;
    const head = el('tr', {}, el('th', { scope: 'col', text: t('eval.case') }), ...prompts.map((p) => el('th', { scope: 'col', text: p })));
    if (prompts.length > 1) head.append(el('th', { scope: 'col', text: t('eval.pairwise') }));
    const rows = cases.map((source, c) => {
      const label = caseLabel(source, c);
      const row = el('tr', { 'data-case': String(c) }, el('th', { scope: 'row', class: 'eval-case' }, el('span', { class: 'eval-case-id', text: label.id }), el('span', { class: 'eval-case-text', text: label.text })));
      for (const p of prompts) {
        const td = el('td', { class: 'eval-cell', 'data-prompt': p, 'data-case': String(c) });
        this._nodes.set(`${c}\u0000${p}`, td);
        row.append(td);
      }
      if (prompts.length > 1) {
        const pair = el('td', { class: 'eval-pairs' });
        this._pairs.set(c, pair);
        row.append(pair);
      }
      return row;
    });
    this.el.matrix.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
    for (const p of prompts) for (let c = 0; c < cases.length; c++) this._drawCell(p, c);
  }

  _drawCell(prompt, index) {
    const td = this._nodes.get(`${index}\u0000${prompt}`);
    const cell = this.results.cell(prompt, index);
    if (!td || !cell) return;
    const { t } = this.i18n;
    td.dataset.state = cell.state;
    const passed = EvalResults.passed(cell);
    td.dataset.pass = passed === null ? '' : String(passed);
    const parts = [];
    if (cell.state === 'pending') parts.push(el('span', { class: 'eval-state', text: t('eval.state.pending') }));
    if (cell.state === 'error') parts.push(el('span', { class: 'eval-state', text: `${t('eval.state.error')}: ${cell.error?.message ?? ''}` }));
    if (cell.text) parts.push(el('div', { class: 'eval-answer', text: cell.text }));
    if (cell.state === 'streaming' && !cell.text) parts.push(el('span', { class: 'eval-state', text: t('eval.state.streaming') }));
    if (cell.checks.length) {
      parts.push(el('ul', { class: 'eval-checks' }, ...cell.checks.map((c) => el('li', { class: c.pass ? 'pass' : 'fail', text: `${c.pass ? '✓' : '✗'} ${c.kind}: ${c.reason}` }))));
    }
    if (cell.score !== null) parts.push(el('p', { class: 'eval-score', text: `${t('eval.score', { score: cell.score })} · ${cell.reason ?? ''}` }));
    else if (cell.judgeError) parts.push(el('p', { class: 'eval-judge-error', text: t('eval.judgeError', { message: cell.judgeError.message }), title: cell.raw ?? '' }));
    td.replaceChildren(...parts);
    const square = this._heat.get(`${index}\u0000${prompt}`);
    if (square) {
      square.className = `eval-heat heat-${heat(cell)}`;
      square.title = `${prompt} · #${index + 1}${cell.score !== null ? ` · ${cell.score}` : ''}`;
    }
  }

  _drawPairs(index) {
    const td = this._pairs.get(index);
    if (!td) return;
    const { t } = this.i18n;
    const lines = this.results.pairs.filter((j) => j.case === index).map((j) => {
      let text;
      if (j.error) text = t('eval.judgeError', { message: j.error.message });
      else if (j.winner === 'tie') text = j.consistent === false ? t('eval.pairInconsistent') : t('eval.pairTie');
      else text = t('eval.pairResult', { winner: j.winner });
      return el('li', { class: j.error ? 'error' : j.winner === 'tie' ? 'tie' : 'win', text: `${j.pair.join(' / ')}: ${text}` });
    });
    td.replaceChildren(el('ul', { class: 'eval-pair-list' }, ...lines));
  }

  _drawHeatmap() {
    const { t } = this.i18n;
    const { prompts, cases } = this.results;
    const grid = el('div', { class: 'eval-heat-grid', role: 'img', 'aria-label': t('eval.heatmap') });
    grid.dataset.columns = String(prompts.length);
    grid.append(el('span', { class: 'eval-heat-corner' }), ...prompts.map((p) => el('span', { class: 'eval-heat-head', text: p })));
    for (let c = 0; c < cases.length; c++) {
      grid.append(el('span', { class: 'eval-heat-row', text: caseLabel(cases[c], c).id }));
      for (const p of prompts) {
        const square = el('span', { class: 'eval-heat heat-pending' });
        this._heat.set(`${c}\u0000${p}`, square);
        grid.append(square);
      }
    }
    this.el.heatmap.replaceChildren(el('h3', { class: 'eval-sub', text: t('eval.heatmap') }), grid);
    for (const p of prompts) for (let c = 0; c < cases.length; c++) this._drawCell(p, c);
  }

  _drawSummary() {
    const { t } = this.i18n;
    const summary = this.results.summary;
    const cols = ['prompt', 'rules', 'score', 'win', 'tokens', 'cost', 'latency', 'errors'];
    const rows = summary.prompts.map((p) => {
      const win = p.pairwise && p.pairwise.win_rate !== null ? `${percent(p.pairwise.win_rate)} (${p.pairwise.win_interval.map((x) => Math.round(x * 100)).join('–')})` : '–';
      const cells = [
        p.name,
        `${percent(p.rules.pass_rate)} (${p.rules.passed}/${p.rules.checked})`,
        p.judge.mean === null ? '–' : p.judge.mean.toFixed(2),
        win,
        String(p.tokens.total),
        p.cost === null ? '–' : p.cost.toFixed(4),
        p.latency_ms.p50 === null ? '–' : `${Math.round(p.latency_ms.p50)} / ${Math.round(p.latency_ms.p95)} ms`,
        String(p.errors + p.judge.errors),
      ];
      return el('tr', { 'data-prompt': p.name }, ...cells.map((text, i) => el(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row', text } : { text })));
    });
    const table = el('table', { class: 'eval-summary-table' }, el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', { scope: 'col', text: t(`eval.col.${c}`) })))), el('tbody', {}, ...rows));
    this.el.summary.replaceChildren(el('h3', { class: 'eval-sub', text: t('eval.summary') }), table);
  }

  _drawChart() {
    const { t } = this.i18n;
    const chart = this.el.chart;
    const prompts = this.results.summary.prompts;
    const groups = prompts.map((p) => ({ name: p.name, bars: bars(p) }));
    const barWidth = 18;
    const gap = 6;
    const groupGap = 28;
    const height = 140;
    const top = 16;
    let x = 10;
    const nodes = [];
    for (const group of groups) {
      const start = x;
      for (const bar of group.bars) {
        const h = Math.max(1, Math.round(bar.value * height));
        const rect = svg('rect', { x, y: top + height - h, width: barWidth, height: h, class: `eval-bar eval-bar-${bar.key}` });
        const title = svg('title');
        title.textContent = `${group.name} · ${t(`eval.bar.${bar.key}`)}: ${bar.label ?? percent(bar.value)}`;
        rect.append(title);
        nodes.push(rect);
        if (bar.interval) {
          const [low, high] = bar.interval;
          nodes.push(svg('line', { x1: x + barWidth / 2, x2: x + barWidth / 2, y1: top + height - high * height, y2: top + height - low * height, class: 'eval-whisker' }));
        }
        x += barWidth + gap;
      }
      const label = svg('text', { x: (start + x - gap) / 2, y: top + height + 16, 'text-anchor': 'middle', class: 'eval-bar-label' });
      label.textContent = group.name;
      nodes.push(label);
      x += groupGap;
    }
    chart.setAttribute('viewBox', `0 0 ${Math.max(x, 120)} ${top + height + 24}`);
    chart.setAttribute('role', 'img');
    chart.setAttribute('aria-label', t('eval.chart'));
    const legend = ['rules', 'score', 'win'].filter((k) => groups.some((g) => g.bars.some((b) => b.key === k)));
    chart.replaceChildren(...nodes);
    chart.dataset.legend = legend.map((k) => t(`eval.bar.${k}`)).join(' · ');
    const caption = chart.parentElement?.querySelector('.eval-legend');
    if (caption) caption.replaceChildren(...legend.map((k) => el('span', { class: `eval-legend-item eval-bar-${k}`, text: t(`eval.bar.${k}`) })));
  }
}
