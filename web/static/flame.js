// The flame graph of /api/p/ID/flame, drawn on a <canvas> as an icicle: the
// root ("all samples") is the top row and each callee hangs below its caller,
// so deep stacks grow down the page instead of pushing the root off screen.
// Given a diff's merged tree (/api/diff/OLD/NEW: nodes with old_total too) it
// is differential: widths are the new run's samples, colours the change in
// share of each run's samples, red grew and blue shrank.
import { h, fmtInt, pct } from "./util.js";

// Category → label and colour; the order is the legend's.
export const CATEGORIES = {
  python: { label: "Python", color: "#f2b950" },
  jit: { label: "JIT trace", color: "#56bf6b" },
  "jit-inlined": { label: "JIT-inlined Python", color: "#b5dd7c" },
  "jit-helper": { label: "JIT helper", color: "#7fcdb8" },
  "jit-anonymous": { label: "JIT code (unnamed)", color: "#a9c4ad" },
  interpreter: { label: "Interpreter", color: "#7fb1e3" },
  runtime: { label: "Other runtime", color: "#a3c6ea" },
  "gc-minor": { label: "GC minor", color: "#b07fd9" },
  "gc-major": { label: "GC major", color: "#8e5cc4" },
  gc: { label: "GC (outside collections)", color: "#cfb5ea" },
  "jit-tracing": { label: "JIT tracing", color: "#4fa3a5" },
  "jit-optimizer": { label: "JIT optimizer", color: "#6fc0c2" },
  "jit-backend": { label: "JIT backend", color: "#9ad6d7" },
  "jit-metainterp": { label: "JIT metainterp (tracing or guard failure)", color: "#7aa6b8" },
  "guard-failure": { label: "Guard failure / blackhole", color: "#e0a84f" },
  native: { label: "Native", color: "#ee907e" },
  kernel: { label: "Kernel", color: "#b9b2ab" },
  unknown: { label: "Unknown", color: "#d4d4d4" },
};

export function categoryColor(category) {
  return (CATEGORIES[category] || CATEGORIES.unknown).color;
}

export function legend(categories) {
  return h(
    "ul",
    { class: "legend" },
    categories.map((name) =>
      h("li", {}, h("span", { class: "swatch", style: { background: categoryColor(name) } }), (CATEGORIES[name] || { label: name }).label),
    ),
  );
}

const ROW = 18; // px per stack level
const FONT = "11px ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace";

// Frames of one category differ a little in lightness (by a hash of their
// label), so that neighbours stay apart while the category stays readable.
const shadeCache = new Map();
function shade(category, label) {
  const key = `${category}\u0000${label}`;
  let color = shadeCache.get(key);
  if (color) return color;
  const base = categoryColor(category);
  let hash = 0;
  for (let i = 0; i < label.length; i++) hash = (hash * 31 + label.charCodeAt(i)) | 0;
  const amount = ((hash >>> 0) % 21 - 10) / 100; // -0.10 … +0.10
  color = adjust(base, amount);
  shadeCache.set(key, color);
  return color;
}

// The change of a frame's share, in percentage points, as a colour: white
// for none, to full red (grew) or blue (shrank) at `scale` points.
const NO_CHANGE = 0.05; // points: less is noise of rounding
function diffColor(points, scale) {
  if (Math.abs(points) < NO_CHANGE) return "rgb(231, 229, 228)";
  const strength = 0.25 + 0.75 * Math.min(1, Math.abs(points) / scale);
  const fade = (c) => Math.round(255 - (255 - c) * strength);
  return points > 0 ? `rgb(${fade(220)}, ${fade(38)}, ${fade(38)})` : `rgb(${fade(37)}, ${fade(99)}, ${fade(235)})`;
}

