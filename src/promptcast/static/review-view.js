// Draws a review (see review.js) as a list of checks.

import { formatCount, formatPercent } from './stats.js';

function check(tone, label, valueNodes) {
  const li = document.createElement('li');
  li.className = 'check';
  li.dataset.tone = tone;
  const icon = document.createElement('span');
  icon.className = 'check-icon';
  icon.setAttribute('aria-hidden', 'true');
  const name = document.createElement('span');
  name.className = 'check-label';
  name.textContent = label;
  const value = document.createElement('span');
  value.className = 'check-value';
  value.append(...valueNodes);
  li.append(icon, name, value);
  return li;
}

function chips(items) {
  const span = document.createElement('span');
  span.className = 'chips';
  for (const item of items) {
    const code = document.createElement('code');
    code.className = 'chip';
    code.textContent = item;
    span.append(code);
  }
  return span;
}

/**
 * @param {HTMLElement} list
 * @param {ReturnType<typeof import('./review.js').review>} data
 * @param {{t: Function, locale: () => string}} i18n
 */
export function renderReview(list, data, i18n) {
  const { t } = i18n;
  const locale = i18n.locale();
  const items = [];

  const { before, after, percent } = data.length;
  const change = percent === null || Math.abs(percent) < 0.05 ? t('review.noChange') : formatPercent(percent, locale);
  items.push(
    check('info', t('review.length'), [
      t('review.lengthValue', { before: formatCount(before, locale), after: formatCount(after, locale), change }),
    ]),
  );

  const survival = (label, group) => {
    if (group.total === 0) return check('none', label, [t('review.noneFound')]);
    if (group.missing.length === 0) return check('ok', label, [t('review.allKept', { n: group.total })]);
    return check('warn', label, [
      `${t('review.missing', { m: group.missing.length, n: group.total })} `,
      chips(group.missing),
    ]);
  };
  items.push(survival(t('review.placeholders'), data.placeholders));
  items.push(survival(t('review.numbers'), data.numbers));
  items.push(survival(t('review.quoted'), data.quoted));

  if (data.opening) {
    items.push(
      check(data.opening.verbatim ? 'ok' : 'warn', t('review.opening'), [
        t(data.opening.verbatim ? 'review.openingKept' : 'review.openingMissing'),
      ]),
    );
  }
  list.replaceChildren(...items);
}
