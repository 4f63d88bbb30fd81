// publishForm: the form that publishes one message through
// POST /api/exchanges/{vhost}/{exchange}/publish, on a queue's page (the
// default exchange, the queue's name as routing key) and an exchange's.
import { api, el, enc, run, parseArgs, toast } from './lib.js';

// routingKey: fixed (a string), or null for an input. prefix names the
// elements' ids. onDone(routed) runs after a publish.
export function publishForm({ vhost, exchange, routingKey = null, prefix, onDone = () => {} }) {
  const key = routingKey === null ? el('input', { id: prefix + '-key' }) : null;
  const mode = el('select', { id: prefix + '-delivery-mode' }, el('option', { value: '2' }, 'Persistent'), el('option', { value: '1' }, 'Non-persistent'));
  const headers = el('input', { id: prefix + '-headers', size: 30, placeholder: 'k=v, …' });
  const props = el('input', { id: prefix + '-props', size: 30, placeholder: 'content_type=text/plain, priority=1' });
  const payload = el('textarea', { id: prefix + '-payload', rows: 4, cols: 60 });
  const result = el('p', { id: prefix + '-result', class: 'muted' });
  const form = el('form', { class: 'stack', id: prefix + '-form' },
    el('div', { class: 'inline' }, key ? el('label', {}, 'Routing key', key) : null, el('label', {}, 'Delivery mode', mode),
      el('label', {}, 'Headers', headers), el('label', {}, 'Properties', props)),
    el('label', {}, 'Payload', payload),
    el('div', {}, el('button', { type: 'submit', class: 'primary', id: prefix + '-submit' }, 'Publish message')), result);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    await run(async () => {
      const p = { ...parseArgs(props.value), delivery_mode: Number(mode.value) };
      const h = parseArgs(headers.value);
      if (Object.keys(h).length) p.headers = h;
      const r = await api('POST', `exchanges/${enc(vhost)}/${enc(exchange)}/publish`,
        { properties: p, routing_key: key ? key.value : routingKey, payload: payload.value, payload_encoding: 'string' });
      result.textContent = r.routed ? 'routed' : 'not routed';
      toast(r.routed ? 'Message published.' : 'Message published, but not routed.', !r.routed);
      onDone(r.routed);
    });
  });
  return form;
}
