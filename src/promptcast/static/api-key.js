// The API key the page sends when the server has keys on: asked once, kept in
// this tab's sessionStorage (gone when the tab closes), sent as
// `Authorization: Bearer <key>` by every call of the page, streams included.

export const KEY_STORAGE = 'promptcast.apiKey';

function session() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // storage blocked: the key lives only as long as the page
  }
}

let memoryKey = null;

export function getApiKey() {
  try {
    return session()?.getItem(KEY_STORAGE) ?? memoryKey;
  } catch {
    return memoryKey;
  }
}

export function setApiKey(key) {
  memoryKey = key || null;
  try {
    if (key) session()?.setItem(KEY_STORAGE, key);
    else session()?.removeItem(KEY_STORAGE);
  } catch {
    // kept in memory only
  }
}

/** The headers that carry the key, or none. */
export function authHeaders() {
  const key = getApiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}
