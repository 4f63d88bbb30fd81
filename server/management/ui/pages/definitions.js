import { api, el, enc, run, toast, vhostSelect } from '../lib.js';

export const name = 'definitions';

export async function mount(root) {
  const evhost = await vhostSelect({ id: 'export-vhost' }, 'All (the whole broker)');
  const out = el('textarea', { id: 'export-json', rows: 14, cols: 100, readonly: true });
  const link = el('a', { id: 'export-download', hidden: true }, 'Download');
  const exportBtn = el('button', { type: 'button', class: 'primary', id: 'export' }, 'Export definitions');
  exportBtn.addEventListener('click', () => run(async () => {
    const d = await api('GET', 'definitions' + (evhost.value ? '/' + enc(evhost.value) : ''));
    const text = JSON.stringify(d, null, 2);
    out.value = text;
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    link.download = `definitions-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`;
    link.hidden = false;
  }));

  const ivhost = await vhostSelect({ id: 'import-vhost' }, 'All (as exported)');
  const file = el('input', { type: 'file', id: 'import-file', accept: '.json,application/json' });
  const text = el('textarea', { id: 'import-json', rows: 10, cols: 100, placeholder: 'Paste definitions JSON here, or choose a file' });
  file.addEventListener('change', async () => { if (file.files[0]) text.value = await file.files[0].text(); });
  const form = el('form', { class: 'stack', id: 'import-form' }, el('label', {}, 'File', file), text,
    el('label', {}, 'Into virtual host', ivhost), el('div', {}, el('button', { type: 'submit', class: 'primary', id: 'import' }, 'Import definitions')));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    let d;
    try { d = JSON.parse(text.value); } catch (e) { toast('Not JSON: ' + e.message, true); return; }
    await run(() => api('POST', 'definitions' + (ivhost.value ? '/' + enc(ivhost.value) : ''), d), 'Definitions imported');
  });

  root.append(el('h1', {}, 'Definitions'),
    el('h2', {}, 'Export'), el('div', { class: 'card stack' }, el('div', { class: 'toolbar' }, el('label', {}, 'Virtual host ', evhost), exportBtn, link), out),
    el('h2', {}, 'Import'), el('div', { class: 'card' },
      el('p', { class: 'muted' }, 'Users, virtual hosts, permissions, policies, exchanges, queues and bindings are created or updated; nothing is deleted. Into one virtual host, only its policies, exchanges, queues and bindings are imported.'),
      form));
  return null;
}
