import { api, el, enc, fmtNum, fmtRate, rateOf, kv, table, jsonText } from '../lib.js';
import { connectionLink } from './connection.js';
import { exchangeLink } from './exchange.js';
import { queueLink } from './queues.js';

export const name = 'channel';

export function channelLink(name) {
  return el('a', { href: `#/channels/${enc(name)}` }, name);
}

// A count and its rate in one cell: "1,234 · 5.0/s".
function counted(stats, key) {
  return `${fmtNum(stats[key] || 0)} · ${fmtRate(rateOf(stats, key))}`;
}

export async function mount(root, [cname]) {
  const path = `channels/${enc(cname)}`;
  const details = el('div', { class: 'card', id: 'channel-details' });
  const consumers = el('div', { class: 'card', id: 'channel-consumers' });
  const publishes = el('div', { class: 'card', id: 'channel-publishes' });
  const deliveries = el('div', { class: 'card', id: 'channel-deliveries' });

  async function refresh() {
    const c = await api('GET', path);
    const ms = c.message_stats || {};
    const cd = c.connection_details || {};
    details.replaceChildren(el('h2', {}, 'Details'), kv([
      ['Connection', cd.name ? connectionLink(cd.name) : '–'], ['Number', c.number], ['User', c.user], ['Virtual host', c.vhost],
      ['State', c.idle_since ? `idle since ${c.idle_since.replace('T', ' ').replace(/\.\d+/, '')}` : c.state],
      ['Mode', [c.confirm && 'confirm', c.transactional && 'transactional'].filter(Boolean).join(', ') || 'none'],
      ['Prefetch (per consumer / channel)', `${fmtNum(c.prefetch_count)} / ${fmtNum(c.global_prefetch_count)}`],
      ['Unacked / unconfirmed', `${fmtNum(c.messages_unacknowledged)} / ${fmtNum(c.messages_unconfirmed)}`],
      ['Uncommitted messages / acks', `${fmtNum(c.messages_uncommitted)} / ${fmtNum(c.acks_uncommitted)}`],
      ['Published', counted(ms, 'publish')], ['Confirmed', counted(ms, 'confirm')],
      ['Delivered / got', counted(ms, 'deliver_get')], ['Acked', counted(ms, 'ack')], ['Redelivered', counted(ms, 'redeliver')],
    ]));
    const cs = c.consumer_details || [];
    consumers.replaceChildren(el('h2', {}, `Consumers (${cs.length})`), cs.length ?
      table(['Consumer tag', 'Queue', 'Ack required', 'Exclusive', 'Prefetch', 'Status', 'Arguments'], cs.map(x =>
        el('tr', { dataset: { tag: x.consumer_tag } }, el('td', {}, x.consumer_tag), el('td', {}, queueLink(x.queue.vhost, x.queue.name)),
          el('td', {}, x.ack_required ? 'yes' : 'no'), el('td', {}, x.exclusive ? 'yes' : 'no'),
          el('td', { class: 'num' }, fmtNum(x.prefetch_count)), el('td', {}, x.activity_status || (x.active === false ? 'waiting' : 'up')),
          el('td', {}, jsonText(x.arguments)))), { id: 'channel-consumers-table' }) :
      el('p', { class: 'muted' }, 'No consumers.'));
    const ps = c.publishes || [];
    publishes.replaceChildren(el('h2', {}, 'Published to exchanges'), ps.length ?
      table(['Exchange', 'Published', 'Confirmed', 'Returned unroutable', 'Dropped unroutable'], ps.map(p =>
        el('tr', { dataset: { name: p.exchange.name } }, el('td', {}, exchangeLink(p.exchange.vhost, p.exchange.name)),
          ['publish', 'confirm', 'return_unroutable', 'drop_unroutable'].map(k => el('td', { class: 'num' }, counted(p.stats, k))))),
      { id: 'channel-publishes-table' }) :
      el('p', { class: 'muted' }, 'Nothing published.'));
    const ds = c.deliveries || [];
    deliveries.replaceChildren(el('h2', {}, 'Delivered from queues'), ds.length ?
      table(['Queue', 'Delivered (ack)', 'Delivered (no ack)', 'Got (ack)', 'Got (no ack)', 'Got empty', 'Redelivered', 'Acked'], ds.map(d =>
        el('tr', { dataset: { name: d.queue.name } }, el('td', {}, queueLink(d.queue.vhost, d.queue.name)),
          ['deliver', 'deliver_no_ack', 'get', 'get_no_ack', 'get_empty', 'redeliver', 'ack'].map(k => el('td', { class: 'num' }, counted(d.stats, k))))),
      { id: 'channel-deliveries-table' }) :
      el('p', { class: 'muted' }, 'Nothing delivered.'));
  }

  root.append(el('h1', {}, el('span', { class: 'muted' }, 'Channel · '), cname), details, consumers, publishes, deliveries);
  await refresh();
  return { refresh };
}
