// A small element builder for the workbench's views: text is always set as
// text (never parsed as HTML), attributes are set one by one.

/**
 * `h('button', {class: 'x', type: 'button', dataset: {n: 3}}, 'Label', child)`
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...(Node | string | null | undefined | false)} children
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'text') el.textContent = value;
    else if (name === 'hidden' || name === 'disabled' || name === 'checked') el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/** Show `message` in an alert element, or hide it when `message` is empty. */
export function setAlert(el, message) {
  el.textContent = message ?? '';
  el.hidden = !message;
}
