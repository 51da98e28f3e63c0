// The {{name}} variables of the prompts a try run uses: found, filled, checked.
// Pure. The CLI's `promptcast try --var` fills the same ones.

const VARIABLE = /\{\{\s*([^{}\n]+?)\s*\}\}/g;

/** The variable names of one or more texts, in order of first appearance, without repeats. */
export function extractVariables(...texts) {
  const names = [];
  for (const text of texts) {
    for (const m of String(text ?? '').matchAll(VARIABLE)) if (!names.includes(m[1])) names.push(m[1]);
  }
  return names;
}

/**
 * `text` with each {{name}} replaced by `values[name]` (a Map or an object);
 * a variable without a value is left as written.
 */
export function fillVariables(text, values) {
  const get = (name) => (values instanceof Map ? values.get(name) : values?.[name]);
  return String(text).replace(VARIABLE, (slot, name) => {
    const value = get(name);
    return typeof value === 'string' && value !== '' ? value : slot;
  });
}

/** The names among `names` that have no value (an empty value counts as none). */
export function missingVariables(names, values) {
  const get = (name) => (values instanceof Map ? values.get(name) : values?.[name]);
  return names.filter((name) => {
    const value = get(name);
    return typeof value !== 'string' || value === '';
  });
}
