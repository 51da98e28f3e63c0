// Test sets on the page: read (JSONL or JSON), checked, written back, and kept.
//
// Pure: no DOM. The format is the server's (docs/eval.md): a case is an object
// with `message` (or `conversation`) and its expectations as top-level keys.
// YAML files are for the CLI; the page reads JSONL and JSON, and writes JSONL.
// `TestSetStore` keeps the set being edited in this browser (with or without a
// library: an edit is never lost to a reload), and which saved test set it came
// from; `SavedTestSets` saves and loads test sets in the server's library.

export const TESTSET_KEY = 'promptcast.eval.testset.v1';
export const SOURCE_KEY = 'promptcast.eval.testset.source.v1';

const KEYS = new Set(['id', 'message', 'conversation', 'vars', 'opening', 'rubric', 'contains', 'not_contains', 'regex', 'max_chars', 'language', 'starts_with_opening']);
const LIST_KEYS = ['contains', 'not_contains', 'regex'];

export class TestSetError extends Error {
  constructor(message, line = null) {
    super(line === null ? message : `line ${line}: ${message}`);
    this.name = 'TestSetError';
    this.line = line;
  }
}

function isText(value) {
  return typeof value === 'string' && value.trim() !== '';
}

/** The problem with a case, or null when the server would take it (the main rules). */
export function caseProblem(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'a case must be an object';
  const unknown = Object.keys(value).filter((k) => !KEYS.has(k));
  if (unknown.length) return `unknown key(s) ${unknown.join(', ')}`;
  const hasMessage = 'message' in value;
  const hasConversation = 'conversation' in value;
  if (hasMessage === hasConversation) return 'a case needs `message` or `conversation`, not both or neither';
  if (hasMessage && !isText(value.message)) return '`message` must be a non-empty string';
  if (hasConversation) {
    const turns = value.conversation;
    if (!Array.isArray(turns) || turns.length === 0) return '`conversation` must be a non-empty list';
    for (const [i, turn] of turns.entries()) {
      if (!turn || !['user', 'assistant'].includes(turn.role) || !isText(turn.content)) return `\`conversation[${i}]\` needs role user|assistant and content`;
    }
    if (turns.at(-1).role !== 'user') return '`conversation` must end with the customer’s (user) turn';
  }
  for (const key of LIST_KEYS) {
    if (!(key in value)) continue;
    const items = typeof value[key] === 'string' ? [value[key]] : value[key];
    if (!Array.isArray(items) || items.length === 0 || !items.every(isText)) return `\`${key}\` must be a string or a non-empty list of strings`;
  }
  if ('max_chars' in value && !(Number.isInteger(value.max_chars) && value.max_chars > 0)) return '`max_chars` must be a positive whole number';
  if ('starts_with_opening' in value && typeof value.starts_with_opening !== 'boolean') return '`starts_with_opening` must be true or false';
  if ('vars' in value && (value.vars === null || typeof value.vars !== 'object' || Array.isArray(value.vars))) return '`vars` must be an object';
  return null;
}

function checked(value, line) {
  const problem = caseProblem(value);
  if (problem) throw new TestSetError(problem, line);
  return value;
}

/**
 * Read a test set: a JSON array (or `{cases: [...]}`) or JSONL, one case a line.
 * @returns {object[]} the cases
 * @throws {TestSetError} naming the line and the problem
 */
export function parseTestSet(text) {
  const trimmed = text.replace(/^\uFEFF/, '').trim();
  if (trimmed === '') throw new TestSetError('the file has no case');
  if (trimmed.startsWith('[') || (trimmed.startsWith('{') && /^\{\s*"(cases|name|vars|opening|description)"/.test(trimmed))) {
    let doc;
    try {
      doc = JSON.parse(trimmed);
    } catch (err) {
      throw new TestSetError(`not valid JSON: ${err.message}`);
    }
    const cases = Array.isArray(doc) ? doc : doc?.cases;
    if (!Array.isArray(cases) || cases.length === 0) throw new TestSetError('expected a list of cases');
    const shared = Array.isArray(doc) ? {} : doc.vars ?? {};
    return cases.map((c, i) => withVars(checked(c, null), shared, `case ${i + 1}`));
  }
  const cases = [];
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    let value;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new TestSetError(`not valid JSON: ${err.message}`, index + 1);
    }
    cases.push(checked(value, index + 1));
  }
  if (cases.length === 0) throw new TestSetError('the file has no case');
  return cases;
}

function withVars(value, shared, where) {
  if (!Object.keys(shared).length) return value;
  if (typeof shared !== 'object') throw new TestSetError(`${where}: the set's \`vars\` must be an object`);
  return { ...value, vars: { ...shared, ...(value.vars ?? {}) } };
}

