// The trace page: /p/ID/trace/TID?stage=noopt|opt|asm. The ops listing is
// built as one HTML string: asm traces have thousands of rows (ops plus their
// machine instructions) and the page must render them well under a second.
import { h, esc, fmtInt, pct, basename, hex, fileLine, HttpError } from "./util.js";

const STAGES = { noopt: "Unoptimized", opt: "Optimized", asm: "Machine code" };
const ALLOCATIONS = new Set(["new", "new_with_vtable", "new_array", "new_array_clear", "newstr", "newunicode"]);

export function traceUrl(id, tid, stage, opIndex) {
  const query = stage && stage !== "asm" ? `?stage=${stage}` : "";
  return `/p/${id}/trace/${tid}${query}${opIndex !== undefined && opIndex !== null ? `#op-${opIndex}` : ""}`;
}

export async function traceView(ctx) {
  const { id, tid } = ctx.params;
  const asked = ctx.query.get("stage");
  let trace = null;
  // Without ?stage=, the first stage the trace has, machine code first
  // (a trace the JIT never compiled has no asm stage).
  for (const stage of asked ? [asked] : ["asm", "opt", "noopt"]) {
    try {
      trace = await ctx.api(`/api/p/${id}/trace/${tid}?stage=${encodeURIComponent(stage)}`);
      break;
    } catch (error) {
      if (!(error instanceof HttpError && error.status === 404)) throw error;
      if (asked || stage === "noopt") throw new HttpError(404, `This profile has no trace ${tid}${asked ? ` with a ${asked} stage` : ""}.`);
    }
  }
  performance.mark("jitprof:trace-fetched"); // with jitprof:ops-built: where a slow page spends its time
  ctx.setTitle(`${trace.type} ${trace.id}`, [
    { label: "profile", href: `/p/${id}` },
    { label: "traces", href: `/p/${id}/traces` },
    { label: `${trace.type} ${trace.id}` },
  ]);
  const page = h(
    "div",
    { class: "trace-page" },
    header(id, trace),
    stageTabs(id, trace),
    stageDiffs(trace),
    trace.ops ? opsSection(id, trace) : h("p", { class: "notice" }, `This trace has no ${trace.stage} stage in the jitlog.`),
  );
  ctx.show(page);
  // Links from a parent's guard (…#op-N) point at one op: bring it into view.
  if (currentHash().startsWith("#op-")) {
    const listing = document.getElementById("ops");
    if (listing && listing.finish) listing.finish();
    const target = document.getElementById(currentHash().slice(1));
    if (target) {
      target.classList.add("targeted");
      target.scrollIntoView({ block: "center" });
    }
  }
}

function currentHash() {
  return window.location.hash || "";
}

function header(id, trace) {
  const source = trace.source;
  const facts = [
    ["entries", fmtInt(trace.entries)],
    trace.type === "loop" ? ["label passes", fmtInt(trace.label_passes)] : null,
    ["executions", fmtInt(trace.executions)],
    trace.samples !== undefined
      ? [
          "samples",
          h(
            "span",
            { class: "trace-samples", "data-samples": trace.samples },
            fmtInt(trace.samples),
            trace.entry_code_samples ? h("span", { class: "muted" }, ` (${fmtInt(trace.entry_code_samples)} in entry code)`) : null,
          ),
        ]
      : ["samples", h("span", { class: "muted" }, "none")],
    trace.code ? ["machine code", `${hex(trace.code.start)}–${hex(trace.code.end)} (${fmtInt(trace.code.end - trace.code.start)} bytes)`] : null,
    trace.jitdriver ? ["jitdriver", trace.jitdriver] : null,
    trace.aborted ? ["aborted", "yes"] : null,
  ].filter(Boolean);
  return h(
    "section",
    { class: "trace-header" },
    h(
      "h1",
      { "data-trace-id": trace.id, "data-trace-type": trace.type },
      h("span", { class: `badge ${trace.type}` }, trace.type),
      ` ${trace.type === "bridge" ? "Bridge" : "Loop"} ${trace.id}`,
      source ? h("span", { class: "subtitle" }, ` in ${source.function} `, fileLine(source.file, source.line)) : null,
    ),
    trace.parent
      ? h(
          "p",
          { class: "parent" },
          `Bridge: leaves from guard op ${trace.parent.op_index} of `,
          h("a", { href: traceUrl(id, trace.parent.trace, "asm", trace.parent.op_index), class: "parent-link", "data-trace-id": trace.parent.trace }, `trace ${trace.parent.trace}`),
        )
      : null,
    h("dl", { class: "facts" }, facts.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value)))),
  );
}

