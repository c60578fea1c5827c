// jitprof web viewer: client-side routing (History API) and the pages.
//   /                        uploads (?q= search, ?offset= page)
//   /p/ID                    profile (?search= &zoom= of the flame graph)
//   /p/ID/traces             all traces (?q= &sort= &offset=)
//   /p/ID/trace/TID          one trace (?stage=noopt|opt|asm, #op-N)
//   /p/ID/query              the query language of `jitprof query` (?q=)
//   /diff/OLD/NEW            two uploads compared: differential flame graph, changed functions and traces
//   /#/RID                   vmprof-python's link: redirects to the run's /p/ID
//   /#/RID/traces            its jitlog link: redirects to the run's /p/ID/traces
import {
  api,
  h,
  HttpError,
  TOKEN_KEY,
  fmtInt,
  fmtDuration,
  fmtBytes,
  pct,
  relativeTime,
  absoluteTime,
  shortPypyVersion,
  basename,
  hex,
  debounce,
  fileLine,
  setChildren,
  table,
} from "./util.js";
import { FlameGraph, CATEGORIES, categoryColor } from "./flame.js";
import { traceView, traceUrl } from "./trace.js";
import { queryView, queryUrl, queryForm } from "./query.js";
import { diffView, diffUrl, compareForm } from "./diff.js";

const main = document.getElementById("app");
const crumbs = document.getElementById("crumbs");
let generation = 0; // bumped by each navigation: late answers of an older page are dropped
let controller = null; // aborts the previous page's requests
let routed = ""; // path and query of the page on screen
let cleanup = []; // run when the page is left (observers of the flame graph)

const ROUTES = [
  [/^\/(?:uploads\/?)?$/, uploadsView],
  [/^\/p\/([0-9a-fA-F]+)\/?$/, profileView, ["id"]],
  [/^\/p\/([0-9a-fA-F]+)\/traces\/?$/, tracesView, ["id"]],
  [/^\/p\/([0-9a-fA-F]+)\/trace\/(\d+)\/?$/, traceView, ["id", "tid"]],
  [/^\/p\/([0-9a-fA-F]+)\/query\/?$/, queryView, ["id"]],
  [/^\/diff\/([0-9a-fA-F]+)\/([0-9a-fA-F]+)\/?$/, diffView, ["old", "new"]],
];

function navigate(url, { replace = false } = {}) {
  history[replace ? "replaceState" : "pushState"](null, "", url);
  route();
  if (!replace && !window.location.hash) window.scrollTo(0, 0);
}

// Changes the query of the page on screen without rendering it again
// (search boxes, flame graph zoom): the URL stays shareable.
function updateQuery(changes, { push = false } = {}) {
  const url = new URL(window.location.href);
  for (const [key, value] of Object.entries(changes)) {
    if (value === "" || value === null || value === undefined || value === 0) url.searchParams.delete(key);
    else url.searchParams.set(key, value);
  }
  const next = url.pathname + url.search + url.hash;
  // Paging pushes (Back returns to the previous page); typing replaces.
  history[push ? "pushState" : "replaceState"](null, "", next);
  routed = url.pathname + url.search;
}

async function route() {
  const current = ++generation;
  if (controller) controller.abort();
  controller = new AbortController();
  const signal = controller.signal;
  for (const fn of cleanup) fn();
  cleanup = [];
  const url = new URL(window.location.href);
  routed = url.pathname + url.search;
  renderAuthBadge();

  const runtime = /^#\/([\w.-]+)(\/traces)?\/?$/.exec(url.hash);
  if (runtime) return runtimeRedirect(runtime[1], runtime[2] || "", current);

  let view = notFoundView;
  let params = {};
  for (const [pattern, fn, names] of ROUTES) {
    const match = pattern.exec(url.pathname);
    if (match) {
      view = fn;
      (names || []).forEach((name, i) => (params[name] = match[i + 1]));
      break;
    }
  }
  const ctx = {
    params,
    query: url.searchParams,
    isCurrent: () => current === generation,
    api: async (path, options = {}) => {
      const body = await api(path, { ...options, signal });
      if (current !== generation) throw new StaleError();
      return body;
    },
    show: (element) => {
      if (current !== generation) return;
      main.replaceChildren(element);
      document.body.classList.remove("busy");
    },
    setTitle: (title, trail) => {
      if (current !== generation) return;
      document.title = title ? `${title} · jitprof` : "jitprof";
      crumbs.replaceChildren(...(trail || []).flatMap((c) => [h("span", { class: "sep" }, "›"), c.href ? h("a", { href: c.href }, c.label) : h("span", {}, c.label)]));
    },
    onLeave: (fn) => cleanup.push(fn),
    // For pages in other modules.
    navigate: (url) => current === generation && navigate(url),
    setQuery: (changes, options) => current === generation && updateQuery(changes, options),
    showError: (slot, error) => current === generation && showLoadError(slot, error),
  };
  document.body.classList.add("busy");
  try {
    await view(ctx);
  } catch (error) {
    if (error instanceof StaleError || error.name === "AbortError" || current !== generation) return;
    ctx.show(errorView(error));
  } finally {
    if (current === generation) document.body.classList.remove("busy");
  }
}

class StaleError extends Error {}

// A list reloaded in place (search, paging) shows its error where the list was.
function showLoadError(slot, error) {
  if (error instanceof StaleError || error.name === "AbortError") return;
  slot.replaceChildren(errorView(error));
}

