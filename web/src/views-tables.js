// Long tables made readable, shared by the reports (and any page with a `table[data-table]`):
// a filter box, sortable columns (click or Enter on a header), and rows beyond the first few
// folded behind a "show all" button. Without script the full table is still there.
(function attachTables(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});
  const element = Marketsim.element;

  /** What a cell sorts by: its `data-sort` when given, else a number when it reads as one. */
  function sortKey(cell) {
    const text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const number = Number(text.replace(/[,\s%+]/g, '').replace('−', '-'));
    return text !== '' && !Number.isNaN(number) ? number : text.toLowerCase();
  }

  function compare(a, b) {
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    return String(a).localeCompare(String(b));
  }

  /**
   * `table`: a table with one `<tbody>`. `options.collapseAfter`: rows shown before "show all"
   * (default: the table's `data-collapse-after`, else 12).
   */
  function enhanceTable(table, options) {
    const body = table.tBodies[0];
    if (!body) return;
    const rows = Array.from(body.rows);
    const collapseAfter = (options && options.collapseAfter) || Number(table.dataset.collapseAfter) || 12;
    let expanded = rows.length <= collapseAfter;
    let filterText = '';
    let sortColumn = -1;
    let sortDescending = false;

    const count = element('span', { class: 'table-count' });
    const toggle = element('button', {
      type: 'button',
      class: 'table-toggle',
      onclick: () => {
        expanded = !expanded;
        apply();
      },
    });
    const filter = element('input', {
      type: 'search',
      class: 'table-filter',
      placeholder: 'Filter rows…',
      'aria-label': 'Filter the rows of this table',
      oninput: (event) => {
        filterText = event.target.value.trim().toLowerCase();
        apply();
      },
    });
    const tools = element('div', { class: 'table-tools' }, [filter, count]);
    table.parentNode.insertBefore(tools, table);
    table.parentNode.insertBefore(element('div', { class: 'table-more' }, [toggle]), table.nextSibling);

    const headers = table.tHead ? Array.from(table.tHead.rows[0].cells) : [];
    headers.forEach((header, column) => {
      header.tabIndex = 0;
      header.classList.add('sortable');
      header.title = 'Sort by this column';
      const sort = () => {
        sortDescending = sortColumn === column ? !sortDescending : false;
        sortColumn = column;
        headers.forEach((other) => other.removeAttribute('aria-sort'));
        header.setAttribute('aria-sort', sortDescending ? 'descending' : 'ascending');
        const keyed = rows.map((row) => ({ row: row, key: sortKey(row.cells[column] || row.cells[0]) }));
        keyed.sort((a, b) => (sortDescending ? -1 : 1) * compare(a.key, b.key));
        rows.length = 0;
        for (const entry of keyed) rows.push(entry.row);
        body.append(...rows);
        apply();
      };
      header.addEventListener('click', sort);
      header.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          sort();
        }
      });
    });

    function apply() {
      let matching = 0;
      for (const row of rows) {
        const matches = filterText === '' || row.textContent.toLowerCase().includes(filterText);
        if (matches) matching += 1;
        row.hidden = !matches || (!expanded && matching > collapseAfter);
      }
      count.textContent = filterText ? matching + ' of ' + rows.length + ' rows match' : rows.length + ' rows';
      toggle.hidden = matching <= collapseAfter;
      toggle.textContent = expanded ? 'Show the first ' + collapseAfter : 'Show all ' + matching + ' rows';
    }
    apply();
  }

  /** Enhances every `table[data-table]` under `root`. */
  function enhanceTables(root) {
    for (const table of (root || document).querySelectorAll('table[data-table]')) enhanceTable(table);
  }

  Marketsim.enhanceTable = enhanceTable;
  Marketsim.enhanceTables = enhanceTables;
})(typeof window !== 'undefined' ? window : globalThis);