function stageTabs(id, trace) {
  return h(
    "nav",
    { class: "tabs", "aria-label": "Stages" },
    ["noopt", "opt", "asm"].map((stage) =>
      trace.stages.includes(stage)
        ? h(
            "a",
            { href: traceUrl(id, trace.id, stage), class: "tab", "data-stage": stage, "aria-current": stage === trace.stage ? "page" : null },
            `${stage} `,
            h("span", { class: "muted" }, STAGES[stage]),
          )
        : h("span", { class: "tab disabled", "data-stage": stage }, stage),
    ),
  );
}

// noopt → opt is the optimizer's work (allocations removed are virtualized
// objects); opt → asm is the backend lowering field accesses and allocations.
function stageDiffs(trace) {
  if (!trace.stage_diffs || !trace.stage_diffs.length) return null;
  const SHOWN = 8;
  const counts = (map, sign) => {
    const chips = Object.entries(map)
      .sort((a, b) => ALLOCATIONS.has(b[0]) - ALLOCATIONS.has(a[0]) || b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([name, n]) => h("span", { class: `opcount ${sign}${ALLOCATIONS.has(name) ? " alloc" : ""}`, "data-op": name, "data-count": n }, `${name} ×${n}`));
    if (chips.length <= SHOWN + 2) return chips;
    // The rest stay in the DOM (hidden), one click away.
    const rest = chips.slice(SHOWN);
    rest.forEach((chip) => chip.classList.add("more"));
    const button = h(
      "button",
      {
        type: "button",
        class: "link-button more-button",
        onclick: () => {
          rest.forEach((chip) => chip.classList.remove("more"));
          button.remove();
        },
      },
      `+${rest.length} more`,
    );
    return [...chips, button];
  };
  return h(
    "details",
    { class: "stage-diffs", open: true },
    h("summary", {}, "Stage differences"),
    trace.stage_diffs.map((diff) => {
      const allocations = (map) => Object.entries(map).filter(([name]) => ALLOCATIONS.has(name)).reduce((sum, [, n]) => sum + n, 0);
      const removedAllocations = allocations(diff.removed);
      const addedAllocations = allocations(diff.added);
      const optimizer = diff.from === "noopt";
      return h(
        "div",
        { class: "stage-diff", "data-from": diff.from, "data-to": diff.to },
        h(
          "div",
          { class: "diff-head" },
          h("strong", {}, `${diff.from} → ${diff.to}`),
          ` ${fmtInt(diff.ops[0])} → ${fmtInt(diff.ops[1])} ops, ${fmtInt(diff.guards[0])} → ${fmtInt(diff.guards[1])} guards`,
          removedAllocations
            ? h(
                "span",
                { class: "diff-note" },
                optimizer
                  ? ` · ${removedAllocations} allocation op${removedAllocations === 1 ? "" : "s"} removed by the optimizer${addedAllocations ? ` (${addedAllocations} added)` : ""}`
                  : ` · ${removedAllocations} allocation${removedAllocations === 1 ? "" : "s"} lowered to nursery allocation by the backend`,
              )
            : null,
        ),
        Object.keys(diff.removed).length ? h("div", { class: "diff-line" }, h("span", { class: "diff-label" }, "removed"), counts(diff.removed, "removed")) : null,
        Object.keys(diff.added).length ? h("div", { class: "diff-line" }, h("span", { class: "diff-label" }, "added"), counts(diff.added, "added")) : null,
      );
    }),
  );
}

