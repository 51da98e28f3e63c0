// What a careful reviewer checks once a rewrite is complete: did it grow or
// shrink, did the things that must not change survive, is the opening there.
// Pure functions; the page renders their results.

import { findSlots } from './placeholders.js';

/** Length in characters as a person counts them (code points, not UTF-16 units). */
export function charLength(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Length before and after, and the change in percent (null when the
 * original is empty).
 */
export function lengthChange(before, after) {
  const a = charLength(before);
  const b = charLength(after);
  return { before: a, after: b, delta: b - a, percent: a === 0 ? null : ((b - a) / a) * 100 };
}

/**
 * Template slots ({{name}}, {name}, ${name}, %s, %(name)s, [NAME]), in order of
 * first appearance, without repeats.
 */
export function extractPlaceholders(text) {
  return findSlots(text).map(({ name, raw }) => ({ name, raw }));
}

// A number: digits with optional thousands separators and decimals, an
// optional percent sign. Full-width digits are folded to ASCII first.
const NUMBER = /\d+(?:[.,]\d+)*%?/g;
// An ordered-list marker at the start of a line ("1.", "2)", "3、"): structure,
// not content, and rewrites renumber lists freely.
const LIST_MARKER = /^[ \t]*\d+(?:[.)]\s|[、．])/;

function foldDigits(text) {
  return text.replace(/[０-９]/g, (d) => String.fromCharCode(d.charCodeAt(0) - 0xfee0)).replace(/[％]/g, '%');
}

function isListMarker(text, index, length) {
  const lineStart = text.lastIndexOf('\n', index - 1) + 1;
  if (text.slice(lineStart, index).trim() !== '') return false;
  return LIST_MARKER.test(text.slice(lineStart, index + length + 2));
}

/** Numbers of a text, in order, without repeats (list markers left out). */
export function extractNumbers(text) {
  const folded = foldDigits(text);
  const seen = new Set();
  for (const m of folded.matchAll(NUMBER)) {
    // A number that is part of a placeholder is checked as a placeholder.
    if (insidePlaceholder(folded, m.index)) continue;
    if (isListMarker(folded, m.index, m[0].length)) continue;
    // Trailing separators are punctuation ("3," or "4."): the regex already
    // requires a digit after a separator, so m[0] is clean.
    seen.add(m[0]);
  }
  return [...seen];
}

function insidePlaceholder(text, index) {
  const open = text.lastIndexOf('{{', index);
  if (open === -1) return false;
  const close = text.indexOf('}}', open);
  return close !== -1 && close > index && !text.slice(open + 2, index).includes('}}');
}

/** Does `number` occur in `text` as a whole number (not inside a longer one)? */
export function containsNumber(text, number) {
  const folded = foldDigits(text);
  let from = 0;
  for (;;) {
    const i = folded.indexOf(number, from);
    if (i === -1) return false;
    const before = folded[i - 1];
    const after = folded[i + number.length];
    const digitBefore = before !== undefined && /\d/.test(before);
    const joinedBefore = before !== undefined && /[.,]/.test(before) && /\d/.test(folded[i - 2] ?? '');
    const digitAfter = after !== undefined && /\d/.test(after);
    const joinedAfter = after !== undefined && /[.,]/.test(after) && /\d/.test(folded[i + number.length + 1] ?? '');
    if (!digitBefore && !joinedBefore && !digitAfter && !joinedAfter) return true;
    from = i + 1;
  }
}

// Quoted strings: straight and curly double quotes, curly single quotes,
// CJK corner brackets and backticks, on one line, 1–200 characters inside.
// Straight single quotes only when they cannot be an apostrophe.
const QUOTES = [
  /"([^"\n]{1,200})"/g,
  /“([^“”\n]{1,200})”/g,
  /‘([^‘’\n]{1,200})’/g,
  /「([^「」\n]{1,200})」/g,
  /『([^『』\n]{1,200})』/g,
  /`([^`\n]{1,200})`/g,
  /(?<![\p{L}\p{N}])'([^'\n]{1,200})'(?![\p{L}\p{N}])/gu,
];

/** Quoted strings of a text: the text inside the quotes, without repeats. */
export function extractQuoted(text) {
  const found = [];
  for (const re of QUOTES) {
    for (const m of text.matchAll(re)) {
      const inner = m[1];
      if (inner.trim() === '') continue;
      found.push({ index: m.index, inner, raw: m[0] });
    }
  }
  found.sort((x, y) => x.index - y.index);
  const seen = new Map();
  for (const q of found) if (!seen.has(q.inner)) seen.set(q.inner, q.raw);
  return [...seen.entries()].map(([inner, raw]) => ({ inner, raw }));
}

/**
 * The whole review of a finished rewrite.
 * @param {{original: string, result: string, opening?: string | null}} run
 */
export function review({ original, result, opening }) {
  const length = lengthChange(original, result);

  const resultSlots = new Set(findSlots(result).map((p) => p.key));
  const placeholders = findSlots(original);
  const missingPlaceholders = placeholders.filter((p) => !resultSlots.has(p.key)).map((p) => p.raw);

  const numbers = extractNumbers(original);
  const missingNumbers = numbers.filter((n) => !containsNumber(result, n));

  const quoted = extractQuoted(original);
  const missingQuoted = quoted.filter((q) => !result.includes(q.inner)).map((q) => q.raw);

  const openingText = (opening ?? '').trim();
  const openingCheck = openingText === '' ? null : { text: openingText, verbatim: result.includes(openingText) };

  return {
    length,
    placeholders: { total: placeholders.length, missing: missingPlaceholders },
    numbers: { total: numbers.length, missing: missingNumbers },
    quoted: { total: quoted.length, missing: missingQuoted },
    opening: openingCheck,
  };
}
