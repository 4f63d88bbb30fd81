import { api, el, enc, fmtNum, run, table, confirmButton, limitForm } from '../lib.js';

export const name = 'vhosts';

export async function mount(root) {
  const list = el('div', { id: 'vhosts-list' });
  async function refresh() {
    const [vs, ps, limits] = await Promise.all([api('GET', 'vhosts'), api('GET', 'permissions'), api('GET', 'vhost-limits').catch(() => [])]);
    const chosen = lvhost.value;
    lvhost.replaceChildren(...vs.map(v => el('option', { value: v.name }, v.name)));
    if (chosen && vs.some(v => v.name === chosen)) lvhost.value = chosen;
    list.replaceChildren(table(['Name', 'Users', 'Ready', 'Unacked', 'Total', 'Limits', ''], vs.map(v =>
      el('tr', { dataset: { name: v.name } }, el('td', {}, v.name),
        el('td', {}, ps.filter(p => p.vhost === v.name).map(p => p.user).join(', ')),
        el('td', { class: 'num' }, fmtNum(v.messages_ready)), el('td', { class: 'num' }, fmtNum(v.messages_unacknowledged)),
        el('td', { class: 'num' }, fmtNum(v.messages)),
        el('td', {}, Object.entries((limits.find(l => l.vhost === v.name) || {}).value || {}).map(([k, n]) => `${k}=${n}`).join(', ')),
        el('td', {}, confirmButton('Delete', 'Confirm delete', async () => {
          if (await run(() => api('DELETE', `vhosts/${enc(v.name)}`), `Virtual host ${v.name} deleted`)) refresh();
        }))))));
  }
  const lvhost = el('select', { id: 'set-limit-vhost' });
  const lform = limitForm({ kind: 'vhost-limits', target: lvhost, names: ['max-connections', 'max-queues'], id: 'set-limit',
    label: 'Virtual host', clearId: 'clear-limit', onDone: () => refresh() });
  const name = el('input', { id: 'add-vhost-name', required: true });
  const form = el('form', { class: 'inline', id: 'add-vhost' }, el('label', {}, 'Name', name), el('button', { type: 'submit', class: 'primary' }, 'Add virtual host'));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (await run(() => api('PUT', `vhosts/${enc(name.value)}`, {}), `Virtual host ${name.value} added`)) { name.value = ''; refresh(); }
  });
  await refresh();
  root.append(el('h1', {}, 'Virtual hosts'), list, el('h2', {}, 'Add a virtual host'), el('div', { class: 'card' }, form),
    el('h2', {}, 'Limits'), el('div', { class: 'card' }, lform));
  return { refresh };
}
