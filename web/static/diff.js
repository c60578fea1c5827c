// Two uploads compared: /diff/OLD/NEW shows /api/diff/OLD/NEW, the runs
// side by side, a differential flame graph (width: the new run's samples;
// colour: the change in share, red grew, blue shrank) and the Python
// functions and JIT traces whose share changed.
import { h, fmtInt, fmtDuration, pct, fileLine, table, debounce } from "./util.js";
import { FlameGraph } from "./flame.js";

export function diffUrl(oldId, newId) {
  return `/diff/${oldId}/${newId}`;
}

// "Compare with…" on an upload's page: another upload's id or link becomes
// the old run, this one the new. `go(url)` opens the diff page.
export function compareForm(id, go) {
  const input = h("input", {
    type: "text",
    class: "compare-with small",
    name: "old",
    placeholder: "another upload's id or link",
    "aria-label": "Compare with another upload (its id or link)",
    spellcheck: "false",
    autocomplete: "off",
  });
  const message = h("span", { class: "compare-error bad small", hidden: true });
  return h(
    "form",
    {
      class: "compare-form",
      onsubmit: (event) => {
        event.preventDefault();
        const other = /([0-9a-fA-F]{64})\/?$/.exec(input.value.trim());
        message.hidden = Boolean(other);
        if (!other) {
          message.textContent = "Paste an upload's id (64 hex digits) or its /p/ID link.";
          return;
        }
        go(diffUrl(other[1].toLowerCase(), id));
      },
    },
    input,
    h("button", { type: "submit" }, "Compare with…"),
    message,
  );
}

// "+1.2 pts" / "−3.4 pts", classed grew/shrank for colour.
function change(value, unit, digits) {
  const text = `${value > 0 ? "+" : value < 0 ? "−" : "±"}${Math.abs(value).toFixed(digits)}${unit}`;
  return h("td", { class: `num ${value > 0 ? "grew" : value < 0 ? "shrank" : ""}` }, text);
}

function runFacts(label, id, run) {
  return h(
    "div",
    { class: `diff-run diff-${label}` },
    h("h2", {}, label === "old" ? "Old run " : "New run ", h("a", { href: `/p/${id}`, class: "small" }, id.slice(0, 12))),
    h("div", { class: "command mono" }, run.command || "–"),
    h(
      "div",
      { class: "muted" },
      `${fmtInt(run.samples)} samples · ${fmtDuration(run.cpu_seconds)} of CPU time`,
      run.duration_s === null ? "" : ` · ${fmtDuration(run.duration_s)} run`,
    ),
  );
}

function statusBadge(status) {
  return status === "changed" ? null : h("span", { class: `badge ${status}` }, status);
}

function functionsTable(diff) {
  const rows = diff.functions.map((f) =>
    h(
      "tr",
      { "data-function": f.name, "data-status": f.status },
      h("td", { class: "name" }, f.name, " ", statusBadge(f.status)),
      h("td", {}, fileLine(f.file, f.line)),
      h("td", { class: "num" }, pct(f.old.self_share, 1)),
      h("td", { class: "num" }, pct(f.new.self_share, 1)),
      change(f.self_points, " pts", 1),
      change(f.self_seconds_change, " s", 3),
      h("td", { class: "num" }, pct(f.old.total_share, 1)),
      h("td", { class: "num" }, pct(f.new.total_share, 1)),
      change(f.total_points, " pts", 1),
      change(f.total_seconds_change, " s", 3),
    ),
  );
  return rows.length
    ? table(
        "diff-functions",
        [["Function"], ["Location"], ["Self old", "num"], ["Self new", "num"], ["Δ share", "num"], ["Δ time", "num"], ["Total old", "num"], ["Total new", "num"], ["Δ share", "num"], ["Δ time", "num"]],
        rows,
      )
    : h("p", { class: "notice" }, "No Python function's share changed.");
}

function tracesTable(diff, oldId, newId) {
  const ids = (id, list) => list.map((tid, i) => [i ? ", " : "", h("a", { href: `/p/${id}/trace/${tid}` }, String(tid))]);
  const rows = diff.traces.map((t) =>
    h(
      "tr",
      { "data-function": t.function, "data-status": t.status },
      h("td", {}, h("span", { class: `badge ${t.type}` }, t.type), " ", statusBadge(t.status)),
      h("td", { class: "name" }, t.function || h("span", { class: "muted" }, "–"), " ", fileLine(t.file, t.line)),
      h("td", { class: "num" }, pct(t.old.share, 1)),
      h("td", { class: "num" }, pct(t.new.share, 1)),
      change(t.points, " pts", 1),
      h("td", { class: "num" }, fmtDuration(t.old.seconds)),
      h("td", { class: "num" }, fmtDuration(t.new.seconds)),
      change(t.seconds_change, " s", 3),
      h("td", { class: "small" }, ids(oldId, t.old.ids), t.old.ids.length && t.new.ids.length ? " → " : "", ids(newId, t.new.ids)),
    ),
  );
  return rows.length
    ? table(
        "diff-traces",
        [["Trace"], ["Source"], ["Old", "num"], ["New", "num"], ["Δ share", "num"], ["Old time", "num"], ["New time", "num"], ["Δ time", "num"], ["Ids (old → new)"]],
        rows,
      )
    : h("p", { class: "notice" }, "No trace's share changed.");
}

export async function diffView(ctx) {
  const { old: oldId, new: newId } = ctx.params;
  const title = `diff ${oldId.slice(0, 8)} → ${newId.slice(0, 8)}`;
  ctx.setTitle(title, [{ label: title }]);
  const diff = await ctx.api(`/api/diff/${oldId}/${newId}`);
  const flameSlot = h("div", { class: "flame-slot" });
  ctx.show(
    h(
      "div",
      { class: "diff-page" },
      h("section", { class: "diff-runs" }, runFacts("old", oldId, diff.old), runFacts("new", newId, diff.new)),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Differential flame graph ", h("span", { class: "muted small" }, "width: the new run's samples; red grew, blue shrank (change in share of each run's samples)")),
        flameSlot,
      ),
      h("section", { class: "card" }, h("h2", {}, "Python functions whose share changed ", h("span", { class: "muted small" }, `${diff.functions.length} of ${fmtInt(diff.functions_changed)}, largest change first`)), functionsTable(diff)),
      h("section", { class: "card" }, h("h2", {}, "JIT traces whose share changed ", h("span", { class: "muted small" }, `${diff.traces.length} of ${fmtInt(diff.traces_changed)}; matched by loop or bridge and source, not by id`)), tracesTable(diff, oldId, newId)),
    ),
  );
  if (!diff.flame.samples && !diff.flame.old_samples) {
    flameSlot.replaceChildren(h("p", { class: "notice" }, "Neither run has samples."));
    return;
  }
  const flame = new FlameGraph(diff.flame, {
    zoom: ctx.query.get("zoom") || "",
    search: ctx.query.get("search") || "",
    secondsPerSample: { old: diff.old.seconds_per_sample, new: diff.new.seconds_per_sample },
    onChange: debounce(({ zoom, search }) => ctx.isCurrent() && ctx.setQuery({ zoom, search }), 200),
  });
  ctx.onLeave(() => flame.destroy());
  flameSlot.replaceChildren(flame.element);
}
