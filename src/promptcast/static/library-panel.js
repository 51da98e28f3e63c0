// The library panel: saved prompts and their versions, diff, share, export and
// import, templates; the key prompt; the history as a cache of the server's runs.

import { getApiKey, setApiKey } from './api-key.js';
import { LibraryApi, LibraryError, runToHistoryEntry, versionLabel } from './library-api.js';
import { renderDiff } from './render.js';

const $ = (id) => document.getElementById(id);
const TEMPLATE_KEY = 'promptcast.template';

function pref(key, value) {
  try {
    if (value === undefined) return window.localStorage.getItem(key);
    if (value) window.localStorage.setItem(key, value);
    else window.localStorage.removeItem(key);
  } catch {
    // storage disabled: not remembered
  }
  return null;
}

function firstLine(text, max = 60) {
  const line = String(text ?? '').trim().split('\n')[0].replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'text') node.textContent = v;
    else node[k] = v;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export class LibraryPanel {
  /**
   * @param {{t: Function, locale: () => string}} i18n
   * @param {{
   *   editor: () => {prompt: string, type: string, model: string, opening: string|null},
   *   openInEditor: (v: {text: string, mode: string, model: string|null, opening: string|null}) => void,
   *   announce: (message: string) => void,
   *   history: import('./history.js').HistoryStore,
   *   onHistoryChange: () => void,
   *   onKey: () => void,
   *   onReady?: (enabled: boolean) => void,
   * }} page
   */
  constructor(i18n, page) {
    this.i18n = i18n;
    this.page = page;
    this.api = new LibraryApi({ onUnauthorized: (status) => this.askKey(status) });
    this.enabled = false;
    this.info = null;
    this.prompts = [];
    this.current = null; // {prompt, etag, versions}
    this.opened = null; // {promptId, number}: the version last opened into the editor
    this.shown = null; // the result to save: {request, text, runId}
    this._keyWaiters = null;
    this._searchTimer = 0;
    this.el = {
      panel: $('library'),
      status: $('libraryStatus'),
      search: $('librarySearch'),
      list: $('libraryList'),
      detail: $('libraryDetail'),
      name: $('libraryPromptName'),
      tags: $('libraryTags'),
      share: $('libraryShare'),
      unshare: $('libraryUnshare'),
      shareBox: $('libraryShareBox'),
      shareLink: $('libraryShareLink'),
      remove: $('libraryDelete'),
      versions: $('libraryVersions'),
      diffButton: $('libraryDiffButton'),
      diff: $('libraryDiff'),
      exportButton: $('libraryExport'),
      importFile: $('libraryImportFile'),
      saveButton: $('saveButton'),
      saveDialog: $('saveDialog'),
      saveForm: $('saveForm'),
      saveName: $('saveName'),
      saveTarget: $('saveTarget'),
      saveFeedback: $('saveFeedback'),
      saveError: $('saveError'),
      keyDialog: $('keyDialog'),
      keyForm: $('keyForm'),
      keyInput: $('keyInput'),
      keyNote: $('keyNote'),
      keyButton: $('keyButton'),
      templateUse: $('templateUse'),
      templatePick: $('templatePick'),
      templateText: $('templateText'),
      templateName: $('templateName'),
      templateSave: $('templateSave'),
      templateDelete: $('templateDelete'),
      templateError: $('templateError'),
    };
    this.templates = [];
    this._wire();
  }

  t(key, params) {
    return this.i18n.t(key, params);
  }

  _wire() {
    const e = this.el;
    e.search.addEventListener('input', () => {
      clearTimeout(this._searchTimer);
      this._searchTimer = setTimeout(() => this.refresh(), 200);
    });
    e.list.addEventListener('click', (event) => {
      const item = event.target.closest('[data-prompt]');
      if (item) this.select(item.dataset.prompt);
    });
    e.versions.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-open]');
      if (button) this.openVersion(Number(button.dataset.open));
    });
    e.diffButton.addEventListener('click', () => this.showDiff());
    e.share.addEventListener('click', () => this.share());
    e.unshare.addEventListener('click', () => this.unshare());
    e.remove.addEventListener('click', () => this.removePrompt());
    e.exportButton.addEventListener('click', () => this.exportAll());
    e.importFile.addEventListener('change', () => this.importFile());
    e.saveButton.addEventListener('click', () => this.openSave());
    e.saveForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.save();
    });
    $('saveCancel').addEventListener('click', () => e.saveDialog.close());
    for (const radio of e.saveForm.querySelectorAll('input[name="saveAs"]')) {
      radio.addEventListener('change', () => this._saveMode());
    }
    e.keyForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this._keyDone(e.keyInput.value.trim());
    });
    $('keyCancel').addEventListener('click', () => this._keyDone(null));
    e.keyDialog.addEventListener('cancel', () => this._keyDone(null));
    e.keyButton.addEventListener('click', () => this.askKey(0));
    e.templatePick.addEventListener('change', () => this.showTemplate());
    e.templateUse.addEventListener('change', () => pref(TEMPLATE_KEY, e.templateUse.value));
    e.templateSave.addEventListener('click', () => this.saveTemplate());
    e.templateDelete.addEventListener('click', () => this.deleteTemplate());
  }

  // ---- the key ---------------------------------------------------------------

  /** Ask for the API key (once for any number of callers); true when one was given. */
  askKey(status) {
    if (this._keyWaiters) return new Promise((resolve) => this._keyWaiters.push(resolve));
    this._keyWaiters = [];
    this._keyAsked = status; // 0: the person chose to change it
    const e = this.el;
    e.keyNote.textContent = this.t(status === 403 ? 'lib.key.wrong' : 'lib.key.needed');
    e.keyInput.value = '';
    if (!e.keyDialog.open) e.keyDialog.showModal();
    e.keyInput.focus();
    return new Promise((resolve) => this._keyWaiters.push(resolve));
  }

  _keyDone(key) {
    const e = this.el;
    if (e.keyDialog.open) e.keyDialog.close();
    if (key) setApiKey(key);
    const waiters = this._keyWaiters ?? [];
    this._keyWaiters = null;
    for (const resolve of waiters) resolve(Boolean(key));
    e.keyButton.hidden = !getApiKey();
    if (key && this._keyAsked === 0) {
      // A new key may be another owner: everything shown is reloaded.
      this.current = null;
      this.renderDetail();
      this.page.onKey();
      this.start();
    }
  }

  relabel() {
    if (this.el.panel.dataset.state === 'off') this._status(this.t('lib.off'));
    if (this.enabled) {
      this.renderList();
      this.renderDetail();
      if (this.templates.length) this.renderTemplates();
    }
  }

  // ---- start, list -----------------------------------------------------------

  async start() {
    this.el.keyButton.hidden = !getApiKey();
    try {
      this.info = await this.api.info();
    } catch (err) {
      this.enabled = false;
      this.el.panel.dataset.state = err?.code === 'library_off' ? 'off' : 'error';
      this._status(err?.code === 'library_off' ? this.t('lib.off') : this.t('lib.error', { message: err?.message ?? '' }));
      this._saveEnabled();
      this.page.onReady?.(false);
      return;
    }
    this.enabled = true;
    this.el.panel.dataset.state = 'on';
    this._status('');
    this._saveEnabled();
    this.page.onReady?.(true);
    await Promise.all([this.refresh(), this.syncHistory(), this.loadTemplates()]);
  }

  _status(text, kind = 'info') {
    this.el.status.textContent = text;
    this.el.status.dataset.kind = kind;
    this.el.status.hidden = !text;
  }

  _fail(err) {
    this._status(this.t('lib.error', { message: err?.message ?? String(err) }), 'error');
  }

  async refresh() {
    if (!this.enabled) return;
    try {
      const page = await this.api.prompts({ q: this.el.search.value.trim() || undefined, limit: 200 });
      this.prompts = page.items;
    } catch (err) {
      this._fail(err);
      return;
    }
    this.renderList();
  }

  renderList() {
    const items = this.prompts.map((p) =>
      el(
        'li',
        { className: 'library-item' },
        el(
          'button',
          {
            type: 'button',
            className: 'library-pick',
            dataset: { prompt: p.id },
            ariaCurrent: this.current?.prompt.id === p.id ? 'true' : 'false',
          },
          el('span', { className: 'library-item-name', text: p.name }),
          el('span', { className: 'library-item-meta', text: this.t('lib.versions', { n: p.versions }) }),
          el('span', { className: 'library-item-preview', text: firstLine(p.preview, 90) }),
        ),
      ),
    );
    this.el.list.replaceChildren(...items);
    if (!items.length) this.el.list.append(el('li', { className: 'library-empty', text: this.t(this.el.search.value ? 'lib.noMatch' : 'lib.empty') }));
  }

  // ---- one prompt ------------------------------------------------------------

  async select(id) {
    try {
      const [{ data: prompt, etag }, versions] = await Promise.all([this.api.prompt(id), this.api.versions(id)]);
      this.current = { prompt, etag, versions };
    } catch (err) {
      this._fail(err);
      return;
    }
    this.renderDetail();
    this.renderList();
  }

  renderDetail() {
    const e = this.el;
    const c = this.current;
    e.detail.hidden = !c;
    if (!c) return;
    e.name.textContent = c.prompt.name;
    e.tags.replaceChildren(...c.prompt.tags.map((tag) => el('li', { text: tag })));
    e.share.hidden = false;
    e.unshare.hidden = !c.prompt.shared;
    e.shareBox.hidden = true;
    e.diff.hidden = true;
    const n = c.versions.length;
    const rows = [...c.versions].reverse().map((v) => {
      const label = versionLabel(v, this.i18n.locale());
      const current = v.number === c.prompt.current_version;
      return el(
        'li',
        { className: 'library-version', dataset: { number: String(v.number) } },
        el('input', { type: 'radio', name: 'diffA', value: String(v.number), checked: v.number === (n > 1 ? c.versions[n - 2].number : v.number), ariaLabel: this.t('lib.diffA', { label }) }),
        el('input', { type: 'radio', name: 'diffB', value: String(v.number), checked: v.number === c.versions[n - 1].number, ariaLabel: this.t('lib.diffB', { label }) }),
        el(
          'div',
          { className: 'library-version-text' },
          el('span', { className: 'library-version-label', text: label + (current ? ` · ${this.t('lib.current')}` : '') }),
          v.feedback ? el('span', { className: 'library-version-feedback', text: v.feedback }) : null,
          el('span', { className: 'library-version-preview', text: firstLine(v.text, 120) }),
        ),
        el('button', { type: 'button', className: 'button ghost small', dataset: { open: String(v.number) }, text: this.t('lib.open'), ariaLabel: this.t('lib.openLabel', { label }) }),
      );
    });
    e.versions.replaceChildren(...rows);
    e.diffButton.disabled = n < 2;
  }

  _version(number) {
    return this.current?.versions.find((v) => v.number === number) ?? null;
  }

  openVersion(number) {
    const v = this._version(number);
    if (!v) return;
    this.page.openInEditor(v);
    this.opened = { promptId: this.current.prompt.id, number };
    this.page.announce(this.t('lib.opened', { label: `v${number}`, name: this.current.prompt.name }));
  }

  showDiff() {
    const pick = (name) => Number(this.el.versions.querySelector(`input[name="${name}"]:checked`)?.value);
    const a = this._version(pick('diffA'));
    const b = this._version(pick('diffB'));
    if (!a || !b) return;
    this.el.diff.hidden = false;
    this.el.diff.dataset.pair = `${a.number}-${b.number}`;
    renderDiff(this.el.diff, a.text, b.text);
  }

  async share() {
    const c = this.current;
    if (!c) return;
    try {
      const url = await this.api.share(c.prompt.id);
      const full = new URL(url, window.location.href).href;
      this.el.shareLink.href = full;
      this.el.shareLink.textContent = full;
      this.el.shareBox.hidden = false;
      this.el.unshare.hidden = false;
      c.prompt.shared = true;
      try {
        await navigator.clipboard.writeText(full);
        this.page.announce(this.t('lib.shareCopied'));
      } catch {
        this.page.announce(this.t('lib.shared'));
      }
    } catch (err) {
      this._fail(err);
    }
  }

  async unshare() {
    const c = this.current;
    if (!c) return;
    try {
      await this.api.unshare(c.prompt.id);
      c.prompt.shared = false;
      this.el.shareBox.hidden = true;
      this.el.unshare.hidden = true;
      this.page.announce(this.t('lib.unshared'));
    } catch (err) {
      this._fail(err);
    }
  }

  async removePrompt() {
    const c = this.current;
    if (!c || !window.confirm(this.t('lib.deleteConfirm', { name: c.prompt.name }))) return;
    try {
      await this.api.deletePrompt(c.prompt.id, c.etag);
    } catch (err) {
      this._fail(err);
      return;
    }
    this.current = null;
    this.renderDetail();
    await this.refresh();
  }

  // ---- saving the current rewrite --------------------------------------------

  /** What the result panel shows, to be saved: {request, text, runId, status}. */
  setResult(shown) {
    this.shown = shown;
    this._saveEnabled();
  }

  _saveEnabled() {
    const s = this.shown;
    this.el.saveButton.hidden = !this.enabled;
    this.el.saveButton.disabled = !this.enabled || !s?.text || s.status !== 'done';
  }

  openSave() {
    const e = this.el;
    const s = this.shown;
    if (!s?.text) return;
    e.saveError.hidden = true;
    e.saveName.value = firstLine(s.request?.prompt, 60) || this.t('lib.untitled');
    e.saveFeedback.value = '';
    const target = this.opened?.promptId ?? this.current?.prompt.id ?? null;
    e.saveTarget.replaceChildren(...this.prompts.map((p) => el('option', { value: p.id, text: p.name, selected: p.id === target })));
    const canVersion = this.prompts.length > 0;
    e.saveForm.querySelector('input[value="version"]').disabled = !canVersion;
    e.saveForm.querySelector(`input[value="${canVersion && target ? 'version' : 'new'}"]`).checked = true;
    this._saveMode();
    e.saveDialog.showModal();
    (canVersion && target ? e.saveFeedback : e.saveName).focus();
  }

  _saveMode() {
    const asVersion = this.el.saveForm.querySelector('input[name="saveAs"]:checked')?.value === 'version';
    this.el.saveName.disabled = asVersion;
    this.el.saveTarget.disabled = !asVersion;
  }

  async save() {
    const e = this.el;
    const s = this.shown;
    const r = s.request ?? {};
    const asVersion = e.saveForm.querySelector('input[name="saveAs"]:checked')?.value === 'version';
    const feedback = e.saveFeedback.value.trim() || null;
    const fields = { mode: r.type ?? 'optimize', model: r.model ?? null, opening: r.opening ?? null };
    try {
      let promptId;
      if (asVersion) {
        promptId = e.saveTarget.value;
        const parent = this.opened?.promptId === promptId ? this.opened.number : undefined;
        await this.api.addVersion(promptId, { text: s.text, feedback, parent, run: s.runId ?? undefined, ...fields });
      } else {
        // The original as v1, the rewrite as v2: the prompt keeps where it came from.
        const created = await this.api.createPrompt({ name: e.saveName.value.trim(), text: r.prompt ?? s.text, ...fields });
        promptId = created.id;
        await this.api.addVersion(promptId, { text: s.text, feedback, parent: 1, run: s.runId ?? undefined });
      }
      e.saveDialog.close();
      await this.refresh();
      await this.select(promptId);
      this.page.announce(this.t('lib.saved', { name: this.current?.prompt.name ?? '' }));
    } catch (err) {
      e.saveError.textContent = err instanceof LibraryError && err.field ? `${err.field}: ${err.message}` : (err?.message ?? String(err));
      e.saveError.hidden = false;
    }
  }

  // ---- export, import ----------------------------------------------------------

  async exportAll() {
    try {
      const document_ = await this.api.exportAll();
      const blob = new Blob([JSON.stringify(document_, null, 2)], { type: 'application/json' });
      const link = el('a', { href: URL.createObjectURL(blob), download: `promptcast-library-${document_.exported_at.slice(0, 10)}.json` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
      this.page.announce(this.t('lib.exported'));
    } catch (err) {
      this._fail(err);
    }
  }

  async importFile() {
    const file = this.el.importFile.files?.[0];
    this.el.importFile.value = '';
    if (!file) return;
    let parsed;
    try {
      parsed = JSON.parse(await file.text());
    } catch {
      this._status(this.t('lib.importNotJson', { name: file.name }), 'error');
      return;
    }
    try {
      const counts = await this.api.importAll(parsed);
      const created = Object.values(counts.created).reduce((a, b) => a + b, 0);
      const skipped = Object.values(counts.skipped).reduce((a, b) => a + b, 0);
      this._status(this.t('lib.imported', { created, skipped }));
      await Promise.all([this.refresh(), this.syncHistory()]);
    } catch (err) {
      this._status(this.t('lib.importFailed', { message: err.field ? `${err.field}: ${err.message}` : err.message }), 'error');
    }
  }

  // ---- templates ----------------------------------------------------------------

  /** The template Start sends (`"template"`), or null for the code's own. */
  selectedTemplate() {
    return (this.enabled && this.el.templateUse.value) || null;
  }

  async loadTemplates(pick = null) {
    try {
      this.templates = await this.api.templates();
    } catch (err) {
      this._fail(err);
      return;
    }
    this.renderTemplates(pick);
  }

  renderTemplates(pick = null) {
    const e = this.el;
    const label = (tpl) => (tpl.builtin ? this.t('lib.tpl.builtin', { name: tpl.name }) : tpl.name);
    const wanted = pref(TEMPLATE_KEY);
    e.templateUse.replaceChildren(
      el('option', { value: '', text: this.t('lib.tpl.default') }),
      ...this.templates.map((tpl) => el('option', { value: tpl.name, text: label(tpl), selected: tpl.name === wanted })),
    );
    const current = pick ?? e.templatePick.value;
    e.templatePick.replaceChildren(...this.templates.map((tpl) => el('option', { value: tpl.name, text: label(tpl), selected: tpl.name === current })));
    this.showTemplate();
  }

  showTemplate() {
    const e = this.el;
    const tpl = this.templates.find((x) => x.name === e.templatePick.value);
    if (!tpl) return;
    e.templateText.value = tpl.text;
    e.templateName.value = tpl.builtin ? `${tpl.name}-mine` : tpl.name;
    e.templateDelete.hidden = tpl.builtin;
    e.templateError.hidden = true;
  }

  async saveTemplate() {
    const e = this.el;
    const base = this.templates.find((x) => x.name === e.templatePick.value);
    const name = e.templateName.value.trim();
    const own = this.templates.find((x) => x.name === name && !x.builtin);
    const body = { text: e.templateText.value, language: base?.language ?? 'en', mode: base?.mode ?? 'optimize' };
    try {
      if (own) await this.api.saveTemplate(name, { text: body.text }, { etag: own.etag });
      else await this.api.saveTemplate(name, body, { create: true });
      await this.loadTemplates(name);
      this.page.announce(this.t('lib.tpl.saved', { name }));
    } catch (err) {
      e.templateError.textContent = err.field ? `${err.field}: ${err.message}` : err.message;
      e.templateError.hidden = false;
    }
  }

  async deleteTemplate() {
    const name = this.el.templatePick.value;
    try {
      await this.api.deleteTemplate(name);
      if (pref(TEMPLATE_KEY) === name) pref(TEMPLATE_KEY, '');
      await this.loadTemplates();
      this.page.announce(this.t('lib.tpl.deleted', { name }));
    } catch (err) {
      this._fail(err);
    }
  }

  // ---- history: a cache of the server's runs -------------------------------

  async syncHistory() {
    if (!this.enabled) return;
    try {
      const page = await this.api.runs({ kind: 'optimize', limit: 50 });
      this.page.history.merge(page.items.map(runToHistoryEntry));
      this.page.onHistoryChange();
    } catch {
      // the cache stays as it was
    }
  }

  /** History entries deleted on the page: their runs are deleted on the server. */
  async forget(entries) {
    if (!this.enabled) return;
    for (const entry of entries) {
      if (!entry.runId) continue;
      try {
        await this.api.deleteRun(entry.runId);
      } catch (err) {
        if (err?.status !== 404) this._fail(err);
      }
    }
  }
}
