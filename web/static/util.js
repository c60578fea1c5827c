// Shared helpers of the jitprof viewer: API access, DOM building, formatting.

export const TOKEN_KEY = "jitprof.token";

export class HttpError extends Error {
  // body: the server's JSON answer, when it sent one (a bad query's {error, column}).
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// GET an API path; sends the saved token (servers run with --private need it).
// Throws HttpError with the server's {error} message (and its whole answer) on 4xx/5xx.
export async function api(path, { signal } = {}) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers, signal });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new HttpError(response.status, (body && body.error) || `${response.status} ${response.statusText}`, body);
  }
  if (body === null) throw new HttpError(response.status, `${path}: the server's answer is not JSON`);
  return body;
}

// h("a", {href, class: "x", "data-id": 3, onclick}, child, [children], null)
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "style" && typeof value === "object") Object.assign(element.style, value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

// replaceChildren that skips null/false and flattens arrays, like h().
export function setChildren(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : String(child));
  }
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
// For the few places that build large listings as HTML text (much faster than nodes).
export function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function fmtInt(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

export function pct(part, whole, digits = 1) {
  if (!whole) return "–";
  const value = (100 * part) / whole;
  if (value > 0 && value < 0.1 && digits <= 1) return "<0.1%";
  return `${value.toFixed(digits)}%`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function fmtBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function relativeTime(unixSeconds) {
  const seconds = Date.now() / 1000 - unixSeconds;
  const steps = [
    [60, "second", 1],
    [3600, "minute", 60],
    [86400, "hour", 3600],
    [86400 * 30, "day", 86400],
    [86400 * 365, "month", 86400 * 30],
    [Infinity, "year", 86400 * 365],
  ];
  if (seconds < 10) return "just now";
  for (const [limit, unit, size] of steps) {
    if (seconds < limit) {
      const n = Math.floor(seconds / size);
      return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "";
}

export function absoluteTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString();
}

// "Python 3.9.16 (7.3.11+dfsg…) [PyPy 7.3.11 with GCC 12.2.0]" → "PyPy 7.3.11 · Python 3.9.16"
export function shortPypyVersion(text) {
  if (!text) return "–";
  const pypy = /PyPy (\d[\w.]*)/.exec(text);
  const python = /^Python (\d[\w.]*)/.exec(text);
  if (!pypy && !python) return text;
  return [pypy && `PyPy ${pypy[1]}`, python && `Python ${python[1]}`].filter(Boolean).join(" · ");
}

export function basename(path) {
  if (!path) return "";
  const slash = path.lastIndexOf("/");
  return slash < 0 ? path : path.slice(slash + 1);
}

export function hex(n) {
  if (n === null || n === undefined) return "–";
  return `0x${Math.trunc(n).toString(16)}`;
}

export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// "file.py:12", shortened to the file name with the full path as a tooltip.
export function fileLine(file, line) {
  if (!file) return h("span", { class: "muted" }, "–");
  return h("span", { class: "loc", title: `${file}${line ? `:${line}` : ""}` }, `${basename(file)}${line ? `:${line}` : ""}`);
}

// A table under a scrolling wrapper: columns are [label, class] pairs.
export function table(className, columns, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: className },
      h("thead", {}, h("tr", {}, columns.map(([label, cls]) => h("th", { class: cls }, label)))),
      h("tbody", {}, rows),
    ),
  );
}