function diffLegend() {
  return h(
    "ul",
    { class: "legend" },
    h("li", {}, h("span", { class: "swatch", style: { background: diffColor(1, 1) } }), "share grew"),
    h("li", {}, h("span", { class: "swatch", style: { background: diffColor(-1, 1) } }), "share shrank"),
    h("li", {}, h("span", { class: "swatch", style: { background: diffColor(0, 1) } }), "no change"),
  );
}

function adjust(hexColor, amount) {
  const n = parseInt(hexColor.slice(1), 16);
  const channel = (c) => Math.max(0, Math.min(255, Math.round(c + (amount > 0 ? 255 - c : c) * amount)));
  return `rgb(${channel(n >> 16)}, ${channel((n >> 8) & 255)}, ${channel(n & 255)})`;
}

// A search term: plain text matches case-insensitively; /…/ is a regular
// expression, unless it could backtrack without bound (then its text is
// searched for as plain text).
function matcher(term) {
  if (!term) return null;
  const regex = /^\/(.+)\/([a-z]*)$/.exec(term);
  if (regex && !mayBacktrack(regex[1])) {
    try {
      const compiled = new RegExp(regex[1], regex[2].includes("i") ? "i" : "");
      return (label) => compiled.test(label);
    } catch {
      return () => false;
    }
  }
  const lower = (regex ? regex[1] : term).toLowerCase();
  return (label) => label.toLowerCase().includes(lower);
}

// Patterns whose matching time can explode on a long frame name and freeze
// the tab: a repeated group that holds a repetition or an alternative
// (/(a+)+$/, /(a|aa)*$/), back-references, or more than three unbounded
// repetitions in all (/.*.*.*.*x/ is polynomial of that degree).
function mayBacktrack(source) {
  const groups = [{ repeats: false }]; // per open group: does it hold a repetition or "|"?
  let unbounded = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    const top = groups[groups.length - 1];
    if (c === "\\") {
      if (/[1-9k]/.test(source[i + 1] || "")) return true;
      i++;
    } else if (c === "[") {
      for (i++; i < source.length && source[i] !== "]"; i++) if (source[i] === "\\") i++;
    } else if (c === "(") {
      groups.push({ repeats: false });
    } else if (c === ")" && groups.length > 1) {
      const group = groups.pop();
      if (group.repeats && /[*+{]/.test(source[i + 1] || "")) return true;
      if (group.repeats) groups[groups.length - 1].repeats = true;
    } else if (c === "*" || c === "+" || c === "{" || c === "|" || (c === "?" && source[i - 1] !== "(")) {
      top.repeats = true;
      if (c === "*" || c === "+" || (c === "{" && /^\{\d*,\}/.test(source.slice(i)))) unbounded++;
    }
  }
  return unbounded > 3;
}

export class FlameGraph {
  // tree: {samples, children}, or a diff's {samples, old_samples, children};
  // options: {zoom: "0.1.2", search, traceHref(id), openTrace(url, newTab),
  // onChange({zoom, search}), secondsPerSample: {old, new} (diffs)}
  constructor(tree, options = {}) {
    this.options = options;
    this.root = { frame: "all samples", category: "root", total: tree.samples, self: 0, children: tree.children || [] };
    this.diff = tree.old_samples === undefined ? null : { oldAll: tree.old_samples, scale: 1 };
    if (this.diff) Object.assign(this.root, { old_total: tree.old_samples, old_self: 0 });
    this.categories = new Set();
    this.link(this.root, null, -1);
    this.zoomed = this.resolve(options.zoom || "");
    this.search = options.search || "";
    this.rows = [];
    this.width = 0;
    this.build();
  }

  // Parent pointers and child indexes, for zoom paths and ancestors.
  link(node, parent, index) {
    node.parent = parent;
    node.index = index;
    if (node.category !== "root") this.categories.add(node.category);
    // Colours are scaled to the largest change, so that it shows at full strength.
    if (this.diff && parent) this.diff.scale = Math.max(this.diff.scale, Math.abs(this.change(node)));
    node.children.forEach((child, i) => this.link(child, node, i));
  }

