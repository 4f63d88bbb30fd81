import { api, el, enc, fmtNum, fmtTime, run, confirmButton } from '../lib.js';
import { pagedList } from '../paged.js';
import { connectionLink } from './connection.js';

export const name = 'connections';

export async function mount(root) {
  const reason = el('input', { id: 'close-reason', size: 40, value: 'Closed via management UI' });
  let list;
  list = await pagedList({
    path: 'connections', id: 'connections', vhosts: false, empty: 'No connections.',
    columns: [
      { title: 'Name', sort: 'name', cell: c => connectionLink(c.name) },
      { title: 'Client', cell: c => clientName(c.client_properties) },
      { title: 'User', sort: 'user', cell: c => c.user },
      { title: 'Virtual host', sort: 'vhost', cell: c => c.vhost },
      { title: 'State', sort: 'state', cell: c => c.state },
      { title: 'TLS', cell: c => c.ssl ? 'yes' : 'no' },
      { title: 'Protocol', cell: c => c.protocol },
      { title: 'Channels', sort: 'channels', num: true, cell: c => c.channels === undefined ? '' : fmtNum(c.channels) },
      { title: 'Connected at', sort: 'connected_at', cell: c => fmtTime(c.connected_at) },
      { title: '', cell: c => confirmButton('Close', 'Confirm close', async () => {
        if (await run(() => api('DELETE', `connections/${enc(c.name)}`, undefined, { 'X-Reason': reason.value }), 'Connection closed')) list.refresh();
      }, { class: 'danger close-connection' }) },
    ],
  });
  root.append(el('h1', {}, 'Connections'), list.node,
    el('div', { class: 'card inline' }, el('label', {}, 'Reason sent to clients when closing ', reason)));
  return { refresh: list.refresh };
}

function clientName(p) {
  if (!p) return '';
  const parts = [p.connection_name, p.product, p.version].filter(Boolean);
  return parts.join(' · ');
}
