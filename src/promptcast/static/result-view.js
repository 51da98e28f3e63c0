// The result panel: raw text appended as it arrives, the Markdown and diff
// views re-rendered on a time budget, the state badge, notices and figures.
//
// Streaming cost stays flat: each animation frame appends one text node with
// whatever arrived since the last frame. The Markdown view is rendered
// incrementally while the text streams: blocks before the last blank line
// (outside code fences) are rendered once and kept, only the tail after it is
// re-rendered; at the end the whole text is rendered once more, exactly. The
// Markdown and diff views are rendered only when visible, at an interval that
// grows with how long the previous render took.

import { markdownFragment, renderDiff, renderMarkdown } from './render.js';
import { stableBoundary } from './blocks.js';
import { formatCount, formatRate, formatSeconds } from './stats.js';

const VIEWS = ['rendered', 'raw', 'diff'];
const BUSY_STATES = new Set(['waiting', 'streaming', 'resuming']);
// Up to this length the finished text is rendered once more as a whole (a few
// ms); past it the incremental rendering stands, so the end of a very long
// run does not freeze the page. They differ only in rare constructs spanning
// blank lines (loose lists drawn as consecutive lists, reference links).
const FULL_RENDER_MAX = 24_000;
// How long one diff may take before it falls back to a line diff (ms).
const DIFF_TIMEOUT_LIVE = 40;
const DIFF_TIMEOUT_FINAL = 150;

/** Re-render at most every max(min, cost × factor) ms, capped at max. */
class Budget {
  constructor({ min, factor, max }) {
    this.min = min;
    this.factor = factor;
    this.max = max;
    this.lastAt = -Infinity;
    this.cost = 0;
    this.timer = null;
  }

  wait(now) {
    const interval = Math.min(this.max, Math.max(this.min, this.cost * this.factor));
    return Math.max(0, this.lastAt + interval - now);
  }

  measure(fn) {
    const t0 = performance.now();
    const value = fn();
    const t1 = performance.now();
    this.cost = t1 - t0;
    this.lastAt = t1;
    return value;
  }

  cancel() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

export class ResultView {
  /**
   * @param {{t: (key: string, params?: object) => string, locale: () => string}} i18n
   */
  constructor(i18n) {
    this.i18n = i18n;
    const $ = (id) => document.getElementById(id);
    this.el = {
      result: $('result'),
      empty: $('resultEmpty'),
      rendered: $('resultRendered'),
      raw: $('resultRaw'),
      diff: $('resultDiff'),
      diffBody: $('diffBody'),
      diffLegend: $('diffLegend'),
      badge: $('statusBadge'),
      notice: $('notice'),
      noticeText: $('noticeText'),
      noticeDetail: $('noticeDetail'),
      ttft: $('statTtft'),
      tokens: $('statTokens'),
      rate: $('statRate'),
      elapsed: $('statElapsed'),
      resumes: $('statResumes'),
      resumesItem: $('statResumesItem'),
      review: $('review'),
      reviewList: $('reviewList'),
      tabs: [...document.querySelectorAll('[role="tab"][data-view]')],
    };
    this.view = 'rendered';
    this.original = '';
    this.text = '';
    this.pending = '';
    this.state = 'idle';
    this.noticeData = null;
    this.figures = null;
    this.reviewData = null;
    this.reviewRenderer = null;
    this.frame = 0;
    this.diffCoarse = false;
    this.dirty = { rendered: false, diff: false };
    this.md = { frozenLen: 0, frozenNodes: 0 }; // the Markdown rendered once and kept
    this.budget = {
      rendered: new Budget({ min: 50, factor: 5, max: 1000 }),
      diff: new Budget({ min: 200, factor: 8, max: 3000 }),
    };
    this._wireTabs();
  }

  // ---- content -----------------------------------------------------------

