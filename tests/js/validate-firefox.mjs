// Validates a Gecko-format profile (`jitprof export --format firefox`) against what the
// Firefox Profiler's loader relies on. It publishes no JSON schema or npm package, so each
// rule is derived from its source (firefox-devtools/profiler, file named in the comment).
// The format is described in docs/firefox-format.md.
// Usage: node validate-firefox.mjs [--strict] profile.json   (--strict: rows must have one
// cell per column; the loader itself reads missing trailing cells as null, as Gecko omits them)
// Prints "valid" and a summary, or one problem per line with a JSON path and exits 1.
import { readFileSync } from "node:fs";

// app-logic/constants.ts: GECKO_PROFILE_VERSION (newest stored snapshot). A higher
// version makes gecko-profile-versioning.ts throw "needs to be refreshed".
const MAX_VERSION = 36;
// gecko-profile-versioning.ts: upgraders 1-3 throw, so 3 is the oldest it upgrades...
const OLDEST_UPGRADABLE = 3;
// ...but upgraders 11-27 rewrite categories, the frame/marker schemas and markerSchema,
// so a profile laid out as checked below must claim at least version 27.
const MIN_LAYOUT_VERSION = 27;
// types/profile.ts CategoryColor (utils/colors.ts draws anything else as grey).
const COLORS = new Set(["transparent", "purple", "green", "orange", "yellow", "lightblue",
  "blue", "brown", "magenta", "red", "lightred", "darkgrey", "grey"]);
// types/profile.ts ThreadCPUDeltaUnit / TimelineUnit.
const CPU_UNITS = new Set(["ns", "µs", "variable CPU cycles"]);

// Column layouts from types/gecko-profile.ts (GeckoStackTable, GeckoFrameTable,
// GeckoMarkerSchema). `min` is the number of leading cells a row needs: missing
// trailing cells read as null in process-profile.ts _toStructOfArrays, which is
// harmless only for the nullable columns.
const LAYOUTS = {
  stackTable: { columns: { prefix: 0, frame: 1 }, min: 2 },
  frameTable: { columns: { location: 0, relevantForJS: 1, innerWindowID: 2, implementation: 3,
    line: 4, column: 5, category: 6, subcategory: 7 }, min: 1 },
  markers: { columns: { name: 0, startTime: 1, endTime: 2, phase: 3, category: 4, data: 5 }, min: 5 },
};

const args = process.argv.slice(2);
const strict = args.includes("--strict"), file = args.find((a) => !a.startsWith("--"));
if (!file) console.error("usage: node validate-firefox.mjs [--strict] profile.json"), process.exit(2);

const problems = [];
const fail = (path, message) => problems.push(`${path}: ${message}`);
const show = (v, max = 60) => (v === undefined ? "nothing" : JSON.stringify(v).slice(0, max));
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const isNatural = (v) => Number.isInteger(v) && v >= 0;
const isIndex = (n) => (v) => isNatural(v) && v < n;
const orNull = (test) => (v) => v === null || test(v);
const isString = (v) => typeof v === "string";
const isFlag = (v) => v === 0 || v === 1;

// Checks obj[key] with `test`; reports `what` was expected. Returns whether it passed.
const need = (obj, key, path, test, what) =>
  test(obj[key]) || (fail(`${path}.${key}`, `expected ${what}, got ${show(obj[key])}`), false);

// process-profile.ts _toStructOfArrays reads every table by schema name, and the
// types pin each name to one index; a table is {schema, data: rows[]}. Returns the
// rows to check, or null when the table is unusable.
function tableRows(table, path, columns, min) {
  if (!isObject(table)) return fail(path, `expected a {schema, data} table, got ${show(table)}`), null;
  const { schema, data } = table;
  if (!isObject(schema)) return fail(`${path}.schema`, "expected an object"), null;
  const names = Object.keys(columns); // same names at the same indexes (key order is irrelevant)
  if (Object.keys(schema).length !== names.length || names.some((n) => schema[n] !== columns[n]))
    fail(`${path}.schema`, `expected ${JSON.stringify(columns)}, got ${show(schema, 200)}`);
  if (!Array.isArray(data)) return fail(`${path}.data`, "expected an array of rows"), null;
  const width = names.length;
  data.forEach((row, i) => {
    if (!Array.isArray(row)) fail(`${path}.data[${i}]`, "expected an array");
    else if (row.length > width || row.length < (strict ? width : min))
      fail(`${path}.data[${i}]`, `row has ${row.length} cells, expected ${strict || min === width ? width : `${min}..${width}`}`);
  });
  return data.filter(Array.isArray);
}

