import { api, apiOrNull, el, enc, fmtNum, fmtTime, run, kv, table, jsonText, confirmButton } from '../lib.js';

export const name = 'connection';

export function connectionLink(name) {
  return el('a', { href: `#/connections/${enc(name)}` }, name);
}

export async function mount(root, [cname]) {
  const path = `connections/${enc(cname)}`;
  const details = el('div', { class: 'card', id: 'connection-details' });
  const channels = el('div', { class: 'card', id: 'connection-channels' });
  let closed = false;

  async function refresh() {
    if (closed) return;
    const [c, chs] = await Promise.all([api('GET', path), apiOrNull(path + '/channels')]);
    const cp = c.client_properties || {};
    details.replaceChildren(el('h2', {}, 'Details'), kv([
      ['Client', [cp.connection_name, cp.product, cp.version, cp.platform].filter(Boolean).join(' · ') || '–'],
      ['User', c.user], ['Virtual host', c.vhost], ['State', c.state], ['Protocol', c.protocol],
      ['Peer', `${c.peer_host}:${c.peer_port}`], ['Local', `${c.host}:${c.port}`], ['TLS', c.ssl ? 'yes' : 'no'],
      ['Authentication', c.auth_mechanism], ['Connected at', fmtTime(c.connected_at)],
      ['Channel max / frame max / heartbeat', `${fmtNum(c.channel_max)} / ${fmtNum(c.frame_max)} / ${c.timeout} s`],
      ['Capabilities', jsonText(cp.capabilities) || '–'],
    ]));
    channels.replaceChildren(el('h2', {}, `Channels (${chs ? chs.length : fmtNum(c.channels)})`), chs === null ?
      el('p', { class: 'muted' }, 'This server does not list a connection\'s channels yet.') :
      chs.length ? table(['Channel', 'Mode', 'Consumers', 'Prefetch', 'Unacked', 'Unconfirmed', 'State'], chs.map(ch =>
        el('tr', { dataset: { number: ch.number } }, el('td', {}, el('a', { href: `#/channels/${enc(ch.name)}` }, ch.number)), el('td', {}, [ch.confirm && 'confirm', ch.transactional && 'tx'].filter(Boolean).join(', ')),
          el('td', { class: 'num' }, fmtNum(ch.consumer_count)), el('td', { class: 'num' }, fmtNum(ch.prefetch_count)),
          el('td', { class: 'num' }, fmtNum(ch.messages_unacknowledged)), el('td', { class: 'num' }, fmtNum(ch.messages_unconfirmed)),
          el('td', {}, ch.state)))) : el('p', { class: 'muted' }, 'No channels.'));
  }

  const reason = el('input', { id: 'connection-close-reason', size: 40, value: 'Closed via management UI' });
  const close = confirmButton('Close connection', 'Click again to close', async () => {
    if (await run(() => api('DELETE', path, undefined, { 'X-Reason': reason.value }), 'Connection closed')) {
      closed = true;
      location.hash = '#/connections';
    }
  }, { id: 'close-connection' });
  root.append(el('h1', {}, el('span', { class: 'muted' }, 'Connection · '), cname), details, channels,
    el('h2', {}, 'Close'), el('div', { class: 'card inline' }, el('label', {}, 'Reason sent to the client', reason), close));
  await refresh();
  return { refresh };
}
