// This session's versions of a prompt: the original (v0), then each kept
// rewrite (v1, v2, …), and which one is current. Pure, storage passed in.
//
// The page talks to a store through four async methods — load, start, add,
// setCurrent — each resolving to the whole session. `LocalVersionStore`
// keeps it in this browser; a store on the server's API (issue 20) can take
// its place without the page changing.

export const VERSIONS_KEY = 'promptcast.versions.v1';
export const VERSION_LIMIT = 100;

const SOURCES = ['original', 'rewrite', 'iterate', 'compare'];

/** An empty session: nothing rewritten yet. */
export function emptySession() {
  return { original: null, opening: null, versions: [], current: null };
}

function isVersion(v) {
  return (
    v !== null &&
    typeof v === 'object' &&
    Number.isInteger(v.n) &&
    v.n >= 0 &&
    typeof v.text === 'string' &&
    SOURCES.includes(v.source)
  );
}

/** A stored session as the page can trust it, or an empty one. */
export function validSession(value) {
  if (!value || typeof value !== 'object' || typeof value.original !== 'string') return emptySession();
  const versions = Array.isArray(value.versions) ? value.versions.filter(isVersion) : [];
  if (versions.length === 0 || versions[0].n !== 0) return emptySession();
  const current = versions.some((v) => v.n === value.current) ? value.current : versions[versions.length - 1].n;
  return {
    original: value.original,
    opening: typeof value.opening === 'string' ? value.opening : null,
    versions,
    current,
  };
}

/** The version numbered `n`, or null. */
export function versionOf(session, n) {
  return session.versions.find((v) => v.n === n) ?? null;
}

/** The current version (the one Iterate revises), or null before any rewrite. */
export function currentVersion(session) {
  return session.current === null ? null : versionOf(session, session.current);
}

/** The newest rewrite (not the original), or null. */
export function latestRewrite(session) {
  const last = session.versions[session.versions.length - 1];
  return last && last.n > 0 ? last : null;
}

/**
 * The session after a finished rewrite of `original`: a new session when the
 * original changed, else the same one with the rewrite as its next version,
 * which becomes current. Pure.
 * @param {object} session
 * @param {{original: string, opening?: string|null, text: string, source?: string,
 *          model?: string, mode?: string, feedback?: string|null, parent?: number|null,
 *          stats?: object|null}} rewrite
 * @param {number} [at]
 */
export function withRewrite(session, rewrite, at = Date.now()) {
  let base = session;
  if (session.original === null || session.original !== rewrite.original) {
    base = {
      original: rewrite.original,
      opening: rewrite.opening ?? null,
      versions: [{ n: 0, text: rewrite.original, source: 'original', at }],
      current: 0,
    };
  }
  const n = base.versions[base.versions.length - 1].n + 1;
  const version = {
    n,
    text: String(rewrite.text),
    source: SOURCES.includes(rewrite.source) ? rewrite.source : 'rewrite',
    model: rewrite.model ?? null,
    mode: rewrite.mode ?? null,
    feedback: rewrite.feedback ?? null,
    parent: rewrite.parent ?? (n > 1 ? base.current : 0),
    stats: rewrite.stats ?? null,
    at,
  };
  // The original stays; the oldest rewrites give way past the limit.
  const rewrites = [...base.versions.slice(1), version].slice(-(VERSION_LIMIT - 1));
  return { ...base, opening: rewrite.opening ?? base.opening, versions: [base.versions[0], ...rewrites], current: n };
}

/** The session with version `n` current (unchanged when there is no such version). */
export function withCurrent(session, n) {
  return versionOf(session, n) ? { ...session, current: n } : session;
}

/** The label of a version: "Original" for v0, else "v3". */
export function versionLabel(version, originalLabel = 'Original') {
  return version.n === 0 ? originalLabel : `v${version.n}`;
}

export class LocalVersionStore {
  /**
   * @param {{getItem(k: string): string | null, setItem(k: string, v: string): void,
   *          removeItem(k: string): void} | null} storage
   * @param {{key?: string, now?: () => number}} [options]
   */
  constructor(storage, { key = VERSIONS_KEY, now = () => Date.now() } = {}) {
    this._storage = storage;
    this._key = key;
    this._now = now;
    this._session = null;
  }

  /** The stored session (an empty one when there is none, or it is damaged). */
  async load() {
    if (this._session === null) {
      let parsed = null;
      try {
        parsed = JSON.parse(this._storage?.getItem(this._key) ?? 'null');
      } catch {
        parsed = null; // damaged or disabled storage reads as no session
      }
      this._session = validSession(parsed);
    }
    return this._session;
  }

  /** Forget this session's versions. */
  async clear() {
    this._session = emptySession();
    try {
      this._storage?.removeItem(this._key);
    } catch {
      // nothing stored
    }
    return this._session;
  }

  /** Keep a finished rewrite (see `withRewrite`); resolves to the session. */
  async add(rewrite) {
    return this._save(withRewrite(await this.load(), rewrite, this._now()));
  }

  /** Make version `n` current; resolves to the session. */
  async setCurrent(n) {
    return this._save(withCurrent(await this.load(), n));
  }

  _save(session) {
    this._session = session;
    if (!this._storage) return session;
    let kept = session;
    for (;;) {
      try {
        this._storage.setItem(this._key, JSON.stringify(kept));
        return session;
      } catch {
        // Quota exceeded: keep the newest rewrites that fit; the page keeps them all.
        if (kept.versions.length <= 2) return session;
        const versions = [kept.versions[0], ...kept.versions.slice(2)];
        kept = { ...kept, versions, current: versions.some((v) => v.n === kept.current) ? kept.current : versions[versions.length - 1].n };
      }
    }
  }
}