// Cell checker for one row: cell(index, test, what) reports path ...data[i][index].
const cellChecker = (path, i, row) => (col, test, what) => {
  const v = col < row.length ? row[col] : null; // short rows read as null (_toStructOfArrays)
  if (!test(v)) fail(`${path}.data[${i}][${col}]`, `expected ${what}, got ${show(v)}`);
  return v;
};

// types/profile.ts Category: {name, color, subcategories}; subcategory 0 is "Other", and
// selectors/profile.ts getDefaultCategory needs a category whose color is exactly "grey".
function checkCategories(categories, path) {
  if (!Array.isArray(categories) || categories.length === 0)
    return fail(path, "expected a non-empty array of categories"), null; // null: skip index checks
  categories.forEach((c, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(c)) return fail(p, "expected {name, color, subcategories}");
    need(c, "name", p, isString, "a string");
    need(c, "color", p, (v) => COLORS.has(v), `one of ${[...COLORS].join(", ")}`);
    if (need(c, "subcategories", p, (v) => Array.isArray(v) && v.length > 0 && v.every(isString),
      "a non-empty array of strings") && c.subcategories[0] !== "Other")
      fail(`${p}.subcategories[0]`, `expected "Other" (the category itself), got ${show(c.subcategories[0])}`);
  });
  if (!categories.some((c) => c?.color === "grey"))
    fail(path, 'no category has color "grey"; the front end uses the first grey one as the default');
  return categories.map((c) => (Array.isArray(c?.subcategories) ? c.subcategories.length : 0));
}

// types/gecko-profile.ts GeckoProfileShortMeta (every process) and GeckoProfileFullMeta (top).
function checkMeta(meta, path, top) {
  if (!isObject(meta)) return fail(path, "expected an object");
  need(meta, "version", path, Number.isInteger, "an integer");
  need(meta, "startTime", path, isNumber, "a number (ms since the Unix epoch)");
  need(meta, "shutdownTime", path, orNull(isNumber), "a number or null");
  // process-profile.ts processMarkerSchema calls meta.markerSchema.map and iterates each .data.
  if (need(meta, "markerSchema", path, Array.isArray, "an array"))
    meta.markerSchema.forEach((s, i) => {
      const p = `${path}.markerSchema[${i}]`;
      if (!isObject(s)) return fail(p, "expected an object");
      need(s, "name", p, isString, "a string");
      need(s, "display", p, Array.isArray, "an array");
      need(s, "data", p, Array.isArray, "an array");
    });
  if (!top) return;
  const v = meta.version;
  if (Number.isInteger(v)) {
    if (v < OLDEST_UPGRADABLE) fail(`${path}.version`, `${v} is rejected by the upgrader (oldest is ${OLDEST_UPGRADABLE})`);
    else if (v > MAX_VERSION) fail(`${path}.version`, `${v} is newer than the profiler's ${MAX_VERSION}; loading throws`);
    else if (v < MIN_LAYOUT_VERSION)
      fail(`${path}.version`, `${v} would run upgraders that rewrite this layout; use ${MIN_LAYOUT_VERSION}..${MAX_VERSION}`);
  }
  need(meta, "interval", path, (x) => isNumber(x) && x > 0, "a positive number (ms)");
  need(meta, "processType", path, Number.isInteger, "an integer");
  for (const key of ["stackwalk", "debug", "gcpoison", "asyncstack"]) need(meta, key, path, isFlag, "0 or 1");
  if ("product" in meta) need(meta, "product", path, isString, "a string");
  if ("presymbolicated" in meta) need(meta, "presymbolicated", path, (x) => typeof x === "boolean", "a boolean");
  // processed-profile-versioning.ts takes any meta.preprocessedProfileVersion as a processed profile.
  if ("preprocessedProfileVersion" in meta) fail(`${path}.preprocessedProfileVersion`, "must be absent in a Gecko profile");
  if ("sampleUnits" in meta && need(meta, "sampleUnits", path, isObject, "an object")) {
    const u = meta.sampleUnits, p = `${path}.sampleUnits`;
    need(u, "time", p, (x) => x === "ms" || x === "bytes", '"ms" or "bytes"');
    need(u, "eventDelay", p, (x) => x === "ms", '"ms"');
    need(u, "threadCPUDelta", p, (x) => CPU_UNITS.has(x), [...CPU_UNITS].join(" or "));
  }
}

