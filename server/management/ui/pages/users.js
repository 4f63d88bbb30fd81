import { api, el, enc, run, table, tags, confirmButton, vhostSelect, limitForm } from '../lib.js';

export const name = 'users';

export async function mount(root) {
  const users = el('div', { id: 'users-list' });
  const perms = el('div', { id: 'permissions-list' });
  const topics = el('div', { id: 'topic-permissions-list' });

  async function refresh() {
    const [us, ps, tps, limits] = await Promise.all([api('GET', 'users'), api('GET', 'permissions'), api('GET', 'topic-permissions'),
      api('GET', 'user-limits').catch(() => [])]);
    const chosen = luser.value;
    luser.replaceChildren(...us.map(u => el('option', { value: u.name }, u.name)));
    if (chosen && us.some(u => u.name === chosen)) luser.value = chosen;
    topics.replaceChildren(table(['User', 'Virtual host', 'Exchange', 'Write', 'Read', ''], tps.map(p =>
      el('tr', {}, el('td', {}, p.user), el('td', {}, p.vhost), el('td', {}, p.exchange),
        el('td', {}, el('code', {}, p.write)), el('td', {}, el('code', {}, p.read)),
        el('td', {}, el('button', { type: 'button', class: 'danger', onclick: async () => {
          if (await run(() => api('DELETE', `topic-permissions/${enc(p.vhost)}/${enc(p.user)}`), 'Topic permissions cleared')) refresh();
        } }, 'Clear'))))));
    users.replaceChildren(table(['Name', 'Tags', 'Password', 'Can access virtual hosts', 'Limits', ''], us.map(u =>
      el('tr', { dataset: { name: u.name } }, el('td', {}, u.name), el('td', {}, tags(typeof u.tags === 'string' ? u.tags.split(',').filter(Boolean) : u.tags)),
        el('td', {}, u.password_hash ? '●●●●' : el('span', { class: 'muted' }, 'none')),
        el('td', {}, ps.filter(p => p.user === u.name).map(p => p.vhost).join(', ') || el('span', { class: 'muted' }, 'no access')),
        el('td', { class: 'limits' }, Object.entries((limits.find(l => l.user === u.name) || {}).value || {}).map(([k, n]) => `${k}=${n}`).join(', ')),
        el('td', {}, confirmButton('Delete', 'Confirm delete', async () => {
          if (await run(() => api('DELETE', `users/${enc(u.name)}`), `User ${u.name} deleted`)) refresh();
        }))))));
    perms.replaceChildren(table(['User', 'Virtual host', 'Configure', 'Write', 'Read', ''], ps.map(p =>
      el('tr', {}, el('td', {}, p.user), el('td', {}, p.vhost), el('td', {}, el('code', {}, p.configure)),
        el('td', {}, el('code', {}, p.write)), el('td', {}, el('code', {}, p.read)),
        el('td', {}, el('button', { type: 'button', class: 'danger', onclick: async () => {
          if (await run(() => api('DELETE', `permissions/${enc(p.vhost)}/${enc(p.user)}`), 'Permissions cleared')) refresh();
        } }, 'Clear'))))));
  }

  // User limits (RabbitMQ's max-connections and max-channels).
  const luser = el('select', { id: 'set-user-limit-user' });
  const lform = limitForm({ kind: 'user-limits', target: luser, names: ['max-connections', 'max-channels'], id: 'set-user-limit',
    label: 'User', clearId: 'clear-user-limit', onDone: () => refresh() });

  const uname = el('input', { id: 'add-user-name', required: true });
  const upass = el('input', { id: 'add-user-password', type: 'password', autocomplete: 'new-password' });
  const utags = el('input', { id: 'add-user-tags', placeholder: 'administrator, monitoring, management, policymaker' , size: 36 });
  const uform = el('form', { class: 'inline', id: 'add-user' }, el('label', {}, 'Username', uname), el('label', {}, 'Password', upass),
    el('label', {}, 'Tags (comma-separated)', utags), el('button', { type: 'submit', class: 'primary' }, 'Add / update user'));
  uform.addEventListener('submit', async ev => {
    ev.preventDefault();
    const body = { tags: utags.value.split(',').map(s => s.trim()).filter(Boolean).join(',') };
    if (upass.value) body.password = upass.value; else body.password_hash = '';
    if (await run(() => api('PUT', `users/${enc(uname.value)}`, body), `User ${uname.value} saved`)) { uname.value = upass.value = ''; refresh(); }
  });

  const pvhost = await vhostSelect({ id: 'set-perm-vhost' });
  const puser = el('input', { id: 'set-perm-user', required: true });
  const pc = el('input', { id: 'set-perm-configure', value: '.*', size: 8 });
  const pw = el('input', { id: 'set-perm-write', value: '.*', size: 8 });
  const pr = el('input', { id: 'set-perm-read', value: '.*', size: 8 });
  const pform = el('form', { class: 'inline', id: 'set-permission' }, el('label', {}, 'User', puser), el('label', {}, 'Virtual host', pvhost),
    el('label', {}, 'Configure regexp', pc), el('label', {}, 'Write regexp', pw), el('label', {}, 'Read regexp', pr),
    el('button', { type: 'submit', class: 'primary' }, 'Set permission'));
  pform.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (await run(() => api('PUT', `permissions/${enc(pvhost.value)}/${enc(puser.value)}`,
      { configure: pc.value, write: pw.value, read: pr.value }), 'Permission set')) refresh();
  });

  const tvhost = await vhostSelect({ id: 'set-topic-vhost' });
  const tuser = el('input', { id: 'set-topic-user', required: true });
  const tx = el('input', { id: 'set-topic-exchange', value: 'amq.topic', size: 12 });
  const tw = el('input', { id: 'set-topic-write', value: '.*', size: 8 });
  const tr = el('input', { id: 'set-topic-read', value: '.*', size: 8 });
  const tform = el('form', { class: 'inline', id: 'set-topic-permission' }, el('label', {}, 'User', tuser), el('label', {}, 'Virtual host', tvhost),
    el('label', {}, 'Exchange', tx), el('label', {}, 'Write regexp', tw), el('label', {}, 'Read regexp', tr),
    el('button', { type: 'submit', class: 'primary' }, 'Set topic permission'));
  tform.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (await run(() => api('PUT', `topic-permissions/${enc(tvhost.value)}/${enc(tuser.value)}`,
      { exchange: tx.value, write: tw.value, read: tr.value }), 'Topic permission set')) refresh();
  });

  await refresh();
  root.append(el('h1', {}, 'Users'), users, el('h2', {}, 'Add a user'), el('div', { class: 'card' }, uform),
    el('h2', {}, 'User limits'), el('div', { class: 'card' }, lform),
    el('h2', {}, 'Permissions'), perms, el('h2', {}, 'Set permission'), el('div', { class: 'card' }, pform),
    el('h2', {}, 'Topic permissions'), topics, el('h2', {}, 'Set topic permission'), el('div', { class: 'card' }, tform));
  return null;
}
