// A small SVG line chart of a history: the server's own samples (the
// API's *_details.samples, asked for with RANGE), so that a page opened
// now shows the last minutes; or, from a server without them, samples
// taken by the page itself, per chart, for the browser session.
import { el } from './lib.js';

const MAX_SAMPLES = 120;
const histories = new Map();

// History is a chart's samples: [{t, values: {series: number}}].
export function history(id) {
  if (!histories.has(id)) histories.set(id, []);
  return histories.get(id);
}

export function addSample(id, values, t = Date.now()) {
  const h = history(id);
  h.push({ t, values });
  if (h.length > MAX_SAMPLES) h.splice(0, h.length - MAX_SAMPLES);
}

// RANGE asks the API for ten minutes of samples, one per 5 s
// (RabbitMQ's collect_statistics_interval).
export const RANGE = 'lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5';

// fromSamples replaces history id with the server's samples: details maps
// each series key to a *_details object; asRate charts the change per
// second between samples (counters), otherwise the samples (lengths). It
// returns false when the server gave no samples.
export function fromSamples(id, details, asRate) {
  const keys = Object.keys(details);
  const first = details[keys[0]];
  if (!first || !Array.isArray(first.samples) || first.samples.length < 2) return false;
  const byKey = Object.fromEntries(keys.map(k => [k, [...((details[k] || {}).samples || [])].reverse()]));
  const ts = byKey[keys[0]].map(s => s.timestamp);
  const h = [];
  for (let i = asRate ? 1 : 0; i < ts.length; i++) {
    const values = {};
    for (const k of keys) {
      const s = byKey[k];
      if (!s[i]) continue;
      values[k] = asRate ? Math.max(0, (s[i].sample - s[i - 1].sample) / ((s[i].timestamp - s[i - 1].timestamp) / 1000)) : s[i].sample;
    }
    h.push({ t: ts[i], values });
  }
  histories.set(id, h);
  return true;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function label(v, unit) {
  const s = v >= 1e6 ? (v / 1e6).toFixed(1) + 'M' : v >= 1e4 ? (v / 1e3).toFixed(0) + 'k' : String(+v.toFixed(2));
  return s + (unit || '');
}

// lineChart draws series [{key, label, color}] of history id.
export function lineChart(id, series, { title, unit = '', width = 560, height = 180 } = {}) {
  const h = history(id);
  const pad = { l: 52, r: 10, t: 10, b: 22 };
  const w = width - pad.l - pad.r, ht = height - pad.t - pad.b;
  let max = 0;
  for (const s of h) for (const k of series) max = Math.max(max, s.values[k.key] || 0);
  max = niceMax(max);
  const t0 = h.length ? h[0].t : 0, t1 = h.length ? h[h.length - 1].t : 1;
  const span = Math.max(t1 - t0, 1);
  const x = t => pad.l + (h.length < 2 ? w : ((t - t0) / span) * w);
  const y = v => pad.t + ht - (v / max) * ht;
  const svg = el('svg', {
    class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': title, 'data-chart': id, 'data-points': h.length, 'data-max': max,
  });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(el('line', { x1: pad.l, x2: pad.l + w, y1: y(v), y2: y(v), stroke: '#e6eaee' }),
      el('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, label(v, unit)));
  }
  const secs = span < 10000 ? (span / 1000).toFixed(1) : Math.round(span / 1000);
  svg.append(el('text', { x: pad.l, y: height - 6 }, h.length > 1 ? `-${secs} s` : ''),
    el('text', { x: pad.l + w, y: height - 6, 'text-anchor': 'end' }, 'now'));
  for (const k of series) {
    const pts = h.map(s => `${x(s.t).toFixed(1)},${y(s.values[k.key] || 0).toFixed(1)}`).join(' ');
    const lastV = h.length ? h[h.length - 1].values[k.key] || 0 : 0;
    const line = el('polyline', { points: pts, fill: 'none', stroke: k.color, 'stroke-width': 2, 'data-series': k.key, 'data-last': lastV });
    svg.append(line);
    if (h.length) {
      const last = h[h.length - 1];
      svg.append(el('circle', { cx: x(last.t), cy: y(last.values[k.key] || 0), r: 3, fill: k.color }));
    }
  }
  const last = h.length ? h[h.length - 1].values : {};
  const legend = el('div', { class: 'legend' }, series.map(k =>
    el('span', {}, el('i', { class: 'sw', dataset: { color: k.color } }), `${k.label}: ${label(last[k.key] || 0, unit)}`)));
  for (const i of legend.querySelectorAll('i')) i.style.background = i.dataset.color;
  return el('div', { class: 'card' }, el('h2', {}, title), svg, legend);
}

// barChart draws labelled bars [{label, value}] (the fsync histogram).
export function barChart(bars, { title, width = 420, height = 160 } = {}) {
  const pad = { l: 40, r: 10, t: 10, b: 22 };
  const w = width - pad.l - pad.r, ht = height - pad.t - pad.b;
  const max = niceMax(Math.max(0, ...bars.map(b => b.value)));
  const bw = w / Math.max(bars.length, 1);
  const svg = el('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': title, 'data-points': bars.length });
  svg.append(el('text', { x: pad.l - 6, y: pad.t + 8, 'text-anchor': 'end' }, label(max)),
    el('text', { x: pad.l - 6, y: pad.t + ht, 'text-anchor': 'end' }, '0'));
  bars.forEach((b, i) => {
    const bh = (b.value / max) * ht;
    svg.append(
      el('rect', { x: pad.l + i * bw + 4, y: pad.t + ht - bh, width: bw - 8, height: bh, fill: '#e06000' },
        el('title', {}, `${b.label}: ${b.value}`)),
      el('text', { x: pad.l + i * bw + bw / 2, y: height - 6, 'text-anchor': 'middle' }, b.label));
  });
  return el('div', { class: 'card' }, el('h2', {}, title), svg);
}
