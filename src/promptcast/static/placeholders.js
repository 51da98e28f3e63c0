// Template slots in a prompt: {{name}}, {name}, ${name}, %s, %(name)s, [NAME].
// Pure. The server finds the same ones for its meta-prompt
// (service/placeholders.py); both read tests/placeholder_cases.json.

// Order matters: {{x}} before {x}, %(x)s before %s. No \w: the Python twin
// spells its classes out the same way, so both agree exactly.
const SLOT = new RegExp(
  [
    String.raw`\{\{[ \t]*(?<mustache>[^{}\n]*?)[ \t]*\}\}`,
    String.raw`\$\{(?<dollar>[A-Za-z_][A-Za-z0-9_.]*)\}`,
    String.raw`%\((?<named>[A-Za-z_][A-Za-z0-9_]*)\)[sdif]`,
    String.raw`(?<![{$A-Za-z0-9_])\{(?<brace>[A-Za-z_\u4e00-\u9fff][A-Za-z0-9_\u4e00-\u9fff.-]{0,39})\}(?!\})`,
    String.raw`(?<![%A-Za-z0-9_])%(?<printf>[sdif])(?![A-Za-z])`,
    String.raw`(?<![\]!A-Za-z0-9_])\[(?<bracket>[^\[\]\n]{2,40})\](?![(:\[])`,
  ].join('|'),
  'g',
);
// A bracketed word is a slot only when it looks like one: ALL CAPS, snake_case,
// or a short Chinese noun. "[optional]" or "[see below]" are prose.
const BRACKET_SLOT = /^(?:[A-Z][A-Z0-9_ -]*[A-Z0-9]|[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|[\u4e00-\u9fff]{2,12})$/;

/**
 * The template slots of `text`, in order of first appearance, without repeats.
 * @returns {{kind: string, name: string, raw: string, key: string}[]}
 *   `key` is the same for the same slot written with other spacing ({{ a }} and {{a}})
 */
export function findSlots(text) {
  const found = new Map();
  for (const m of String(text).matchAll(SLOT)) {
    const [kind, name] = Object.entries(m.groups).find(([, value]) => value !== undefined);
    if (kind === 'bracket' && !BRACKET_SLOT.test(name)) continue;
    if (kind === 'mustache' && name.trim() === '') continue;
    const key = `${kind}:${name.replace(/[ \t]+/g, ' ')}`;
    if (!found.has(key)) found.set(key, { kind, name, raw: m[0], key });
  }
  return [...found.values()];
}
