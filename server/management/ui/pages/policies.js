import { api, apiOrNull, el, enc, run, table, jsonText, confirmButton, vhostSelect } from '../lib.js';

export const name = 'policies';

// RabbitMQ's policy JSON: {vhost, name, pattern, 'apply-to', definition, priority}.
export async function mount(root) {
  root.append(el('h1', {}, 'Policies'));
  const list = el('div', { id: 'policies-list' });
  const opList = el('div', { id: 'operator-policies-list' });
  async function show(into, kind) {
    const ps = await apiOrNull(kind);
    if (ps === null) {
      into.replaceChildren(el('p', { class: 'notice' }, `This server does not serve /api/${kind} yet.`));
      return false;
    }
    into.replaceChildren(table(['Virtual host', 'Name', 'Pattern', 'Apply to', 'Definition', 'Priority', ''], ps.map(p =>
      el('tr', { dataset: { name: p.name } }, el('td', {}, p.vhost), el('td', {}, p.name), el('td', {}, el('code', {}, p.pattern)),
        el('td', {}, p['apply-to']), el('td', {}, el('code', {}, jsonText(p.definition))), el('td', { class: 'num' }, p.priority),
        el('td', {}, confirmButton('Delete', 'Confirm delete', async () => {
          if (await run(() => api('DELETE', `${kind}/${enc(p.vhost)}/${enc(p.name)}`), `Policy ${p.name} deleted`)) refresh();
        }))))));
    return true;
  }
  async function refresh() { await Promise.all([show(list, 'policies'), show(opList, 'operator-policies')]); }

  function form(kind, id) {
    const vs = vhostSelectPlaceholder();
    const name = el('input', { id: id + '-name', required: true });
    const pattern = el('input', { id: id + '-pattern', required: true, value: '^' });
    const applyTo = el('select', { id: id + '-apply-to' }, ['queues', 'exchanges', 'all'].map(a => el('option', { value: a }, a)));
    const priority = el('input', { id: id + '-priority', type: 'number', value: 0, size: 4 });
    const def = el('textarea', { id: id + '-definition', rows: 3, cols: 50, placeholder: '{"message-ttl": 60000, "dead-letter-exchange": "dlx"}' });
    const f = el('form', { class: 'stack', id }, el('div', { class: 'inline' }, el('label', {}, 'Virtual host', vs.node),
      el('label', {}, 'Name', name), el('label', {}, 'Pattern', pattern), el('label', {}, 'Apply to', applyTo), el('label', {}, 'Priority', priority)),
    el('label', {}, 'Definition (JSON)', def), el('div', {}, el('button', { type: 'submit', class: 'primary' }, 'Add / update policy')));
    f.addEventListener('submit', async ev => {
      ev.preventDefault();
      await run(async () => {
        let d;
        try { d = JSON.parse(def.value || '{}'); } catch (e) { throw new Error('definition is not JSON: ' + e.message); }
        await api('PUT', `${kind}/${enc(vs.value())}/${enc(name.value)}`,
          { pattern: pattern.value, definition: d, priority: Number(priority.value), 'apply-to': applyTo.value });
        await refresh();
      }, `Policy ${name.value} saved`);
    });
    vs.load();
    return f;
  }
  function vhostSelectPlaceholder() {
    const node = el('span');
    let sel;
    return { node, value: () => sel ? sel.value : '/', load: async () => { sel = await vhostSelect(); node.replaceChildren(sel); } };
  }

  await refresh();
  root.append(list, el('h2', {}, 'Add a policy'), el('div', { class: 'card' }, form('policies', 'add-policy')),
    el('h2', {}, 'Operator policies'), opList, el('h2', {}, 'Add an operator policy'), el('div', { class: 'card' }, form('operator-policies', 'add-operator-policy')));
  return null;
}
