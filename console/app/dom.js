// Building DOM without HTML strings: every text goes in as text (no injection from names or
// notes), and no inline `style` or `on…` attribute is ever written, which the console's strict
// CSP (no 'unsafe-inline') would refuse.

/**
 * An element: `h('button', { class: 'primary', onclick: fn, type: 'button' }, 'Spara')`.
 * Props starting with `on` become listeners; `class` and other keys become attributes;
 * `false`/`null`/`undefined` props and children are left out; arrays of children are flattened.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected') {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces everything inside `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A fresh id for tying a label, a field and its error message together. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/**
 * A labelled input with room for an error from the API under it. Returns the wrapper, with
 * `.input` and `.showError(message)` for the form code.
 */
export function field(label, input, hint) {
  const id = input.id || uid('f');
  input.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl, error);
  wrap.input = input;
  wrap.showError = (message) => showFieldError(input, error, message);
  return wrap;
}

/** Shows (or with a falsy message, clears) the error of one form control. */
export function showFieldError(control, errorEl, message) {
  errorEl.hidden = !message;
  errorEl.textContent = message || '';
  if (message) {
    control.setAttribute('aria-invalid', 'true');
    const described = new Set((control.getAttribute('aria-describedby') || '').split(' ').filter(Boolean));
    described.add(errorEl.id);
    control.setAttribute('aria-describedby', [...described].join(' '));
  } else {
    control.removeAttribute('aria-invalid');
  }
}
