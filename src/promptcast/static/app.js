// promptcast's page: wires the form, one streaming run at a time, the result
// panel, the review, the history, language and theme.

import { EvalPanel } from './eval-panel.js';
import { authHeaders } from './api-key.js';
import { HistoryStore } from './history.js';
import { HistoryView } from './history-view.js';
import { chooseLanguage, LANG_KEY, translate } from './i18n.js';
import { LibraryPanel } from './library-panel.js';
import { ResultView } from './result-view.js';
import { review } from './review.js';
import { renderReview } from './review-view.js';
import { RunClock } from './stats.js';
import { cancelStream, OUTCOME_STATE, runStream } from './stream.js';

const THEME_KEY = 'promptcast.theme';
const PREFS_KEY = 'promptcast.form';
const THEMES = ['auto', 'light', 'dark'];
const FIELD_INPUTS = { prompt: 'promptInput', type: 'typeSelect', model: 'modelSelect', opening: 'openingInput' };
// A read that gets no byte for this long (the server sends a heartbeat every
// ~15 s) is taken for a dead connection and resumed.
const STALL_MS = 45_000;

const $ = (id) => document.getElementById(id);

function localStore() {
  try {
    const storage = window.localStorage;
    const probe = '__promptcast_probe__';
    storage.setItem(probe, '1');
    storage.removeItem(probe);
    return storage;
  } catch {
    return null; // storage disabled: the page works, nothing is remembered
  }
}

const storage = localStore();

