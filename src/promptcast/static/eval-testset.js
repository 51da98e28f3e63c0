// Test sets on the page: read (JSONL or JSON), checked, written back, and kept.
//
// Pure: no DOM. The format is the server's (docs/eval.md): a case is an object
// with `message` (or `conversation`) and its expectations as top-level keys.
// YAML files are for the CLI; the page reads JSONL and JSON, and writes JSONL.
// `TestSetStore` keeps the set being edited behind a small async interface, so
// the server's library can take over from localStorage without the panel changing.

export const TESTSET_KEY = 'promptcast.eval.testset.v1';

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
 * Keeps the test set being edited. Async so that the server's library can
 * back it later with the same interface; localStorage for now.
 */
export class TestSetStore {
  constructor(storage, { key = TESTSET_KEY } = {}) {
    this._storage = storage;
    this._key = key;
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