// address-locator.ts: every lib's start/end/offset goes through BigInt() and the list is
// binary-searched, so integers, sorted by start, non-overlapping. Strings per LibMapping.
function checkLibs(libs, path) {
  if (!Array.isArray(libs)) return fail(path, "expected an array (may be empty)");
  libs.forEach((lib, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(lib)) return fail(p, "expected an object");
    for (const k of ["start", "end", "offset"]) need(lib, k, p, (x) => isNatural(x) && Number.isSafeInteger(x), "a non-negative integer");
    for (const k of ["arch", "name", "path", "debugName", "debugPath", "breakpadId"]) need(lib, k, p, isString, "a string");
    if (lib.end <= lib.start) fail(p, "end must be greater than start");
    if (i > 0 && isObject(libs[i - 1]) && lib.start < libs[i - 1].end) fail(p, "libs must be sorted by start and not overlap");
  });
}

function checkThread(t, path, subcategoryCounts, hasCpuUnit, totals) {
  if (!isObject(t)) return fail(path, "expected an object");
  need(t, "name", path, isString, "a string");
  need(t, "processType", path, isString, 'a string such as "default"');
  need(t, "pid", path, isNumber, "a number");
  need(t, "tid", path, isNumber, "a number");
  need(t, "registerTime", path, isNumber, "a number (ms)");
  need(t, "unregisterTime", path, orNull(isNumber), "a number or null");
  // processed-profile-versioning.ts: a thread stringArray marks a processed profile.
  if ("stringArray" in t) fail(`${path}.stringArray`, "must be absent in a Gecko profile");
  const strings = need(t, "stringTable", path, (v) => Array.isArray(v) && v.every(isString), "an array of strings")
    ? t.stringTable.length : Infinity; // unknown: skip string index checks rather than cascade
  const str = isIndex(strings);
  const cat = subcategoryCounts ? isIndex(subcategoryCounts.length) : isNatural;
  const catRange = subcategoryCounts ? ` (0..${subcategoryCounts.length - 1})` : "";

  const frames = tableRows(t.frameTable, `${path}.frameTable`, LAYOUTS.frameTable.columns, LAYOUTS.frameTable.min) ?? [];
  frames.forEach((row, i) => {
    const cell = cellChecker(`${path}.frameTable`, i, row);
    cell(0, str, "an index into stringTable"); // the location string (see docs)
    cell(1, orNull((v) => typeof v === "boolean"), "a boolean");
    cell(2, orNull(isNatural), "null or an inner window id");
    cell(3, orNull(str), "null or an index into stringTable");
    cell(4, orNull(isNatural), "null or a line number");
    cell(5, orNull(isNatural), "null or a column number");
    const category = cell(6, orNull(cat), `null or an index into meta.categories${catRange}`);
    // types/profile.ts FrameTable: subcategory "must be non-null if the frame's category is non-null".
    if (subcategoryCounts && cat(category))
      cell(7, isIndex(subcategoryCounts[category]), `an index into meta.categories[${category}].subcategories`);
  });

  const stacks = tableRows(t.stackTable, `${path}.stackTable`, LAYOUTS.stackTable.columns, LAYOUTS.stackTable.min) ?? [];
  stacks.forEach((row, i) => {
    const cell = cellChecker(`${path}.stackTable`, i, row);
    // A prefix is an earlier row: categories are inherited from the prefix (CHANGELOG v53).
    cell(0, orNull(isIndex(i)), `null or an earlier stack index (0..${i - 1})`);
    cell(1, isIndex(frames.length), "an index into frameTable");
  });

  // process-profile.ts _processSamples throws without an eventDelay or responsiveness column.
  const s = t.samples, sp = `${path}.samples`;
  const schema = isObject(s?.schema) ? s.schema : {};
  if (!("eventDelay" in schema) && !("responsiveness" in schema))
    fail(`${sp}.schema`, "needs an eventDelay (or older responsiveness) column; processing throws without one");
  const columns = { stack: 0, time: 1, ["responsiveness" in schema ? "responsiveness" : "eventDelay"]: 2 };
  for (const extra of ["threadCPUDelta", "argumentValues"]) if (extra in schema) columns[extra] = 3;
  const samples = tableRows(s, sp, columns, 2) ?? [];
  if ("threadCPUDelta" in columns && !hasCpuUnit)
    fail(sp, "has a threadCPUDelta column but meta.sampleUnits is missing (types/profile.ts SampleUnits)");
  let previous = -Infinity;
  samples.forEach((row, i) => {
    const cell = cellChecker(sp, i, row);
    cell(0, orNull(isIndex(stacks.length)), "null or an index into stackTable");
    // profile-data.ts getSampleIndexRangeForSelection binary-searches sample times.
    const time = cell(1, isNumber, "a number (ms since meta.startTime)");
    if (isNumber(time) && time < previous) fail(`${sp}.data[${i}][1]`, `time ${time} is before the previous sample's ${previous}`);
    if (isNumber(time)) previous = time;
    cell(2, orNull(isNumber), "null or a number");
    if (row.length > 3) cell(3, orNull(isNumber), "null or a number");
  });

  const markers = tableRows(t.markers, `${path}.markers`, LAYOUTS.markers.columns, LAYOUTS.markers.min) ?? [];
  markers.forEach((row, i) => {
    const cell = cellChecker(`${path}.markers`, i, row);
    cell(0, str, "an index into stringTable");
    const start = cell(1, orNull(isNumber), "null or a number"), end = cell(2, orNull(isNumber), "null or a number");
    // process-profile.ts _sortMarkers throws when (endTime || startTime) is null.
    if ((end || start) === null) fail(`${path}.markers.data[${i}]`, "needs a startTime or a non-zero endTime");
    cell(3, (v) => [0, 1, 2, 3].includes(v), "a phase 0..3");
    cell(4, cat, `an index into meta.categories${catRange}`);
    cell(5, orNull(isObject), "null or a payload object");
  });
  totals.threads++, totals.samples += samples.length, totals.frames += frames.length;
}

