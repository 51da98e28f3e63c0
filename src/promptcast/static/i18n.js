// Interface text in English and Chinese. Pure: the page applies it.
//
// Markup names its text with data attributes: `data-i18n` (text content),
// `data-i18n-placeholder`, `data-i18n-aria-label` and `data-i18n-title`.

import { EVAL_MESSAGES } from './eval-i18n.js';
import * as workbench from './i18n-try.js';
import { LIBRARY_EN, LIBRARY_ZH } from './library-i18n.js';

export const LANGUAGES = ['en', 'zh'];
export const LANG_KEY = 'promptcast.lang';

const en = {
  'doc.title': 'promptcast — stream a prompt rewrite',
  'skip': 'Skip to the prompt',
  'brand.tagline': 'Watch a prompt being rewritten, token by token',
  'nav.label': 'Page settings',
  'nav.history': 'History',
  'lang.switch': '中文',
  'lang.switchLabel': 'Switch the interface to Chinese (切换到中文)',
  'theme.auto': 'Theme: follows the system',
  'theme.light': 'Theme: light',
  'theme.dark': 'Theme: dark',

  'compose.title': 'Prompt',
  'prompt.label': 'Your prompt',
  'prompt.placeholder': 'Paste a prompt, e.g. the system prompt of a customer-service bot…',
  'prompt.hint': 'Ctrl+Enter (⌘+Enter on a Mac) starts, Esc stops.',
  'prompt.count': '{n} characters',
  'type.label': 'Mode',
  'type.optimize': 'Optimize',
  'type.expand': 'Expand',
  'type.shorten': 'Shorten',
  'model.label': 'Model',
  'model.loading': 'Loading models…',
  'model.unavailable': '{id} — {reason}',
  'model.loadFailed': 'Could not load the model list ({message}).',
  'model.someUnavailable': 'Greyed-out models need configuration on the server.',
  'opening.label': 'Opening line',
  'opening.optional': 'optional',
  'opening.placeholder': 'What the bot says first',
  'opening.hint': 'The review checks that it survives word for word.',
  'start': 'Start',
  'stop': 'Stop',
  'form.needPrompt': 'Enter a prompt first.',
  'form.needModel': 'Choose a model that is available.',

  'result.title': 'Result',
  'result.empty': 'The rewrite appears here as the model writes it.',
  'result.views': 'Result view',
  'view.rendered': 'Rendered',
  'view.raw': 'Raw text',
  'view.diff': 'Changes',
  'diff.legend': 'Compared with your prompt: removed text is struck through, added text is highlighted.',
  'diff.none': 'Nothing to compare yet.',
  'diff.coarse': 'The texts are large or very different, so changes are shown line by line.',
  'copy': 'Copy',
  'copied': 'Copied to the clipboard.',
  'copyFailed': 'Could not copy; select the text and copy it by hand.',
  'reuse': 'Use as new input',
  'reused': 'The result is now the prompt. Press Start to iterate.',

  'status.idle': 'Ready',
  'status.waiting': 'Waiting for the model…',
  'status.streaming': 'Streaming',
  'status.resuming': 'Reconnecting…',
  'status.done': 'Complete',
  'status.partial': 'Partial',
  'status.cutoff': 'Cut off',
  'status.timeout': 'Timed out',
  'status.error': 'Failed',

  'stats.label': 'Live figures',
  'stats.ttft': 'First token',
  'stats.tokens': 'Tokens',
  'stats.rate': 'Tokens/s',
  'stats.elapsed': 'Elapsed',
  'stats.resumes': 'Resumed',
  'unit.s': '{v} s',
  'unit.ms': '{v} ms',

  'msg.started': 'Started.',
  'msg.done': 'Complete: {tokens} tokens in {elapsed}.',
  'msg.aborted': 'Stopped. The partial result is kept below and marked as partial.',
  'msg.cutoff': 'Cut off: the connection ended before the model finished. The text below is incomplete.',
  'msg.timeout': 'Timed out: the model took too long, so the server stopped the stream. The text below is incomplete.',
  'msg.error': 'The model failed part-way through. The text below is incomplete.',
  'msg.error.upstream_error': 'The model service failed part-way through. The text below is incomplete.',
  'msg.error.bad_upstream_stream': 'The model service sent a broken stream. The text below is incomplete.',
  'msg.error.producer_lost': 'The server generating this text stopped before it finished. The text below is incomplete.',
  'msg.error.abandoned': 'The server stopped the model because the connection was lost for too long. The text below is incomplete.',
  'msg.error.cancelled': 'The generation was stopped on the server. The text below is incomplete.',
  'msg.error.shutting_down': 'The server shut down before the model finished. The text below is incomplete; start again to retry.',
  'msg.error.store_unavailable': 'The server lost access to its stream store. The text below is incomplete.',
  'msg.error.stream_too_large': 'The result reached the server’s size limit for one stream. The text below is incomplete.',
  'msg.resuming': 'Connection lost — resuming…',
  'msg.resumed': 'Resumed after a dropped connection.',
  'msg.resumedMany': 'Resumed after {n} dropped connections.',
  'msg.resumeFailed': 'Cut off: the connection dropped and could not be restored. The text below is incomplete.',
  'msg.resumeGone': 'Cut off: the connection dropped and the server no longer has this stream. The text below is incomplete.',
  'msg.resumeFinished': 'Cut off: the connection dropped as the stream ended, and its end could not be fetched again. The text below may be incomplete.',
  'msg.http': 'The server refused the request: {message}',
  'msg.network': 'Could not reach the server: {message}',
  'msg.length': 'The model stopped at its length limit; the end may be missing.',
  'msg.detail': 'Details from the server: {message}',
  'msg.restored': 'Restored the run from {when}.',

  'review.title': 'Review',
  'review.length': 'Length',
  'review.lengthValue': '{before} → {after} characters ({change})',
  'review.noChange': 'no change',
  'review.placeholders': 'Placeholders',
  'review.numbers': 'Numbers',
  'review.quoted': 'Quoted text',
  'review.opening': 'Opening line',
  'review.allKept': 'all {n} kept',
  'review.noneFound': 'none in the original',
  'review.missing': '{m} of {n} missing:',
  'review.openingKept': 'appears word for word',
  'review.openingMissing': 'does not appear word for word',
  'review.ok': 'kept',
  'review.warn': 'check',

  'history.title': 'History',
  'history.search': 'Search history',
  'history.searchPlaceholder': 'Search prompts and results',
  'history.clear': 'Clear all',
  'history.clearConfirm': 'Delete all {n} saved runs?',
  'history.empty': 'Runs you start are kept here, in this browser only (the last 50).',
  'history.noMatch': 'No saved run matches “{q}”.',
  'history.restore': 'Restore',
  'history.restoreLabel': 'Restore the run from {when}: {title}',
  'history.delete': 'Delete',
  'history.deleteLabel': 'Delete the run from {when}',
  'history.count': '{n} saved',
  'history.untitled': '(empty prompt)',

  'footer.text': 'Runs and history stay in this browser, and in the server’s library when it has one. Model output is sanitized: it cannot run scripts or load remote content.',
  ...EVAL_MESSAGES.en,
  ...LIBRARY_EN,
};