function opsSection(id, trace) {
  const hasHeat = trace.stage === "asm" && trace.samples !== undefined;
  const hasInsns = trace.ops.some((op) => op.instructions);
  const listing = h("div", { class: `ops${hasHeat ? " with-heat" : ""}`, id: "ops", "data-stage": trace.stage });
  const { chunks, hasStubs } = opsHtml(id, trace, hasHeat);
  performance.mark("jitprof:ops-html");
  // The first chunks at once, the rest in later tasks so that the page shows
  // before a long trace is all in the DOM; data-complete marks the end.
  const FIRST = 3;
  let next = 0;
  const insert = (count) => {
    listing.insertAdjacentHTML("beforeend", chunks.slice(next, next + count).join(""));
    next = Math.min(chunks.length, next + count);
    if (next >= chunks.length) listing.dataset.complete = "true";
  };
  insert(FIRST);
  const more = () => {
    if (next >= chunks.length || !listing.isConnected) return;
    insert(4);
    setTimeout(more, 0);
  };
  setTimeout(more, 0);
  listing.finish = () => insert(chunks.length); // before jumping to an op far down
  performance.mark("jitprof:ops-built");
  const onSamples = trace.ops.reduce((sum, op) => sum + (op.samples || 0), 0);
  const toggles = [];
  const boxes = {};
  const toggle = (label, className, checked) => {
    const box = h("input", {
      type: "checkbox",
      checked,
      onchange: () => listing.classList.toggle(className, box.checked !== checked),
    });
    boxes[className] = box;
    toggles.push(h("label", { class: "toggle" }, box, ` ${label}`));
  };
  if (hasInsns) toggle("instructions", "hide-insns", true);
  if (hasStubs) toggle("stubs", "show-stubs", false);
  if (hasHeat) toggle("hot ops only", "hot-only", false);
  toggle("source", "hide-source", true);
  const section = h(
    "section",
    { class: "ops-section" },
    h(
      "div",
      { class: "ops-toolbar" },
      h("strong", {}, `${fmtInt(trace.ops.length)} ops`),
      hasHeat
        ? h(
            "span",
            { class: "heat-total", "data-samples": onSamples + (trace.entry_code_samples || 0) },
            ` · heat: ${fmtInt(onSamples)} samples on ops`,
            trace.entry_code_samples ? ` + ${fmtInt(trace.entry_code_samples)} in entry code` : "",
            ` = ${fmtInt(onSamples + (trace.entry_code_samples || 0))}`,
          )
        : trace.stage !== "asm" && trace.stages.includes("asm")
          ? h("span", { class: "muted" }, " · per-op samples are on the asm stage")
          : null,
      hasHeat ? hottestOps(trace) : null,
      h("span", { class: "spacer" }),
      toggles,
    ),
    trace.input_args && trace.input_args.length ? h("div", { class: "input-args" }, h("span", { class: "muted" }, "inputs "), h("code", {}, trace.input_args.join(", "))) : null,
    listing,
  );
  // Links to ops: every row must be in the DOM before the browser scrolls to
  // one; a jump into a recovery stub shows the stubs first.
  section.addEventListener("click", (event) => {
    if (event.target.closest('a[href^="#"]')) listing.finish();
    if (event.target.closest('a[href="#stubs"]') && boxes["show-stubs"]) {
      boxes["show-stubs"].checked = true;
      listing.classList.add("show-stubs");
    }
  });
  return section;
}

// Links to the few ops with the most samples.
function hottestOps(trace) {
  const hot = trace.ops.filter((op) => op.samples).sort((a, b) => b.samples - a.samples).slice(0, 3);
  if (!hot.length) return null;
  return h(
    "span",
    { class: "hottest" },
    "hottest: ",
    hot.flatMap((op, i) => [i ? ", " : "", h("a", { href: `#op-${op.index}`, title: op.text }, `${op.name} ${op.index}`), h("span", { class: "muted" }, ` ${pct(op.samples, trace.samples, 0)}`)]),
  );
}

