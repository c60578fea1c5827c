// The query page: /p/ID/query?q=QUERY asks the server to run the query
// language of `jitprof query` (docs/query.md) on the bundle and lists what it
// answers: {query, collection, columns, total, rows}. A bad query answers 400
// {error, column}: the message is shown with a caret under that column.
import { h, fmtInt, pct, basename, fileLine, HttpError, setChildren } from "./util.js";
import { traceUrl } from "./trace.js";

export const EXAMPLES = [
  "hot",
  "traces.contains('call_assembler')",
  "methods.callsites() > 5",
  "guards.failures() > 1000",
  "traces.removed('new_with_vtable') > 0",
  "ops.name('new_with_vtable').in(hot)",
];

const NOUNS = { traces: "trace", guards: "guard", methods: "method", ops: "op", samples: "sample" };
const NUMERIC = new Set(["id", "line", "samples", "share", "entries", "bridges", "trace", "op", "failures", "bridge", "self", "total", "callsites", "time_ms", "tid"]);
const LABELS = { time_ms: "time (ms)", share: "share" };
const CHUNK = 500; // rows rendered at a time: ops queries can answer tens of thousands

export function queryUrl(id, text) {
  return `/p/${id}/query${text ? `?q=${encodeURIComponent(text)}` : ""}`;
}

// A form that runs a query of upload `id`: `onQuery` gets the text, trimmed.
export function queryForm(id, { className, inputId, inputClass, value = "", placeholder, label, button, buttonClass, onQuery }) {
  const input = h("input", {
    type: "text",
    id: inputId,
    class: inputClass,
    name: "q",
    value,
    placeholder,
    "aria-label": label,
    spellcheck: "false",
    autocomplete: "off",
    autocapitalize: "off",
    maxlength: 4096,
  });
  const form = h(
    "form",
    {
      class: className,
      role: "search",
      action: `/p/${id}/query`,
      onsubmit: (event) => {
        event.preventDefault();
        onQuery(input.value.trim());
      },
    },
    input,
    h("button", { type: "submit", class: buttonClass }, button),
  );
  return { form, input };
}

export async function queryView(ctx) {
  const { id } = ctx.params;
  const text = ctx.query.get("q") || "";
  ctx.setTitle(text ? `query ${text}` : "query", [{ label: `profile ${id.slice(0, 8)}`, href: `/p/${id}` }, { label: "query" }]);

  const { form, input } = queryForm(id, {
    className: "query-form",
    inputId: "query-input",
    inputClass: "query-text",
    value: text,
    placeholder: "traces.contains('call_assembler').hasbridge('*my_func*')",
    label: "Query",
    button: "Run",
    buttonClass: "run",
    onQuery: (q) => {
      ctx.setTitle(q ? `query ${q}` : "query", [{ label: `profile ${id.slice(0, 8)}`, href: `/p/${id}` }, { label: "query" }]);
      // A new query is a new history entry (Back returns to the previous one); running it again is not.
      if (q !== (new URL(window.location.href).searchParams.get("q") || "")) ctx.setQuery({ q }, { push: true });
      load(q);
    },
  });
  const output = h("div", { class: "query-output" });
  let runs = 0;

  const load = async (q) => {
    const mine = ++runs;
    if (!q) {
      setChildren(output, help());
      return;
    }
    output.classList.add("running");
    if (!output.firstChild) output.append(h("p", { class: "loading" }, "Running the query…"));
    try {
      const data = await ctx.api(`/api/p/${id}/query?q=${encodeURIComponent(q)}`);
      if (mine !== runs) return;
      setChildren(output, results(ctx, id, data));
    } catch (error) {
      if (mine !== runs || !ctx.isCurrent()) return;
      if (error instanceof HttpError && error.status === 400 && error.body && typeof error.body.column === "number") {
        setChildren(output, queryError(q, error.body));
        // The cursor goes where the error is, unless the query was edited meanwhile.
        if (input.value.trim() === q && error.body.column > 0) {
          const at = input.value.indexOf(q) + charIndex(q, error.body.column);
          input.setSelectionRange(at, at);
        }
      } else ctx.showError(output, error);
    } finally {
      if (mine === runs) output.classList.remove("running");
    }
  };

  const examples = h(
    "p",
    { class: "query-examples" },
    h("span", { class: "muted" }, "Examples: "),
    EXAMPLES.map((example) => h("a", { href: queryUrl(id, example), class: "query-example", "data-query": example }, example)),
  );

  ctx.show(h("div", { class: "query-page" }, h("div", { class: "page-head" }, h("h1", {}, "Query")), form, examples, output));
  if (!text) input.focus();
  await load(text);
}