const zh = {
  'doc.title': 'promptcast — 流式改写提示词',
  'skip': '跳到提示词输入框',
  'brand.tagline': '看着提示词被逐字改写',
  'nav.label': '页面设置',
  'nav.history': '历史记录',
  'lang.switch': 'EN',
  'lang.switchLabel': 'Switch the interface to English（切换到英文）',
  'theme.auto': '主题：跟随系统',
  'theme.light': '主题：浅色',
  'theme.dark': '主题：深色',

  'compose.title': '提示词',
  'prompt.label': '你的提示词',
  'prompt.placeholder': '粘贴一段提示词，例如客服机器人的系统提示词……',
  'prompt.hint': 'Ctrl+Enter（Mac 上 ⌘+Enter）开始，Esc 停止。',
  'prompt.count': '{n} 字',
  'type.label': '模式',
  'type.optimize': '优化',
  'type.expand': '扩写',
  'type.shorten': '缩写',
  'model.label': '模型',
  'model.loading': '正在加载模型……',
  'model.unavailable': '{id} — {reason}',
  'model.loadFailed': '无法加载模型列表（{message}）。',
  'model.someUnavailable': '灰色的模型需要在服务器上配置后才能使用。',
  'opening.label': '开场白',
  'opening.optional': '可选',
  'opening.placeholder': '机器人说的第一句话',
  'opening.hint': '评审会检查它是否被逐字保留。',
  'start': '开始',
  'stop': '停止',
  'form.needPrompt': '请先输入提示词。',
  'form.needModel': '请选择一个可用的模型。',

  'result.title': '结果',
  'result.empty': '模型生成的改写结果会实时显示在这里。',
  'result.views': '结果视图',
  'view.rendered': '渲染',
  'view.raw': '原始文本',
  'view.diff': '改动',
  'diff.legend': '与原提示词对比：删除的文字带删除线，新增的文字高亮显示。',
  'diff.none': '暂无可对比的内容。',
  'diff.coarse': '文本较长或差异很大，改动按行显示。',
  'copy': '复制',
  'copied': '已复制到剪贴板。',
  'copyFailed': '复制失败，请手动选择文字复制。',
  'reuse': '作为新输入',
  'reused': '结果已填入提示词框，点击“开始”继续迭代。',

  'status.idle': '就绪',
  'status.waiting': '等待模型响应……',
  'status.streaming': '生成中',
  'status.resuming': '正在重新连接……',
  'status.done': '已完成',
  'status.partial': '部分结果',
  'status.cutoff': '已中断',
  'status.timeout': '已超时',
  'status.error': '失败',

  'stats.label': '实时数据',
  'stats.ttft': '首字延迟',
  'stats.tokens': '词元',
  'stats.rate': '词元/秒',
  'stats.elapsed': '用时',
  'stats.resumes': '续传',
  'unit.s': '{v} 秒',
  'unit.ms': '{v} 毫秒',

  'msg.started': '已开始。',
  'msg.done': '已完成：{elapsed} 内生成 {tokens} 个词元。',
  'msg.aborted': '已停止。下方保留了部分结果，并标记为部分结果。',
  'msg.cutoff': '连接中断：模型尚未写完，下方内容不完整。',
  'msg.timeout': '超时：模型响应太慢，服务器已结束本次生成。下方内容不完整。',
  'msg.error': '模型在生成途中出错，下方内容不完整。',
  'msg.error.upstream_error': '模型服务在生成途中出错，下方内容不完整。',
  'msg.error.bad_upstream_stream': '模型服务返回了损坏的数据流，下方内容不完整。',
  'msg.error.producer_lost': '负责生成的服务器在完成前停止了，下方内容不完整。',
  'msg.error.abandoned': '连接中断时间过长，服务器已停止生成，下方内容不完整。',
  'msg.error.cancelled': '本次生成已在服务器上被停止，下方内容不完整。',
  'msg.error.shutting_down': '服务器在模型写完前关闭了，下方内容不完整；请重新开始。',
  'msg.error.store_unavailable': '服务器无法访问数据流存储，下方内容不完整。',
  'msg.error.stream_too_large': '结果达到了服务器对单个数据流的大小上限，下方内容不完整。',
  'msg.resuming': '连接中断，正在续传……',
  'msg.resumed': '连接中断后已续传。',
  'msg.resumedMany': '连接中断 {n} 次，均已续传。',
  'msg.resumeFailed': '连接中断且无法恢复，下方内容不完整。',
  'msg.resumeGone': '连接中断，服务器上已没有这次生成的数据，下方内容不完整。',
  'msg.resumeFinished': '连接恰在结束时中断，结尾无法再次获取，下方内容可能不完整。',
  'msg.http': '服务器拒绝了请求：{message}',
  'msg.network': '无法连接服务器：{message}',
  'msg.length': '模型已达到长度上限，结尾可能缺失。',
  'msg.detail': '服务器信息：{message}',
  'msg.restored': '已恢复 {when} 的记录。',

  'review.title': '评审',
  'review.length': '长度',
  'review.lengthValue': '{before} → {after} 字（{change}）',
  'review.noChange': '无变化',
  'review.placeholders': '占位符',
  'review.numbers': '数字',
  'review.quoted': '引用文字',
  'review.opening': '开场白',
  'review.allKept': '{n} 个全部保留',
  'review.noneFound': '原文中没有',
  'review.missing': '{n} 个中缺少 {m} 个：',
  'review.openingKept': '逐字出现',
  'review.openingMissing': '没有逐字出现',
  'review.ok': '通过',
  'review.warn': '请检查',

  'history.title': '历史记录',
  'history.search': '搜索历史记录',
  'history.searchPlaceholder': '搜索提示词和结果',
  'history.clear': '全部清除',
  'history.clearConfirm': '删除全部 {n} 条记录？',
  'history.empty': '你的每次运行都会保存在这里，仅存于本浏览器（最近 50 条）。',
  'history.noMatch': '没有与“{q}”匹配的记录。',
  'history.restore': '恢复',
  'history.restoreLabel': '恢复 {when} 的记录：{title}',
  'history.delete': '删除',
  'history.deleteLabel': '删除 {when} 的记录',
  'history.count': '已保存 {n} 条',
  'history.untitled': '（空提示词）',

  'footer.text': '运行结果和历史记录保存在本浏览器中；服务器开启提示词库时也保存在库中。模型输出经过净化，无法执行脚本或加载远程内容。',
  ...EVAL_MESSAGES.zh,
  ...LIBRARY_ZH,
};

// The workbench's text (try, iterate, versions, compare) lives in its own table.
export const MESSAGES = { en: { ...en, ...workbench.en }, zh: { ...zh, ...workbench.zh } };

/** The interface language for a list of browser languages (navigator.languages). */
export function detectLanguage(preferred) {
  for (const tag of preferred ?? []) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (base === 'zh') return 'zh';
    if (base === 'en') return 'en';
  }
  return 'en';
}

/** The language to use: a saved choice wins over the browser's. */
export function chooseLanguage(saved, preferred) {
  return LANGUAGES.includes(saved) ? saved : detectLanguage(preferred);
}

/**
 * Translate `key` into `lang`, filling `{name}` slots from `params`.
 * Falls back to English, then to the key itself.
 */
export function translate(lang, key, params = {}) {
  const table = MESSAGES[lang] ?? en;
  const template = table[key] ?? en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (slot, name) => (name in params ? String(params[name]) : slot));
}

/** Does a translation exist for `key` (in the language or in English)? */
export function hasMessage(lang, key) {
  return key in (MESSAGES[lang] ?? en) || key in en;
}