function opsHtml(id, trace, hasHeat) {
  const ops = trace.ops;
  const maxSamples = hasHeat ? Math.max(1, ...ops.map((op) => op.samples || 0), trace.entry_code_samples || 0) : 1;
  const total = trace.samples || 0;
  const sourceLines = trace.source_lines || {};
  // Labels by descr, so a jump without a target trace links to the label it closes on.
  const labels = new Map();
  ops.forEach((op) => {
    if (op.name === "label" && op.descr) labels.set(op.descr, op.index);
  });
  // Op code ranges, sorted, to link jump targets in machine code to their op.
  const ranges = ops.filter((op) => op.address !== undefined && op.code_size).map((op) => [op.address, op.address + op.code_size, op.index]);
  ranges.sort((a, b) => a[0] - b[0]);
  const opAt = (address) => {
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (address < ranges[mid][0]) hi = mid - 1;
      else if (address >= ranges[mid][1]) lo = mid + 1;
      else return ranges[mid][2];
    }
    return null;
  };
  const heat = (samples, className) => {
    if (!hasHeat) return "";
    const width = samples ? Math.max(2, (100 * samples) / maxSamples) : 0;
    return `<span class="heat${className ? ` ${className}` : ""}" title="${samples ? `${samples} samples, ${pct(samples, total)} of this trace` : "no samples"}"><span class="bar" style="width:${width.toFixed(1)}%"></span><span class="n">${samples ? samples : ""}</span></span>`;
  };

  // The last op's machine code runs on past its jmp into out-of-line code
  // (guard recovery stubs): shown apart, so the loop's own code stays readable.
  const last = ops[ops.length - 1];
  let stubsFrom = -1;
  if (last && last.instructions && (last.name === "jump" || last.name === "finish")) {
    const jmp = last.instructions.findIndex((insn) => insn.mnemonic === "jmp");
    if (jmp >= 0 && jmp < last.instructions.length - 1) stubsFrom = jmp + 1;
  }
  const stubStart = stubsFrom >= 0 ? last.instructions[stubsFrom].address : Infinity;

  const out = [];
  if (hasHeat) {
    const entry = trace.entry_code_samples || 0;
    out.push(
      `<div class="row entry-code${entry ? "" : " cold"}" data-samples="${entry}">${heat(entry)}<span class="idx"></span><span class="text muted">entry code (before the first op)</span></div>`,
    );
  }
  // Rows go in chunks that the browser lays out only near the viewport
  // (content-visibility: auto): a trace of thousands of ops opens at once.
  const chunks = [];
  const closeChunk = () => {
    if (!out.length) return;
    chunks.push(`<div class="chunk" style="contain-intrinsic-size:auto ${out.length * 19}px">${out.join("")}</div>`);
    out.length = 0;
  };
  let lastSource = "";
  for (const op of ops) {
    if (out.length >= 200) closeChunk();
    const src = op.source;
    if (src) {
      const key = `${src.file}\u0000${src.line}\u0000${src.function}\u0000${src.inline_depth}`;
      if (key !== lastSource) {
        lastSource = key;
        const text = sourceLines[src.file] && sourceLines[src.file][String(src.line)];
        out.push(
          `<div class="row src" style="--depth:${src.inline_depth || 0}" data-depth="${src.inline_depth || 0}">${hasHeat ? '<span class="heat"></span>' : ""}<span class="idx"></span><span class="text"><span class="src-loc" title="${esc(src.file)}:${src.line}">${esc(src.function)} · ${esc(basename(src.file))}:${src.line}</span>${text !== undefined ? `<code class="src-text">${esc(text.trim())}</code>` : ""}</span></div>`,
        );
      }
    }
    const samples = op.samples || 0;
    const classes = ["row", "op"];
    if (op.guard) classes.push("guard");
    if (hasHeat && !samples) classes.push("cold");
    if (op.name === "label" || op.name === "jump") classes.push("control");
    out.push(
      `<div class="${classes.join(" ")}" id="op-${op.index}" data-index="${op.index}" data-name="${esc(op.name)}" data-samples="${samples}">${heat(samples)}<a class="idx" href="#op-${op.index}">${op.index}</a><span class="text">${opText(op)}${annotation(id, trace, op, labels)}</span></div>`,
    );
    if (op.instructions) {
      op.instructions.forEach((insn, i) => {
        if (op === last && i === stubsFrom) {
          const stubSamples = op.instructions.slice(i).reduce((sum, x) => sum + (x.samples || 0), 0);
          out.push(
            `<div class="row stubs-head" id="stubs">${hasHeat ? heat(stubSamples) : ""}<span class="idx"></span><span class="text">out-of-line code after the trace: guard recovery stubs, ${op.instructions.length - i} instructions</span></div>`,
          );
        }
        let operands = esc(insn.operands);
        // A jump or call into another op of this trace links to it.
        if (/^(j|call|loop)/.test(insn.mnemonic)) {
          const target = /^0x[0-9a-f]+$/.exec(insn.operands.trim());
          const address = target ? Number(target[0]) : NaN;
          const index = target ? opAt(address) : null;
          if (address >= stubStart && index === last.index) operands = `<a href="#stubs">${operands}</a> <span class="muted">(recovery stub)</span>`;
          else if (index !== null) operands = `<a href="#op-${index}">${operands}</a> <span class="muted">(op ${index})</span>`;
        }
        const stub = op === last && stubsFrom >= 0 && i >= stubsFrom;
        out.push(
          `<div class="row insn${stub ? " stub" : ""}${hasHeat && !insn.samples ? " cold" : ""}" data-samples="${insn.samples || 0}" data-op="${op.index}">${heat(insn.samples || 0, "insn-heat")}<span class="idx"></span><span class="text"><span class="addr">${hex(insn.address)}</span><span class="mn">${esc(insn.mnemonic)}</span><span class="operands">${operands}</span></span></div>`,
        );
      });
    }
  }
  closeChunk();
  return { chunks, hasStubs: stubsFrom >= 0 };
}