  /** Clear the panel for a new run comparing against `original`. */
  begin(original) {
    this._cancelRenders();
    this.original = original;
    this.text = '';
    this.pending = '';
    this.dirty = { rendered: false, diff: false };
    this.md = { frozenLen: 0, frozenNodes: 0 };
    this.el.rendered.replaceChildren();
    this.el.raw.replaceChildren();
    this.el.diffBody.replaceChildren();
    this.diffCoarse = false;
    this._updateDiffLegend();
    this.setFigures(null);
    this.setReview(null);
    this.clearNotice();
    this._syncEmpty();
  }

  /** Text that just arrived: appended on the next frame, never re-rendering all of it. */
  append(text) {
    if (!text) return;
    this.text += text;
    this.pending += text;
    this.dirty.rendered = true;
    this.dirty.diff = true;
    if (!this.frame) this.frame = requestAnimationFrame(() => this._onFrame());
  }

  /** Show a whole text at once (a restored run). */
  show(original, text) {
    this.begin(original);
    this.text = text;
    this.pending = text;
    this.dirty = { rendered: true, diff: true };
    this.flush();
  }

  /** Bring every visible view up to date now (end of a run). */
  flush() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this._cancelRenders();
    this._appendPending();
    this._renderVisible(true, this.text.length <= FULL_RENDER_MAX);
  }

  // ---- state, notices, figures, review -------------------------------------

  setState(state) {
    this.state = state;
    this.el.result.dataset.state = state;
    this.el.result.setAttribute('aria-busy', BUSY_STATES.has(state) ? 'true' : 'false');
    this.el.badge.dataset.state = state;
    this.el.badge.textContent = this.i18n.t(`status.${state}`);
    this._syncEmpty();
  }

  /** A message about the run, by i18n key (so a language switch re-words it). */
  setNotice(key, params = {}, detail = null, tone = 'warn') {
    this.noticeData = { key, params, detail, tone };
    this._renderNotice();
  }

  clearNotice() {
    this.noticeData = null;
    this._renderNotice();
  }

  setFigures(figures) {
    this.figures = figures;
    const locale = this.i18n.locale();
    const unit = this.i18n.t('unit.s');
    this.el.ttft.textContent = figures ? formatSeconds(figures.ttftMs, locale, unit) : '–';
    this.el.tokens.textContent = figures && (figures.tokens > 0 || figures.exact) ? formatCount(figures.tokens, locale) : '–';
    this.el.rate.textContent = figures ? formatRate(figures.rate, locale) : '–';
    this.el.elapsed.textContent = figures ? formatSeconds(figures.elapsedMs, locale, unit) : '–';
    const resumes = figures?.resumes ?? 0;
    this.el.resumes.textContent = formatCount(resumes, locale);
    this.el.resumesItem.hidden = resumes === 0;
  }

  /** Show a review (from review.js) through `renderer(list, data)`, or hide it. */
  setReview(data, renderer = this.reviewRenderer) {
    this.reviewData = data;
    this.reviewRenderer = renderer;
    this.el.review.hidden = !data;
    if (data && renderer) renderer(this.el.reviewList, data);
    else this.el.reviewList.replaceChildren();
  }

  /** Re-word everything after a language switch. */
  relabel() {
    this.setState(this.state);
    this._renderNotice();
    this.setFigures(this.figures);
    this._updateDiffLegend();
    if (this.reviewData) this.setReview(this.reviewData);
  }

  // ---- views -------------------------------------------------------------

  selectView(view, { focus = false } = {}) {
    if (!VIEWS.includes(view)) return;
    this.view = view;
    for (const tab of this.el.tabs) {
      const selected = tab.dataset.view === view;
      tab.setAttribute('aria-selected', selected ? 'true' : 'false');
      tab.tabIndex = selected ? 0 : -1;
      if (selected && focus) tab.focus();
    }
    this.el.rendered.hidden = view !== 'rendered';
    this.el.raw.hidden = view !== 'raw';
    this.el.diff.hidden = view !== 'diff';
    this._cancelRenders();
    this._renderVisible(true, true);
  }