function errorView(error) {
  if (error instanceof HttpError && error.status === 401) return tokenForm(Boolean(sessionStorage.getItem(TOKEN_KEY)));
  const title = error instanceof HttpError && error.status === 404 ? "Not found" : "Something went wrong";
  return h("div", { class: "error-box", role: "alert" }, h("h1", {}, title), h("p", {}, error.message), h("p", {}, h("a", { href: "/" }, "← all uploads")));
}

// Servers run with --private want a token for reading: ask once per tab, keep
// it in sessionStorage (gone with the tab, never shared with other tabs or
// written to disk as localStorage would be).
function tokenForm(refused) {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", placeholder: "token", required: true, size: 40 });
  return h(
    "form",
    {
      class: "token-form",
      onsubmit: (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        route();
      },
    },
    h("h1", {}, "This jitprof server is private"),
    h("p", {}, refused ? "The saved token was refused: enter another one." : "Reading profiles needs an access token (one line of the server's token file)."),
    h("p", {}, input, " ", h("button", { type: "submit" }, "Save token")),
    h("p", { class: "muted" }, "The token is kept for this tab only (session storage) and sent with every request."),
  );
}

function renderAuthBadge() {
  const slot = document.getElementById("auth");
  if (!sessionStorage.getItem(TOKEN_KEY)) return slot.replaceChildren();
  slot.replaceChildren(
    h("span", { class: "muted" }, "token saved "),
    h(
      "button",
      {
        type: "button",
        class: "link-button",
        onclick: () => {
          sessionStorage.removeItem(TOKEN_KEY);
          route();
        },
      },
      "forget",
    ),
  );
}

// `page`: "" for the profile, "/traces" for the traces of the run's jitlog.
async function runtimeRedirect(runtimeId, page, current) {
  main.replaceChildren(h("p", { class: "loading" }, `Looking up vmprof run ${runtimeId}…`));
  try {
    const answer = await api(`/api/runtime/${encodeURIComponent(runtimeId)}`);
    if (current !== generation) return;
    if (answer.bundle) return navigate(`/p/${answer.bundle}${page}`, { replace: true });
    main.replaceChildren(
      h("div", { class: "error-box" }, h("h1", {}, "Profile not ready"), h("p", {}, `The vmprof run ${runtimeId} has not been completed: its profile has no bundle yet.`), h("p", {}, h("a", { href: "/" }, "← all uploads"))),
    );
  } catch (error) {
    if (current === generation) main.replaceChildren(errorView(error));
  }
}

function notFoundView(ctx) {
  ctx.setTitle("Not found", []);
  ctx.show(h("div", { class: "error-box" }, h("h1", {}, "No such page"), h("p", {}, h("a", { href: "/" }, "← all uploads"))));
}