// "i5 = int_add(i3, 1)" with the result, name, descr and failargs marked up.
function opText(op) {
  const args = op.args.map((arg) => `<span class="arg">${esc(arg)}</span>`);
  if (op.descr) args.push(`<span class="descr">descr=${esc(op.descr)}</span>`);
  let text = `<code class="ir">`;
  if (op.result && op.result !== "?") text += `<span class="res">${esc(op.result)}</span> = `;
  text += `<span class="opname">${esc(op.name)}</span>(${args.join(", ")})`;
  if (op.failargs && op.failargs.length) text += ` <span class="failargs">[${op.failargs.map(esc).join(", ")}]</span>`;
  return `${text}</code>`;
}

function annotation(id, trace, op, labels) {
  const parts = [];
  if (op.guard) {
    if (op.counter) parts.push(`<span class="fails">failed ${fmtInt(op.counter)}×</span>`);
    if (op.bridge !== null && op.bridge !== undefined)
      parts.push(`<a class="guard-link" data-trace-id="${op.bridge}" href="${traceUrl(id, op.bridge)}">→ bridge ${op.bridge}</a>`);
  } else if (op.name === "label" && op.counter) {
    parts.push(`<span class="muted">passed ${fmtInt(op.counter)}×</span>`);
  }
  if (op.target_trace !== null && op.target_trace !== undefined && !(op.target_trace === trace.id && labels.has(op.descr))) {
    parts.push(`<a class="target-link" data-trace-id="${op.target_trace}" href="${traceUrl(id, op.target_trace)}">→ trace ${op.target_trace}</a>`);
  } else if (op.name === "jump" && labels.has(op.descr)) {
    parts.push(`<a class="label-link" href="#op-${labels.get(op.descr)}">↻ label at op ${labels.get(op.descr)}</a>`);
  }
  return parts.length ? ` <span class="ann">${parts.join(" ")}</span>` : "";
}
