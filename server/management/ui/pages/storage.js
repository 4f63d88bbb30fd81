import { api, el, fmtNum, fmtBytes, kv, table } from '../lib.js';
import { barChart } from '../chart.js';
import { queueLink } from './queues.js';

export const name = 'storage';

function stat(k, v, id) {
  return el('div', { class: 'stat', id }, el('div', { class: 'v' }, v), el('div', { class: 'k' }, k));
}

function holderLabel(h) {
  if (h.kind === 'queue') return [queueLink(h.vhost, h.name), el('span', { class: 'muted' }, ` (${h.vhost})`)];
  if (h.kind === 'delayed_exchange') return [`delayed exchange ${h.name}`, el('span', { class: 'muted' }, ` (${h.vhost})`)];
  return el('span', { class: 'muted' }, `store id ${h.store_id} (being deleted)`);
}

export async function mount(root) {
  const body = el('div');
  root.append(el('h1', {}, 'Log & storage'), body);
  async function refresh() {
    const s = await api('GET', 'x-storage');
    if (!s.segmented) {
      body.replaceChildren(el('p', { class: 'notice', id: 'storage-memory' },
        'This server keeps messages in memory only (storage.backend: memory): there is no message log.'));
      return;
    }
    const segs = s.segment_files;
    const oldest = segs[0];
    const hits = s.ring_hits + s.ring_misses;
    let pin;
    if (!oldest) pin = el('p', {}, 'No segment files.');
    else if (oldest.active) pin = el('p', { id: 'oldest-pin' }, `The oldest segment, ${oldest.number}, is the one being written: nothing to reclaim.`);
    else if (oldest.corrupt) pin = el('p', { id: 'oldest-pin', class: 'error' }, `The oldest segment, ${oldest.number}, holds a corrupt record and is kept until recovery-tool repair runs.`);
    else if (oldest.holders.length) pin = el('div', { id: 'oldest-pin' },
      el('p', {}, `The oldest segment, ${oldest.number} (${fmtBytes(oldest.bytes)}), is kept on disk by ${fmtNum(oldest.live)} live message reference${oldest.live === 1 ? '' : 's'}, held by:`),
      table(['Holder', 'Messages in the segment'], oldest.holders.map(h =>
        el('tr', {}, el('td', {}, holderLabel(h)), el('td', { class: 'num' }, fmtNum(h.live))))),
      el('p', { class: 'muted' }, 'Segments are reclaimed oldest first once nothing in them is live: consuming, purging or deleting these frees the log up to the next pinned segment.'));
    else pin = el('p', { id: 'oldest-pin' }, `The oldest segment, ${oldest.number}, has no live messages left and will be deleted on the next commit.`);
    const maxLive = Math.max(1, ...segs.map(g => g.live));
    body.replaceChildren(
      el('div', { class: 'cards' },
        stat('Segment files', fmtNum(s.segments), 'st-segments'), stat('On disk', fmtBytes(s.disk_bytes), 'st-disk'),
        stat('Messages appended', fmtNum(s.appended_records), 'st-appended'), stat('Bytes appended', fmtBytes(s.appended_bytes), 'st-appended-bytes'),
        stat('Ack / drop records', fmtNum(s.ack_records), 'st-acks'), stat('Segments reclaimed', fmtNum(s.reclaimed_segments), 'st-reclaimed'),
        stat('Fsyncs', fmtNum(s.fsyncs), 'st-fsyncs'), stat('Fsync avg / max', `${s.fsync_avg_ms.toFixed(2)} / ${s.fsync_max_ms.toFixed(2)} ms`, 'st-fsync-latency'),
        stat('Messages per batch', s.batches ? (s.appended_records / s.batches).toFixed(1) : '–', 'st-batch'),
        stat('Read from memory', hits ? (100 * s.ring_hits / hits).toFixed(1) + ' %' : '–', 'st-ring')),
      s.failed ? el('p', { class: 'error' }, 'The log has failed: ' + s.failed) : '',
      el('h2', {}, 'What pins the oldest segment'), el('div', { class: 'card' }, pin),
      el('div', { class: 'charts' }, barChart(s.fsync_buckets.map(b => ({ label: b.le_ms === '+Inf' ? '> 64 ms' : '≤ ' + b.le_ms + ' ms', value: b.count })),
        { title: 'Fsync latency (count per bucket)' }),
      el('div', { class: 'card' }, el('h2', {}, 'Counters'), kv([
        ['Group commits (batches)', fmtNum(s.batches)], ['Ring buffer hits / misses', `${fmtNum(s.ring_hits)} / ${fmtNum(s.ring_misses)}`],
        ['Raw', el('code', {}, `GET /api/x-storage`)]]))),
      el('h2', {}, 'Segment files'),
      table(['Segment', 'Bytes', 'Live messages', '', 'State', 'Held by'], segs.map(g => {
        const bar = el('span');
        bar.style.width = (100 * g.live / maxLive).toFixed(1) + '%';
        return el('tr', { dataset: { segment: g.number } }, el('td', { class: 'num' }, g.number), el('td', { class: 'num' }, fmtBytes(g.bytes)),
          el('td', { class: 'num' }, fmtNum(g.live)), el('td', {}, el('div', { class: 'bar' }, bar)),
          el('td', {}, g.active ? 'active' : g.corrupt ? el('span', { class: 'error' }, 'corrupt') : g.live ? 'pinned' : g === oldest ? 'reclaimable' : 'empty, behind an older one'),
          el('td', {}, g.holders.slice(0, 5).map((h, i) => [i ? ', ' : '', holderLabel(h), ` ${fmtNum(h.live)}`]),
            g.holders.length > 5 ? ` and ${g.holders.length - 5} more` : ''));
      }), { id: 'segments-table' }));
  }
  await refresh();
  return { refresh };
}
