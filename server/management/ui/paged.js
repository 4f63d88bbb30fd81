// pagedList: a table of an API list with RabbitMQ's paging parameters
// (page, page_size, name, use_regex, sort, sort_reverse), a vhost filter,
// a name filter and sortable columns. The server does the work.
import { api, el, enc, vhostSelect } from './lib.js';

// columns: [{title, sort (the API's field, dotted), num, cell(item) -> node|string}]
export async function pagedList({ path, columns, sort = 'name', id, vhosts = true, empty = 'Nothing here.' }) {
  const st = { page: 1, pageSize: 100, name: '', regex: false, sort, reverse: false, vhost: '' };
  const body = el('tbody');
  const head = el('tr');
  const info = el('span', { class: 'muted', id: id + '-count' });
  const prev = el('button', { type: 'button', id: id + '-prev' }, '‹ Prev');
  const next = el('button', { type: 'button', id: id + '-next' }, 'Next ›');
  const pageLabel = el('span', { id: id + '-page' });
  const filter = el('input', { type: 'search', placeholder: 'Filter by name', id: id + '-filter', size: 24 });
  const regex = el('input', { type: 'checkbox', id: id + '-regex' });
  const size = el('select', { id: id + '-page-size' }, [20, 100, 500].map(n => el('option', { value: n }, n)));
  size.value = String(st.pageSize);
  const error = el('p', { class: 'error' });
  const toolbar = el('div', { class: 'toolbar' });
  if (vhosts) {
    const vs = await vhostSelect({ id: id + '-vhost' }, 'All vhosts');
    vs.addEventListener('change', () => { st.vhost = vs.value; st.page = 1; refresh(); });
    toolbar.append(el('label', {}, 'Virtual host ', vs));
  }
  toolbar.append(filter, el('label', {}, regex, ' Regex'), el('label', {}, 'Page size ', size));
  let debounce;
  filter.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(() => { st.name = filter.value; st.page = 1; refresh(); }, 250); });
  regex.addEventListener('change', () => { st.regex = regex.checked; st.page = 1; refresh(); });
  size.addEventListener('change', () => { st.pageSize = Number(size.value); st.page = 1; refresh(); });
  prev.addEventListener('click', () => { if (st.page > 1) { st.page--; refresh(); } });
  next.addEventListener('click', () => { st.page++; refresh(); });

  for (const c of columns) {
    const th = el('th', { class: (c.num ? 'num ' : '') + (c.sort ? 'sortable' : ''), dataset: { sort: c.sort || '' } }, c.title);
    if (c.sort) th.addEventListener('click', () => {
      if (st.sort === c.sort) st.reverse = !st.reverse; else { st.sort = c.sort; st.reverse = !!c.num; }
      refresh();
    });
    head.append(th);
  }

  async function refresh() {
    const q = new URLSearchParams({ page: st.page, page_size: st.pageSize, sort: st.sort, sort_reverse: st.reverse });
    if (st.name) { q.set('name', st.name); q.set('use_regex', st.regex); }
    let r;
    try {
      r = await api('GET', `${path}${st.vhost ? '/' + enc(st.vhost) : ''}?${q}`);
    } catch (e) {
      if (e.body && e.body.error === 'page_out_of_range' && st.page > 1) { st.page = 1; return refresh(); }
      error.textContent = e.message;
      return;
    }
    error.textContent = '';
    for (const th of head.children) {
      th.classList.toggle('sorted', th.dataset.sort === st.sort);
      th.classList.toggle('rev', th.dataset.sort === st.sort && st.reverse);
    }
    body.replaceChildren(...(r.items.length ? r.items.map(it => el('tr', { dataset: { name: it.name } },
      columns.map(c => el('td', { class: c.num ? 'num' : '' }, c.cell(it))))) :
      [el('tr', {}, el('td', { colspan: columns.length, class: 'muted' }, st.name ? 'No match.' : empty))]));
    info.textContent = `${r.filtered_count} of ${r.total_count}` + (r.filtered_count === 1 ? ' item' : ' items');
    pageLabel.textContent = `Page ${r.page} of ${Math.max(r.page_count, 1)}`;
    prev.disabled = r.page <= 1;
    next.disabled = r.page >= r.page_count;
  }
  await refresh();
  const node = el('div', { id }, toolbar, error,
    el('table', { id: id + '-table' }, el('thead', {}, head), body),
    el('div', { class: 'pager' }, prev, pageLabel, next, info));
  return { node, refresh };
}