  _wireTabs() {
    for (const tab of this.el.tabs) {
      tab.addEventListener('click', () => this.selectView(tab.dataset.view));
      tab.addEventListener('keydown', (event) => {
        const i = this.el.tabs.indexOf(tab);
        const n = this.el.tabs.length;
        let next = null;
        if (event.key === 'ArrowRight') next = (i + 1) % n;
        else if (event.key === 'ArrowLeft') next = (i - 1 + n) % n;
        else if (event.key === 'Home') next = 0;
        else if (event.key === 'End') next = n - 1;
        if (next === null) return;
        event.preventDefault();
        this.selectView(this.el.tabs[next].dataset.view, { focus: true });
      });
    }
  }

  // ---- rendering internals ---------------------------------------------------

  _onFrame() {
    this.frame = 0;
    this._appendPending();
    this._renderVisible(false);
  }

  _appendPending() {
    if (!this.pending) return;
    const stick = this._atBottom();
    this.el.raw.append(document.createTextNode(this.pending));
    this.pending = '';
    this._syncEmpty();
    if (stick) this._toBottom();
  }

  /**
   * Render the visible view if its content changed. `force` skips the time
   * budget; `full` renders the whole Markdown text instead of its tail.
   */
  _renderVisible(force, full = false) {
    const view = this.view;
    if (view === 'raw' || !this.dirty[view]) return;
    const budget = this.budget[view];
    budget.cancel();
    const wait = force ? 0 : budget.wait(performance.now());
    if (wait > 0) {
      budget.timer = setTimeout(() => {
        budget.timer = null;
        this._renderVisible(true, full);
      }, wait);
      return;
    }
    const stick = this._atBottom();
    if (view === 'rendered') {
      budget.measure(() => (full ? this._markdownFull() : this._markdownTail()));
    } else {
      // While streaming, a word diff that timed out once will time out again
      // on a longer text: stay with lines until the end, then try once more.
      const live = BUSY_STATES.has(this.state);
      const options = { timeoutMs: live ? DIFF_TIMEOUT_LIVE : DIFF_TIMEOUT_FINAL, linesOnly: live && this.diffCoarse };
      const { coarse } = budget.measure(() => renderDiff(this.el.diffBody, this.original, this.text, options));
      if (coarse !== this.diffCoarse) {
        this.diffCoarse = coarse;
        this._updateDiffLegend();
      }
    }
    this.dirty[view] = false;
    if (stick) this._toBottom();
  }

  _markdownFull() {
    renderMarkdown(this.el.rendered, this.text);
    this.md = { frozenLen: 0, frozenNodes: 0 }; // the next tail render starts over
  }

  _markdownTail() {
    const box = this.el.rendered;
    const { text } = this;
    while (box.childNodes.length > this.md.frozenNodes) box.lastChild.remove();
    const boundary = stableBoundary(text, this.md.frozenLen);
    if (boundary > this.md.frozenLen) {
      box.append(markdownFragment(text.slice(this.md.frozenLen, boundary)));
      this.md = { frozenLen: boundary, frozenNodes: box.childNodes.length };
    }
    box.append(markdownFragment(text.slice(boundary)));
  }

  _cancelRenders() {
    this.budget.rendered.cancel();
    this.budget.diff.cancel();
  }

  _atBottom() {
    const box = this.el.result;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  }

  _toBottom() {
    const box = this.el.result;
    box.scrollTop = box.scrollHeight;
  }

  _syncEmpty() {
    this.el.empty.hidden = this.text !== '' || this.state === 'waiting';
  }

  _updateDiffLegend() {
    this.el.diffLegend.textContent = this.i18n.t(this.diffCoarse ? 'diff.coarse' : 'diff.legend');
  }

  _renderNotice() {
    const data = this.noticeData;
    this.el.notice.hidden = !data;
    if (!data) {
      this.el.noticeText.textContent = '';
      this.el.noticeDetail.textContent = '';
      return;
    }
    this.el.notice.dataset.tone = data.tone;
    this.el.noticeText.textContent = this.i18n.t(data.key, data.params);
    this.el.noticeDetail.hidden = !data.detail;
    this.el.noticeDetail.textContent = data.detail ? this.i18n.t('msg.detail', { message: data.detail }) : '';
  }
}
