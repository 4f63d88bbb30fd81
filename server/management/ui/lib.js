// Helpers shared by the pages: the API client, DOM building, formatting.

const AUTH_KEY = 'amqp-go.auth';

export function credentials() { return sessionStorage.getItem(AUTH_KEY); }
export function setCredentials(user, pass) {
  sessionStorage.setItem(AUTH_KEY, btoa(unescape(encodeURIComponent(user + ':' + pass))));
  sessionStorage.setItem(AUTH_KEY + '.user', user);
}
export function clearCredentials() {
  sessionStorage.removeItem(AUTH_KEY);
  sessionStorage.removeItem(AUTH_KEY + '.user');
}
export function currentUser() { return sessionStorage.getItem(AUTH_KEY + '.user') || ''; }

// ApiError is a non-2xx reply, with RabbitMQ's error body when it has one.
export class ApiError extends Error {
  constructor(status, body) {
    const reason = body && (typeof body.reason === 'string' ? body.reason : JSON.stringify(body.reason));
    super(reason ? `${status}: ${reason}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

// api calls /api/{path} with the stored credentials; JSON in and out.
export async function api(method, path, body, headers = {}) {
  const h = { 'X-Requested-With': 'XMLHttpRequest', ...headers };
  const auth = credentials();
  if (auth) h['Authorization'] = 'Basic ' + auth;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const r = await fetch('api/' + path, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (!r.ok) {
    if (r.status === 401 && data && data.error === 'not_authorized') onUnauthorized();
    throw new ApiError(r.status, data);
  }
  return data;
}

// apiOrNull is api for an endpoint the server may not serve yet: null on 404.
export async function apiOrNull(path) {
  try { return await api('GET', path); } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

// enc escapes one path segment (a vhost "/" becomes %2F, as the API wants).
export const enc = encodeURIComponent;

// el builds an element: el('td', {class: 'num'}, 'text', child...).
export function el(tag, attrs = {}, ...children) {
  const svg = ['svg', 'polyline', 'line', 'text', 'rect', 'g', 'path', 'circle', 'title'].includes(tag);
  const e = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'value' && !svg) e.value = v;
    else if (k === 'checked' && !svg) e.checked = !!v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function fmtNum(n) {
  if (n === undefined || n === null || n === '') return '';
  if (typeof n !== 'number') return String(n);
  return n.toLocaleString('en-US', { maximumFractionDigits: 0 });
}
export function fmtRate(r) {
  if (r === undefined || r === null) return '';
  return (r >= 100 ? r.toFixed(0) : r.toFixed(1)) + '/s';
}
export function fmtBytes(n) {
  if (n === undefined || n === null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + u[i];
}
export function fmtAge(sec) {
  if (!sec) return '';
  if (sec < 1) return (sec * 1000).toFixed(0) + ' ms';
  if (sec < 120) return sec.toFixed(1) + ' s';
  if (sec < 7200) return (sec / 60).toFixed(1) + ' min';
  if (sec < 172800) return (sec / 3600).toFixed(1) + ' h';
  return (sec / 86400).toFixed(1) + ' d';
}
export function fmtTime(ms) {
  if (!ms) return '';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}
export function rateOf(stats, key) {
  const d = stats && stats[key + '_details'];
  return d ? d.rate : 0;
}

export function toast(text, bad = false) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3000);
}

// run calls an action, shows its error as a toast, and returns whether it
// succeeded.
export async function run(action, okText) {
  try {
    await action();
    if (okText) toast(okText);
    return true;
  } catch (e) {
    toast(e.message || String(e), true);
    return false;
  }
}

// confirmButton is a button that asks once more before acting: the first
// click arms it ("Confirm …?"), a second within 5 s acts.
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  const b = el('button', { type: 'button', class: 'danger', ...attrs }, label);
  let timer;
  b.addEventListener('click', async () => {
    if (!b.classList.contains('armed')) {
      b.classList.add('armed');
      b.textContent = confirmLabel;
      timer = setTimeout(() => { b.classList.remove('armed'); b.textContent = label; }, 5000);
      return;
    }
    clearTimeout(timer);
    b.disabled = true;
    try { await action(); } finally {
      b.disabled = false;
      b.classList.remove('armed');
      b.textContent = label;
    }
  });
  return b;
}

export function table(headers, rows, attrs = {}) {
  // A header is right-aligned over a column of numbers.
  const first = rows[0] && rows[0].children;
  const num = i => !!(first && first[i] && first[i].classList.contains('num'));
  return el('table', attrs,
    el('thead', {}, el('tr', {}, headers.map((h, i) => typeof h === 'string' ? el('th', { class: num(i) ? 'num' : null }, h) : h))),
    el('tbody', {}, rows));
}

export function kv(pairs) {
  return el('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

export function tags(list) {
  return (list || []).map(t => el('span', { class: 'tag' }, t));
}

export function jsonText(v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object' && Object.keys(v).length === 0) return '';
  return JSON.stringify(v);
}

// vhostSelect is a <select> of the vhosts (with an "all" entry if allLabel).
export async function vhostSelect(attrs = {}, allLabel) {
  const vs = await api('GET', 'vhosts?columns=name');
  const s = el('select', attrs,
    allLabel ? el('option', { value: '' }, allLabel) : null,
    vs.map(v => el('option', { value: v.name }, v.name)));
  return s;
}

// parseArgs reads "k=v" lines into an object; numbers and booleans typed.
export function parseArgs(text) {
  const out = {};
  for (const line of (text || '').split(/\n|,/)) {
    const t = line.trim();
    if (!t) continue;
    const i = t.indexOf('=');
    if (i < 0) throw new Error(`argument "${t}" is not key=value`);
    const k = t.slice(0, i).trim();
    let v = t.slice(i + 1).trim();
    if (/^-?\d+$/.test(v)) v = Number(v);
    else if (v === 'true' || v === 'false') v = v === 'true';
    out[k] = v;
  }
  return out;
}

// limitForm sets and clears a vhost's or a user's limit: kind is the API's
// "vhost-limits" or "user-limits", target the <select> of the vhost or user
// (labelled label), names the limits offered; id is the form's id and its
// fields' prefix (id-name, id-value), clearId the clear button's. onDone
// runs after a change.
export function limitForm({ kind, target, names, id, label, clearId, onDone }) {
  const lkind = el('select', { id: id + '-name' }, names.map(k => el('option', { value: k }, k)));
  const lvalue = el('input', { id: id + '-value', type: 'number', required: true, size: 6 });
  const path = () => `${kind}/${enc(target.value)}/${lkind.value}`;
  const form = el('form', { class: 'inline', id }, el('label', {}, label, target), el('label', {}, 'Limit', lkind),
    el('label', {}, 'Value (negative: none)', lvalue), el('button', { type: 'submit', class: 'primary' }, 'Set limit'),
    el('button', { type: 'button', id: clearId, onclick: async () => {
      if (await run(() => api('DELETE', path()), 'Limit cleared')) onDone();
    } }, 'Clear limit'));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (await run(() => api('PUT', path(), { value: Number(lvalue.value) }), 'Limit set')) onDone();
  });
  return form;
}
