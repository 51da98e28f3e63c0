// Turning model output into DOM: sanitized Markdown and a word diff.
//
// Model output is untrusted. Markdown goes through marked with raw HTML
// escaped (prompts are full of <role>-style tags that should stay visible
// text), images turned into their alt text (nothing remote is ever loaded),
// and the result through DOMPurify with a short allow-list, returned as a DOM
// fragment. The diff is built from text nodes only.

import { Marked } from './vendor/marked/marked.esm.js';
import DOMPurify from './vendor/dompurify/purify.es.js';
import { diffWords } from './vendor/diff/libesm/diff/word.js';
import { diffLines } from './vendor/diff/libesm/diff/line.js';

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const markdown = new Marked({ gfm: true, breaks: true, async: false });
markdown.use({
  renderer: {
    html({ text, block }) {
      const escaped = escapeHtml(text);
      return block ? `<p class="md-html">${escaped}</p>\n` : escaped;
    },
    image({ text }) {
      return `<span class="md-image">${escapeHtml(text ? `[${text}]` : '[image]')}</span>`;
    },
    checkbox({ checked }) {
      return checked ? '☑ ' : '☐ ';
    },
  },
});

const ALLOWED_TAGS = [
  'a', 'blockquote', 'br', 'code', 'del', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'li', 'ol', 'p',
  'pre', 's', 'span', 'strong', 'sub', 'sup', 'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
];
const ALLOWED_CLASS = /^(?:md-html|md-image|language-[\w+#.-]{1,40})$/;

const purify = DOMPurify(window);
purify.addHook('uponSanitizeAttribute', (_node, data) => {
  if (data.attrName === 'class' && !ALLOWED_CLASS.test(data.attrValue)) data.keepAttr = false;
  if (data.attrName === 'align' && !/^(?:left|right|center)$/.test(data.attrValue)) data.keepAttr = false;
});
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'A') {
    node.setAttribute('rel', 'noopener noreferrer nofollow');
    node.setAttribute('target', '_blank');
    node.setAttribute('referrerpolicy', 'no-referrer');
  }
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ['href', 'title', 'align', 'start', 'class'],
  // Links may only be http(s), mailto or in-page. DOMPurify tests every
  // attribute that is not "URI-safe" against this pattern, so the two plain
  // ones we allow are declared URI-safe.
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  ADD_URI_SAFE_ATTR: ['align', 'start'],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

/** Sanitized Markdown of `text`, as a DocumentFragment. */
export function markdownFragment(text) {
  const html = markdown.parse(text);
  return purify.sanitize(html, PURIFY_CONFIG);
}

/** Replace the content of `container` with the rendered Markdown of `text`. */
export function renderMarkdown(container, text) {
  container.replaceChildren(markdownFragment(text));
}

/**
 * Replace the content of `container` with a diff of `before` → `after`.
 * Word-level (each CJK character is its own token) when it can be computed
 * within `timeoutMs`, line-level otherwise. Returns `{coarse}`.
 * (No Intl.Segmenter: it costs far more than the diff itself on long texts.)
 */
export function renderDiff(container, before, after, { timeoutMs = 150, linesOnly = false } = {}) {
  let coarse = false;
  let changes = linesOnly ? undefined : diffWords(before, after, { timeout: timeoutMs });
  if (!changes) {
    coarse = true;
    changes = diffLines(before, after, { timeout: timeoutMs * 2 }) ?? [
      { removed: true, value: before },
      { added: true, value: after },
    ];
  }
  const fragment = document.createDocumentFragment();
  for (const change of changes) {
    if (!change.value) continue;
    if (change.added || change.removed) {
      const el = document.createElement(change.added ? 'ins' : 'del');
      el.textContent = change.value;
      fragment.append(el);
    } else {
      fragment.append(document.createTextNode(change.value));
    }
  }
  container.replaceChildren(fragment);
  return { coarse };
}
