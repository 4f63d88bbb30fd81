import { RANGE, addSample, fromSamples, lineChart } from '../chart.js';
import { exchangeLink } from './exchange.js';
import { publishForm } from '../publish.js';
import { api, apiOrNull, el, enc, fmtNum, fmtRate, fmtAge, fmtBytes, rateOf, run, kv, table, tags, jsonText, confirmButton, parseArgs } from '../lib.js';

export const name = 'queue';

function stat(k, v, id) {
  return el('div', { class: 'stat', id }, el('div', { class: 'v' }, v), el('div', { class: 'k' }, k));
}

export async function mount(root, [vhost, qname]) {
  const path = `queues/${enc(vhost)}/${enc(qname)}`;
  const stats = el('div', { class: 'cards', id: 'queue-stats' });
  const charts = el('div', { class: 'charts', id: 'queue-charts' });
  const countsId = `queue-counts:${enc(vhost)}/${enc(qname)}`, ratesId = `queue-rates:${enc(vhost)}/${enc(qname)}`;
  const details = el('div', { class: 'card', id: 'queue-details' });
  const consumers = el('div', { class: 'card', id: 'queue-consumers' });
  const bindings = el('div', { id: 'queue-bindings-list' });
  const messages = el('div', { id: 'queue-messages' });
  let deleted = false;

  async function refresh() {
    if (deleted) return;
    const q = await api('GET', path + '?' + RANGE);
    const ms = q.message_stats || {};
    stats.replaceChildren(
      stat('Ready', fmtNum(q.messages_ready), 'q-ready'), stat('Unacked', fmtNum(q.messages_unacknowledged), 'q-unacked'),
      stat('Total', fmtNum(q.messages), 'q-total'), stat('Bytes', fmtBytes(q.message_bytes), 'q-bytes'),
      stat('Consumers', fmtNum(q.consumers), 'q-consumers'),
      stat('Oldest ready message', fmtAge(q.head_message_age_seconds) || '–', 'q-head-age'),
      stat('Oldest unacked message', fmtAge(q.oldest_unacked_age_seconds) || '–', 'q-unacked-age'),
      stat('Redelivered', fmtNum(ms.redeliver || 0), 'q-redelivered'),
      stat('Published', fmtNum(ms.publish || 0), 'q-published'), stat('Delivered / got', fmtNum(ms.deliver_get || 0), 'q-delivered'),
      stat('Acked', fmtNum(ms.ack || 0), 'q-acked'),
      stat('Rates in / out / ack', `${fmtRate(rateOf(ms, 'publish'))} · ${fmtRate(rateOf(ms, 'deliver_get'))} · ${fmtRate(rateOf(ms, 'ack'))}`, 'q-rates'));
    if (!fromSamples(countsId, { ready: q.messages_ready_details, unacked: q.messages_unacknowledged_details }, false)) {
      addSample(countsId, { ready: q.messages_ready || 0, unacked: q.messages_unacknowledged || 0 });
    }
    if (!fromSamples(ratesId, { publish: ms.publish_details, deliver: ms.deliver_get_details, ack: ms.ack_details, redeliver: ms.redeliver_details }, true)) {
      addSample(ratesId, { publish: rateOf(ms, 'publish'), deliver: rateOf(ms, 'deliver_get'), ack: rateOf(ms, 'ack'), redeliver: rateOf(ms, 'redeliver') });
    }
    charts.replaceChildren(
      lineChart(countsId, [{ key: 'ready', label: 'Ready', color: '#e06000' }, { key: 'unacked', label: 'Unacked', color: '#1f77b4' }],
        { title: 'Queued messages', height: 150 }),
      lineChart(ratesId, [{ key: 'publish', label: 'Publish', color: '#e06000' }, { key: 'deliver', label: 'Deliver / get', color: '#1f77b4' },
        { key: 'ack', label: 'Ack', color: '#2ca02c' }, { key: 'redeliver', label: 'Redelivered', color: '#9467bd' }],
      { title: 'Message rates', unit: '/s', height: 150 }));
    const feats = [q.durable && 'durable', q.auto_delete && 'auto-delete', q.exclusive && 'exclusive'].filter(Boolean);
    details.replaceChildren(el('h2', {}, 'Details'), kv([
      ['Type', q.type], ['State', q.state], ['Node', q.node], ['Features', feats.length ? tags(feats) : 'none'],
      ['Arguments', jsonText(q.arguments) || 'none'], ['Policy', q.policy || 'none'],
      ['Effective policy definition', jsonText(q.effective_policy_definition) || 'none'],
      ['Head message timestamp', q.head_message_timestamp ? new Date(q.head_message_timestamp * 1000).toISOString() : '–'],
    ]));
    await showConsumers(q);
  }

  async function showConsumers(q) {
    let list = q.consumer_details && q.consumer_details.length ? q.consumer_details : null;
    let note = '';
    if (!list) {
      const all = await apiOrNull(`consumers/${enc(vhost)}`);
      if (all) list = all.filter(c => c.queue && c.queue.name === qname && c.queue.vhost === vhost);
      else note = `${q.consumers} consumer${q.consumers === 1 ? '' : 's'}; this server does not list consumers yet (no /api/consumers).`;
    }
    consumers.replaceChildren(el('h2', {}, `Consumers (${q.consumers})`), list && list.length ?
      table(['Channel', 'Consumer tag', 'Ack required', 'Exclusive', 'Prefetch', 'Active', 'Arguments'], list.map(c =>
        el('tr', {}, el('td', {}, (c.channel_details || {}).name || ''), el('td', {}, c.consumer_tag),
          el('td', {}, c.ack_required ? 'yes' : 'no'), el('td', {}, c.exclusive ? 'yes' : 'no'),
          el('td', { class: 'num' }, fmtNum(c.prefetch_count)), el('td', {}, c.active === false ? 'no' : 'yes'),
          el('td', {}, jsonText(c.arguments))))) :
      el('p', { class: 'muted' }, note || 'No consumers.'));
  }

  async function showBindings() {
    const bs = await api('GET', path + '/bindings');
    bindings.replaceChildren(table(['From', 'Routing key', 'Arguments', ''], bs.map(b =>
      el('tr', {}, el('td', {}, b.source ? exchangeLink(vhost, b.source) : '(default exchange)'), el('td', {}, b.routing_key), el('td', {}, jsonText(b.arguments)),
        el('td', {}, b.source ? el('button', { type: 'button', class: 'danger', onclick: () => unbind(b) }, 'Unbind') : ''))),
    { id: 'queue-bindings-table' }));
  }
  async function unbind(b) {
    if (await run(() => api('DELETE', `bindings/${enc(vhost)}/e/${enc(b.source)}/q/${enc(qname)}/${enc(b.properties_key)}`), 'Unbound')) showBindings();
  }

  // Bind form.
  const bx = el('input', { id: 'bind-exchange', required: true, placeholder: 'amq.direct' });
  const bkey = el('input', { id: 'bind-key' });
  const bargs = el('input', { id: 'bind-args', placeholder: 'k=v, …' });
  const bindForm = el('form', { class: 'inline', id: 'bind-form' }, el('label', {}, 'From exchange', bx),
    el('label', {}, 'Routing key', bkey), el('label', {}, 'Arguments', bargs), el('button', { type: 'submit' }, 'Bind'));
  bindForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (await run(() => api('POST', `bindings/${enc(vhost)}/e/${enc(bx.value)}/q/${enc(qname)}`,
      { routing_key: bkey.value, arguments: parseArgs(bargs.value) }), 'Bound')) showBindings();
  });

  // Get messages form.
  const gcount = el('input', { id: 'get-count', type: 'number', min: 1, value: 1, size: 4 });
  const gmode = el('select', { id: 'get-ackmode' },
    el('option', { value: 'ack_requeue_true' }, 'Nack, requeue true (peek)'),
    el('option', { value: 'reject_requeue_true' }, 'Reject, requeue true'),
    el('option', { value: 'ack_requeue_false' }, 'Automatic ack (removes them)'),
    el('option', { value: 'reject_requeue_false' }, 'Reject, requeue false (dead-letters them)'));
  const genc = el('select', { id: 'get-encoding' }, el('option', { value: 'auto' }, 'Auto string / base64'), el('option', { value: 'base64' }, 'base64'));
  const gtrunc = el('input', { id: 'get-truncate', type: 'number', value: 50000, size: 7 });
  const getForm = el('form', { class: 'inline', id: 'get-form' }, el('label', {}, 'Ack mode', gmode), el('label', {}, 'Encoding', genc),
    el('label', {}, 'Messages', gcount), el('label', {}, 'Truncate (bytes)', gtrunc), el('button', { type: 'submit', class: 'primary', id: 'get-submit' }, 'Get messages'));
  getForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    await run(async () => {
      const body = { count: Number(gcount.value), ackmode: gmode.value, encoding: genc.value };
      if (gtrunc.value) body.truncate = Number(gtrunc.value);
      const ms = await api('POST', path + '/get', body);
      messages.replaceChildren(...(ms.length ? ms.map((m, i) => el('div', { class: 'msg' },
        el('strong', {}, `Message ${i + 1}`), ` — ${m.message_count} more in the queue`,
        kv([['Exchange', m.exchange || '(default)'], ['Routing key', m.routing_key], ['Redelivered', m.redelivered ? 'yes' : 'no'],
          ['Properties', jsonText(m.properties) || 'none'],
          ['Payload', `${m.payload_bytes} bytes, encoding ${m.payload_encoding}`]]),
        el('pre', { class: 'payload' }, m.payload))) : [el('p', { class: 'muted', id: 'queue-empty' }, 'Queue is empty.')]));
      refresh();
    });
  });

  // Publish form (through the default exchange, to this queue).
  const pubForm = publishForm({ vhost, exchange: 'amq.default', routingKey: qname, prefix: 'publish', onDone: () => refresh() });

  const purge = confirmButton('Purge messages', 'Click again to purge', async () => {
    if (await run(() => api('DELETE', path + '/contents'), 'Queue purged')) refresh();
  }, { id: 'purge' });
  const del = confirmButton('Delete queue', 'Click again to delete', async () => {
    if (await run(() => api('DELETE', path), `Queue ${qname} deleted`)) { deleted = true; location.hash = '#/queues'; }
  }, { id: 'delete-queue' });

  root.append(el('h1', {}, el('span', { class: 'muted' }, `Queue · ${vhost} · `), qname), stats, charts, details, consumers,
    el('h2', {}, 'Bindings'), el('div', { class: 'card' }, bindings, el('p'), bindForm),
    el('h2', {}, 'Get messages'), el('div', { class: 'card' },
      el('p', { class: 'muted' }, 'Getting messages is a destructive action unless the ack mode requeues them; requeued messages come back flagged redelivered.'),
      getForm, messages),
    el('h2', {}, 'Publish message'), el('div', { class: 'card' }, pubForm),
    el('h2', {}, 'Purge and delete'), el('div', { class: 'card toolbar' }, purge, del));
  await Promise.all([refresh(), showBindings()]);
  return { refresh };
}