// Prev/next for a paged list; `go(offset)` loads the page.
function pager(total, offset, limit, go) {
  const last = Math.min(total, offset + limit);
  return h(
    "div",
    { class: "pager" },
    h("span", { class: "muted" }, total ? `${fmtInt(offset + 1)}–${fmtInt(last)} of ${fmtInt(total)}` : "none"),
    h("button", { type: "button", disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, "‹ Prev"),
    h("button", { type: "button", disabled: last >= total, onclick: () => go(offset + limit) }, "Next ›"),
  );
}

// ---------------------------------------------------------------- uploads

// A search field that reports its trimmed text once typing pauses.
function searchInput({ className = "search", placeholder, label = placeholder, value = "", onSearch }) {
  const input = h("input", {
    type: "search",
    class: className,
    placeholder,
    "aria-label": label,
    value,
    oninput: debounce(() => onSearch(input.value.trim()), 250),
  });
  return input;
}

// A page listing rows from a paged, searchable API. The search text and the
// offset live in the URL; an answer to a search that was overtaken is dropped.
// `fetchPage(state)` asks for a page; `render(data, state)` builds the rows.
function pagedList(ctx, { limit, fetchPage, render }) {
  const state = { query: ctx.query.get("q") || "", offset: Number(ctx.query.get("offset")) || 0 };
  const results = h("div", { class: "results" });
  const report = (error) => showLoadError(results, error);
  let loads = 0;
  const load = async () => {
    const mine = ++loads;
    const data = await fetchPage(state);
    if (mine !== loads) return;
    const turnPage = (next) => {
      state.offset = next;
      updateQuery({ offset: next }, { push: true });
      load().catch(report);
      window.scrollTo(0, 0);
    };
    setChildren(results, render(data, state), data.total > limit ? pager(data.total, state.offset, limit, turnPage) : null);
  };
  // From the first page again, with the URL's other parameters `changes`.
  const restart = (changes) => {
    state.offset = 0;
    updateQuery({ ...changes, offset: 0 });
    load().catch(report);
  };
  const search = (options) =>
    searchInput({
      ...options,
      value: state.query,
      onSearch: (text) => {
        state.query = text;
        restart({ q: text });
      },
    });
  return { results, load, restart, search };
}

async function uploadsView(ctx) {
  const limit = 50;
  ctx.setTitle("", [{ label: "uploads" }]);
  // Two uploads ticked (on any page of the list) are compared, the older as the old run.
  const picked = new Map(); // id → created
  const compareLink = h("a", { class: "button compare-selected", hidden: true }, "Compare the two selected");
  const pick = (upload, on) => {
    if (on) picked.set(upload.id, upload.created);
    else picked.delete(upload.id);
    const runs = [...picked.entries()].sort((a, b) => a[1] - b[1]);
    compareLink.hidden = runs.length !== 2;
    if (runs.length === 2) compareLink.href = diffUrl(runs[0][0], runs[1][0]);
  };
  const list = pagedList(ctx, {
    limit,
    fetchPage: ({ query, offset }) => ctx.api(`/api/uploads?q=${encodeURIComponent(query)}&offset=${offset}&limit=${limit}`),
    render: (data, { query }) => {
      const rows = data.uploads.map((upload) =>
        h(
          "tr",
          { "data-id": upload.id },
          h(
            "td",
            {},
            h("input", {
              type: "checkbox",
              class: "compare-pick",
              "aria-label": "Select to compare",
              checked: picked.has(upload.id),
              onchange: (event) => pick(upload, event.target.checked),
            }),
          ),
          h(
            "td",
            { class: "command" },
            h("a", { href: `/p/${upload.id}`, class: "upload-link", title: upload.id }, upload.command || upload.id.slice(0, 12)),
            upload.crashed ? h("span", { class: "badge crash" }, "crashed") : null,
            upload.source && upload.source !== "upload" ? h("span", { class: "badge" }, upload.source) : null,
          ),
          h("td", { title: upload.pypy_version }, shortPypyVersion(upload.pypy_version)),
          h("td", { class: "num" }, fmtInt(upload.samples)),
          h("td", { class: "num" }, fmtInt(upload.traces)),
          h("td", { class: "num" }, fmtDuration(upload.duration)),
          h("td", { class: "num", title: fmtBytes(upload.size) }, fmtBytes(upload.size)),
          h("td", { title: absoluteTime(upload.created) }, relativeTime(upload.created)),
        ),
      );
      return data.total === 0
        ? h("p", { class: "notice" }, query ? `No upload matches “${query}”.` : "No uploads yet. Send one with: jitprof upload FILE.jprof --server URL")
        : table(
            "uploads",
            [["Compare"], ["Command"], ["PyPy"], ["Samples", "num"], ["Traces", "num"], ["Duration", "num"], ["Size", "num"], ["Uploaded"]],
            rows,
          );
    },
  });
  const search = list.search({ placeholder: "Search command, id or PyPy version", label: "Search uploads" });
  const { results, load } = list;
  await load();
  ctx.show(h("div", { class: "uploads-page" }, h("div", { class: "page-head" }, h("h1", {}, "Uploads"), compareLink, search), results));
}

// ---------------------------------------------------------------- profile

async function profileView(ctx) {
  const { id } = ctx.params;
  // The flame tree can be large: ask for it at once, next to the summary.
  const flamePromise = ctx.api(`/api/p/${id}/flame`);
  flamePromise.catch(() => {}); // reported where it is awaited
  const summary = await ctx.api(`/api/p/${id}`);
  const command = commandText(summary.manifest);
  ctx.setTitle(command || id.slice(0, 12), [{ label: `profile ${id.slice(0, 8)}` }]);

  const crash = crashRecord(summary.crash);
  const flameSlot = h("div", { class: "flame-slot" }, h("p", { class: "loading" }, "Loading the flame graph…"));
  const page = h(
    "div",
    { class: "profile-page" },
    profileHeader(summary, command),
    crash ? crashSummary(crash) : null,
    summary.attach ? attachBox(summary.attach) : null,
    categoryBar(summary),
    runtimeCard(id, summary.runtime, summary.samples || 0),
    h("section", { class: "card" }, h("h2", {}, "Flame graph ", h("span", { class: "muted small" }, "root at the top, callees below; click a frame to zoom, a JIT trace frame to open it")), flameSlot),
    summary.has_samples || !summary.trace_count ? tracesCard(id, summary) : tracesByEntriesCard(ctx, id, summary),
    h("div", { class: "columns" }, functionsCard(ctx, id, summary, (name) => {
        if (!flame) return;
        flame.setSearch(name);
        flame.element.scrollIntoView({ block: "nearest", behavior: "smooth" });
      }), h("div", {}, threadsCard(summary), nativeCard(summary))),
    summary.anonymous_jit_code && summary.anonymous_jit_code.length ? anonymousCard(summary) : null,
    crash ? crashCard(id, crash) : null,
  );
  ctx.show(page);

  let flame = null;
  let tree;
  try {
    tree = await flamePromise;
  } catch (error) {
    if (error instanceof StaleError || error.name === "AbortError") return;
    flameSlot.replaceChildren(h("p", { class: "notice" }, `The flame graph could not be loaded: ${error.message}`));
    return;
  }
  if (!ctx.isCurrent()) return;
  if (!tree.samples) {
    flameSlot.replaceChildren(h("p", { class: "notice" }, "This bundle has no samples: only its JIT traces can be shown."));
    return;
  }
  flame = new FlameGraph(tree, {
    zoom: ctx.query.get("zoom") || "",
    search: ctx.query.get("search") || "",
    traceHref: (tid) => traceUrl(id, tid),
    openTrace: (url, newTab) => (newTab ? window.open(url, "_blank") : navigate(url)),
    onChange: debounce(({ zoom, search }) => ctx.isCurrent() && updateQuery({ zoom, search }), 200),
  });
  ctx.onLeave(() => flame.destroy());
  flameSlot.replaceChildren(flame.element);
}

// <dl> of [term, value] pairs; each pair in a <div> so that a wrap never splits it.
function factList(facts) {
  return h("dl", { class: "facts" }, facts.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

function commandText(manifest) {
  if (!manifest || !Array.isArray(manifest.command)) return "";
  return manifest.command.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`)).join(" ");
}

// Where the Python frames come from: read at each sample (exact) or joined with vmprof.
function pythonStacksText(stacks, samples) {
  if (!stacks || !samples) return "–";
  const parts = [];
  if (stacks.exact) parts.push(`exact for ${pct(stacks.exact, samples)} (PyPy's shadow stack)`);
  const joined = (stacks.from_jitlog || 0) + (stacks.from_vmprof_by_time || 0);
  if (joined) parts.push(`joined with vmprof for ${pct(joined, samples)}`);
  if (stacks.unnamed_code_objects) parts.push(`${fmtInt(stacks.unnamed_code_objects)} unnamed code objects`);
  return parts.length ? parts.join("; ") : "none";
}

function profileHeader(summary, command) {
  const manifest = summary.manifest || {};
  const samples = summary.samples || 0;
  const exit = manifest.exit;
  let exitText = null;
  if (exit) exitText = exit.signal_name || exit.signal ? `killed by ${exit.signal_name || `signal ${exit.signal}`}` : `exit status ${exit.code}`;
  const facts = [
    // PyPy's own files carry no version: the interpreter they name stands for it.
    ["PyPy", h("span", { title: manifest.pypy_version || manifest.vm || "" }, shortPypyVersion(manifest.pypy_version || manifest.vm))],
    ["duration", fmtDuration(manifest.duration_s)],
    ["samples", `${fmtInt(samples)}${samples && summary.seconds_per_sample ? ` (every ${fmtDuration(summary.seconds_per_sample)}, ${summary.sample_source})` : ""}`],
    ["Python stacks", h("span", { class: "python-stacks" }, pythonStacksText(summary.python_stacks, samples))],
    ["in JIT code", h("span", { class: "jit-share" }, samples ? `${pct(summary.jit.samples, samples)} (${pct(summary.jit.in_traces, samples)} in known traces)` : "–")],
    ["traces", fmtInt(summary.trace_count)],
    ["threads", fmtInt((summary.threads || []).length)],
    manifest.start_time ? ["started", absoluteTime(manifest.start_time)] : null,
    exitText ? ["exit", h("span", { class: exit.code === 0 && !exit.signal ? "" : "bad" }, exitText)] : null,
  ].filter(Boolean);
  return h(
    "section",
    { class: "profile-header" },
    h("h1", { class: "command", title: command }, command || summary.id),
    factList(facts),
    h(
      "div",
      { class: "actions" },
      h("a", { href: `/p/${summary.id}/traces`, class: "button" }, `All ${fmtInt(summary.trace_count)} traces`),
      " ",
      h("a", { href: queryUrl(summary.id, ""), class: "button query-link" }, "Query"),
      " ",
      downloadLink(summary.id),
      queryBox(summary.id),
      compareForm(summary.id, (url) => navigate(url)),
    ),
  );
}

// Runs a query of `jitprof query`'s language on the query page.
function queryBox(id) {
  return queryForm(id, {
    className: "query-box",
    inputClass: "query-text small",
    placeholder: "traces.contains('call_assembler')",
    label: "Query this profile",
    button: "Run query",
    onQuery: (text) => navigate(queryUrl(id, text)),
  }).form;
}

// A plain link, unless a token is needed: then the bundle is fetched with it.
function downloadLink(id) {
  const href = `/api/p/${id}/bundle`;
  return h(
    "a",
    {
      href,
      class: "button",
      download: `${id.slice(0, 12)}.jprof`,
      onclick: async (event) => {
        const token = sessionStorage.getItem(TOKEN_KEY);
        if (!token) return;
        event.preventDefault();
        const response = await fetch(href, { headers: { Authorization: `Bearer ${token}` } });
        const url = URL.createObjectURL(await response.blob());
        const a = h("a", { href: url, download: `${id.slice(0, 12)}.jprof` });
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      },
    },
    "Download bundle",
  );
}

// The crash record with each field of the type the page expects: a bundle is
// its uploader's data, so a field of another type is left out, never trusted.
function crashRecord(raw) {
  const object = (v) => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : null);
  const text = (v) => (typeof v === "string" ? v : undefined);
  const number = (v) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const objects = (v) => (Array.isArray(v) ? v.filter(object) : []);
  const source = (s) => ({ function: text(s.function) || "?", file: text(s.file), line: number(s.line) });
  if (!object(raw)) return null;
  const trace = object(raw.trace);
  return {
    signal: number(raw.signal),
    signal_name: text(raw.signal_name),
    tid: number(raw.tid),
    // "worker-1 (tid 1234)": summaries stored before threads had names have none.
    thread: text(object(raw.thread)?.label),
    fault_address: number(raw.fault_address),
    fault_address_hex: text(raw.fault_address_hex),
    registers_hex: Object.fromEntries(Object.entries(object(raw.registers_hex) || {}).filter(([, v]) => typeof v === "string")),
    trace: trace && number(trace.id) !== undefined
      ? { id: trace.id, type: text(trace.type) || "trace", op_index: number(trace.op_index), op: text(trace.op), source: object(trace.source) ? source(trace.source) : undefined }
      : null,
    frames: objects(raw.frames).map((frame) => ({
      name: text(frame.name),
      path: text(frame.path),
      offset: number(frame.offset),
      address: number(frame.address),
      address_hex: text(frame.address_hex),
      jit: frame.jit === true,
      source: objects(frame.source).map(source),
    })),
  };
}

function crashSummary(crash) {
  const top = crash.frames[0];
  return h(
    "div",
    { class: "crash-banner", role: "alert" },
    h("strong", {}, `Crashed: ${crash.signal_name || `signal ${crash.signal ?? "?"}`}`),
    ` in thread ${crash.thread ?? crash.tid ?? "?"}`,
    crash.fault_address !== undefined ? ` at address ${hex(crash.fault_address)}` : "",
    top ? [" — in ", h("code", {}, frameName(top) || `${basename(top.path)}+${hex(top.offset)}`)] : "",
    " · ",
    h("a", { href: "#crash" }, "crash record"),
  );
}

function attachBox(attach) {
  return h(
    "div",
    { class: "attach-banner" },
    h("strong", {}, `Attached to process ${attach.pid}`),
    attach.seconds ? ` for ${fmtDuration(attach.seconds)}` : "",
    attach.jit_names ? ` · JIT code named by: ${attach.jit_names}` : "",
    attach.explanation ? h("div", { class: "muted" }, attach.explanation) : null,
  );
}

// "PyPy runtime": GC and JIT warm-up, timed by PyPy's own log sections or told by libpypy's function names.
function runtimeCard(id, runtime, samples) {
  if (!runtime || !runtime.phases_source) return null;
  const c = runtime.categories || {};
  const share = (...names) => pct(names.reduce((sum, name) => sum + (c[name] || 0), 0), samples);
  const ms = (value) => `${value.toFixed(value < 10 ? 2 : 0)} ms`;
  const durations = (d) =>
    !d || !d.count ? "none" : `${fmtInt(d.count)} (p50 ${ms(d.p50_ms)}, p90 ${ms(d.p90_ms)}, p99 ${ms(d.p99_ms)}, max ${ms(d.max_ms)}; ${ms(d.total_ms)} in all)`;
  const rows = [];
  const row = (label, value, detail) => rows.push(h("tr", {}, h("th", {}, label), h("td", { class: "num" }, value), h("td", {}, detail || "")));
  if (runtime.timed) {
    row("GC", share("gc-minor", "gc-major"), `${ms(runtime.gc.time_ms)} in collections`);
    row("· minor collections", share("gc-minor"), durations(runtime.gc.minor));
    row("· major collections", share("gc-major"), `${fmtInt(runtime.gc.major_collections)} done, in steps: ${durations(runtime.gc.major_steps)}`);
    row("JIT warm-up", share("jit-tracing", "jit-optimizer", "jit-backend"), `${ms(runtime.jit.warmup_ms)} compiling`);
    row("· tracing", share("jit-tracing"), durations(runtime.jit.tracing));
    row("· optimizer", share("jit-optimizer"), durations(runtime.jit.optimizer));
    row("· backend", share("jit-backend"), durations(runtime.jit.backend));
    const traces = runtime.jit.traces || {};
    if (traces.tied && traces.traces.length)
      row("· longest compilations", "", h("span", {}, traces.traces.map((t, i) => h("span", {}, i ? "; " : "", h("a", { href: `/p/${id}/trace/${t.id}`, "data-trace-id": String(t.id) }, `${t.type} ${t.id}`), ` ${ms(t.ms)}`))));
    row("Guard failures / blackhole", share("guard-failure"));
  } else {
    row("GC", share("gc"));
    row("JIT optimizer and backend", share("jit-optimizer", "jit-backend"));
    row("JIT metainterp (tracing or guard failures)", share("jit-metainterp"));
  }
  row("Interpreter", share("interpreter"));
  row("Other runtime", share("runtime"));
  const source = runtime.timed ? "phases timed by PyPy's own log sections" : "phases told by libpypy's function names only";
  return h(
    "section",
    { class: "card runtime" },
    h("h2", {}, "PyPy runtime ", h("span", { class: "muted small" }, source)),
    runtime.note ? h("p", { class: "muted" }, runtime.note) : null,
    h("table", { class: "runtime-table" }, h("tbody", {}, rows)),
  );
}

// Where the time goes: one bar split by each sample's category (its runtime phase, else its innermost frame).
function categoryBar(summary) {
  const categories = Object.entries(summary.leaf_categories || {}).sort((a, b) => b[1] - a[1]);
  const total = categories.reduce((sum, [, n]) => sum + n, 0);
  if (!total) return null;
  return h(
    "section",
    { class: "card categories" },
    h("h2", {}, "Where the time goes ", h("span", { class: "muted small" }, "by each sample's runtime phase, else its innermost frame")),
    h(
      "div",
      { class: "stacked-bar" },
      categories.map(([name, n]) =>
        h("span", {
          class: "segment",
          "data-category": name,
          title: `${(CATEGORIES[name] || { label: name }).label}: ${fmtInt(n)} samples (${pct(n, total)})`,
          style: { width: `${(100 * n) / total}%`, background: categoryColor(name) },
        }),
      ),
    ),
    h(
      "ul",
      { class: "legend" },
      categories.map(([name, n]) =>
        h("li", {}, h("span", { class: "swatch", style: { background: categoryColor(name) } }), `${(CATEGORIES[name] || { label: name }).label} `, h("span", { class: "muted" }, pct(n, total))),
      ),
    ),
  );
}

function functionsCard(ctx, id, summary, highlight) {
  const limit = 20;
  const samples = summary.samples || 0;
  let query = "";
  let offset = 0;
  let loads = 0;
  const body = h("div", {});
  const load = async () => {
    const mine = ++loads;
    let data;
    try {
      data = await ctx.api(`/api/p/${id}/functions?offset=${offset}&limit=${limit}&q=${encodeURIComponent(query)}`);
    } catch (error) {
      if (!(error instanceof StaleError) && error.name !== "AbortError") showLoadError(body, error);
      return;
    }
    if (mine !== loads) return;
    const rows = data.functions.map((fn) =>
      h(
        "tr",
        { "data-function": fn.name },
        h(
          "td",
          { class: "name" },
          h("button", { type: "button", class: "link-button", title: "Highlight in the flame graph", onclick: () => highlight(`${fn.name} (${basename(fn.file)})`) }, fn.name),
        ),
        h("td", {}, fileLine(fn.file, fn.line)),
        h("td", { class: "num" }, fmtInt(fn.self)),
        h("td", { class: "num" }, pct(fn.self, samples)),
        h("td", { class: "num" }, fmtInt(fn.total)),
        h("td", { class: "num" }, pct(fn.total, samples)),
      ),
    );
    setChildren(body,
      data.total
        ? table("functions", [["Function"], ["Location"], ["Self", "num"], ["%", "num"], ["Total", "num"], ["%", "num"]], rows)
        : h("p", { class: "notice" }, query ? "No function matches." : "No Python function was sampled."),
      data.total > limit
        ? pager(data.total, offset, limit, (next) => {
            offset = next;
            load();
          })
        : null,
    );
  };
  const search = searchInput({
    className: "search small",
    placeholder: "Filter functions",
    onSearch: (text) => {
      query = text;
      offset = 0;
      load();
    },
  });
  load();
  return h("section", { class: "card hot-functions" }, h("div", { class: "card-head" }, h("h2", {}, "Hot functions"), search), body);
}

function tracesCard(id, summary) {
  const traces = summary.traces || [];
  const rows = traces.map((trace) => {
    const href = traceUrl(id, trace.id);
    const source = trace.source;
    return h(
      "tr",
      {
        class: "clickable",
        "data-trace-id": trace.id,
        "data-type": trace.type || "",
        "data-samples": trace.samples,
        // The whole row opens the trace; links inside it keep their own targets.
        onclick: (event) => {
          if (!event.target.closest("a, button")) navigate(href);
        },
      },
      h("td", {}, h("a", { href, class: "trace-link", "data-trace-id": trace.id }, `${trace.id}`)),
      h("td", {}, trace.type ? h("span", { class: `badge ${trace.type}` }, trace.type) : "–"),
      h("td", { class: "name" }, source ? [h("span", {}, source.function), " ", fileLine(source.file, source.line)] : h("span", { class: "muted" }, "–")),
      h("td", { class: "num" }, fmtInt(trace.samples)),
      h("td", { class: "num" }, pct(trace.samples, summary.samples)),
      h("td", { class: "num" }, fmtInt(trace.entries)),
      h(
        "td",
        { class: "guards" },
        (trace.failing_guards || []).map((guard) =>
          h(
            "div",
            { class: "failing-guard" },
            h("a", { href: traceUrl(id, trace.id, "asm", guard.op_index) }, `op ${guard.op_index}`),
            ` ${guard.op} ×${fmtInt(guard.failures)}`,
            guard.bridge !== null && guard.bridge !== undefined
              ? [" ", h("a", { href: traceUrl(id, guard.bridge), class: "guard-link", "data-trace-id": guard.bridge }, `→ bridge ${guard.bridge}`), h("span", { class: "muted" }, ` (${fmtInt(guard.bridge_samples)} samples)`)]
              : h("span", { class: "muted" }, " (no bridge)"),
          ),
        ),
      ),
    );
  });
  return h(
    "section",
    { class: "card hot-traces" },
    h("div", { class: "card-head" }, h("h2", {}, "Hot traces"), h("a", { href: `/p/${id}/traces` }, `all ${fmtInt(summary.trace_count)} traces →`)),
    traces.length
      ? table("traces", [["Trace"], ["Type"], ["Source"], ["Samples", "num"], ["%", "num"], ["Entries", "num"], ["Failing guards"]], rows)
      : h("p", { class: "notice" }, summary.trace_count ? "No sample fell in a JIT trace." : "The jitlog has no traces."),
  );
}

// A bundle without samples (a jitlog alone): its traces by how often they ran.
function tracesByEntriesCard(ctx, id, summary) {
  const body = h("p", { class: "loading" }, "Loading traces…");
  const card = h(
    "section",
    { class: "card hot-traces" },
    h("div", { class: "card-head" }, h("h2", {}, "Traces by entries ", h("span", { class: "muted small" }, "this bundle has no samples")), h("a", { href: `/p/${id}/traces?sort=entries` }, `all ${fmtInt(summary.trace_count)} traces →`)),
    body,
  );
  ctx
    .api(`/api/p/${id}/traces?sort=entries&limit=20`)
    .then((data) => {
      body.replaceWith(
        table(
          "traces",
          [["Trace"], ["Type"], ["Source"], ["Entries", "num"], ["Parent"], ["Bridges", "num"]],
          data.traces.map((t) =>
            h(
              "tr",
              { "data-trace-id": t.id, "data-type": t.type },
              h("td", {}, h("a", { href: traceUrl(id, t.id), class: "trace-link", "data-trace-id": t.id }, String(t.id))),
              h("td", {}, h("span", { class: `badge ${t.type}` }, t.type)),
              h("td", { class: "name" }, t.function || "–", " ", fileLine(t.file, t.line)),
              h("td", { class: "num" }, fmtInt(t.entries)),
              h("td", {}, t.parent !== null && t.parent !== undefined ? h("a", { href: traceUrl(id, t.parent) }, String(t.parent)) : ""),
              h("td", { class: "num" }, t.bridges ? fmtInt(t.bridges) : ""),
            ),
          ),
        ),
      );
    })
    .catch((error) => showLoadError(body, error));
  return card;
}

// "worker-1 (tid 1234)", its OS name on hover when it has a Python name too.
function threadCell(thread) {
  const label = typeof thread.label === "string" ? thread.label : `tid ${thread.tid}`;
  const os = typeof thread.python_name === "string" && typeof thread.os_name === "string" ? `OS name: ${thread.os_name}` : undefined;
  return h("td", { class: "thread-name", title: os }, label);
}

function threadsCard(summary) {
  const threads = summary.threads || [];
  return h(
    "section",
    { class: "card threads" },
    h("h2", {}, "Threads"),
    threads.length
      ? table(
          "threads",
          [["Thread"], ["Samples", "num"], ["%", "num"], ["Busiest function"]],
          threads.map((t) => h("tr", { "data-tid": t.tid }, threadCell(t), h("td", { class: "num" }, fmtInt(t.samples)), h("td", { class: "num" }, pct(t.samples, summary.samples)), h("td", {}, t.top_function || h("span", { class: "muted" }, "–")))),
        )
      : h("p", { class: "notice" }, "No thread was sampled."),
  );
}

function nativeCard(summary) {
  const libraries = Object.entries(summary.native_libraries || {}).sort((a, b) => b[1] - a[1]);
  const functions = summary.native_functions || [];
  return h(
    "section",
    { class: "card native" },
    h("h2", {}, "Native code ", h("span", { class: "muted small" }, "samples ending outside Python and JIT code")),
    libraries.length
      ? table("libraries", [["Library"], ["Samples", "num"], ["%", "num"]], libraries.map(([lib, n]) => h("tr", {}, h("td", {}, lib), h("td", { class: "num" }, fmtInt(n)), h("td", { class: "num" }, pct(n, summary.samples)))))
      : h("p", { class: "notice" }, "None."),
    functions.length
      ? table(
          "native-functions",
          [["Function"], ["Library"], ["Self", "num"], ["Hottest lines"]],
          functions.slice(0, 20).map((fn) =>
            h(
              "tr",
              {},
              h("td", { class: "name" }, fn.name),
              h("td", { title: fn.library }, basename(fn.library)),
              h("td", { class: "num" }, fmtInt(fn.self)),
              h("td", { class: "lines" }, (fn.lines || []).slice(0, 3).map((l) => h("div", {}, fileLine(l.file, l.line), h("span", { class: "muted" }, ` ${fmtInt(l.samples)}`)))),
            ),
          ),
        )
      : null,
  );
}

// `jitprof attach` without a jitlog: hot JIT code, read from memory, disassembled.
function anonymousCard(summary) {
  return h(
    "section",
    { class: "card anonymous" },
    h("h2", {}, "Unnamed JIT code ", h("span", { class: "muted small" }, "read from the process's memory")),
    summary.anonymous_jit_code.map((region, i) =>
      h(
        "details",
        { class: "region", open: i === 0 },
        h("summary", {}, `${hex(region.start)}–${hex(region.end)} · ${fmtInt(region.samples)} samples (${pct(region.samples, summary.samples)}) · pid ${region.pid}`),
        h(
          "div",
          { class: "asm-listing" },
          region.instructions.map((insn) =>
            h("div", { class: `row${insn.samples ? "" : " cold"}` }, h("span", { class: "n" }, insn.samples ? String(insn.samples) : ""), h("span", { class: "addr" }, hex(insn.address)), h("code", {}, insn.text)),
          ),
        ),
      ),
    ),
  );
}

function frameName(frame) {
  if (frame.jit) return "JIT code";
  const source = frame.source && frame.source[0];
  return frame.name || (source && source.function) || "";
}

// The trace (and op) of the innermost JIT frame on the faulting thread.
function crashTraceLink(id, trace) {
  const op = trace.op_index !== undefined ? `#op-${trace.op_index}` : "";
  return h(
    "span",
    {},
    h("a", { href: `/p/${id}/trace/${trace.id}${op}`, "data-trace-id": String(trace.id) }, `${trace.type} ${trace.id}`),
    trace.op ? ` at op ${trace.op_index} (${trace.op})` : "",
    trace.source ? [" from ", `${trace.source.function} `, fileLine(trace.source.file, trace.source.line)] : "",
  );
}

function crashCard(id, crash) {
  // 64-bit values come as "0x..." strings too: JavaScript numbers would round them.
  const registers = Object.entries(crash.registers_hex);
  const order = ["rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
  registers.sort((a, b) => (order.indexOf(a[0]) + 1 || 99) - (order.indexOf(b[0]) + 1 || 99));
  return h(
    "section",
    { class: "card crash", id: "crash" },
    h("h2", {}, "Crash record"),
    factList(
      [
        ["signal", `${crash.signal_name || ""} (${crash.signal ?? "?"})`],
        ["thread", crash.thread ?? String(crash.tid ?? "?")],
        crash.fault_address_hex ? ["fault address", h("code", {}, crash.fault_address_hex)] : null,
        crash.trace ? ["in trace", crashTraceLink(id, crash.trace)] : null,
        ["frames", `${crash.frames.length} (${crash.frames.filter((f) => f.jit).length} in JIT code)`],
      ].filter(Boolean),
    ),
    table(
      "crash-frames",
      [["#"], ["Function"], ["Where"], ["Address"], ["Source"]],
      crash.frames.map((frame, i) =>
        h(
          "tr",
          { class: frame.jit ? "jit-frame" : "", "data-jit": frame.jit ? "true" : "false" },
          h("td", { class: "num" }, String(i)),
          h("td", { class: "name" }, frame.jit ? h("span", { class: "badge jit" }, "JIT") : null, " ", frameName(frame) || h("span", { class: "muted" }, "?")),
          h("td", { title: frame.path || "" }, frame.jit ? h("span", { class: "muted" }, "JIT-compiled code") : `${basename(frame.path)}+${hex(frame.offset)}`),
          h("td", {}, h("code", {}, frame.address_hex || hex(frame.address))),
          h("td", {}, frame.source.map((s) => h("div", {}, `${s.function} `, fileLine(s.file, s.line)))),
        ),
      ),
    ),
    registers.length
      ? h(
          "details",
          { class: "registers" },
          h("summary", {}, "Registers"),
          h("dl", { class: "register-grid" }, registers.map(([name, value]) => [h("dt", {}, name), h("dd", {}, h("code", {}, value))])),
        )
      : null,
  );
}

// ---------------------------------------------------------------- traces

async function tracesView(ctx) {
  const { id } = ctx.params;
  const limit = 100;
  let sort = ctx.query.get("sort") || "samples";
  ctx.setTitle("traces", [{ label: `profile ${id.slice(0, 8)}`, href: `/p/${id}` }, { label: "traces" }]);
  const heading = h("h1", {}, "Traces");
  const list = pagedList(ctx, {
    limit,
    fetchPage: ({ query, offset }) =>
      ctx.api(`/api/p/${id}/traces?offset=${offset}&limit=${limit}&sort=${sort}&q=${encodeURIComponent(query)}`),
    render: (data, { query }) => {
      heading.textContent = `Traces (${fmtInt(data.total)})`;
      const rows = data.traces.map((t) =>
        h(
          "tr",
          { "data-trace-id": t.id, "data-type": t.type },
          h("td", {}, h("a", { href: traceUrl(id, t.id), class: "trace-link", "data-trace-id": t.id }, String(t.id))),
          h("td", {}, h("span", { class: `badge ${t.type}` }, t.type)),
          h("td", { class: "name" }, t.function || h("span", { class: "muted" }, "–")),
          h("td", {}, fileLine(t.file, t.line)),
          h("td", { class: "num" }, fmtInt(t.samples)),
          h("td", { class: "num" }, fmtInt(t.entries)),
          h("td", {}, t.parent !== null && t.parent !== undefined ? h("a", { href: traceUrl(id, t.parent), "data-trace-id": t.parent }, String(t.parent)) : ""),
          h("td", { class: "num" }, t.bridges ? fmtInt(t.bridges) : ""),
          h("td", { class: "stages" }, t.stages.map((stage) => h("a", { href: traceUrl(id, t.id, stage) }, stage)).flatMap((a, i) => (i ? [" ", a] : [a]))),
        ),
      );
      return data.total
        ? table("all-traces", [["Trace"], ["Type"], ["Function"], ["Location"], ["Samples", "num"], ["Entries", "num"], ["Parent"], ["Bridges", "num"], ["Stages"]], rows)
        : h("p", { class: "notice" }, query ? `No trace matches “${query}”.` : "The jitlog has no traces.");
    },
  });
  const search = list.search({ placeholder: "Search function, file or trace id", label: "Search traces" });
  const { results, load } = list;
  const sorter = h(
    "select",
    {
      "aria-label": "Sort traces by",
      onchange: () => {
        sort = sorter.value;
        list.restart({ sort: sort === "samples" ? "" : sort });
      },
    },
    [
      ["samples", "most samples"],
      ["entries", "most entries"],
      ["id", "id"],
      ["function", "function"],
    ].map(([value, label]) => h("option", { value, selected: value === sort }, `sort by ${label}`)),
  );
  await load();
  ctx.show(h("div", { class: "traces-page" }, h("div", { class: "page-head" }, heading, search, sorter), results));
}

// ---------------------------------------------------------------- navigation

function isPagePath(path) {
  return path === "/" || path.startsWith("/p/") || path.startsWith("/uploads");
}

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, window.location.href);
  if (url.origin !== window.location.origin || !isPagePath(url.pathname)) return;
  // A link to an anchor of this page: the browser scrolls to it.
  if (url.pathname + url.search === routed && url.hash && !url.hash.startsWith("#/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener("popstate", () => {
  const url = new URL(window.location.href);
  // Back/forward between anchors of the page on screen: nothing to render.
  if (url.pathname + url.search === routed && !url.hash.startsWith("#/")) return;
  route();
});

window.addEventListener("hashchange", () => {
  if (window.location.hash.startsWith("#/")) route();
});

route();
