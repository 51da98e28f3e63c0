// The evaluation panel: prompts to compare, the test set's table editor, the
// run (POST /eval, read as it streams), and the results (eval-matrix.js).
// With the server's library: test sets saved and loaded there, and the
// evaluations it kept (each finished run is kept under its stream's id).
//
// Stopping aborts the request: the server cancels every answer in flight.

import { authHeaders } from './api-key.js';
import { EvalMatrix } from './eval-matrix.js';
import { EvalResults, pastFigures } from './eval-results.js';
import { caseProblem, compactCase, linesToList, linesToVars, listToLines, parseTestSet, placeholders, SavedTestSets, StaleTestSet, TestSetStore, toJSONL, varsToLines } from './eval-testset.js';
import { SSEParser } from './sse-parser.js';
import { readEvents, readHttpError } from './stream.js';

const LANGUAGES = ['', 'zh', 'en', 'ja', 'ko', 'fr', 'es', 'de', 'it', 'pt', 'ru', 'ar', 'he', 'el', 'th', 'hi'];
const PROMPTS_KEY = 'promptcast.eval.prompts.v1';
// How long the page looks for the evaluation the server keeps after a run (ms between tries).
const KEPT_WAITS = [100, 250, 500, 1000, 2000, 2000, 2000, 4000];
const $ = (id) => document.getElementById(id);

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export class EvalPanel {
  /**
   * @param {{t: Function, locale: Function}} i18n
   * @param {Storage | null} storage
   * @param {{
   *   current: () => {prompt: string, result: string, opening: string | null},
   *   announce: (text: string) => void,
   *   askKey: (status: number) => Promise<boolean>,
   * }} page
   */
  constructor(i18n, storage, page) {
    this.i18n = i18n;
    this.page = page;
    this.storage = storage;
    this.store = new TestSetStore(storage);
    this.saved = null; // SavedTestSets, with a library
    this.source = this.store.loadSource(); // the saved test set the table came from
    this.savedSets = [];
    this.past = [];
    this.cases = [];
    this.prompts = this._loadPrompts();
    this.editing = null; // the index of the case in the form, or -1 for a new one
    this.run = null; // {controller, results}
    this.matrix = new EvalMatrix({ matrix: $('evalMatrix'), summary: $('evalSummary'), chart: $('evalChart'), heatmap: $('evalHeatmap') }, i18n);
    this._wire();
    this._fillLanguages();
    this.store.load().then((cases) => {
      this.cases = cases;
      this.renderCases();
    });
    this.renderPrompts();
    this.loadModels();
  }

  t(key, params) {
    return this.i18n.t(key, params);
  }

  // ---- prompts ----------------------------------------------------------------

  _loadPrompts() {
    try {
      const saved = JSON.parse(this.storage?.getItem(PROMPTS_KEY) ?? '[]');
      return Array.isArray(saved) ? saved.filter((p) => typeof p?.name === 'string' && typeof p?.text === 'string') : [];
    } catch {
      return [];
    }
  }

  _savePrompts() {
    try {
      this.storage?.setItem(PROMPTS_KEY, JSON.stringify(this.prompts));
    } catch {
      // not remembered; the panel still works
    }
  }

  addPrompt(name, text) {
    const names = new Set(this.prompts.map((p) => p.name));
    let unique = name;
    for (let n = 2; names.has(unique); n++) unique = `${name} ${n}`;
    this.prompts.push({ name: unique, text });
    this._savePrompts();
    this.renderPrompts();
  }

  renderPrompts() {
    const list = $('evalPrompts');
    const items = this.prompts.map((prompt, index) => {
      const li = document.createElement('li');
      li.className = 'eval-prompt';
      const name = document.createElement('input');
      name.type = 'text';
      name.value = prompt.name;
      name.className = 'eval-prompt-name';
      name.setAttribute('aria-label', this.t('eval.promptName'));
      name.addEventListener('change', () => {
        prompt.name = name.value.trim() || `#${index + 1}`;
        this._savePrompts();
      });
      const text = document.createElement('textarea');
      text.value = prompt.text;
      text.rows = 3;
      text.className = 'eval-prompt-text';
      text.setAttribute('aria-label', this.t('eval.promptText'));
      text.addEventListener('input', () => {
        prompt.text = text.value;
        this._savePrompts();
      });
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'button ghost small';
      remove.textContent = this.t('eval.remove');
      remove.addEventListener('click', () => {
        this.prompts.splice(index, 1);
        this._savePrompts();
        this.renderPrompts();
      });
      li.append(name, remove, text);
      return li;
    });
    list.replaceChildren(...items);
  }

  // ---- the test set -----------------------------------------------------------

  _fillLanguages() {
    const select = $('evalCaseLanguage');
    select.replaceChildren(...LANGUAGES.map((code) => {
      const option = document.createElement('option');
      option.value = code;
      option.textContent = code || this.t('eval.anyLanguage');
      return option;
    }));
  }

  async _saveCases() {
    await this.store.save(this.cases);
    if (this.source && !this.source.changed) {
      this.source.changed = true;
      this.store.saveSource(this.source);
      this.renderSource();
    }
  }

  // ---- test sets in the library --------------------------------------------------

  /** The library's API when the server has one (LibraryPanel learns it), else null. */
  async useLibrary(api) {
    this.saved = api ? new SavedTestSets(api) : null;
    $('evalSaved').hidden = !this.saved;
    $('evalPast').hidden = !this.saved;
    this.renderSource();
    if (!this.saved) return;
    await Promise.all([this.refreshSaved(), this.refreshPast()]);
  }

  _savedStatus(text, kind = 'info') {
    const box = $('evalSavedStatus');
    box.textContent = text;
    box.dataset.kind = kind;
  }

  _savedFailed(err) {
    const message = err instanceof StaleTestSet ? this.t('eval.saved.stale', { name: this.source?.name ?? '' }) : this.t('eval.saved.failed', { message: err?.field ? `${err.field}: ${err.message}` : (err?.message ?? String(err)) });
    this._savedStatus(message, 'error');
  }

  async refreshSaved() {
    if (!this.saved) return;
    try {
      this.savedSets = await this.saved.list();
    } catch (err) {
      this._savedFailed(err);
      return;
    }
    const pick = $('evalSavedPick');
    const wanted = this.source?.id ?? pick.value;
    pick.replaceChildren(...this.savedSets.map((set) => {
      const option = document.createElement('option');
      option.value = set.id;
      option.textContent = this.t('eval.saved.option', { name: set.name, n: set.count });
      option.selected = set.id === wanted;
      return option;
    }));
    if (this.source && !this.savedSets.some((set) => set.id === this.source.id)) {
      this._setSource(null); // deleted elsewhere
    }
    this.renderSource();
  }

  _setSource(source) {
    this.source = source;
    this.store.saveSource(source);
  }

  renderSource() {
    const s = this.source;
    const empty = this.savedSets.length === 0;
    $('evalSavedPick').disabled = empty;
    $('evalSavedLoad').disabled = empty;
    $('evalSavedDelete').disabled = empty;
    $('evalSavedSave').disabled = !s;
    if (s && !$('evalSavedName').value) $('evalSavedName').value = s.name;
    const text = !this.saved ? '' : !s ? (empty ? this.t('eval.saved.none') : '') : this.t(s.changed ? 'eval.saved.fromChanged' : 'eval.saved.from', { name: s.name });
    this._savedStatus(text);
    $('evalSaved').dataset.source = s ? s.id : '';
  }

  async loadSaved() {
    const id = $('evalSavedPick').value;
    if (!this.saved || !id) return;
    if (this.source?.changed && this.cases.length && !window.confirm(this.t('eval.saved.replaceConfirm', { name: this.source.name }))) return;
    try {
      const { source, cases } = await this.saved.load(id);
      // Saved by anything (the API, an import): a case the table cannot show stops the load,
      // rather than being dropped and then lost by a save over it.
      const bad = cases.findIndex((c) => caseProblem(c) !== null);
      if (bad >= 0) {
        this._savedStatus(this.t('eval.saved.badCase', { name: source.name, n: bad + 1, problem: caseProblem(cases[bad]) }), 'error');
        return;
      }
      this.cases = cases;
      this._setSource(source);
      $('evalSavedName').value = source.name;
      await this.store.save(this.cases);
      this.renderCases();
      this.renderSource();
      this.page.announce(this.t('eval.saved.loaded', { name: source.name, n: this.cases.length }));
    } catch (err) {
      this._savedFailed(err);
    }
  }

  async saveSaved(asNew) {
    if (!this.saved) return;
    if (this.cases.length === 0) {
      this._savedStatus(this.t('eval.needCases'), 'error');
      return;
    }
    const name = $('evalSavedName').value.trim() || this.source?.name || this.t('eval.saved.untitled');
    try {
      const source = asNew || !this.source ? await this.saved.create(name, this.cases) : await this.saved.replace(this.source, this.cases);
      this._setSource(source);
      await this.refreshSaved();
      this.page.announce(this.t('eval.saved.saved', { name: source.name }));
    } catch (err) {
      this._savedFailed(err);
    }
  }

  async deleteSaved() {
    const id = $('evalSavedPick').value;
    const set = this.savedSets.find((s) => s.id === id);
    if (!this.saved || !set || !window.confirm(this.t('eval.saved.deleteConfirm', { name: set.name }))) return;
    try {
      await this.saved.remove(id);
      if (this.source?.id === id) this._setSource(null);
      await this.refreshSaved();
      this.page.announce(this.t('eval.saved.deleted', { name: set.name }));
    } catch (err) {
      this._savedFailed(err);
    }
  }

  // ---- evaluations the library kept ----------------------------------------------

  async refreshPast(current = null) {
    if (!this.saved) return;
    try {
      this.past = (await this.saved.api.evaluations({ limit: 10 })).items;
    } catch {
      return; // the list stays as it was
    }
    this.renderPast(current);
  }

  renderPast(current = null) {
    const list = $('evalPastList');
    $('evalPastEmpty').hidden = this.past.length > 0;
    list.replaceChildren(...this.past.map((e) => {
      const li = document.createElement('li');
      li.className = 'eval-past-item';
      li.dataset.id = e.id;
      if (e.id === current) li.dataset.current = 'true';
      const name = document.createElement('span');
      name.className = 'eval-past-name';
      name.textContent = e.name;
      const meta = document.createElement('span');
      meta.className = 'eval-past-meta';
      const when = new Date(e.created_at);
      const date = Number.isNaN(when.getTime()) ? '' : new Intl.DateTimeFormat(this.i18n.locale(), { dateStyle: 'medium', timeStyle: 'short' }).format(when);
      meta.textContent = [date, e.model].filter(Boolean).join(' · ');
      const figures = document.createElement('span');
      figures.className = 'eval-past-figures';
      figures.textContent = pastFigures(e.summary);
      const json = document.createElement('button');
      json.type = 'button';
      json.className = 'button ghost small';
      json.textContent = this.t('eval.past.json');
      json.setAttribute('aria-label', this.t('eval.past.jsonLabel', { name: e.name }));
      json.addEventListener('click', () => this.downloadPast(e.id));
      li.append(name, meta, figures, json);
      return li;
    }));
  }

  async downloadPast(id) {
    try {
      const evaluation = await this.saved.api.evaluation(id);
      download(`evaluation-${id}.json`, 'application/json', JSON.stringify(evaluation, null, 2));
    } catch (err) {
      this._error(this.t('eval.failed', { message: err?.message ?? String(err) }));
    }
  }

  /** After a finished run: wait for the evaluation the server keeps (off the run's path). */
  async _kept(runId) {
    for (const wait of KEPT_WAITS) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (!this.saved) return;
      try {
        const evaluation = await this.saved.api.evaluation(runId);
        await this.refreshPast(runId);
        this.page.announce(this.t('eval.past.kept', { name: evaluation.name }));
        return;
      } catch (err) {
        if (err?.status !== 404) return;
      }
    }
  }

  renderCases() {
    const body = $('evalCasesBody');
    $('evalCasesEmpty').hidden = this.cases.length > 0;
    $('evalCaseCount').textContent = this.t('eval.caseCount', { n: this.cases.length });
    body.replaceChildren(...this.cases.map((c, index) => {
      const row = document.createElement('tr');
      const number = document.createElement('td');
      number.textContent = c.id ?? String(index + 1);
      const message = document.createElement('td');
      message.className = 'eval-case-message';
      message.textContent = c.message ?? `${c.conversation.at(-1).content} ${this.t('eval.conversation', { n: c.conversation.length })}`;
      const expect = document.createElement('td');
      expect.className = 'eval-case-expect';
      expect.textContent = ['contains', 'not_contains', 'regex', 'max_chars', 'language', 'starts_with_opening', 'rubric']
        .filter((k) => k in c)
        .map((k) => `${k}: ${Array.isArray(c[k]) ? c[k].join(' | ') : c[k]}`)
        .join('\n');
      const actions = document.createElement('td');
      actions.className = 'eval-case-actions';
      for (const [label, action] of [['eval.edit', () => this.editCase(index)], ['eval.delete', () => this.deleteCase(index)]]) {
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'button ghost small';
        button.textContent = this.t(label);
        button.addEventListener('click', action);
        actions.append(button);
      }
      row.append(number, message, expect, actions);
      return row;
    }));
  }

  editCase(index) {
    const c = index >= 0 ? this.cases[index] : {};
    this.editing = index;
    const form = $('evalCaseForm');
    form.hidden = false;
    const message = $('evalCaseMessage');
    message.value = c.message ?? c.conversation?.at(-1)?.content ?? '';
    message.disabled = 'conversation' in c;
    $('evalCaseContains').value = listToLines(c.contains);
    $('evalCaseNotContains').value = listToLines(c.not_contains);
    $('evalCaseRegex').value = listToLines(c.regex);
    $('evalCaseMaxChars').value = c.max_chars ?? '';
    $('evalCaseLanguage').value = c.language ?? '';
    $('evalCaseRubric').value = c.rubric ?? '';
    $('evalCaseVars').value = varsToLines(c.vars);
    $('evalCaseOpening').checked = Boolean(c.starts_with_opening);
    $('evalCaseError').hidden = true;
    message.focus();
  }

  async saveCase() {
    const old = this.editing >= 0 ? this.cases[this.editing] : {};
    const maxChars = $('evalCaseMaxChars').value.trim();
    const value = compactCase({
      id: old.id,
      ...('conversation' in old ? { conversation: old.conversation } : { message: $('evalCaseMessage').value }),
      vars: linesToVars($('evalCaseVars').value),
      opening: old.opening,
      contains: linesToList($('evalCaseContains').value),
      not_contains: linesToList($('evalCaseNotContains').value),
      regex: linesToList($('evalCaseRegex').value),
      max_chars: maxChars === '' ? undefined : Number(maxChars),
      language: $('evalCaseLanguage').value || undefined,
      starts_with_opening: $('evalCaseOpening').checked,
      rubric: $('evalCaseRubric').value.trim() || undefined,
    });
    const problem = caseProblem(value);
    if (problem) {
      const error = $('evalCaseError');
      error.textContent = problem;
      error.hidden = false;
      return;
    }
    if (this.editing >= 0) this.cases[this.editing] = value;
    else this.cases.push(value);
    this.editing = null;
    $('evalCaseForm').hidden = true;
    await this._saveCases();
    this.renderCases();
  }

  async deleteCase(index) {
    this.cases.splice(index, 1);
    await this._saveCases();
    this.renderCases();
  }

  async importCases(file) {
    try {
      const cases = parseTestSet(await file.text());
      this.cases = cases;
      await this._saveCases();
      this.renderCases();
      this.page.announce(this.t('eval.imported', { n: cases.length }));
      this._error('');
    } catch (err) {
      this._error(this.t('eval.importFailed', { message: err.message }));
    }
  }

  // ---- models -----------------------------------------------------------------

  async loadModels() {
    let models = [];
    try {
      const response = await fetch('/v1/models', { headers: { Accept: 'application/json', ...authHeaders() }, cache: 'no-store' });
      // Keys on: one dialog answers every caller that asks (the page's own list asks too).
      if ((response.status === 401 || response.status === 403) && (await this.page.askKey?.(response.status))) return this.loadModels();
      if (response.ok) models = (await response.json()).data ?? [];
    } catch {
      // the page's own model list says what went wrong
    }
    const usable = models.filter((m) => m.available !== false);
    const option = (value, text) => {
      const o = document.createElement('option');
      o.value = value;
      o.textContent = text;
      return o;
    };
    const model = $('evalModelSelect');
    model.replaceChildren(...usable.map((m) => option(m.id, m.id)));
    const pick = usable.find((m) => m.default) ?? usable[0];
    if (pick) model.value = pick.id;
    const judge = $('evalJudgeSelect');
    judge.replaceChildren(option('', this.t('eval.defaultJudge')), option('none', this.t('eval.noJudge')), ...usable.map((m) => option(m.id, m.id)));
  }

  // ---- the run ----------------------------------------------------------------

  _error(message) {
    const box = $('evalError');
    box.textContent = message;
    box.hidden = !message;
  }

  _body() {
    const prompts = this.prompts.filter((p) => p.text.trim() !== '');
    if (prompts.length === 0) throw new Error(this.t('eval.needPrompt'));
    if (this.cases.length === 0) throw new Error(this.t('eval.needCases'));
    const pairwise = $('evalPairwise').checked;
    if (pairwise && prompts.length < 2) throw new Error(this.t('eval.needTwo'));
    for (const p of prompts) {
      const missing = placeholders(p.text).filter((name) => this.cases.some((c) => !(c.vars && name in c.vars)));
      if (missing.length) throw new Error(this.t('eval.missingVars', { name: p.name, vars: missing.map((n) => `{{${n}}}`).join(', ') }));
    }
    const body = { prompts: prompts.map(({ name, text }) => ({ name, text })), cases: this.cases, model: $('evalModelSelect').value || undefined, pairwise, deltas: true };
    const judge = $('evalJudgeSelect').value;
    if (judge === 'none') body.judge = false;
    else if (judge) body.judge = judge;
    const concurrency = Number($('evalConcurrency').value);
    if (Number.isInteger(concurrency) && concurrency > 0) body.concurrency = concurrency;
    return body;
  }

  _setRunning(running) {
    $('evalRunButton').disabled = running;
    $('evalStopButton').disabled = !running;
    $('evalExportJSON').disabled = running || !this.run;
    $('evalExportCSV').disabled = running || !this.run;
  }

  _progress() {
    const results = this.run.results;
    $('evalProgress').textContent = this.t('eval.progress', { done: results.finished, total: results.cells.size });
  }

  async start() {
    if (this.run?.controller) return;
    let body;
    try {
      body = this._body();
    } catch (err) {
      this._error(err.message);
      return;
    }
    this._error('');
    const cases = body.cases;
    const results = new EvalResults(body.prompts.map((p) => p.name), cases);
    const controller = new AbortController();
    this.run = { controller, results };
    // A table just as it was saved runs as that test set: the evaluation kept links to it.
    if (this.saved && this.source && !this.source.changed && (await this.saved.unchanged(this.source))) {
      delete body.cases;
      body.testset = this.source.id;
    }
    $('evalResults').hidden = false;
    this.matrix.begin(results);
    this._setRunning(true);
    this._progress();
    let outcome = 'cut';
    let runId = null;
    try {
      const response = await fetch('/eval', { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...authHeaders() }, body: JSON.stringify(body), signal: controller.signal, cache: 'no-store' });
      if (!response.ok) {
        const error = await readHttpError(response);
        if (response.status === 401 || response.status === 403) this.page.askKey?.(response.status);
        throw new Error(error.field ? `${error.field}: ${error.message}` : error.message);
      }
      runId = response.headers.get('x-stream-id');
      for await (const ev of readEvents(response.body, new SSEParser(), { signal: controller.signal })) {
        if (ev.data === '[DONE]') {
          outcome = 'done';
          break;
        }
        if (ev.event === 'error' || ev.event === 'timeout') {
          let message = ev.data;
          try {
            message = JSON.parse(ev.data).message ?? message;
          } catch {
            // the frame's raw text it is
          }
          throw new Error(message);
        }
        const change = results.apply(ev);
        this.matrix.update(change);
        if (change && change.kind === 'cell') this._progress();
      }
      if (outcome === 'done') this.page.announce(this.t('eval.done', { cells: results.finished }));
      else this._error(this.t('eval.failed', { message: 'the stream was cut off' }));
    } catch (err) {
      if (controller.signal.aborted) this._error(this.t('eval.stopped'));
      else this._error(this.t('eval.failed', { message: err.message }));
    } finally {
      this.run.controller = null;
      this._setRunning(false);
      $('evalRunPanel').dataset.outcome = outcome;
    }
    if (outcome === 'done' && runId && this.saved) await this._kept(runId);
  }

  stop() {
    this.run?.controller?.abort();
  }

  relabel() {
    this._fillLanguages();
    this.renderPrompts();
    this.renderCases();
    if (this.saved) {
      this.refreshSaved();
      this.renderPast();
    }
    this.matrix.relabel();
    if (this.run) this._progress();
  }

  // ---- wiring -----------------------------------------------------------------

  _wire() {
    $('evalAddOriginal').addEventListener('click', () => {
      const { prompt } = this.page.current();
      if (prompt.trim()) this.addPrompt('original', prompt);
    });
    $('evalAddResult').addEventListener('click', () => {
      const { result } = this.page.current();
      if (result.trim()) this.addPrompt('rewrite', result);
    });
    $('evalAddPrompt').addEventListener('click', () => this.addPrompt(`#${this.prompts.length + 1}`, ''));
    $('evalAddCase').addEventListener('click', () => this.editCase(-1));
    $('evalCaseSave').addEventListener('click', () => this.saveCase());
    $('evalCaseCancel').addEventListener('click', () => {
      this.editing = null;
      $('evalCaseForm').hidden = true;
    });
    $('evalImportButton').addEventListener('click', () => $('evalImport').click());
    $('evalImport').addEventListener('change', (event) => {
      const file = event.target.files?.[0];
      if (file) this.importCases(file);
      event.target.value = '';
    });
    $('evalExportCases').addEventListener('click', () => download('testset.jsonl', 'application/x-ndjson', toJSONL(this.cases)));
    $('evalClearCases').addEventListener('click', async () => {
      if (this.cases.length && window.confirm(this.t('eval.clearConfirm', { n: this.cases.length }))) {
        this.cases = [];
        await this._saveCases();
        this.renderCases();
      }
    });
    $('evalSavedLoad').addEventListener('click', () => this.loadSaved());
    $('evalSavedSave').addEventListener('click', () => this.saveSaved(false));
    $('evalSavedSaveNew').addEventListener('click', () => this.saveSaved(true));
    $('evalSavedDelete').addEventListener('click', () => this.deleteSaved());
    $('evalRunButton').addEventListener('click', () => this.start());
    $('evalStopButton').addEventListener('click', () => this.stop());
    $('evalExportJSON').addEventListener('click', () => {
      if (this.run) download('evaluation.json', 'application/json', JSON.stringify(this.run.results.toJSON(), null, 2));
    });
    $('evalExportCSV').addEventListener('click', () => {
      if (this.run) download('evaluation.csv', 'text/csv', this.run.results.toCSV());
    });
  }
}