// types/gecko-profile.ts GeckoProfileWithMeta; the same shape recurses into `processes`.
// Frame and marker categories index the top-level meta.categories (process-profile.ts
// copies only the parent's list into the processed profile).
function checkProfile(p, path, top, subcategoryCounts, hasCpuUnit, totals) {
  if (!isObject(p)) return fail(path, "expected a profile object");
  checkMeta(p.meta, `${path}.meta`, top);
  if (top) {
    subcategoryCounts = checkCategories(p.meta?.categories, `${path}.meta.categories`);
    hasCpuUnit = isObject(p.meta?.sampleUnits);
  } else if (!Array.isArray(p.meta?.categories)) fail(`${path}.meta.categories`, "expected an array");
  checkLibs(p.libs, `${path}.libs`);
  // process-profile.ts reads `pausedRanges || []`; the type requires it, items per types/profile.ts.
  if (need(p, "pausedRanges", path, Array.isArray, "an array (may be empty)"))
    p.pausedRanges.forEach((r, i) => {
      const rp = `${path}.pausedRanges[${i}]`;
      if (!isObject(r)) return fail(rp, "expected an object");
      for (const k of ["startTime", "endTime"]) need(r, k, rp, orNull(isNumber), "a number or null");
      need(r, "reason", rp, (v) => v === "profiler-paused" || v === "collecting", '"profiler-paused" or "collecting"');
    });
  // Only read for JS locations with a "[N]" suffix; if present it must be a table.
  if ("sources" in p && !(isObject(p.sources) && isObject(p.sources.schema) && Array.isArray(p.sources.data)))
    fail(`${path}.sources`, "expected a {schema, data} table");
  if (need(p, "threads", path, Array.isArray, "an array"))
    p.threads.forEach((t, i) => checkThread(t, `${path}.threads[${i}]`, subcategoryCounts, hasCpuUnit, totals));
  // processGeckoProfile iterates `for (... of geckoProfile.processes)`: required, may be [].
  if (need(p, "processes", path, Array.isArray, "an array (may be empty)"))
    p.processes.forEach((sub, i) => checkProfile(sub, `${path}.processes[${i}]`, false, subcategoryCounts, hasCpuUnit, totals));
}

let profile;
try { profile = JSON.parse(readFileSync(file, "utf8")); } catch (e) {
  console.log(`$: not readable as JSON: ${e.message}`);
  process.exit(1);
}
const totals = { threads: 0, samples: 0, frames: 0 };
checkProfile(profile, "$", true, [], false, totals);
if (problems.length) {
  const LIMIT = 100;
  problems.slice(0, LIMIT).forEach((p) => console.log(p));
  if (problems.length > LIMIT) console.log(`... and ${problems.length - LIMIT} more problems`);
  process.exit(1);
}
console.log("valid");
console.log(`Gecko profile version ${profile.meta.version}: ${totals.threads} threads, ${totals.samples} samples, ` +
  `${totals.frames} frames, ${profile.meta.categories.length} categories`);
