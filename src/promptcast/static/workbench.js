// The workbench under the result: Iterate with feedback, the session's
// versions, the test panel (try two versions on a customer message), and the
// model comparison. Loaded beside app.js; it talks to the page through
// `window.promptcast` (start, restore, running) and the `promptcast:finished`
// event, and reads the form's fields, so app.js knows nothing of it.

import { ComparePanel } from './compare.js';
import { h } from './dom.js';
import { translate } from './i18n.js';
import { TryPanel } from './try-panel.js';
import { currentVersion, LocalVersionStore, versionLabel, versionOf } from './versions.js';
import { VersionsView } from './versions-view.js';

const $ = (id) => document.getElementById(id);

function localStore() {
  try {
    const storage = window.localStorage;
    storage.setItem('__promptcast_probe__', '1');
    storage.removeItem('__promptcast_probe__');
    return storage;
  } catch {
    return null; // storage disabled: versions last as long as the page
  }
}

const lang = () => (document.documentElement.lang.startsWith('zh') ? 'zh' : 'en');
const ctx = {
  t: (key, params) => translate(lang(), key, params),
  locale: () => (lang() === 'zh' ? 'zh-CN' : 'en'),
  announce(message) {
    const announcer = $('announcer');
    announcer.textContent = '';
    setTimeout(() => {
      announcer.textContent = message;
    }, 50);
  },
  opening: () => ($('openingInput').value.trim() === '' ? null : $('openingInput').value),
  form: () => ({ prompt: $('promptInput').value, type: $('typeSelect').value, opening: ctx.opening() }),
  pageModel: () => $('modelSelect').value,
};

const store = new LocalVersionStore(localStore());
let session = await store.load();
let pendingParent = null; // the version an Iterate revises, while it runs

function page() {
  return window.promptcast;
}

function show(next) {
  session = next;
  versionsView.render(session);
  tryPanel.render(session);
}

/** Put a version in the result panel, as a finished run of the session's original. */
function showInResult(version) {
  if (version.n === 0 || !page()) return;
  page().restore({
    prompt: session.original,
    type: version.mode ?? $('typeSelect').value,
    model: version.model,
    opening: session.opening,
    result: version.text,
    status: 'done',
    stats: version.stats ?? {},
    at: version.at,
  });
}

const versionsView = new VersionsView(ctx, {
  onIterate(feedback) {
    const current = currentVersion(session);
    if (!current || current.n === 0) return ctx.t('iter.needVersion');
    if (!feedback) return ctx.t('iter.needFeedback');
    if (!page() || page().running) return ctx.t('iter.busy');
    pendingParent = current.n;
    page().start({ prompt: session.original, previous: current.text, feedback });
    return null;
  },
  onTry: (n) => tryPanel.tryVersion(n),
  async onRestore(n) {
    show(await store.setCurrent(n));
    const version = versionOf(session, n);
    showInResult(version);
    ctx.announce(ctx.t('ver.restored', { label: versionLabel(version, ctx.t('ver.original')) }));
  },
});

const tryPanel = new TryPanel(ctx);

const comparePanel = new ComparePanel(ctx, {
  async onPick(run) {
    show(
      await store.add({
        original: run.request.prompt,
        opening: run.request.opening,
        text: run.text,
        source: 'compare',
        model: run.model,
        mode: run.request.type,
        stats: run.stats,
      }),
    );
    const version = currentVersion(session);
    showInResult(version);
    ctx.announce(ctx.t('cmp.picked', { model: run.model, label: versionLabel(version) }));
  },
});

// A complete rewrite (Start, or Iterate) becomes the next version.
document.addEventListener('promptcast:finished', async ({ detail }) => {
  const { request, text, status, stats } = detail;
  const parent = pendingParent;
  pendingParent = null;
  if (status !== 'done' || text.trim() === '') return;
  const revision = typeof request.feedback === 'string';
  show(
    await store.add({
      original: request.prompt,
      opening: request.opening,
      text,
      source: revision ? 'iterate' : 'rewrite',
      model: request.model,
      mode: request.type,
      feedback: revision ? request.feedback : null,
      parent: revision ? parent : null,
      stats,
    }),
  );
  if (revision) versionsView.iterated();
});

// ---- the model list, mirrored from the page's, and what `local` is ------------

const modelSelect = $('modelSelect');
const localNote = h('p', { class: 'hint model-note local-note', id: 'localModelNote', hidden: true });
$('modelNote').after(localNote);

function mirrorModels() {
  const options = [...modelSelect.options].filter((o) => o.value).map((o) => ({ value: o.value, label: o.textContent, disabled: o.disabled }));
  tryPanel.setModels(options);
  comparePanel.setModels(options);
  renderLocalNote();
}

function renderLocalNote() {
  const local = modelSelect.value === 'local';
  localNote.textContent = local ? ctx.t('model.localNote') : '';
  localNote.hidden = !local;
}

new MutationObserver(mirrorModels).observe(modelSelect, { childList: true });
modelSelect.addEventListener('change', renderLocalNote);
mirrorModels();

// ---- language --------------------------------------------------------------------

new MutationObserver(() => {
  versionsView.render(session);
  tryPanel.relabel();
  comparePanel.relabel();
  renderLocalNote();
}).observe(document.documentElement, { attributes: true, attributeFilter: ['lang'] });

show(session);

// For tests and scripts, beside window.promptcast.
window.promptcastWorkbench = {
  get session() {
    return session;
  },
  get trying() {
    return tryPanel.running;
  },
  get comparing() {
    return comparePanel.running;
  },
};
