import { api, el, fmtNum, fmtRate, kv, table } from '../lib.js';
import { RANGE, addSample, fromSamples, lineChart } from '../chart.js';

export const name = 'overview';

const rateSeries = [
  { key: 'publish', label: 'Publish', color: '#e06000' },
  { key: 'deliver', label: 'Deliver / get', color: '#1f77b4' },
  { key: 'ack', label: 'Ack', color: '#2ca02c' },
  { key: 'redeliver', label: 'Redelivered', color: '#9467bd' },
];
const queuedSeries = [
  { key: 'ready', label: 'Ready', color: '#e06000' },
  { key: 'unacked', label: 'Unacked', color: '#1f77b4' },
  { key: 'total', label: 'Total', color: '#555' },
];

function stat(k, v, id) {
  return el('div', { class: 'stat', id }, el('div', { class: 'v' }, fmtNum(v)), el('div', { class: 'k' }, k));
}

export async function mount(root) {
  const charts = el('div', { class: 'charts' });
  const totals = el('div', { class: 'cards', id: 'totals' });
  const node = el('div', { class: 'card', id: 'node' });
  root.append(el('h1', {}, 'Overview'), totals, charts, node);

  async function refresh() {
    const [o, nodes] = await Promise.all([api('GET', 'overview?' + RANGE), api('GET', 'nodes')]);
    const ms = o.message_stats || {}, qt = o.queue_totals || {}, ot = o.object_totals || {};
    const r = k => (ms[k + '_details'] || {}).rate || 0;
    const d = k => ms[k + '_details'];
    if (!fromSamples('rates', { publish: d('publish'), deliver: d('deliver_get'), ack: d('ack'), redeliver: d('redeliver') }, true)) {
      addSample('rates', { publish: r('publish'), deliver: r('deliver_get'), ack: r('ack'), redeliver: r('redeliver') });
    }
    if (!fromSamples('queued', { ready: qt.messages_ready_details, unacked: qt.messages_unacknowledged_details, total: qt.messages_details }, false)) {
      addSample('queued', { ready: qt.messages_ready || 0, unacked: qt.messages_unacknowledged || 0, total: qt.messages || 0 });
    }
    charts.replaceChildren(
      lineChart('rates', rateSeries, { title: 'Message rates', unit: '/s' }),
      lineChart('queued', queuedSeries, { title: 'Queued messages' }));
    totals.replaceChildren(
      stat('Connections', ot.connections, 'total-connections'), stat('Channels', ot.channels, 'total-channels'),
      stat('Exchanges', ot.exchanges, 'total-exchanges'), stat('Queues', ot.queues, 'total-queues'),
      stat('Consumers', ot.consumers, 'total-consumers'), stat('Messages', qt.messages, 'total-messages'),
      stat('Ready', qt.messages_ready, 'total-ready'), stat('Unacked', qt.messages_unacknowledged, 'total-unacked'));
    const n = nodes[0] || {};
    node.replaceChildren(el('h2', {}, 'Node'), kv([
      ['Name', n.name], ['Product', `${o.product_name} ${o.product_version} (RabbitMQ API ${o.rabbitmq_version})`],
      ['Runtime', o.erlang_full_version], ['Uptime', fmtUptime(n.uptime)], ['Memory used', fmtNum(n.mem_used) + ' bytes'],
      ['Goroutines', fmtNum(n.proc_used)], ['Alarms', n.disk_free_alarm || n.mem_alarm ? el('span', { class: 'error' }, 'raised') : el('span', { class: 'ok' }, 'none')],
      ['Publish / deliver / ack', `${fmtRate(r('publish'))} · ${fmtRate(r('deliver_get'))} · ${fmtRate(r('ack'))}`],
    ]), el('h2', {}, 'Listeners'), table(['Protocol', 'Address', 'Port'],
      (o.listeners || []).map(l => el('tr', {}, el('td', {}, l.protocol), el('td', {}, l.ip_address), el('td', { class: 'num' }, l.port)))));
  }
  await refresh();
  return { refresh };
}

function fmtUptime(ms) {
  if (!ms) return '';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + 'd ' : '') + (h ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
}
