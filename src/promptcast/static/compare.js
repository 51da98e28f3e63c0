// Compare models: the same rewrite started on 2 or 3 models at once, side by
// side, each streaming and each stoppable; the person continues with one.
// Each column is a rewrite run like the page's own (runStream: resumable,
// stopped with a DELETE).

import { h, setAlert } from './dom.js';
import { formatCount, formatRate, formatSeconds, RunClock } from './stats.js';
import { cancelStream, OUTCOME_STATE, runStream } from './stream.js';

const MAX_MODELS = 3;
export class ComparePanel {
  /**
   * @param {{t: Function, locale: Function, announce: Function,
   *          form: () => {prompt: string, type: string, opening: string | null}}} ctx
   * @param {{onPick: (run: object) => void}} actions
   */
  constructor(ctx, actions) {
    this.ctx = ctx;
    this.actions = actions;
    const $ = (id) => document.getElementById(id);
    this.el = {
      list: $('compareModelList'),
      error: $('compareError'),
      start: $('compareButton'),
      columns: $('compareColumns'),
    };
    this.runs = [];
    this.el.start.addEventListener('click', () => this.start());
    this.el.list.addEventListener('change', () => {
      setAlert(this.el.error, '');
      this.limit();
    });
    this.el.columns.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-action]');
      if (!button) return;
      const run = this.runs[Number(button.closest('[data-run]').dataset.run)];
      if (button.dataset.action === 'stop') this.stopRun(run);
      else if (button.dataset.action === 'pick') this.actions.onPick(run);
    });
    // Leaving the page stops the generations at once rather than after the grace period.
    window.addEventListener('pagehide', () => {
      for (const run of this.runs) if (run.running) cancelStream(run.streamId);
    });
  }

  get running() {
    return this.runs.some((run) => run.running);
  }

  /** The usable models, as the page's model list has them. */
  setModels(options) {
    const checked = new Set(this.checked());
    this.el.list.replaceChildren(
      ...options
        .filter((o) => !o.disabled)
        .map((o, i) => {
          const input = h('input', { type: 'checkbox', id: `compareModel${i}`, value: o.value, checked: checked.has(o.value) });
          return h('label', { class: 'compare-model', for: `compareModel${i}` }, input, ` ${o.value}`);
        }),
    );
    this.limit();
  }

  checked() {
    return [...this.el.list.querySelectorAll('input:checked')].map((input) => input.value);
  }

  /** At most three: the others are disabled while three are ticked. */
  limit() {
    const full = this.checked().length >= MAX_MODELS;
    for (const input of this.el.list.querySelectorAll('input')) input.disabled = full && !input.checked;
  }

  async start() {
    const { t } = this.ctx;
    if (this.running) return;
    const form = this.ctx.form();
    if (form.prompt.trim() === '') {
      setAlert(this.el.error, t('form.needPrompt'));
      return;
    }
    const models = this.checked();
    if (models.length < 2 || models.length > MAX_MODELS) {
      setAlert(this.el.error, t('cmp.needModels'));
      this.el.list.querySelector('input:not(:disabled)')?.focus();
      return;
    }
    setAlert(this.el.error, '');
    this.runs = models.map((model, i) => this.column(model, i, form));
    this.el.columns.replaceChildren(...this.runs.map((run) => run.el.root));
    this.el.start.disabled = true;
    await Promise.all(this.runs.map((run) => this.play(run)));
    this.el.start.disabled = false;
  }

  column(model, index, form) {
    const { t } = this.ctx;
    const badge = h('span', { class: 'badge', dataset: { state: 'waiting' }, text: t('status.waiting') });
    const stats = h('dl', { class: 'stats try-stats' });
    const output = h('div', { class: 'compare-output', 'aria-live': 'polite', 'aria-busy': 'true' });
    const error = h('p', { class: 'try-error alert', role: 'alert', hidden: true });
    const stop = h('button', { type: 'button', class: 'button secondary small compare-stop', dataset: { action: 'stop' }, text: t('cmp.stop') });
    const pick = h('button', { type: 'button', class: 'button primary small compare-pick', dataset: { action: 'pick' }, disabled: true, text: t('cmp.pick') });
    const root = h(
      'section',
      { class: 'compare-column', dataset: { run: index, model, state: 'waiting' }, 'aria-label': model },
      h('div', { class: 'try-column-head' }, h('h3', { class: 'try-column-title', text: model }), badge),
      stats,
      output,
      error,
      h('div', { class: 'actions' }, stop, pick),
    );
    return {
      model,
      request: { prompt: form.prompt, type: form.type, model, opening: form.opening },
      text: '',
      state: 'waiting',
      running: false,
      streamId: null,
      controller: null,
      clock: null,
      el: { root, badge, stats, output, error, stop, pick },
    };
  }

  setState(run, state) {
    run.state = state;
    run.el.root.dataset.state = state;
    run.el.badge.dataset.state = state;
    run.el.badge.textContent = this.ctx.t(`status.${state}`);
    run.el.output.setAttribute('aria-busy', state === 'waiting' || state === 'streaming' ? 'true' : 'false');
  }

  renderFigures(run) {
    const { t, locale } = this.ctx;
    const f = run.clock.figures(performance.now());
    const rows = [
      ['stats.ttft', formatSeconds(f.ttftMs, locale(), t('unit.s'))],
      ['stats.tokens', formatCount(f.tokens, locale())],
      ['stats.rate', formatRate(f.rate, locale())],
    ];
    run.el.stats.replaceChildren(...rows.map(([key, value]) => h('div', {}, h('dt', { text: t(key) }), h('dd', { text: value }))));
  }

  async play(run) {
    run.running = true;
    run.controller = new AbortController();
    run.clock = new RunClock(performance.now());
    this.renderFigures(run);
    const timer = setInterval(() => this.renderFigures(run), 250);
    const outcome = await runStream({
      request: run.request,
      signal: run.controller.signal,
      resume: { stallMs: 45_000 },
      onOpen: ({ streamId }) => {
        run.streamId = streamId;
      },
      onDelta: (text) => {
        if (run.clock.chunks === 0) this.setState(run, 'streaming');
        run.clock.token(performance.now());
        run.text += text;
        run.el.output.append(text);
      },
      onUsage: (usage) => run.clock.usage(usage),
    });
    clearInterval(timer);
    run.clock.end(performance.now());
    run.running = false;
    run.stats = run.clock.figures(performance.now());
    this.renderFigures(run);
    this.setState(run, OUTCOME_STATE[outcome.status] ?? 'error');
    run.el.stop.disabled = true;
    run.el.pick.disabled = outcome.status !== 'done' || run.text.trim() === '';
    const { t } = this.ctx;
    const message = outcome.message ?? '';
    const text = { done: '', aborted: t('try.stopped'), timeout: t('try.timedOut', { message }), cutoff: t('try.cutoff') }[outcome.status] ?? t('try.failed', { message });
    setAlert(run.el.error, text);
  }

  stopRun(run) {
    if (!run?.running) return;
    cancelStream(run.streamId);
    run.controller.abort();
  }

  relabel() {
    const { t } = this.ctx;
    for (const run of this.runs) {
      this.setState(run, run.state);
      run.el.stop.textContent = t('cmp.stop');
      run.el.pick.textContent = t('cmp.pick');
      if (run.clock) this.renderFigures(run);
    }
  }
}