  // Diffs: the change of a frame's share of its run's samples, in percentage points.
  change(node) {
    const share = (n, all) => (all ? (100 * n) / all : 0);
    return share(node.total, this.root.total) - share(node.old_total, this.diff.oldAll);
  }

  // "0.3.1": child indexes from the root; a stale path falls back to the root.
  resolve(path) {
    let node = this.root;
    for (const part of path.split(".").filter(Boolean)) {
      const next = node.children[Number(part)];
      if (!next) return this.root;
      node = next;
    }
    return node;
  }

  pathOf(node) {
    const parts = [];
    for (let n = node; n.parent; n = n.parent) parts.push(n.index);
    return parts.reverse().join(".");
  }

  build() {
    this.searchInput = h("input", {
      type: "search",
      class: "flame-search",
      placeholder: "Search frames (text or /regex/)",
      "aria-label": "Search frames",
      value: this.search,
      oninput: () => this.setSearch(this.searchInput.value.trim()),
    });
    this.resetButton = h("button", { type: "button", onclick: () => this.zoomTo(this.root) }, "Reset zoom");
    this.matchInfo = h("span", { class: "flame-match" });
    this.zoomInfo = h("span", { class: "flame-zoom muted" });
    this.canvas = h("canvas", { id: "flame", tabindex: "0", "aria-label": "Flame graph" });
    // The drawn frames as a hidden list: for tests and tools that read the DOM.
    this.index = h("ul", { id: "flame-index", hidden: true });
    this.tooltip = h("div", { class: "tooltip", hidden: true });
    this.element = h(
      "div",
      { class: "flame-graph" },
      h("div", { class: "flame-toolbar" }, this.searchInput, this.resetButton, this.zoomInfo, this.matchInfo),
      this.diff ? diffLegend() : legend([...Object.keys(CATEGORIES)].filter((c) => this.categories.has(c))),
      h("div", { class: "flame-canvas" }, this.canvas, this.tooltip),
      this.index,
    );
    this.canvas.addEventListener("mousemove", (event) => this.hover(event));
    this.canvas.addEventListener("mouseleave", () => {
      this.tooltip.hidden = true;
    });
    this.canvas.addEventListener("click", (event) => this.click(event));
    this.canvas.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.zoomTo(this.root);
    });
    // Redraw when the page width changes (and first when attached).
    this.resizeObserver = new ResizeObserver(() => {
      const width = this.canvas.parentElement.clientWidth;
      if (width && width !== this.width) this.draw();
    });
    this.resizeObserver.observe(this.element);
  }

  setSearch(term) {
    this.search = term;
    if (this.searchInput.value.trim() !== term) this.searchInput.value = term; // set from outside (hot functions)
    this.draw();
    this.changed();
  }

  zoomTo(node) {
    this.zoomed = node;
    this.draw();
    this.changed();
  }

  changed() {
    if (this.options.onChange) this.options.onChange({ zoom: this.pathOf(this.zoomed), search: this.search });
  }

  // Lays out the frames wide enough to see: the zoomed node's ancestors span
  // the full width above it, its descendants share it by their sample counts.
  layout(width) {
    const rows = [];
    const put = (node, depth, x, w) => {
      (rows[depth] ||= []).push({ node, x, w, depth });
    };
    const chain = [];
    for (let n = this.zoomed; n; n = n.parent) chain.unshift(n);
    chain.forEach((node, depth) => put(node, depth, 0, width));
    const walk = (node, depth, x, w) => {
      let childX = x;
      for (const child of node.children) {
        const childW = (child.total / node.total) * w;
        if (childW < 0.5) break; // children come largest first
        put(child, depth, childX, childW);
        walk(child, depth + 1, childX, childW);
        childX += childW;
      }
    };
    if (this.zoomed.total > 0) walk(this.zoomed, chain.length, 0, width);
    return rows;
  }

  draw() {
    const container = this.canvas.parentElement;
    const width = container.clientWidth || 1000;
    this.width = width;
    this.rows = this.layout(width);
    const match = matcher(this.search);
    const height = this.rows.length * ROW;
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    const charWidth = ctx.measureText("m").width;
    const zoomDepth = this.rows.findIndex((row) => row[0].node === this.zoomed);
    const items = [];
    for (const row of this.rows) {
      for (const frame of row) {
        const { node, x, w, depth } = frame;
        const y = depth * ROW;
        const matched = match ? match(node.frame) : false;
        frame.matched = matched;
        const ancestor = depth < zoomDepth;
        let fill = node.category === "root" ? "#e4e4e7" : shade(node.category, node.frame);
        if (this.diff) fill = diffColor(this.change(node), this.diff.scale);
        frame.fill = fill;
        ctx.globalAlpha = ancestor || (match && !matched) ? 0.35 : 1;
        ctx.fillStyle = matched ? "#d946ef" : fill;
        ctx.fillRect(x, y, Math.max(w - 1, 0.5), ROW - 1);
        if (w > charWidth * 3) {
          const label = node.category === "root" ? `all samples (${fmtInt(node.total)})` : node.frame;
          const fits = Math.floor((w - 6) / charWidth);
          const text = label.length <= fits ? label : `${label.slice(0, Math.max(fits - 1, 1))}…`;
          ctx.fillStyle = matched ? "#fff" : "#1c1917";
          ctx.fillText(text, x + 3, y + ROW / 2);
        }
        ctx.globalAlpha = 1;
        items.push(frame);
      }
    }
    this.canvas.dataset.frames = String(items.length);
    this.updateIndex(items);
    this.updateInfo(match);
  }

  updateIndex(items) {
    const fragment = document.createDocumentFragment();
    for (const { node, depth, matched, fill, x, w } of items) {
      const li = document.createElement("li");
      li.textContent = node.frame;
      li.dataset.frame = node.frame;
      li.dataset.category = node.category;
      li.dataset.total = node.total;
      li.dataset.self = node.self;
      li.dataset.depth = depth;
      li.dataset.x = x.toFixed(1); // where it is drawn, in CSS pixels of the canvas
      li.dataset.w = w.toFixed(1);
      if (matched) li.dataset.matched = "true";
      if (this.diff) {
        const points = this.change(node);
        li.dataset.oldTotal = node.old_total;
        li.dataset.change = points.toFixed(2);
        li.dataset.diff = Math.abs(points) < NO_CHANGE ? "same" : points > 0 ? "grew" : "shrank";
        li.dataset.fill = fill;
      }
      fragment.append(li);
    }
    this.index.replaceChildren(fragment);
  }

  updateInfo(match) {
    const all = this.root.total;
    this.resetButton.disabled = this.zoomed === this.root;
    this.zoomInfo.textContent =
      this.zoomed === this.root ? "" : `Zoomed: ${this.zoomed.frame} — ${pct(this.zoomed.total, all)} of all samples`;
    if (!match) {
      this.matchInfo.textContent = "";
      return;
    }
    // Each matched frame counts once, without the matches nested inside it.
    let matched = 0;
    const walk = (node) => {
      if (node !== this.root && match(node.frame)) {
        matched += node.total;
        return;
      }
      node.children.forEach(walk);
    };
    walk(this.root);
    this.matchInfo.dataset.samples = matched;
    let text = `Matched: ${pct(matched, all)} (${fmtInt(matched)} of ${fmtInt(all)} samples)`;
    if (this.zoomed !== this.root) {
      // The share inside the zoomed frame too: what a user looking at it wants.
      let inside = 0;
      const within = (node) => {
        if (match(node.frame)) inside += node.total;
        else node.children.forEach(within);
      };
      if (match(this.zoomed.frame)) inside = this.zoomed.total;
      else this.zoomed.children.forEach(within);
      text += ` · ${pct(inside, this.zoomed.total)} of the zoomed frame`;
    }
    this.matchInfo.textContent = text;
  }

  frameAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const row = this.rows[Math.floor((event.clientY - rect.top) / ROW)];
    if (!row) return null;
    // Frames of a row are in x order: binary search.
    let lo = 0;
    let hi = row.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const frame = row[mid];
      if (x < frame.x) hi = mid - 1;
      else if (x >= frame.x + frame.w) lo = mid + 1;
      else return frame;
    }
    return null;
  }

  hover(event) {
    const frame = this.frameAt(event);
    if (!frame) {
      this.tooltip.hidden = true;
      this.canvas.style.cursor = "default";
      return;
    }
    const { node } = frame;
    const all = this.root.total;
    const trace = node.trace;
    const lines = [
      h("div", { class: "tt-frame" }, node.category === "root" ? "all samples" : node.frame),
      h("div", { class: "muted" }, (CATEGORIES[node.category] || { label: "" }).label),
    ];
    if (this.diff) lines.push(...this.diffLines(node));
    else
      lines.push(
        h("div", {}, `total: ${fmtInt(node.total)} samples (${pct(node.total, all)})`),
        h("div", {}, `self: ${fmtInt(node.self)} samples (${pct(node.self, all)})`),
      );
    if (this.zoomed !== this.root && this.zoomed.total)
      lines.push(h("div", { class: "muted" }, `${pct(node.total, this.zoomed.total)} of the zoomed frame`));
    lines.push(h("div", { class: "tt-hint" }, trace !== undefined ? `click: open trace ${trace} · shift-click: zoom` : "click: zoom"));
    this.tooltip.replaceChildren(...lines);
    this.tooltip.hidden = false;
    this.canvas.style.cursor = "pointer";
    // Keep the tooltip inside the graph: flip it left of the pointer near the right edge.
    const box = this.canvas.parentElement.getBoundingClientRect();
    const left = event.clientX - box.left + 14;
    const top = event.clientY - box.top + 14;
    const tipWidth = this.tooltip.offsetWidth;
    this.tooltip.style.left = `${left + tipWidth > box.width ? Math.max(0, left - tipWidth - 28) : left}px`;
    this.tooltip.style.top = `${top}px`;
  }

  // Tooltip lines of a diff's frame: both runs' samples, shares and time, and the change.
  diffLines(node) {
    const { oldAll } = this.diff;
    const seconds = this.options.secondsPerSample || { old: 0, new: 0 };
    const time = (n, period) => (period ? ` · ${(n * period).toFixed(3)} s` : "");
    const points = this.change(node);
    const deltaSeconds = node.total * seconds.new - node.old_total * seconds.old;
    return [
      h("div", {}, `old: ${fmtInt(node.old_total)} samples (${pct(node.old_total, oldAll)})${time(node.old_total, seconds.old)}`),
      h("div", {}, `new: ${fmtInt(node.total)} samples (${pct(node.total, this.root.total)})${time(node.total, seconds.new)}`),
      h(
        "div",
        { class: `tt-change ${points > 0 ? "grew" : points < 0 ? "shrank" : ""}` },
        `change: ${points >= 0 ? "+" : "−"}${Math.abs(points).toFixed(1)} points of share` +
          (seconds.new || seconds.old ? `, ${deltaSeconds >= 0 ? "+" : "−"}${Math.abs(deltaSeconds).toFixed(3)} s` : ""),
      ),
    ];
  }

  click(event) {
    const frame = this.frameAt(event);
    if (!frame) return;
    const trace = frame.node.trace;
    if (trace !== undefined && !event.shiftKey && this.options.traceHref) {
      this.options.openTrace(this.options.traceHref(trace), event.ctrlKey || event.metaKey);
      return;
    }
    this.tooltip.hidden = true;
    this.zoomTo(frame.node);
  }

  destroy() {
    this.resizeObserver.disconnect();
  }
}
