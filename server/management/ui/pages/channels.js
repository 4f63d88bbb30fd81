import { apiOrNull, el, fmtNum, fmtRate, rateOf } from '../lib.js';
import { channelLink } from './channel.js';
import { connectionLink } from './connection.js';
import { pagedList } from '../paged.js';

export const name = 'channels';

export async function mount(root) {
  root.append(el('h1', {}, 'Channels'));
  if (await apiOrNull('channels?page=1&page_size=1') === null) {
    root.append(el('p', { class: 'notice', id: 'channels-missing' }, 'This server does not list channels yet (no /api/channels); the overview counts them.'));
    return null;
  }
  const list = await pagedList({
    path: 'channels', id: 'channels', empty: 'No channels.',
    columns: [
      { title: 'Channel', sort: 'name', cell: c => channelLink(c.name) },
      { title: 'Connection', sort: 'connection_details.name', cell: c => c.connection_details ? connectionLink(c.connection_details.name) : '' },
      { title: 'User', sort: 'user', cell: c => c.user },
      { title: 'Virtual host', sort: 'vhost', cell: c => c.vhost },
      { title: 'Mode', cell: c => [c.confirm && 'confirm', c.transactional && 'tx'].filter(Boolean).join(', ') },
      { title: 'State', sort: 'state', cell: c => c.idle_since ? 'idle' : c.state },
      { title: 'Consumers', sort: 'consumer_count', num: true, cell: c => fmtNum(c.consumer_count) },
      { title: 'Prefetch', sort: 'prefetch_count', num: true, cell: c => fmtNum(c.prefetch_count) },
      { title: 'Unacked', sort: 'messages_unacknowledged', num: true, cell: c => fmtNum(c.messages_unacknowledged) },
      { title: 'Unconfirmed', sort: 'messages_unconfirmed', num: true, cell: c => fmtNum(c.messages_unconfirmed) },
      { title: 'Publish', num: true, cell: c => fmtRate(rateOf(c.message_stats, 'publish')) },
      { title: 'Deliver / get', num: true, cell: c => fmtRate(rateOf(c.message_stats, 'deliver_get')) },
      { title: 'Ack', num: true, cell: c => fmtRate(rateOf(c.message_stats, 'ack')) },
    ],
  });
  root.append(list.node);
  return { refresh: list.refresh };
}
