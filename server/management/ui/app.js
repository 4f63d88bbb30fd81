// The UI's shell: login, navigation (hash routes) and the refresh timer.
// Each page module exports mount(main, params) which builds the page and
// may return {refresh} to be called on the timer.
import { api, credentials, setCredentials, clearCredentials, currentUser, setUnauthorizedHandler, el, toast } from './lib.js';
import * as overview from './pages/overview.js';
import * as queues from './pages/queues.js';
import * as queue from './pages/queue.js';
import * as exchanges from './pages/exchanges.js';
import * as exchange from './pages/exchange.js';
import * as connections from './pages/connections.js';
import * as connection from './pages/connection.js';
import * as channels from './pages/channels.js';
import * as channel from './pages/channel.js';
import * as users from './pages/users.js';
import * as vhosts from './pages/vhosts.js';
import * as policies from './pages/policies.js';
import * as definitions from './pages/definitions.js';
import * as storage from './pages/storage.js';

const routes = [
  [/^$/, overview, 'Overview'],
  [/^queues$/, queues, 'Queues'],
  [/^queues\/([^/]+)\/([^/]+)$/, queue, 'Queues'],
  [/^exchanges$/, exchanges, 'Exchanges'],
  [/^exchanges\/([^/]+)\/([^/]+)$/, exchange, 'Exchanges'],
  [/^connections$/, connections, 'Connections'],
  [/^connections\/([^/]+)$/, connection, 'Connections'],
  [/^channels$/, channels, 'Channels'],
  [/^channels\/([^/]+)$/, channel, 'Channels'],
  [/^users$/, users, 'Users'],
  [/^vhosts$/, vhosts, 'Virtual hosts'],
  [/^policies$/, policies, 'Policies'],
  [/^definitions$/, definitions, 'Definitions'],
  [/^storage$/, storage, 'Log & storage'],
];

const REFRESH_KEY = 'amqp-go.refresh';
let current = null; // {refresh}
let timer = null;
let generation = 0;

function refreshInterval() {
  const v = sessionStorage.getItem(REFRESH_KEY);
  return v === null ? 5000 : Number(v);
}

function schedule() {
  clearTimeout(timer);
  const ms = refreshInterval();
  if (!ms || !current || !current.refresh) return;
  const gen = generation;
  timer = setTimeout(async () => {
    if (gen !== generation) return;
    try { await current.refresh(); } catch (e) { if (e.status !== 401) console.warn(e); }
    if (gen === generation) schedule();
  }, ms);
}

async function navigate() {
  if (!credentials()) return showLogin();
  const path = decodeURI(location.hash.replace(/^#\/?/, '')).replace(/\?.*$/, '');
  const raw = location.hash.replace(/^#\/?/, '').replace(/\?.*$/, '');
  const main = document.getElementById('main');
  generation++;
  clearTimeout(timer);
  current = null;
  for (const [re, page, nav] of routes) {
    const m = raw.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.textContent === nav);
    const params = m.slice(1).map(decodeURIComponent);
    document.title = [params.at(-1), nav, 'AMQP-Go'].filter(Boolean).join(' · ');
    main.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    const gen = generation;
    try {
      const content = el('div', { class: 'page', dataset: { page: page.name || nav } });
      const r = await page.mount(content, params);
      if (gen !== generation) return;
      main.replaceChildren(content);
      current = r || null;
      schedule();
    } catch (e) {
      if (gen !== generation) return;
      if (e.status === 401) return;
      main.replaceChildren(el('p', { class: 'error' }, `Could not load ${path || 'overview'}: ${e.message}`));
    }
    return;
  }
  main.replaceChildren(el('p', { class: 'error' }, 'No such page: ' + path));
}

function showLogin(message) {
  generation++;
  clearTimeout(timer);
  document.getElementById('top').hidden = true;
  document.getElementById('main').replaceChildren();
  const f = document.getElementById('login');
  f.hidden = false;
  document.getElementById('login-error').textContent = message || '';
  document.getElementById('login-user').focus();
}

async function login(ev) {
  ev.preventDefault();
  const user = document.getElementById('login-user').value;
  const pass = document.getElementById('login-pass').value;
  setCredentials(user, pass);
  try {
    await api('GET', 'whoami');
  } catch (e) {
    clearCredentials();
    document.getElementById('login-pass').value = '';
    const why = e.status === 401 && e.body && e.body.reason ? e.body.reason : e.message;
    document.getElementById('login-error').textContent = 'Login failed: ' + why;
    return;
  }
  document.getElementById('login-pass').value = '';
  start();
}

async function start() {
  document.getElementById('login').hidden = true;
  document.getElementById('top').hidden = false;
  document.getElementById('whoami').textContent = currentUser();
  // Pages the user's tags cannot read are left out of the menu (the API
  // refuses them anyway).
  try {
    const me = await api('GET', 'whoami');
    const mine = new Set(me.tags || []);
    for (const a of document.querySelectorAll('#nav a[data-need]')) a.hidden = !a.dataset.need.split(' ').some(t => mine.has(t));
  } catch { /* a refusal logs out */ }
  try {
    const o = await api('GET', 'overview?columns=cluster_name,product_version');
    document.getElementById('cluster').textContent = `${o.product_version} · ${o.cluster_name}`;
  } catch { /* shown by the page */ }
  navigate();
}

setUnauthorizedHandler(() => { clearCredentials(); showLogin('Your session is no longer authorised; log in again.'); });
document.getElementById('login').addEventListener('submit', login);
document.getElementById('logout').addEventListener('click', () => { clearCredentials(); showLogin(); });
const sel = document.getElementById('refresh');
sel.value = String(refreshInterval());
sel.addEventListener('change', () => { sessionStorage.setItem(REFRESH_KEY, sel.value); schedule(); toast('Refresh: ' + sel.selectedOptions[0].textContent); });
window.addEventListener('hashchange', navigate);
if (credentials()) start(); else showLogin();