function readPref(key) {
  try {
    return storage?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function writePref(key, value) {
  try {
    storage?.setItem(key, value);
  } catch {
    // full or disabled storage: the preference just is not remembered
  }
}

// ---- language ----------------------------------------------------------------

let lang = chooseLanguage(readPref(LANG_KEY), navigator.languages ?? [navigator.language]);
const i18n = {
  t: (key, params) => translate(lang, key, params),
  locale: () => (lang === 'zh' ? 'zh-CN' : 'en'),
};
const t = i18n.t;

function applyLanguage() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  for (const el of document.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  document.title = t('doc.title');
  $('langButton').lang = lang === 'zh' ? 'en' : 'zh-CN';
  updatePromptCount();
  updateTheme();
  renderModelNote();
  resultView.relabel();
  historyView.render();
  evalPanel?.relabel();
  library.relabel();
}

// ---- theme -------------------------------------------------------------------

let theme = THEMES.includes(readPref(THEME_KEY)) ? readPref(THEME_KEY) : 'auto';

function updateTheme() {
  document.documentElement.dataset.theme = theme;
  const label = t(`theme.${theme}`);
  const button = $('themeButton');
  button.setAttribute('aria-label', label);
  button.title = label;
}

// ---- form --------------------------------------------------------------------

const form = $('form');
const promptInput = $('promptInput');
const typeSelect = $('typeSelect');
const modelSelect = $('modelSelect');
const openingInput = $('openingInput');
const startButton = $('startButton');
const stopButton = $('stopButton');
const formError = $('formError');

let models = null; // the /v1/models list, once loaded
let modelError = null;

function updatePromptCount() {
  let n = 0;
  for (const _ of promptInput.value) n++;
  $('promptCount').textContent = t('prompt.count', { n: new Intl.NumberFormat(i18n.locale()).format(n) });
}

function saveFormPrefs() {
  writePref(PREFS_KEY, JSON.stringify({ type: typeSelect.value, model: modelSelect.value }));
}

function formPrefs() {
  try {
    return JSON.parse(readPref(PREFS_KEY) ?? '{}') ?? {};
  } catch {
    return {};
  }
}

function renderModelNote() {
  const note = $('modelNote');
  let text = '';
  if (modelError) text = t('model.loadFailed', { message: modelError });
  else if (models?.some((m) => m.available === false)) text = t('model.someUnavailable');
  note.textContent = text;
  note.hidden = !text;
}

async function loadModels() {
  const wanted = formPrefs().model;
  try {
    const response = await fetch('/v1/models', { headers: { Accept: 'application/json', ...authHeaders() }, cache: 'no-store' });
    if ((response.status === 401 || response.status === 403) && (await library.askKey(response.status))) return loadModels();
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    models = Array.isArray(body?.data) ? body.data.filter((m) => typeof m?.id === 'string') : [];
    modelError = null;
  } catch (err) {
    models = [{ id: 'local', available: true, default: true }];
    modelError = err?.message ?? String(err);
  }
  const options = models.map((m) => {
    const option = document.createElement('option');
    option.value = m.id;
    const usable = m.available !== false;
    option.disabled = !usable;
    option.textContent = usable ? m.id : t('model.unavailable', { id: m.id, reason: m.unavailable_reason ?? '' });
    if (!usable && m.unavailable_reason) option.title = m.unavailable_reason;
    return option;
  });
  modelSelect.replaceChildren(...options);
  const usable = models.filter((m) => m.available !== false);
  const pick = usable.find((m) => m.id === wanted) ?? usable.find((m) => m.default) ?? usable[0];
  if (pick) modelSelect.value = pick.id;
  else modelSelect.selectedIndex = -1;
  renderModelNote();
}

function selectModel(id) {
  const option = [...modelSelect.options].find((o) => o.value === id && !o.disabled);
  if (option) modelSelect.value = id;
}

function clearFieldErrors() {
  formError.hidden = true;
  formError.textContent = '';
  for (const id of Object.values(FIELD_INPUTS)) {
    const el = $(id);
    el.classList.remove('invalid');
    el.removeAttribute('aria-invalid');
  }
}

function showFieldError(message, field) {
  formError.textContent = message;
  formError.hidden = false;
  const id = FIELD_INPUTS[field];
  if (id) {
    const el = $(id);
    el.classList.add('invalid');
    el.setAttribute('aria-invalid', 'true');
    el.focus();
  }
}

// ---- the run -----------------------------------------------------------------

const resultView = new ResultView(i18n);
const announcer = $('announcer');
let current = null; // {controller, clock, request, timer, streamId}
let shown = null; // what the result panel shows: {request, text, status}

function announce(message) {
  announcer.textContent = '';
  // A fresh text node after a tick makes screen readers repeat equal messages.
  setTimeout(() => {
    announcer.textContent = message;
  }, 50);
}

function setRunning(running) {
  startButton.disabled = running;
  stopButton.disabled = !running;
  form.setAttribute('aria-busy', running ? 'true' : 'false');
  updateResultActions();
}

function updateResultActions() {
  const has = Boolean(shown?.text) && !current;
  $('copyButton').disabled = !has;
  $('reuseButton').disabled = !has;
  library.setResult(current ? null : shown);
}

function figuresTick() {
  if (current) resultView.setFigures(current.clock.figures(performance.now()));
}

// `revision` ({prompt, previous, feedback}) revises an earlier rewrite: the workbench's Iterate.
async function start(revision = {}) {
  if (current) return;
  clearFieldErrors();
  const { prompt = promptInput.value, ...extra } = revision;
  if (prompt.trim() === '') {
    showFieldError(t('form.needPrompt'), 'prompt');
    return;
  }
  const model = modelSelect.value;
  if (!model || modelSelect.selectedOptions[0]?.disabled) {
    showFieldError(t('form.needModel'), 'model');
    return;
  }
  const opening = openingInput.value.trim() === '' ? null : openingInput.value;
  const request = { prompt, type: typeSelect.value, model, opening, ...extra };
  const template = library.selectedTemplate();
  if (template) request.template = template;
  saveFormPrefs();

  const run = { controller: new AbortController(), clock: new RunClock(performance.now()), request, timer: 0, streamId: null };
  current = run;
  shown = { request, text: '', status: 'waiting' };
  resultView.begin(extra.previous ?? prompt); // a revision's changes are against what it revises
  resultView.setState('waiting');
  resultView.setFigures(run.clock.figures(performance.now()));
  setRunning(true);
  run.timer = setInterval(figuresTick, 200);

  const outcome = await runStream({
    request,
    signal: run.controller.signal,
    resume: { stallMs: STALL_MS },
    onOpen: ({ streamId }) => {
      run.streamId = streamId;
    },
    onDropped: () => {
      resultView.setState('resuming');
      resultView.setNotice('msg.resuming', {}, null, 'warn');
      announce(t('msg.resuming'));
    },
    onResumed: ({ resumes }) => {
      run.clock.resume();
      resultView.setState(run.clock.chunks === 0 ? 'waiting' : 'streaming');
      setResumedNotice(resumes);
      announce(t(resumedKey(resumes), { n: resumes }));
      figuresTick();
    },
    onDelta: (text) => {
      if (run.clock.chunks === 0) resultView.setState('streaming');
      run.clock.token(performance.now());
      shown.text += text;
      resultView.append(text);
    },
    onUsage: (usage) => run.clock.usage(usage),
  });
  finish(run, outcome);
}

function stop() {
  if (!current) return;
  // Leaving is not enough for a resumable stream (it runs on, for a resume):
  // tell the server to stop generating, then drop the connection.
  cancelStream(current.streamId);
  current.controller.abort();
}

function resumedKey(resumes) {
  return resumes > 1 ? 'msg.resumedMany' : 'msg.resumed';
}

function setResumedNotice(resumes) {
  resultView.setNotice(resumedKey(resumes), { n: resumes }, null, 'info');
}

const CUTOFF_NOTICE = {
  resume_failed: 'msg.resumeFailed',
  resume_gone: 'msg.resumeGone',
  resume_finished: 'msg.resumeFinished',
};

function finish(run, outcome) {
  clearInterval(run.timer);
  run.clock.end(performance.now());
  current = null;

  const state = OUTCOME_STATE[outcome.status] ?? 'error';
  const figures = run.clock.figures(performance.now());
  resultView.setState(state);
  resultView.flush();
  resultView.setFigures(figures);
  shown.status = state;
  shown.runId = run.streamId;

  let reviewData = null;
  switch (outcome.status) {
    case 'done':
      reviewData = review({ original: run.request.prompt, result: shown.text, opening: run.request.opening });
      resultView.setReview(reviewData, (list, data) => renderReview(list, data, i18n));
      if (outcome.finishReason === 'length') resultView.setNotice('msg.length', {}, null, 'info');
      else if (outcome.resumes > 0) setResumedNotice(outcome.resumes);
      announce(
        t('msg.done', {
          tokens: new Intl.NumberFormat(i18n.locale()).format(figures.tokens),
          elapsed: resultView.el.elapsed.textContent,
        }),
      );
      break;
    case 'aborted':
      resultView.setNotice('msg.aborted', {}, null, 'info');
      break;
    case 'cutoff':
      resultView.setNotice(CUTOFF_NOTICE[outcome.code] ?? 'msg.cutoff', {}, outcome.message);
      break;
    case 'timeout':
      resultView.setNotice('msg.timeout', {}, outcome.message);
      break;
    case 'error': {
      const key = `msg.error.${outcome.code}`;
      resultView.setNotice(translate('en', key) !== key ? key : 'msg.error', {}, outcome.message, 'error');
      break;
    }
    case 'http_error':
      showFieldError(t('msg.http', { message: outcome.message }), outcome.field);
      if (outcome.httpStatus === 401 || outcome.httpStatus === 403) library.askKey(outcome.httpStatus);
      break;
    default:
      resultView.setNotice('msg.network', { message: outcome.message ?? '' }, null, 'error');
  }

  setRunning(false);
  // The workbench keeps complete rewrites as versions.
  document.dispatchEvent(new CustomEvent('promptcast:finished', { detail: { request: run.request, text: shown.text, status: state, stats: figures } }));
  if (shown.text !== '' || outcome.status === 'done') {
    historyStore.add({
      ...run.request,
      runId: run.streamId,
      result: shown.text,
      status: state,
      stats: {
        ttftMs: figures.ttftMs,
        tokens: figures.tokens,
        rate: figures.rate,
        elapsedMs: figures.elapsedMs,
        resumes: figures.resumes,
      },
    });
    historyView.render();
  }
}

function restore(entry) {
  if (current) stop();
  clearFieldErrors();
  promptInput.value = entry.prompt ?? '';
  if (['optimize', 'expand', 'shorten'].includes(entry.type)) typeSelect.value = entry.type;
  if (entry.model) selectModel(entry.model);
  openingInput.value = entry.opening ?? '';
  updatePromptCount();

  const request = { prompt: entry.prompt, type: entry.type, model: entry.model, opening: entry.opening };
  shown = { request, text: entry.result ?? '', status: entry.status ?? 'done', runId: entry.runId ?? null };
  resultView.show(entry.prompt ?? '', shown.text);
  resultView.setState(shown.status);
  const s = entry.stats ?? {};
  resultView.setFigures({
    ttftMs: s.ttftMs ?? null,
    tokens: s.tokens ?? 0,
    rate: s.rate ?? null,
    elapsedMs: s.elapsedMs ?? null,
    exact: true,
    resumes: s.resumes ?? 0,
  });
  if (shown.status === 'done') {
    const data = review({ original: request.prompt ?? '', result: shown.text, opening: request.opening });
    resultView.setReview(data, (list, d) => renderReview(list, d, i18n));
  }
  const when = new Intl.DateTimeFormat(i18n.locale(), { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(entry.at));
  announce(t('msg.restored', { when }));
  updateResultActions();
  promptInput.focus();
}

// ---- result actions ------------------------------------------------------------

async function copyResult() {
  const text = shown?.text ?? '';
  if (!text) return;
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Clipboard API missing (plain http on a LAN address) or denied: fall back.
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.append(area);
    area.select();
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
  }
  announce(t(ok ? 'copied' : 'copyFailed'));
  const button = $('copyButton');
  button.dataset.flash = ok ? 'ok' : 'fail';
  setTimeout(() => delete button.dataset.flash, 1500);
}

function reuseResult() {
  if (!shown?.text) return;
  promptInput.value = shown.text;
  updatePromptCount();
  clearFieldErrors();
  promptInput.focus();
  promptInput.setSelectionRange(0, 0);
  promptInput.scrollTop = 0;
  announce(t('reused'));
}

// ---- history -----------------------------------------------------------------

const historyStore = new HistoryStore(storage);
const historyView = new HistoryView(historyStore, i18n, {
  onRestore: restore,
  onRemove: (entries) => library.forget(entries),
});

// ---- library -----------------------------------------------------------------

function openInEditor(version) {
  if (current) stop();
  clearFieldErrors();
  promptInput.value = version.text;
  if (['optimize', 'expand', 'shorten'].includes(version.mode)) typeSelect.value = version.mode;
  if (version.model) selectModel(version.model);
  openingInput.value = version.opening ?? '';
  updatePromptCount();
  promptInput.focus();
}

const library = new LibraryPanel(i18n, {
  openInEditor,
  announce,
  history: historyStore,
  onHistoryChange: () => historyView.render(),
  onKey: () => loadModels(),
  // The evaluation panel keeps its test sets in the library when there is one.
  onReady: (enabled) => evalPanel?.useLibrary(enabled ? library.api : null),
});

// ---- evaluation ----------------------------------------------------------------

let evalPanel = null;

// ---- wiring ------------------------------------------------------------------

form.addEventListener('submit', (event) => {
  event.preventDefault();
  start();
});
stopButton.addEventListener('click', stop);
// Closing the tab needs nothing (a stream nobody reads is cancelled after the
// server's grace period), but saying so frees the model at once.
window.addEventListener('pagehide', () => {
  if (current?.streamId) cancelStream(current.streamId);
});
$('copyButton').addEventListener('click', copyResult);
$('reuseButton').addEventListener('click', reuseResult);
promptInput.addEventListener('input', updatePromptCount);
for (const el of [promptInput, typeSelect, modelSelect, openingInput]) {
  el.addEventListener('input', () => {
    if (el.classList.contains('invalid')) clearFieldErrors();
  });
}
typeSelect.addEventListener('change', saveFormPrefs);
modelSelect.addEventListener('change', saveFormPrefs);

document.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    start();
  } else if (event.key === 'Escape' && current) {
    event.preventDefault();
    stop();
  }
});

