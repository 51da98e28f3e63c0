// The Iterate box and the version list: show, diff, try or restore any version.

import { h, setAlert } from './dom.js';
import { renderDiff } from './render.js';
import { currentVersion, versionLabel, versionOf } from './versions.js';

export class VersionsView {
  /**
   * @param {{t: Function, locale: Function, announce: Function}} ctx
   * @param {{onIterate: (feedback: string) => string | null, onTry: (n: number) => void,
   *          onRestore: (n: number) => void}} actions
   *   `onIterate` returns an error message, or null when the revision started
   */
  constructor(ctx, actions) {
    this.ctx = ctx;
    this.actions = actions;
    const $ = (id) => document.getElementById(id);
    this.el = {
      feedback: $('feedbackInput'),
      iterate: $('iterateButton'),
      error: $('iterateError'),
      list: $('versionList'),
      empty: $('versionsEmpty'),
      viewer: $('versionViewer'),
      viewerTitle: $('versionViewerTitle'),
      diffField: $('versionDiffField'),
      diffSelect: $('versionDiffSelect'),
      diffLegend: $('versionDiffLegend'),
      text: $('versionText'),
      close: $('versionViewerClose'),
    };
    this.session = null;
    this.viewing = null; // {n, diffWith: number | null}
    this.el.iterate.addEventListener('click', () => this.iterate());
    this.el.feedback.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        event.stopPropagation(); // not the page's Start
        this.iterate();
      }
    });
    this.el.feedback.addEventListener('input', () => setAlert(this.el.error, ''));
    this.el.close.addEventListener('click', () => this.closeViewer());
    this.el.diffSelect.addEventListener('change', () => {
      if (this.viewing) this.open(this.viewing.n, Number(this.el.diffSelect.value));
    });
    this.el.list.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-action]');
      if (!button) return;
      const n = Number(button.closest('[data-version]').dataset.version);
      const action = button.dataset.action;
      if (action === 'show') this.open(n, null);
      else if (action === 'diff') this.open(n, this.defaultDiffBase(n));
      else if (action === 'try') this.actions.onTry(n);
      else if (action === 'restore') this.actions.onRestore(n);
    });
  }

  iterate() {
    const feedback = this.el.feedback.value.trim();
    const error = this.actions.onIterate(feedback);
    setAlert(this.el.error, error);
    if (error) this.el.feedback.focus();
  }

  /** The feedback was used: clear the box for the next round. */
  iterated() {
    this.el.feedback.value = '';
  }

  label(version) {
    return versionLabel(version, this.ctx.t('ver.original'));
  }

  describe(version) {
    const { t } = this.ctx;
    if (version.n === 0) return t('ver.fromOriginal');
    const model = version.model ?? '';
    if (version.source === 'iterate') {
      const parent = versionOf(this.session, version.parent);
      return t('ver.fromIterate', { parent: parent ? this.label(parent) : '', feedback: version.feedback ?? '' });
    }
    if (version.source === 'compare') return t('ver.fromCompare', { model });
    return t('ver.fromRewrite', { mode: version.mode ? t(`type.${version.mode}`) : '', model });
  }

  defaultDiffBase(n) {
    const version = versionOf(this.session, n);
    if (!version) return null;
    if (n === 0) return this.session.versions[1]?.n ?? null;
    return versionOf(this.session, version.parent) ? version.parent : n - 1;
  }

  render(session) {
    this.session = session;
    const { t } = this.ctx;
    const current = currentVersion(session);
    this.el.empty.hidden = session.versions.length > 0;
    const chars = new Intl.NumberFormat(this.ctx.locale());
    this.el.list.replaceChildren(
      ...[...session.versions].reverse().map((version) => {
        const label = this.label(version);
        const isCurrent = version.n === current?.n;
        const length = [...version.text].length;
        return h(
          'li',
          { class: 'version', dataset: { version: version.n }, 'aria-current': isCurrent ? 'true' : null },
          h(
            'div',
            { class: 'version-head' },
            h('span', { class: 'version-label', text: label }),
            isCurrent ? h('span', { class: 'pill version-current', text: t('ver.current') }) : null,
            h('span', { class: 'version-meta', text: `${this.describe(version)} · ${t('ver.chars', { n: chars.format(length) })}` }),
          ),
          h(
            'div',
            { class: 'version-actions', role: 'group', 'aria-label': t('ver.actionsLabel', { label }) },
            h('button', { type: 'button', class: 'button ghost small version-show', dataset: { action: 'show' }, text: t('ver.show') }),
            session.versions.length > 1
              ? h('button', { type: 'button', class: 'button ghost small version-diff', dataset: { action: 'diff' }, text: t('ver.diff') })
              : null,
            h('button', { type: 'button', class: 'button ghost small version-try', dataset: { action: 'try' }, text: t('ver.try') }),
            isCurrent ? null : h('button', { type: 'button', class: 'button ghost small version-restore', dataset: { action: 'restore' }, text: t('ver.restore') }),
          ),
        );
      }),
    );
    if (this.viewing && versionOf(session, this.viewing.n)) this.open(this.viewing.n, this.viewing.diffWith);
    else this.closeViewer();
  }

  /** Show version `n`; with `diffWith`, as the changes from that version to it. */
  open(n, diffWith) {
    const version = versionOf(this.session, n);
    if (!version) return;
    const base = diffWith === null ? null : versionOf(this.session, diffWith);
    this.viewing = { n, diffWith: base ? base.n : null };
    this.el.viewer.hidden = false;
    this.el.viewerTitle.textContent = base ? `${this.label(base)} → ${this.label(version)}` : this.label(version);
    this.el.diffField.hidden = !base;
    this.el.diffLegend.hidden = !base;
    if (base) {
      this.el.diffSelect.replaceChildren(
        ...this.session.versions
          .filter((v) => v.n !== n)
          .map((v) => h('option', { value: v.n, text: this.label(v) })),
      );
      this.el.diffSelect.value = String(base.n);
      this.el.text.classList.add('diff-body');
      renderDiff(this.el.text, base.text, version.text);
    } else {
      this.el.text.classList.remove('diff-body');
      this.el.text.textContent = version.text;
    }
  }

  closeViewer() {
    this.viewing = null;
    this.el.viewer.hidden = true;
    this.el.text.replaceChildren();
  }
}
