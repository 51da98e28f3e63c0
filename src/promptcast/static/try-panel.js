// The test panel: two versions answer the same customer message as the bot,
// side by side, each column its own ordinary stream through
// POST /v1/chat/completions (chat-stream.js), with its own figures, state
// and error. One Stop ends both; a reply continues both conversations, each
// with its own history.

import { runChat, tryMessages } from './chat-stream.js';
import { h, setAlert } from './dom.js';
import { formatCount, formatRate, formatSeconds, RunClock } from './stats.js';
import { OUTCOME_STATE } from './stream.js';
import { extractVariables, fillVariables, missingVariables } from './variables.js';
import { currentVersion, versionLabel, versionOf } from './versions.js';

/** One column: its version, its conversation, its run. */
class Column {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.el = {
      root,
      title: root.querySelector('.try-column-title'),
      badge: root.querySelector('.badge'),
      stats: root.querySelector('.try-stats'),
      turns: root.querySelector('.try-turns'),
      output: root.querySelector('.test-output'),
      error: root.querySelector('.try-error'),
    };
    this.label = '';
    this.system = '';
    this.history = []; // finished turns: {role, content}
    this.answer = ''; // the answer being streamed (or the last one)
    this.controller = null;
    this.clock = null;
    this.timer = 0;
    this.state = 'idle';
    this.figures = null;
  }

  get running() {
    return this.controller !== null;
  }

  setTitle(label) {
    this.label = label;
    this.el.title.textContent = label;
    this.el.root.setAttribute('aria-label', this.ctx.t('try.columnLabel', { label }));
  }

  setState(state) {
    this.state = state;
    this.el.root.dataset.state = state;
    this.el.badge.dataset.state = state;
    this.el.badge.textContent = this.ctx.t(`status.${state}`);
    this.el.output.setAttribute('aria-busy', state === 'waiting' || state === 'streaming' ? 'true' : 'false');
  }

  renderFigures() {
    const { t, locale } = this.ctx;
    const f = this.figures;
    const unitS = t('unit.s');
    const rows = [
      ['stats.ttft', f ? formatSeconds(f.ttftMs, locale(), unitS) : '–', 'ttft'],
      ['stats.tokens', f ? formatCount(f.tokens, locale()) : '–', 'tokens'],
      ['stats.rate', f ? formatRate(f.rate, locale()) : '–', 'rate'],
    ];
    this.el.stats.replaceChildren(
      ...rows.map(([key, value, name]) => h('div', {}, h('dt', { text: t(key) }), h('dd', { dataset: { stat: name }, text: value }))),
    );
  }

  turnItem(role, content) {
    const { t } = this.ctx;
    const who = role === 'user' ? t('try.customer') : role === 'opening' ? t('try.opening') : t('try.bot');
    return h('li', { class: `try-turn try-turn-${role}` }, h('span', { class: 'try-who', text: who }), h('p', { class: 'try-said', text: content }));
  }

  /** A new conversation: the opening (if any), then the customer's first message. */
  reset(opening, message) {
    this.history = [{ role: 'user', content: message }];
    this.answer = '';
    this.el.turns.replaceChildren(...(opening ? [this.turnItem('opening', opening)] : []), this.turnItem('user', message));
    this.el.output.textContent = '';
    setAlert(this.el.error, '');
  }

  /** The customer's next message, after this column's own last answer. */
  follow(message) {
    if (this.answer) {
      this.history.push({ role: 'assistant', content: this.answer });
      this.el.turns.append(this.turnItem('assistant', this.answer));
    }
    this.history.push({ role: 'user', content: message });
    this.el.turns.append(this.turnItem('user', message));
    this.answer = '';
    this.el.output.textContent = '';
    setAlert(this.el.error, '');
  }

  async run({ model, opening }) {
    const controller = new AbortController();
    this.controller = controller;
    this.clock = new RunClock(performance.now());
    this.figures = this.clock.figures(performance.now());
    this.setState('waiting');
    this.renderFigures();
    this.timer = setInterval(() => {
      this.figures = this.clock.figures(performance.now());
      this.renderFigures();
    }, 250);
    const outcome = await runChat({
      model,
      messages: tryMessages(this.system, opening, this.history),
      signal: controller.signal,
      onDelta: (text) => {
        if (this.clock.chunks === 0) this.setState('streaming');
        this.clock.token(performance.now());
        this.answer += text;
        this.el.output.append(text);
      },
      onUsage: (usage) => this.clock.usage(usage),
    });
    clearInterval(this.timer);
    this.clock.end(performance.now());
    this.figures = this.clock.figures(performance.now());
    this.controller = null;
    this.renderFigures();
    this.setState(OUTCOME_STATE[outcome.status] ?? 'error');
    this.showOutcome(outcome);
    return outcome;
  }

  showOutcome(outcome) {
    const { t } = this.ctx;
    const message = outcome.message ?? '';
    const text = {
      done: '',
      aborted: t('try.stopped'),
      cutoff: t('try.cutoff'),
      timeout: t('try.timedOut', { message }),
      network_error: t('try.network', { message }),
    }[outcome.status] ?? t('try.failed', { message });
    setAlert(this.el.error, text);
    this.el.error.classList.toggle('info', outcome.status === 'aborted');
  }

  stop() {
    this.controller?.abort();
  }

  relabel() {
    if (this.label) this.setTitle(this.label);
    this.setState(this.state);
    this.renderFigures();
  }
}