function help() {
  return h(
    "div",
    { class: "query-help muted" },
    h("p", {}, "A query starts from a collection — ", ["traces", "loops", "bridges", "guards", "methods", "ops", "samples"].flatMap((c, i) => [i ? ", " : "", h("code", {}, c)]), " — and narrows it with steps joined by dots: filters such as ", h("code", {}, "contains('call_assembler')"), " or numbers compared with a value such as ", h("code", {}, "samples() > 1%"), "."),
    h("p", {}, h("code", {}, "and"), ", ", h("code", {}, "or"), ", ", h("code", {}, "not"), " and parentheses combine queries over one collection; ", h("code", {}, ".sort(NUMBER[, asc|desc])"), " and ", h("code", {}, ".limit(N)"), " may end a query. ", h("code", {}, "hot"), " stands for ", h("code", {}, "traces.samples() >= 1%"), ". The same language as ", h("code", {}, "jitprof query FILE 'QUERY'"), " (docs/query.md)."),
  );
}

// Where a result row leads: a trace, a guard or op in it, or the profile's flame graph searched for a method.
function rowHref(id, collection, row) {
  const has = (key) => row[key] !== null && row[key] !== undefined;
  switch (collection) {
    case "traces":
      return traceUrl(id, row.id);
    case "guards":
      return traceUrl(id, row.trace, "asm", row.op);
    case "ops":
      return traceUrl(id, row.trace, row.stage, row.op);
    case "samples":
      return has("trace") ? traceUrl(id, row.trace, "asm", has("op") ? row.op : null) : null;
    case "methods":
      return `/p/${id}?search=${encodeURIComponent(flameLabel(row))}`;
    default:
      return null;
  }
}

// The flame graph labels Python frames "name (file.py)".
function flameLabel(method) {
  return method.file ? `${method.name} (${basename(method.file)})` : method.name;
}

function cell(id, collection, column, row) {
  const value = row[column];
  const numeric = NUMERIC.has(column);
  if (value === null || value === undefined || value === "") return h("td", { class: numeric ? "num" : "" }, h("span", { class: "muted" }, "–"));
  const link = (href, text, attrs = {}) => h("a", { href, ...attrs }, text);
  let content;
  if (column === "share") content = pct(value, 1);
  else if (column === "time_ms") content = value.toFixed(3);
  else if (column === "id" && collection === "traces") content = link(traceUrl(id, value), String(value), { class: "trace-link", "data-trace-id": value });
  else if (column === "trace") content = link(traceUrl(id, value), String(value), { class: "trace-link", "data-trace-id": value });
  else if (column === "bridge") content = link(traceUrl(id, value), `→ bridge ${value}`, { class: "bridge-link", "data-trace-id": value });
  else if (column === "op" && row.trace !== null && row.trace !== undefined) content = link(traceUrl(id, row.trace, collection === "ops" ? row.stage : "asm", value), String(value), { class: "op-link" });
  else if (column === "name" && collection === "methods") content = link(rowHref(id, collection, row), value, { class: "method-link", title: "Search the flame graph for it" });
  else if (column === "type") content = h("span", { class: `badge ${value}` }, value);
  else if (column === "file") content = fileLine(value, null);
  else if (column === "text" || column === "name" || column === "stage") content = h("code", {}, value);
  else if (numeric && typeof value === "number") content = fmtInt(value);
  else content = String(value);
  return h("td", { class: numeric ? "num" : column === "function" || column === "leaf" || column === "text" ? `name ${column}` : column }, content);
}