/** The cases as JSONL: what export writes and `promptcast eval --cases` reads. */
export function toJSONL(cases) {
  return cases.map((c) => JSON.stringify(c)).join('\n') + (cases.length ? '\n' : '');
}

/** A list field (contains, not_contains, regex) as editable lines, and back. */
export function listToLines(value) {
  if (value === undefined) return '';
  return (typeof value === 'string' ? [value] : value).join('\n');
}

export function linesToList(text) {
  const items = text.split('\n').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) return undefined;
  return items.length === 1 ? items[0] : items;
}

/** `vars` as `name=value` lines, and back. */
export function varsToLines(vars) {
  return Object.entries(vars ?? {}).map(([k, v]) => `${k}=${v}`).join('\n');
}

export function linesToVars(text) {
  const vars = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at <= 0) continue;
    vars[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return Object.keys(vars).length ? vars : undefined;
}

/** A case with its empty fields dropped (what an edit form produces). */
export function compactCase(value) {
  const out = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || v === null || v === '' || v === false) continue;
    out[k] = v;
  }
  return out;
}

/** The placeholders `{{name}}` of a text, each once (the server's rule). */
export function placeholders(text) {
  return [...new Set([...String(text).matchAll(/\{\{\s*([\p{L}\p{M}_][\p{L}\p{M}\p{N}_.-]*)\s*\}\}/gu)].map((m) => m[1]))];
}

/**
 * Keeps the test set being edited in this browser (localStorage), and the
 * saved test set it came from, if any: {id, name, etag, changed}.
 */
export class TestSetStore {
  constructor(storage, { key = TESTSET_KEY, sourceKey = SOURCE_KEY } = {}) {
    this._storage = storage;
    this._key = key;
    this._sourceKey = sourceKey;
  }

  /** The saved test set the cases came from, or null. */
  loadSource() {
    try {
      const source = JSON.parse(this._storage?.getItem(this._sourceKey) ?? 'null');
      return source && typeof source.id === 'string' && typeof source.name === 'string' ? source : null;
    } catch {
      return null;
    }
  }

  saveSource(source) {
    try {
      if (source) this._storage?.setItem(this._sourceKey, JSON.stringify(source));
      else this._storage?.removeItem(this._sourceKey);
    } catch {
      // not remembered past this page
    }
  }

  async load() {
    try {
      const raw = this._storage?.getItem(this._key);
      const cases = raw ? JSON.parse(raw) : null;
      return Array.isArray(cases) ? cases.filter((c) => caseProblem(c) === null) : [];
    } catch {
      return [];
    }
  }

  async save(cases) {
    try {
      this._storage?.setItem(this._key, JSON.stringify(cases));
      return true;
    } catch {
      return false; // full or disabled: the set lives on in the page until it closes
    }
  }
}

/** Saving over a test set that changed since it was loaded (412): load it again, or save as new. */
export class StaleTestSet extends Error {
  constructor(name) {
    super(`the test set “${name}” changed since it was loaded`);
    this.name = 'StaleTestSet';
  }
}

function sourceOf(data, etag) {
  return { id: data.id, name: data.name, etag: etag ?? data.etag ?? null, changed: false };
}

/**
 * The test sets of the server's library (`/api/testsets`), through a LibraryApi
 * (which sends the key, and asks for one when refused).
 */
export class SavedTestSets {
  constructor(api) {
    this.api = api;
  }

  /** The caller's test sets, newest change first: [{id, name, count, etag, …}]. */
  async list() {
    return (await this.api.testsets({ limit: 200 })).items;
  }

  /** One test set: its cases, and the source to remember. */
  async load(id) {
    const { data, etag } = await this.api.testset(id);
    return { source: sourceOf(data, etag), cases: data.cases };
  }

  /** Save `cases` as a new test set named `name`; its source. */
  async create(name, cases) {
    const { data, etag } = await this.api.createTestset({ name, cases });
    return sourceOf(data, etag);
  }

  /** Save `cases` over the test set `source` came from, unless it changed since (If-Match). */
  async replace(source, cases) {
    try {
      const { data, etag } = await this.api.patchTestset(source.id, { cases }, source.etag);
      return sourceOf(data, etag);
    } catch (err) {
      if (err?.status === 412) throw new StaleTestSet(source.name);
      throw err;
    }
  }

  async remove(id) {
    await this.api.deleteTestset(id);
  }

  /** Whether the server still holds the test set as `source` last saw it (same ETag). */
  async unchanged(source) {
    try {
      const { etag } = await this.api.testset(source.id);
      return Boolean(source.etag) && etag === source.etag;
    } catch {
      return false;
    }
  }
}