$('langButton').addEventListener('click', () => {
  lang = lang === 'zh' ? 'en' : 'zh';
  writePref(LANG_KEY, lang);
  applyLanguage();
});

$('themeButton').addEventListener('click', () => {
  theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
  writePref(THEME_KEY, theme);
  updateTheme();
});

const isMac = /Mac|iPhone|iPad/.test(navigator.userAgentData?.platform ?? navigator.platform ?? '');
$('startKeys').textContent = isMac ? '⌘ ↵' : 'Ctrl ↵';

const prefs = formPrefs();
if (['optimize', 'expand', 'shorten'].includes(prefs.type)) typeSelect.value = prefs.type;
evalPanel = new EvalPanel(i18n, storage, {
  current: () => ({ prompt: promptInput.value, result: shown?.text ?? '', opening: openingInput.value || null }),
  announce,
  askKey: (status) => library.askKey(status),
});
applyLanguage();
resultView.setState('idle');
// Both may ask for the key: one dialog answers both.
library.start();
loadModels();

// For tests and for scripts that drove the original page.
window.promptcast = {
  start,
  stop,
  restore,
  get running() {
    return current !== null;
  },
  get result() {
    return shown?.text ?? '';
  },
  get streamId() {
    return current?.streamId ?? null;
  },
};