function results(ctx, id, data) {
  const { collection, columns, rows, total } = data;
  const noun = NOUNS[collection] || "row";
  const body = h("tbody", {});
  const summary = h("p", { class: "query-summary" });
  const more = h("p", { class: "query-more" });
  let shown = 0;

  const makeRow = (row, index) => {
    const href = rowHref(id, collection, row);
    const traceId = collection === "traces" ? row.id : row.trace;
    return h(
      "tr",
      {
        "data-row": index,
        "data-trace-id": collection !== "methods" && traceId !== null && traceId !== undefined ? traceId : null,
        "data-method": collection === "methods" ? row.name : null,
        class: href ? "clickable" : null,
        // The whole row opens its page; links inside keep their own targets, a text selection stays.
        onclick: href
          ? (event) => {
              if (event.target.closest("a, button") || String(window.getSelection() || "")) return;
              ctx.navigate(href);
            }
          : null,
      },
      columns.map((column) => cell(id, collection, column, row)),
    );
  };
  const showMore = (count) => {
    const next = Math.min(rows.length, shown + count);
    const fragment = document.createDocumentFragment();
    for (let i = shown; i < next; i++) fragment.append(makeRow(rows[i], i));
    body.append(fragment);
    shown = next;
    const matches = `${fmtInt(total)} ${noun}${total === 1 ? " matches" : "s match"}`;
    setChildren(summary, h("strong", {}, matches), shown < total ? h("span", { class: "muted" }, ` · ${fmtInt(shown)} shown`) : null);
    const left = rows.length - shown;
    setChildren(
      more,
      left > 0
        ? [
            h("button", { type: "button", onclick: () => showMore(CHUNK) }, `Show ${fmtInt(Math.min(CHUNK, left))} more`),
            " ",
            left > CHUNK ? h("button", { type: "button", onclick: () => showMore(left) }, `Show all ${fmtInt(rows.length)}`) : null,
          ]
        : rows.length < total
          ? h("span", { class: "muted" }, `The query's `, h("code", {}, ".limit(N)"), ` keeps ${fmtInt(rows.length)} of them.`)
          : null,
    );
  };
  showMore(CHUNK);

  return h(
    "div",
    { id: "query-results", "data-collection": collection, "data-total": total, "data-rows": rows.length },
    summary,
    rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: `query-table ${collection}` },
            h("thead", {}, h("tr", {}, columns.map((column) => h("th", { class: NUMERIC.has(column) ? "num" : "" }, LABELS[column] || column)))),
            body,
          ),
        )
      : h("p", { class: "notice" }, `No ${noun} matches this query.`),
    more,
  );
}

// Columns count bytes of the UTF-8 query (1-based): the index of that byte's character.
function charIndex(text, column) {
  let bytes = 0;
  let index = 0;
  for (const char of text) {
    if (bytes >= column - 1) break;
    const code = char.codePointAt(0);
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    index += char.length;
  }
  return index;
}

// Like the CLI: the message, the query, and a line of spaces with ^ under the column.
function queryError(text, body) {
  const column = Math.max(0, Math.trunc(Number(body.column) || 0));
  let shown = text;
  let caret = null;
  if (column > 0) {
    const at = charIndex(text, column);
    // A query with line breaks (from a URL): the line holding the column.
    const start = text.lastIndexOf("\n", at - 1) + 1;
    const end = text.indexOf("\n", at);
    shown = text.slice(start, end < 0 ? undefined : end);
    caret = `${Array.from(text.slice(start, at), (c) => (c === "\t" ? "\t" : " ")).join("")}^`;
  }
  return h(
    "div",
    { id: "query-error", class: "query-error", role: "alert", "data-column": column },
    h("p", { class: "message" }, body.error || "The query is not valid."),
    h("pre", { class: "query-caret" }, h("span", { class: "query-line" }, shown), caret !== null ? ["\n", h("span", { class: "caret-line" }, caret)] : null),
  );
}
