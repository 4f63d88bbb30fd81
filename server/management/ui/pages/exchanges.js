import { api, el, enc, fmtRate, rateOf, run, vhostSelect, parseArgs, jsonText, confirmButton } from '../lib.js';
import { pagedList } from '../paged.js';
import { exchangeLink } from './exchange.js';

export const name = 'exchanges';

export async function mount(root) {
  let list;
  list = await pagedList({
    path: 'exchanges', id: 'exchanges', empty: 'No exchanges.',
    columns: [
      { title: 'Virtual host', sort: 'vhost', cell: x => x.vhost },
      { title: 'Name', sort: 'name', cell: x => exchangeLink(x.vhost, x.name) },
      { title: 'Type', sort: 'type', cell: x => x.type },
      { title: 'Features', cell: x => [x.durable && 'D', x.auto_delete && 'AD', x.internal && 'I'].filter(Boolean).map(t => el('span', { class: 'tag' }, t)) },
      { title: 'Arguments', cell: x => jsonText(x.arguments) },
      { title: 'Rate in', sort: 'message_stats.publish_in_details.rate', num: true, cell: x => fmtRate(rateOf(x.message_stats, 'publish_in')) },
      { title: 'Rate out', sort: 'message_stats.publish_out_details.rate', num: true, cell: x => fmtRate(rateOf(x.message_stats, 'publish_out')) },
      { title: '', cell: x => x.name && !x.name.startsWith('amq.') ? confirmButton('Delete', 'Confirm delete', async () => {
        if (await run(() => api('DELETE', `exchanges/${enc(x.vhost)}/${enc(x.name)}`), `Exchange ${x.name} deleted`)) list.refresh();
      }) : '' },
    ],
  });
  const vs = await vhostSelect({ id: 'add-exchange-vhost' });
  const xname = el('input', { id: 'add-exchange-name', required: true });
  const xtype = el('select', { id: 'add-exchange-type' }, ['direct', 'fanout', 'topic', 'headers', 'x-delayed-message'].map(t => el('option', { value: t }, t)));
  const durable = el('input', { type: 'checkbox', id: 'add-exchange-durable', checked: true });
  const args = el('input', { id: 'add-exchange-args', size: 30, placeholder: 'alternate-exchange=ae' });
  const form = el('form', { class: 'inline', id: 'add-exchange' }, el('label', {}, 'Virtual host', vs), el('label', {}, 'Name', xname),
    el('label', {}, 'Type', xtype), el('label', {}, 'Durable', durable), el('label', {}, 'Arguments', args),
    el('button', { type: 'submit', class: 'primary' }, 'Add exchange'));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (await run(() => api('PUT', `exchanges/${enc(vs.value)}/${enc(xname.value)}`,
      { type: xtype.value, durable: durable.checked, auto_delete: false, internal: false, arguments: parseArgs(args.value) }), `Exchange ${xname.value} declared`)) {
      xname.value = '';
      list.refresh();
    }
  });
  root.append(el('h1', {}, 'Exchanges'), list.node, el('h2', {}, 'Add an exchange'), el('div', { class: 'card' }, form));
  return { refresh: list.refresh };
}