export class TryPanel {
  /**
   * @param {{t: Function, locale: Function, announce: Function, opening: () => string | null}} ctx
   */
  constructor(ctx) {
    this.ctx = ctx;
    const $ = (id) => document.getElementById(id);
    this.el = {
      panel: $('tryPanel'),
      form: $('tryForm'),
      message: $('testMessageInput'),
      model: $('testModelSelect'),
      left: $('testLeftSelect'),
      right: $('testRightSelect'),
      vars: $('testVariables'),
      varFields: $('testVariableFields'),
      error: $('tryError'),
      run: $('testRunButton'),
      stop: $('testStopButton'),
      replyForm: $('testReplyForm'),
      reply: $('testReplyInput'),
      replyButton: $('testReplyButton'),
    };
    this.columns = [new Column($('testColumnOriginal'), ctx), new Column($('testColumnRewrite'), ctx)];
    this.session = null;
    this.values = new Map(); // variable values, kept across runs
    this.picked = { left: null, right: null, model: null }; // the person's own choices
    this.opening = null; // the opening of the conversation on screen
    this.model = null;

    this.el.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.start();
    });
    this.el.stop.addEventListener('click', () => this.stop());
    this.el.replyForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.reply();
    });
    this.el.left.addEventListener('change', () => {
      this.picked.left = Number(this.el.left.value);
      this.renderColumns();
    });
    this.el.right.addEventListener('change', () => {
      this.picked.right = Number(this.el.right.value);
      this.renderColumns();
    });
    this.el.model.addEventListener('change', () => {
      this.picked.model = this.el.model.value;
    });
    this.el.message.addEventListener('input', () => setAlert(this.el.error, ''));
    this.el.message.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        event.stopPropagation(); // not the page's Start
        this.start();
      }
    });
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.running) this.stop();
    });
    for (const column of this.columns) column.setState('idle');
  }

  get running() {
    return this.columns.some((c) => c.running);
  }

  label(version) {
    return versionLabel(version, this.ctx.t('ver.original'));
  }

  /** The usable models, as the page's model list has them. */
  setModels(options) {
    const wanted = this.el.model.value;
    this.el.model.replaceChildren(...options.map((o) => h('option', { value: o.value, disabled: o.disabled, text: o.label })));
    const usable = options.filter((o) => !o.disabled).map((o) => o.value);
    if (usable.includes(wanted)) this.el.model.value = wanted;
    this.defaultModel();
  }

  defaultModel() {
    const usable = [...this.el.model.options].filter((o) => !o.disabled).map((o) => o.value);
    // By default the bot runs on the model that made the rewrite.
    const rewrite = this.session ? versionOf(this.session, Number(this.el.right.value)) : null;
    for (const choice of [this.picked.model, rewrite?.model, this.ctx.pageModel(), usable[0]]) {
      if (choice && usable.includes(choice)) {
        this.el.model.value = choice;
        return;
      }
    }
  }

  render(session) {
    const changed = session.original !== this.session?.original;
    this.session = session;
    if (changed) this.picked = { left: null, right: null, model: this.picked.model };
    const options = session.versions.map((v) => h('option', { value: v.n, text: this.label(v) }));
    this.el.left.replaceChildren(...options.map((o) => o.cloneNode(true)));
    this.el.right.replaceChildren(...options);
    const current = currentVersion(session);
    const exists = (n) => n !== null && versionOf(session, n) !== null;
    this.el.left.value = String(exists(this.picked.left) ? this.picked.left : 0);
    this.el.right.value = String(exists(this.picked.right) ? this.picked.right : (current?.n ?? 0));
    this.el.left.disabled = this.el.right.disabled = session.versions.length === 0;
    this.defaultModel();
    this.renderColumns();
  }

  /** Try version `n` in the right column (beside the original), and go there. */
  tryVersion(n) {
    if (!this.session || !versionOf(this.session, n)) return;
    // Beside the original; the original itself beside the current version.
    this.picked.left = 0;
    this.picked.right = n === 0 ? (currentVersion(this.session)?.n ?? 0) : n;
    this.render(this.session);
    this.el.panel.scrollIntoView({ block: 'start', behavior: 'smooth' });
    this.el.message.focus({ preventScroll: true });
  }

  selected() {
    if (!this.session || this.session.versions.length < 2) return null;
    const left = versionOf(this.session, Number(this.el.left.value));
    const right = versionOf(this.session, Number(this.el.right.value));
    return left && right ? [left, right] : null;
  }

  renderColumns() {
    const picked = this.selected();
    if (!this.running) {
      this.columns.forEach((column, i) => column.setTitle(picked ? this.label(picked[i]) : i === 0 ? this.ctx.t('ver.original') : 'v1'));
    }
    this.renderVariables();
  }

  renderVariables() {
    const picked = this.selected();
    const names = picked ? extractVariables(picked[0].text, picked[1].text) : [];
    const focused = document.activeElement?.dataset?.variable;
    this.el.vars.hidden = names.length === 0;
    this.el.varFields.replaceChildren(
      ...names.map((name, i) => {
        const id = `testVar${i}`;
        const input = h('input', { type: 'text', id, autocomplete: 'off', dataset: { variable: name } });
        input.value = this.values.get(name) ?? '';
        input.addEventListener('input', () => {
          this.values.set(name, input.value);
          input.classList.remove('invalid');
          input.removeAttribute('aria-invalid');
        });
        return h('div', { class: 'field try-var' }, h('label', { for: id, text: `{{${name}}}` }), input);
      }),
    );
    if (focused) this.el.varFields.querySelector(`[data-variable="${CSS.escape(focused)}"]`)?.focus();
  }

  /** Flag every empty variable field; the names of the unfilled ones. */
  flagUnfilled(names) {
    const missing = missingVariables(names, this.values);
    for (const input of this.el.varFields.querySelectorAll('input[data-variable]')) {
      const bad = missing.includes(input.dataset.variable);
      input.classList.toggle('invalid', bad);
      if (bad) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    }
    return missing;
  }

  check() {
    const { t } = this.ctx;
    const picked = this.selected();
    if (!picked) return { error: t('try.needVersion'), focus: this.el.message };
    const message = this.el.message.value.trim();
    if (!message) return { error: t('try.needMessage'), focus: this.el.message };
    const option = this.el.model.selectedOptions[0];
    if (!this.el.model.value || option?.disabled) return { error: t('try.needModel'), focus: this.el.model };
    const names = extractVariables(picked[0].text, picked[1].text);
    const missing = this.flagUnfilled(names);
    if (missing.length) {
      const focus = this.el.varFields.querySelector('input[aria-invalid="true"]');
      return { error: t('try.unfilled', { names: missing.map((n) => `{{${n}}}`).join(', ') }), focus };
    }
    return { picked, message };
  }

  async start() {
    if (this.running) return;
    const checked = this.check();
    if (checked.error) {
      setAlert(this.el.error, checked.error);
      checked.focus?.focus();
      return;
    }
    setAlert(this.el.error, '');
    const { picked, message } = checked;
    this.opening = this.ctx.opening();
    this.model = this.el.model.value;
    this.columns.forEach((column, i) => {
      column.setTitle(this.label(picked[i]));
      column.system = fillVariables(picked[i].text, this.values);
      column.reset(this.opening, message);
    });
    await this.runAll();
  }

  async reply() {
    const message = this.el.reply.value.trim();
    if (this.running || !message) return;
    this.el.reply.value = '';
    for (const column of this.columns) column.follow(message);
    await this.runAll();
  }

  async runAll() {
    this.setRunning(true);
    this.ctx.announce(this.ctx.t('try.started'));
    await Promise.all(this.columns.map((column) => column.run({ model: this.model, opening: this.opening })));
    this.setRunning(false);
    this.el.replyForm.hidden = false;
    this.ctx.announce(this.ctx.t('try.finished'));
  }

  setRunning(running) {
    this.el.run.disabled = running;
    this.el.stop.disabled = !running;
    this.el.replyButton.disabled = running;
    this.el.left.disabled = this.el.right.disabled = running || !this.session?.versions.length;
  }

  stop() {
    for (const column of this.columns) column.stop();
  }

  relabel() {
    if (this.session) {
      const keep = [this.el.left.value, this.el.right.value];
      for (const [select, value] of [[this.el.left, keep[0]], [this.el.right, keep[1]]]) {
        for (const option of select.options) option.textContent = this.label(versionOf(this.session, Number(option.value)));
        select.value = value;
      }
    }
    for (const column of this.columns) column.relabel();
    if (!this.running) this.renderColumns();
  }
}
