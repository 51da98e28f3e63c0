// The last runs, kept in the browser (localStorage or any object with
// getItem/setItem/removeItem). Newest first, at most `limit` entries.
// Pure logic with the storage passed in, so node can test it with a fake.

export const HISTORY_KEY = 'promptcast.history.v1';
export const HISTORY_LIMIT = 50;

const FIELDS = ['prompt', 'type', 'model', 'opening', 'result', 'status', 'stats', 'review', 'runId'];

function newId(now) {
  const random = Math.random().toString(36).slice(2, 8);
  return `${now.toString(36)}-${random}`;
}

function isEntry(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.id === 'string' &&
    typeof value.prompt === 'string' &&
    typeof value.result === 'string'
  );
}

export class HistoryStore {
  /**
   * @param {{getItem(k: string): string | null, setItem(k: string, v: string): void, removeItem(k: string): void} | null} storage
   * @param {{key?: string, limit?: number, now?: () => number}} [options]
   */
  constructor(storage, { key = HISTORY_KEY, limit = HISTORY_LIMIT, now = () => Date.now() } = {}) {
    this._storage = storage;
    this._key = key;
    this._limit = limit;
    this._now = now;
  }

  get key() {
    return this._key;
  }

  /** All entries, newest first. A missing or damaged store reads as empty. */
  list() {
    let raw = null;
    try {
      raw = this._storage ? this._storage.getItem(this._key) : null;
    } catch {
      return []; // storage disabled (private mode, blocked cookies)
    }
    if (!raw) return [];
    let parsed;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return [];
    }
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(isEntry).slice(0, this._limit);
  }

  /**
   * Record a run; returns the stored entry (with `id` and `at`).
   * When the storage is full, the oldest entries give way; when even one
   * entry does not fit, it is not stored and `null` is returned.
   */
  add(run) {
    const at = this._now();
    const entry = { id: newId(at), at };
    for (const f of FIELDS) entry[f] = run[f] ?? null;
    entry.prompt = String(run.prompt ?? '');
    entry.result = String(run.result ?? '');
    const entries = [entry, ...this.list()].slice(0, this._limit);
    return this._save(entries) ? entry : null;
  }

  /**
   * The library's runs (server entries with a `runId`) replace this browser's
   * entries of runs; entries made without the library stay. Newest first.
   */
  merge(serverEntries) {
    const local = this.list().filter((e) => !e.runId);
    const all = [...serverEntries.filter(isEntry), ...local].sort((a, b) => (b.at ?? 0) - (a.at ?? 0));
    return this._save(all.slice(0, this._limit));
  }

  get(id) {
    return this.list().find((e) => e.id === id) ?? null;
  }

  remove(id) {
    const entries = this.list();
    const kept = entries.filter((e) => e.id !== id);
    if (kept.length !== entries.length) this._save(kept);
    return kept.length !== entries.length;
  }

  clear() {
    try {
      this._storage?.removeItem(this._key);
    } catch {
      // nothing stored, nothing to clear
    }
  }

  /**
   * Entries matching every word of `query` (case-insensitive) in the
   * prompt, result, opening, model or mode.
   */
  search(query) {
    const words = String(query ?? '')
      .toLocaleLowerCase()
      .split(/\s+/)
      .filter(Boolean);
    const entries = this.list();
    if (words.length === 0) return entries;
    return entries.filter((e) => {
      const hay = [e.prompt, e.result, e.opening, e.model, e.type].filter(Boolean).join('\n').toLocaleLowerCase();
      return words.every((w) => hay.includes(w));
    });
  }

  _save(entries) {
    if (!this._storage) return false;
    let list = entries;
    for (;;) {
      try {
        if (list.length === 0) {
          this._storage.removeItem(this._key);
          return entries.length === 0;
        }
        this._storage.setItem(this._key, JSON.stringify(list));
        return true;
      } catch {
        // Quota exceeded: drop the oldest and try again.
        if (list.length <= 1) return false;
        list = list.slice(0, -1);
      }
    }
  }
}
