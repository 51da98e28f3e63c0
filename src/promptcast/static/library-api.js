// The library's HTTP API (/api/*) for the page: JSON in and out, the key sent,
// errors as LibraryError {status, code, message, field}. No DOM: node tests it.

import { authHeaders } from './api-key.js';

export class LibraryError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export class LibraryApi {
  /** @param {{fetch?: typeof fetch, onUnauthorized?: () => Promise<boolean>}} [options] */
  constructor({ fetch: fetchImpl = (...args) => globalThis.fetch(...args), onUnauthorized = null } = {}) {
    this._fetch = fetchImpl;
    this._onUnauthorized = onUnauthorized;
  }

  /** One call; on 401/403, asks for a key (onUnauthorized) and tries again until none is given. */
  async call(method, path, { body, params, headers = {} } = {}) {
    let url = path;
    if (params) {
      const query = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') query.set(k, String(v));
      if ([...query].length) url += `?${query}`;
    }
    const init = { method, cache: 'no-store', headers: { Accept: 'application/json', ...authHeaders(), ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    let response;
    try {
      response = await this._fetch(url, init);
    } catch (err) {
      throw new LibraryError(0, 'network_error', err?.message ?? String(err));
    }
    if ((response.status === 401 || response.status === 403) && this._onUnauthorized) {
      if (await this._onUnauthorized(response.status)) return this.call(method, path, { body, params, headers });
    }
    if (response.status === 204) return { data: null, etag: null };
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = data?.error ?? {};
      throw new LibraryError(response.status, error.code ?? 'http_error', error.message ?? `HTTP ${response.status}`, error.field ?? null);
    }
    return { data, etag: response.headers.get('etag') };
  }

  async info() {
    return (await this.call('GET', '/api/library')).data;
  }

  async prompts({ q, tag, cursor, limit } = {}) {
    return (await this.call('GET', '/api/prompts', { params: { q, tag, cursor, limit } })).data;
  }

  async prompt(id) {
    return this.call('GET', `/api/prompts/${encodeURIComponent(id)}`);
  }

  async createPrompt(body) {
    return (await this.call('POST', '/api/prompts', { body })).data;
  }

  async patchPrompt(id, body, etag) {
    return this.call('PATCH', `/api/prompts/${encodeURIComponent(id)}`, { body, headers: etag ? { 'If-Match': etag } : {} });
  }

  async deletePrompt(id, etag) {
    await this.call('DELETE', `/api/prompts/${encodeURIComponent(id)}`, { headers: etag ? { 'If-Match': etag } : {} });
  }

  async versions(id) {
    return (await this.call('GET', `/api/prompts/${encodeURIComponent(id)}/versions`)).data.items;
  }

  async addVersion(id, body) {
    return (await this.call('POST', `/api/prompts/${encodeURIComponent(id)}/versions`, { body })).data;
  }

  async share(id) {
    return (await this.call('POST', `/api/prompts/${encodeURIComponent(id)}/share`)).data.url;
  }

  async unshare(id) {
    await this.call('DELETE', `/api/prompts/${encodeURIComponent(id)}/share`);
  }

  async runs(params = {}) {
    return (await this.call('GET', '/api/runs', { params })).data;
  }

  async deleteRun(id) {
    await this.call('DELETE', `/api/runs/${encodeURIComponent(id)}`);
  }

  async exportAll() {
    return (await this.call('GET', '/api/export')).data;
  }

  async importAll(document) {
    return (await this.call('POST', '/api/import', { body: document })).data;
  }

  async templates() {
    return (await this.call('GET', '/api/templates')).data.items;
  }

  async saveTemplate(name, body, { create = false, etag = null } = {}) {
    if (create) return (await this.call('POST', '/api/templates', { body: { ...body, name } })).data;
    const headers = etag ? { 'If-Match': etag } : {};
    return (await this.call('PATCH', `/api/templates/${encodeURIComponent(name)}`, { body, headers })).data;
  }

  async deleteTemplate(name) {
    await this.call('DELETE', `/api/templates/${encodeURIComponent(name)}`);
  }

  // Test sets and evaluation results (the evaluation panel's).

  async testsets(params = {}) {
    return (await this.call('GET', '/api/testsets', { params })).data;
  }

  async testset(id) {
    return this.call('GET', `/api/testsets/${encodeURIComponent(id)}`);
  }

  async createTestset(body) {
    return this.call('POST', '/api/testsets', { body });
  }

  async patchTestset(id, body, etag) {
    return this.call('PATCH', `/api/testsets/${encodeURIComponent(id)}`, { body, headers: etag ? { 'If-Match': etag } : {} });
  }

  async deleteTestset(id) {
    await this.call('DELETE', `/api/testsets/${encodeURIComponent(id)}`);
  }

  async evaluations(params = {}) {
    return (await this.call('GET', '/api/evaluations', { params })).data;
  }

  async evaluation(id) {
    return (await this.call('GET', `/api/evaluations/${encodeURIComponent(id)}`)).data;
  }
}

const OUTCOME_STATE = { done: 'done', cancelled: 'partial', timeout: 'timeout', error: 'error' };

/** A server run as an entry of the page's history (history.js). */
export function runToHistoryEntry(run) {
  const request = run?.request ?? {};
  return {
    id: `run:${run.id}`,
    runId: run.id,
    at: Date.parse(run.created_at) || 0,
    prompt: String(request.prompt ?? ''),
    type: run.mode ?? request.type ?? 'optimize',
    model: run.model ?? request.model ?? null,
    opening: request.opening ?? null,
    result: String(run.text ?? ''),
    status: OUTCOME_STATE[run.outcome] ?? 'error',
    stats: {
      ttftMs: run.ttft_ms ?? null,
      tokens: run.usage?.completion_tokens ?? 0,
      rate: null,
      elapsedMs: run.duration_ms ?? null,
      resumes: 0,
    },
    review: null,
  };
}

/** A version as a list shows it: `v3 · 8 Dec 2026, 10:00`. */
export function versionLabel(version, locale = 'en') {
  const when = new Date(version.created_at);
  const date = Number.isNaN(when.getTime()) ? '' : new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(when);
  return `v${version.number}${date ? ` · ${date}` : ''}`;
}
