import { api, el, enc, run, kv, table, tags, jsonText, confirmButton, parseArgs } from '../lib.js';
import { queueLink } from './queues.js';
import { publishForm } from '../publish.js';

export const name = 'exchange';

export function exchangeLink(vhost, name) {
  return el('a', { href: `#/exchanges/${enc(vhost)}/${enc(name || 'amq.default')}` }, name || '(AMQP default)');
}

export async function mount(root, [vhost, xname]) {
  const path = `exchanges/${enc(vhost)}/${enc(xname)}`;
  const details = el('div', { class: 'card', id: 'exchange-details' });
  const from = el('div', { id: 'exchange-bindings-source' });
  const to = el('div', { id: 'exchange-bindings-destination' });

  async function refresh() {
    const [x, src, dst] = await Promise.all([api('GET', path), api('GET', path + '/bindings/source'), api('GET', path + '/bindings/destination')]);
    const feats = [x.durable && 'durable', x.auto_delete && 'auto-delete', x.internal && 'internal'].filter(Boolean);
    details.replaceChildren(el('h2', {}, 'Details'), kv([['Type', x.type], ['Features', feats.length ? tags(feats) : 'none'],
      ['Arguments', jsonText(x.arguments) || 'none'], ['Policy', x.policy || 'none']]));
    const dest = b => b.destination_type === 'queue' ? queueLink(vhost, b.destination) : exchangeLink(vhost, b.destination);
    from.replaceChildren(src.length ? table(['To', 'Type', 'Routing key', 'Arguments', ''], src.map(b => el('tr', {},
      el('td', {}, dest(b)), el('td', {}, b.destination_type), el('td', {}, b.routing_key), el('td', {}, jsonText(b.arguments)),
      el('td', {}, el('button', { type: 'button', class: 'danger', onclick: () => unbind(b) }, 'Unbind'))))) :
      el('p', { class: 'muted' }, 'No bindings from this exchange.'));
    to.replaceChildren(dst.length ? table(['From', 'Routing key', 'Arguments'], dst.map(b => el('tr', {},
      el('td', {}, exchangeLink(vhost, b.source)), el('td', {}, b.routing_key), el('td', {}, jsonText(b.arguments))))) :
      el('p', { class: 'muted' }, 'No bindings to this exchange.'));
  }
  async function unbind(b) {
    const kind = b.destination_type === 'queue' ? 'q' : 'e';
    if (await run(() => api('DELETE', `bindings/${enc(vhost)}/e/${enc(xname)}/${kind}/${enc(b.destination)}/${enc(b.properties_key)}`), 'Unbound')) refresh();
  }

  const bkind = el('select', { id: 'xbind-kind' }, el('option', { value: 'q' }, 'To queue'), el('option', { value: 'e' }, 'To exchange'));
  const bdest = el('input', { id: 'xbind-destination', required: true });
  const bkey = el('input', { id: 'xbind-key' });
  const bargs = el('input', { id: 'xbind-args', placeholder: 'k=v, …' });
  const bindForm = el('form', { class: 'inline', id: 'xbind-form' }, el('label', {}, 'Destination', bkind), el('label', {}, 'Name', bdest),
    el('label', {}, 'Routing key', bkey), el('label', {}, 'Arguments', bargs), el('button', { type: 'submit' }, 'Bind'));
  bindForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (await run(() => api('POST', `bindings/${enc(vhost)}/e/${enc(xname)}/${bkind.value}/${enc(bdest.value)}`,
      { routing_key: bkey.value, arguments: parseArgs(bargs.value) }), 'Bound')) refresh();
  });

  const pubForm = publishForm({ vhost, exchange: xname, prefix: 'xpublish' });

  const builtin = xname === 'amq.default' || xname.startsWith('amq.');
  const del = builtin ? el('span', { class: 'muted' }, 'Built-in exchanges cannot be deleted.') :
    confirmButton('Delete exchange', 'Click again to delete', async () => {
      if (await run(() => api('DELETE', path), `Exchange ${xname} deleted`)) location.hash = '#/exchanges';
    }, { id: 'delete-exchange' });

  root.append(el('h1', {}, el('span', { class: 'muted' }, `Exchange · ${vhost} · `), xname === 'amq.default' ? '(AMQP default)' : xname), details,
    el('h2', {}, 'Bindings from this exchange'), el('div', { class: 'card' }, from, el('p'), xname === 'amq.default' ? '' : bindForm),
    el('h2', {}, 'Bindings to this exchange'), el('div', { class: 'card' }, to),
    el('h2', {}, 'Publish message'), el('div', { class: 'card' }, pubForm),
    el('h2', {}, 'Delete'), el('div', { class: 'card' }, del));
  await refresh();
  return { refresh };
}
