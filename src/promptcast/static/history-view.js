// The history panel: the saved runs, a search box, restore and delete.

function firstLine(text, max = 160) {
  const line = String(text ?? '').trim().replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export class HistoryView {
  /**
   * @param {import('./history.js').HistoryStore} store
   * @param {{t: Function, locale: () => string}} i18n
   * @param {{onRestore: (entry: object) => void, onChange?: () => void, onRemove?: (entries: object[]) => void}} handlers
   */
  constructor(store, i18n, { onRestore, onChange, onRemove }) {
    this.store = store;
    this.i18n = i18n;
    this.onRestore = onRestore;
    this.onChange = onChange ?? (() => {});
    // Told of entries deleted here (the library deletes their runs on the server).
    this.onRemove = onRemove ?? (() => {});
    const $ = (id) => document.getElementById(id);
    this.el = {
      list: $('historyList'),
      empty: $('historyEmpty'),
      search: $('historySearch'),
      clear: $('historyClear'),
      count: $('historyCount'),
    };
    this.el.search.addEventListener('input', () => this.render());
    this.el.search.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.el.search.value) {
        event.stopPropagation();
        this.el.search.value = '';
        this.render();
      }
    });
    this.el.clear.addEventListener('click', () => this._clearAll());
    this.el.list.addEventListener('click', (event) => this._onClick(event));
    window.addEventListener('storage', (event) => {
      if (event.key === null || event.key === this.store.key) this.render();
    });
  }

  render() {
    const t = this.i18n.t;
    const all = this.store.list();
    const query = this.el.search.value.trim();
    const entries = query ? this.store.search(query) : all;

    this.el.count.hidden = all.length === 0;
    this.el.count.textContent = String(all.length);
    this.el.count.setAttribute('aria-label', t('history.count', { n: all.length }));
    this.el.clear.disabled = all.length === 0;

    this.el.empty.hidden = entries.length > 0;
    this.el.empty.textContent = all.length === 0 ? t('history.empty') : t('history.noMatch', { q: query });

    const dateFormat = new Intl.DateTimeFormat(this.i18n.locale(), {
      month: 'short',
      day: 'numeric',
      hour: '2-digit',
      minute: '2-digit',
    });
    const fragment = document.createDocumentFragment();
    for (const entry of entries) fragment.append(this._item(entry, dateFormat));
    this.el.list.replaceChildren(fragment);
    this.onChange(all.length);
  }

  _item(entry, dateFormat) {
    const t = this.i18n.t;
    const when = dateFormat.format(new Date(entry.at));
    const title = firstLine(entry.prompt, 80) || t('history.untitled');

    const li = document.createElement('li');
    li.className = 'history-item';
    li.dataset.id = entry.id;

    const restore = document.createElement('button');
    restore.type = 'button';
    restore.className = 'history-restore';
    restore.dataset.action = 'restore';
    restore.setAttribute('aria-label', t('history.restoreLabel', { when, title }));

    const meta = document.createElement('span');
    meta.className = 'history-meta';
    const time = document.createElement('time');
    time.dateTime = new Date(entry.at).toISOString();
    time.textContent = when;
    const mode = document.createElement('span');
    mode.textContent = entry.type ? t(`type.${entry.type}`) : '';
    const model = document.createElement('span');
    model.textContent = entry.model ?? '';
    const status = document.createElement('span');
    status.className = 'badge small';
    status.dataset.state = entry.status ?? 'done';
    status.textContent = t(`status.${entry.status ?? 'done'}`);
    meta.append(time, mode, model, status);

    const prompt = document.createElement('span');
    prompt.className = 'history-prompt';
    prompt.textContent = title;
    const result = document.createElement('span');
    result.className = 'history-result';
    result.textContent = firstLine(entry.result, 160);

    restore.append(meta, prompt, result);

    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'button ghost small history-delete';
    del.dataset.action = 'delete';
    del.setAttribute('aria-label', t('history.deleteLabel', { when }));
    del.textContent = t('history.delete');

    li.append(restore, del);
    return li;
  }

  _onClick(event) {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const item = button.closest('.history-item');
    const id = item?.dataset.id;
    if (!id) return;
    if (button.dataset.action === 'restore') {
      const entry = this.store.get(id);
      if (entry) this.onRestore(entry);
      return;
    }
    // Delete, then keep keyboard focus in the list.
    const items = [...this.el.list.children];
    const index = items.indexOf(item);
    const removed = this.store.get(id);
    this.store.remove(id);
    if (removed) this.onRemove([removed]);
    this.render();
    const rest = this.el.list.querySelectorAll('.history-restore');
    const next = rest[Math.min(index, rest.length - 1)];
    (next ?? this.el.search).focus();
  }

  _clearAll() {
    const n = this.store.list().length;
    if (n === 0) return;
    if (!window.confirm(this.i18n.t('history.clearConfirm', { n }))) return;
    const removed = this.store.list();
    this.store.clear();
    this.onRemove(removed);
    this.render();
    this.el.search.focus();
  }
}
