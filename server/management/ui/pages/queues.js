import { api, el, enc, fmtNum, fmtRate, fmtAge, rateOf, run, vhostSelect, parseArgs } from '../lib.js';
import { pagedList } from '../paged.js';

export const name = 'queues';

function features(q) {
  const f = [];
  if (q.durable) f.push(el('span', { class: 'tag', title: 'durable' }, 'D'));
  if (q.auto_delete) f.push(el('span', { class: 'tag', title: 'auto-delete' }, 'AD'));
  if (q.exclusive) f.push(el('span', { class: 'tag', title: 'exclusive' }, 'Excl'));
  for (const k of Object.keys(q.arguments || {})) f.push(el('span', { class: 'tag', title: `${k}: ${JSON.stringify(q.arguments[k])}` }, shortArg(k)));
  if (q.policy) f.push(el('span', { class: 'tag', title: 'policy' }, 'Pol: ' + q.policy));
  return f;
}

function shortArg(k) {
  return ({ 'x-message-ttl': 'TTL', 'x-expires': 'Exp', 'x-max-length': 'Lim', 'x-max-length-bytes': 'Lim B',
    'x-dead-letter-exchange': 'DLX', 'x-dead-letter-routing-key': 'DLK', 'x-max-priority': 'Pri',
    'x-single-active-consumer': 'SAC', 'x-overflow': 'Ovfl', 'x-queue-mode': 'Mode' })[k] || k;
}

export function queueLink(vhost, name) {
  return el('a', { href: `#/queues/${enc(vhost)}/${enc(name)}` }, name);
}

export async function mount(root) {
  const list = await pagedList({
    path: 'queues', id: 'queues', empty: 'No queues.',
    columns: [
      { title: 'Virtual host', sort: 'vhost', cell: q => q.vhost },
      { title: 'Name', sort: 'name', cell: q => queueLink(q.vhost, q.name) },
      { title: 'Type', cell: q => q.type },
      { title: 'Features', cell: features },
      { title: 'Consumers', sort: 'consumers', num: true, cell: q => fmtNum(q.consumers) },
      { title: 'Ready', sort: 'messages_ready', num: true, cell: q => fmtNum(q.messages_ready) },
      { title: 'Unacked', sort: 'messages_unacknowledged', num: true, cell: q => fmtNum(q.messages_unacknowledged) },
      { title: 'Total', sort: 'messages', num: true, cell: q => fmtNum(q.messages) },
      { title: 'Incoming', sort: 'message_stats.publish_details.rate', num: true, cell: q => fmtRate(rateOf(q.message_stats, 'publish')) },
      { title: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', num: true, cell: q => fmtRate(rateOf(q.message_stats, 'deliver_get')) },
      { title: 'Ack', sort: 'message_stats.ack_details.rate', num: true, cell: q => fmtRate(rateOf(q.message_stats, 'ack')) },
      { title: 'Redelivered', sort: 'message_stats.redeliver', num: true, cell: q => fmtNum((q.message_stats || {}).redeliver || 0) },
      { title: 'Oldest ready', sort: 'head_message_age_seconds', num: true, cell: q => fmtAge(q.head_message_age_seconds) },
      { title: 'Oldest unacked', sort: 'oldest_unacked_age_seconds', num: true, cell: q => fmtAge(q.oldest_unacked_age_seconds) },
    ],
  });

  const vs = await vhostSelect({ name: 'vhost', id: 'add-queue-vhost' });
  const qname = el('input', { name: 'name', id: 'add-queue-name', required: true, size: 24 });
  const durable = el('select', { id: 'add-queue-durable' }, el('option', { value: 'true' }, 'Durable'), el('option', { value: 'false' }, 'Transient'));
  const autoDelete = el('input', { type: 'checkbox', id: 'add-queue-auto-delete' });
  const args = el('input', { id: 'add-queue-args', size: 40, placeholder: 'x-message-ttl=60000, x-max-length=1000' });
  const form = el('form', { class: 'inline', id: 'add-queue' },
    el('label', {}, 'Virtual host', vs), el('label', {}, 'Name', qname), el('label', {}, 'Durability', durable),
    el('label', {}, 'Auto delete', autoDelete), el('label', {}, 'Arguments', args),
    el('button', { type: 'submit', class: 'primary' }, 'Add queue'));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const ok = await run(() => api('PUT', `queues/${enc(vs.value)}/${enc(qname.value)}`,
      { durable: durable.value === 'true', auto_delete: autoDelete.checked, arguments: parseArgs(args.value) }), `Queue ${qname.value} declared`);
    if (ok) { qname.value = ''; list.refresh(); }
  });
  root.append(el('h1', {}, 'Queues'), list.node, el('h2', {}, 'Add a queue'), el('div', { class: 'card' }, form));
  return { refresh: list.refresh };
}
