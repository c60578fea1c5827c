// Checks jitprof's web viewer in headless Chromium, as a user would: the upload
// list, a profile's flame graph and hot traces, a trace's machine code with its
// heat, a guard's bridge, and (with --big-bundle) how fast a trace page of a
// bundle with many traces loads. Prints one line per check ("ok ...", "FAIL ...",
// "skip ..."), the browser console errors it saw, and exits 1 if a check failed.
// With --crash-bundle, a crash recorded in JIT code is shown and links to its
// trace; with --crash-thread NAME, the crashed thread is named NAME.
// With --threads-bundle, its profile page lists the threads of --threads
// (comma-separated Python names) as "NAME (tid N)", their OS name on hover.
// With --runtime RID (a vmprof-python upload whose bundle is --runtime-bundle
// ID7), the links vmprof-python prints, /#/RID and /#/RID/traces, open that
// bundle's profile and its traces list, which names --runtime-function.
// With --query, the query page (/p/ID/query) answers what `jitprof query` answers:
// LIST is the comma-separated trace ids (traces, guards, ops, samples: one per
// row the CLI returned) or method names (methods); the page's total must be the
// number of items in LIST, or N of --query-total. With --query-error, a malformed
// query shows its error with a caret under column N.
// Usage: node browser-test.mjs --server URL --bundle ID --function NAME --out DIR
//        [--big-bundle ID2] [--crash-bundle ID3 [--crash-thread NAME]] [--token TOKEN] [--chromium PATH]
//        [--threads-bundle ID5 --threads NAMES]
//        [--query-bundle ID4 (default: --bundle)] [--query TEXT --query-expect LIST [--query-total N]]
//        [--query-error TEXT --query-error-column N]
//        [--diff-old ID5 --diff-new ID6 --diff-function NAME]
//        [--runtime RID --runtime-bundle ID7 --runtime-function NAME]
// With --diff-old, /diff/ID5/ID6 (reached from ID6's page by "Compare with…")
// draws a differential flame graph where NAME's frame is coloured as shrunk,
// its tooltip says so, and the table of changed functions shows NAME's drop.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const options = parseArgs(process.argv.slice(2));
for (const required of ["server", "bundle", "function", "out"]) {
  if (!options[required]) {
    console.error("usage: node browser-test.mjs --server URL --bundle ID --function NAME --out DIR [--big-bundle ID2] [--crash-bundle ID3 [--crash-thread NAME]] [--token TOKEN]");
    console.error("       [--threads-bundle ID5 --threads NAMES]");
    console.error("       [--query-bundle ID4] [--query TEXT --query-expect LIST [--query-total N]] [--query-error TEXT --query-error-column N]");
    process.exit(2);
  }
}
for (const [option, needs] of [["threads-bundle", "threads"], ["threads", "threads-bundle"], ["crash-thread", "crash-bundle"], ["diff-old", "diff-new"], ["diff-new", "diff-function"], ["diff-function", "diff-old"], ["runtime", "runtime-bundle"], ["runtime-bundle", "runtime-function"], ["query", "query-expect"], ["query-expect", "query"], ["query-error", "query-error-column"], ["query-error-column", "query-error"]]) {
  if (options[option] !== undefined && options[needs] === undefined) {
    console.error(`--${option} needs --${needs}`);
    process.exit(2);
  }
}
const server = options.server.replace(/\/+$/, "");
const bundle = options.bundle;
const out = options.out;
mkdirSync(out, { recursive: true });

const TIMEOUT = 15000;
const results = { passed: 0, failed: 0, skipped: 0 };
const consoleErrors = [];
const pageErrors = [];

function parseArgs(args) {
  const parsed = {};
  for (let i = 0; i < args.length; i++) {
    const match = /^--([\w-]+)$/.exec(args[i]);
    if (!match) {
      console.error(`unexpected argument: ${args[i]}`);
      process.exit(2);
    }
    if (i + 1 >= args.length) {
      console.error(`--${match[1]} needs a value`);
      process.exit(2);
    }
    parsed[match[1]] = args[++i];
  }
  return parsed;
}

function ok(message) {
  results.passed++;
  console.log(`ok ${message}`);
}
function fail(message) {
  results.failed++;
  console.log(`FAIL ${message}`);
}
function skip(message) {
  results.skipped++;
  console.log(`skip ${message}`);
}
function check(condition, message, detail = "") {
  if (condition) ok(message);
  else fail(detail ? `${message}: ${detail}` : message);
  return condition;
}

// A fresh context (cold cache, own storage) whose pages report their errors.
async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (options.token) {
    await context.addInitScript((token) => sessionStorage.setItem("jitprof.token", token), options.token);
  }
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(`${page.url()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => pageErrors.push(`${page.url()}: ${error.message}`));
  return page;
}

async function apiGet(path) {
  const headers = options.token ? { Authorization: `Bearer ${options.token}` } : {};
  const response = await fetch(`${server}${path}`, { headers });
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return response.json();
}

const browser = await chromium.launch({
  executablePath: options.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});

try {
  const page = await newPage(browser);
  await checkList(page);
  const hottest = await checkProfile(page);
  await checkFlameSearch(browser);
  const trace = hottest ? await checkTrace(page, hottest) : null;
  await checkBridge(page, trace);
  if (options["big-bundle"]) await checkBigTrace(browser, options["big-bundle"]);
  if (options["crash-bundle"]) await checkCrash(browser, options["crash-bundle"]);
  if (options["threads-bundle"]) await checkThreads(browser, options["threads-bundle"], options.threads.split(","));
  if (options.query !== undefined) await checkQuery(browser, options["query-bundle"] || bundle);
  if (options["query-error"] !== undefined) await checkQueryError(browser, options["query-bundle"] || bundle);
  if (options["diff-old"]) await checkDiff(browser, options["diff-old"], options["diff-new"], options["diff-function"]);
  if (options.runtime) await checkRuntimeLinks(browser, options.runtime, options["runtime-bundle"], options["runtime-function"]);
} catch (error) {
  fail(`the test itself stopped: ${error.stack || error}`);
} finally {
  await browser.close();
}

console.log(`browser console errors seen: ${consoleErrors.length}`);
for (const error of consoleErrors) console.log(`  console error: ${error}`);
const refused = consoleErrors.filter((error) => /Content Security Policy/i.test(error));
check(refused.length === 0, "the viewer runs under the server's Content-Security-Policy", refused.join(" | "));
check(pageErrors.length === 0, "no uncaught errors in the pages", pageErrors.join(" | "));
console.log(`${results.passed} passed, ${results.failed} failed, ${results.skipped} skipped`);
process.exit(results.failed ? 1 : 0);

// a. The upload list shows the bundle (on its first page, or by searching for it).
async function checkList(page) {
  try {
    await page.goto(`${server}/`);
    await page.waitForSelector("table.uploads tbody tr, .results .notice");
    const link = page.locator(`a.upload-link[href="/p/${bundle}"]`);
    let how = "on the first page";
    if ((await link.count()) === 0) {
      how = "by searching for its id";
      // Not on the first page: search for it as a user would.
      await page.fill('input[type="search"]', bundle.slice(0, 16));
      await link.first().waitFor({ timeout: 5000 }).catch(() => {});
    }
    const found = (await link.count()) > 0;
    const command = found ? (await link.first().textContent()).trim() : "";
    check(found, `list page shows the upload ${bundle.slice(0, 12)}${command ? ` (${command})` : ""} ${how}`);
  } catch (error) {
    fail(`list page: ${error.message}`);
  }
  await page.screenshot({ path: join(out, "list.png") });
}

// b. The profile: a drawn flame graph holding NAME, and a loop among the hot traces.
async function checkProfile(page) {
  let hottest = null;
  try {
    await page.goto(`${server}/p/${bundle}`);
    await page.waitForSelector("#flame[data-frames], .flame-slot .notice");
    const notice = await page.$(".flame-slot .notice");
    if (notice) throw new Error(`no flame graph: ${await notice.textContent()}`);
    const frames = await page.$$eval("#flame-index li", (items) => items.map((li) => li.dataset.frame));
    // The canvas really has pixels on it, not only a laid-out list.
    const painted = await page.$eval("#flame", (canvas) => {
      const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, Math.min(canvas.height, 200)).data;
      let opaque = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i]) opaque++;
      return opaque;
    });
    check(frames.length > 0 && painted > 0, `flame graph drawn (${frames.length} frames)`, `${frames.length} frames, ${painted} painted pixels`);
    const name = options.function;
    const hits = frames.filter((frame) => frame === name || frame.startsWith(`${name} (`));
    check(hits.length > 0, `flame graph contains the hot function ${name} (${hits[0] || "absent"})`);

    // The PyPy runtime card says what PyPy's own log timed, as the API has it.
    const runtime = (await apiGet(`/api/p/${bundle}`)).runtime;
    const card = await page.$eval(".card.runtime", (element) => element.textContent.replace(/\s+/g, " "));
    const tracing = new RegExp(`· tracing[0-9.]+%${runtime.jit.tracing.count} \\(p50`);
    check(runtime.timed && card.includes("timed by PyPy's own log sections") && tracing.test(card),
      `PyPy runtime card: phases timed, ${runtime.jit.tracing.count} tracing sections`, card.slice(0, 300));
    const tracingSegment = await page.$(".stacked-bar .segment[data-category='jit-tracing']");
    check(!runtime.categories["jit-tracing"] || tracingSegment !== null,
      `where the time goes shows JIT tracing (${runtime.categories["jit-tracing"]} samples)`);

    await page.waitForSelector(".hot-traces table, .hot-traces .notice");
    const loops = await page.$$eval(".hot-traces tbody tr[data-type='loop']", (rows) =>
      rows.map((row) => ({ id: row.dataset.traceId, samples: Number(row.dataset.samples) })),
    );
    if (check(loops.length > 0, `hot traces table lists ${loops.length} loop${loops.length === 1 ? "" : "s"}`)) hottest = loops[0];
  } catch (error) {
    fail(`profile page: ${error.message}`);
  }
  await page.screenshot({ path: join(out, "profile.png") });
  return hottest;
}

// The flame graph's search: text and regular expressions match, and a
// pattern that backtracks exponentially (on a frame named aaa…a!) does not
// freeze the tab.
async function checkFlameSearch(browser) {
  let page = null;
  try {
    const tree = await apiGet(`/api/p/${bundle}/flame`);
    tree.children.push({ frame: `${"a".repeat(40)}!`, category: "python", total: 1, self: 1, children: [] });
    page = await newPage(browser);
    await page.route(`${server}/api/p/${bundle}/flame`, (route) => route.fulfill({ json: tree }));
    await page.goto(`${server}/p/${bundle}`);
    await page.waitForSelector("#flame[data-frames]");
    const matched = async (term) => {
      await page.fill(".flame-search", term);
      return Number(await page.$eval(".flame-match", (info) => info.dataset.samples || 0));
    };
    const name = options.function;
    check((await matched(`${name} (`)) > 0 && (await matched(`/^${name} \\(/`)) > 0,
      `flame search finds ${name} by text and by regular expression`);
    const started = Date.now();
    const bombed = await matched("/(a+)+$/");
    const elapsed = Date.now() - started;
    check(elapsed < 2000, `flame search for /(a+)+$/ answers in ${elapsed} ms (searched as text: ${bombed} samples)`);
  } catch (error) {
    fail(`flame search: ${error.message}`);
  } finally {
    if (page) await page.context().close();
  }
}

// c. Clicking the hottest loop's row opens its trace page: asm ops with
// disassembled instructions, and per-op heat adding up to the trace's samples.
async function checkTrace(page, hottest) {
  let trace = null;
  try {
    const row = page.locator(`.hot-traces tbody tr[data-trace-id="${hottest.id}"]`);
    await row.locator("td.num").first().click(); // the row, not its link
    await page.waitForURL(new RegExp(`/p/${bundle}/trace/${hottest.id}(\\?|$)`));
    await page.waitForSelector("#ops[data-complete] .op"); // long traces are inserted in chunks
    const info = await page.evaluate(() => ({
      id: document.querySelector(".trace-header h1")?.dataset.traceId,
      stage: document.querySelector("#ops")?.dataset.stage,
      ops: document.querySelectorAll("#ops .op").length,
      insns: document.querySelectorAll("#ops .insn").length,
      heat: [...document.querySelectorAll("#ops .op, #ops .entry-code")].reduce((sum, row) => sum + Number(row.dataset.samples || 0), 0),
      headerSamples: Number(document.querySelector(".trace-samples")?.dataset.samples),
    }));
    check(info.id === hottest.id && info.stage === "asm", `trace page of loop ${hottest.id} opened on the asm stage (${info.ops} ops)`, JSON.stringify(info));
    check(info.insns > 0, `trace ${hottest.id} shows ${info.insns} disassembled instructions`);
    check(
      info.heat === hottest.samples && info.headerSamples === hottest.samples,
      `per-op heat of trace ${hottest.id} adds up to its ${hottest.samples} samples`,
      `ops+entry ${info.heat}, trace header ${info.headerSamples}, hot traces table ${hottest.samples}`,
    );
    trace = hottest;
  } catch (error) {
    fail(`trace page: ${error.message}`);
  }
  await page.screenshot({ path: join(out, "trace.png") });
  return trace;
}

// d. A guard's "→ bridge N" link lands on that bridge's page.
async function checkBridge(page, trace) {
  if (!trace) return skip("bridge: no trace page was opened");
  try {
    const links = page.locator("#ops a.guard-link");
    if ((await links.count()) === 0) return skip(`bridge: trace ${trace.id} has no guard with a bridge`);
    const link = links.first();
    const bridge = await link.getAttribute("data-trace-id");
    await link.scrollIntoViewIfNeeded();
    await link.click();
    await page.waitForURL(new RegExp(`/p/${bundle}/trace/${bridge}(\\?|#|$)`));
    const header = page.locator(`.trace-header h1[data-trace-id="${bridge}"]`);
    await header.waitFor();
    const text = (await header.textContent()) || "";
    const type = await header.getAttribute("data-trace-type");
    check(type === "bridge" && /bridge/i.test(text), `guard link of trace ${trace.id} opens bridge ${bridge} (${text.trim().replace(/\s+/g, " ")})`, `type ${type}`);
  } catch (error) {
    fail(`bridge page: ${error.message}`);
  }
  await page.screenshot({ path: join(out, "bridge.png") });
}

// f. A bundle whose program died in JIT code: the profile page shows the crash
// record, and its trace link opens the trace the fault hit.
async function checkCrash(browser, id) {
  let page = null;
  try {
    const summary = await apiGet(`/api/p/${id}`);
    const expected = summary.crash && summary.crash.trace;
    if (!expected) return fail(`crash bundle ${id.slice(0, 12)} has no crash in a trace`);
    page = await newPage(browser);
    await page.goto(`${server}/p/${id}`);
    const card = page.locator("#crash");
    await card.waitFor();
    const text = (await card.textContent()) || "";
    check(text.includes(summary.crash.signal_name) && text.includes(summary.crash.fault_address_hex || ""),
      `crash record shows ${summary.crash.signal_name} and its JIT frames`);
    if (options["crash-thread"]) {
      const thread = `${options["crash-thread"]} (tid ${summary.crash.tid})`;
      const banner = (await page.locator(".crash-banner").textContent()) || "";
      check(banner.includes(`in thread ${thread}`) && text.includes(thread), `the crash names the thread that crashed: ${thread}`,
        `banner "${banner}"`);
    }
    await page.screenshot({ path: join(out, "crash.png") });
    const link = card.locator(`a[data-trace-id="${expected.id}"]`).first();
    await link.click();
    await page.waitForURL(new RegExp(`/p/${id}/trace/${expected.id}(\\?|#|$)`));
    await page.locator(`.trace-header h1[data-trace-id="${expected.id}"]`).waitFor();
    check(true, `crash record links to ${expected.type} ${expected.id}, the trace it hit`);
  } catch (error) {
    fail(`crash page: ${error.message}`);
  } finally {
    if (page) await page.context().close();
  }
  await checkMistypedCrash(browser, id);
}

// g. A program's threads by their Python names: the profile page's threads
// card lists each as "NAME (tid N)", with its OS name on hover.
async function checkThreads(browser, id, names) {
  let page = null;
  try {
    const summary = await apiGet(`/api/p/${id}`);
    page = await newPage(browser);
    await page.goto(`${server}/p/${id}`);
    const rows = page.locator(".card.threads tbody tr");
    await rows.first().waitFor();
    const shown = await rows.evaluateAll((trs) => trs.map((tr) => {
      const cell = tr.querySelector(".thread-name");
      return { tid: tr.dataset.tid, text: cell ? cell.textContent : "", title: cell ? cell.getAttribute("title") : null };
    }));
    for (const name of names) {
      const thread = (summary.threads || []).find((t) => t.name === name);
      if (!thread) {
        fail(`thread ${name}: not in the summary's threads (${JSON.stringify(summary.threads)})`);
        continue;
      }
      const row = shown.find((r) => r.tid === String(thread.tid));
      check(row && row.text === `${name} (tid ${thread.tid})` && row.title === `OS name: ${thread.os_name}`,
        `threads card shows ${name} (tid ${thread.tid}), OS name ${thread.os_name} on hover`, JSON.stringify(row));
    }
    await page.locator(".card.threads").screenshot({ path: join(out, "threads.png") });
  } catch (error) {
    fail(`threads card: ${error.message}`);
  } finally {
    if (page) await page.context().close();
  }
}

// A crash record whose fields have the wrong types (a hand-made bundle's)
// leaves them out: the profile page still renders, crash card included.
async function checkMistypedCrash(browser, id) {
  let page = null;
  try {
    const summary = await apiGet(`/api/p/${id}`);
    summary.crash = { ...summary.crash, signal: "SEGV?", tid: [1], thread: { label: 7 }, registers_hex: "rip", trace: { id: "x" },
      frames: [7, { jit: "yes", address: "0x1", source: "f.py", path: 3 }, ...summary.crash.frames.slice(0, 2)] };
    page = await newPage(browser);
    await page.route(`${server}/api/p/${id}`, (route) => route.fulfill({ json: summary }));
    await page.goto(`${server}/p/${id}`);
    await page.locator("#crash").waitFor();
    const rows = await page.locator("#crash table tbody tr").count();
    check(rows === 3 && (await page.locator(".error-box").count()) === 0,
      `a crash record with fields of the wrong type still shows (${rows} of its frames)`);
  } catch (error) {
    fail(`crash page with mistyped fields: ${error.message}`);
  } finally {
    if (page) await page.context().close();
  }
}

// e. A fresh load of the hottest trace of a bundle with many traces renders
// its ops within a second of the navigation's start.
async function checkBigTrace(browser, big) {
  let page = null;
  try {
    const list = await apiGet(`/api/p/${big}/traces?limit=1&sort=samples`);
    if (!list.traces.length) return fail(`big bundle ${big.slice(0, 12)} has no traces`);
    const tid = list.traces[0].id;
    page = await newPage(browser);
    // Notes when the first op rows appear and when the frame that lays them
    // out and paints them is done (the task after its animation frame), in ms
    // since the navigation started (performance.now()'s origin); and when
    // the listing is complete in the DOM.
    await page.addInitScript(() => {
      const observer = new MutationObserver(() => {
        const listing = document.querySelector("#ops");
        if (window.__opsRenderedAt === undefined && !window.__opsSeen && listing && listing.querySelector(".op")) {
          window.__opsSeen = true;
          requestAnimationFrame(() => setTimeout(() => (window.__opsRenderedAt = performance.now()), 0));
        }
        if (listing && listing.dataset.complete) {
          observer.disconnect();
          window.__opsCompleteAt = performance.now();
        }
      });
      observer.observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-complete"] });
    });
    await page.goto(`${server}/p/${big}/trace/${tid}`);
    await page.waitForFunction(() => window.__opsRenderedAt !== undefined && window.__opsCompleteAt !== undefined);
    const [ms, complete] = (await page.evaluate(() => [window.__opsRenderedAt, window.__opsCompleteAt])).map(Math.round);
    const ops = await page.$$eval("#ops .op", (rows) => rows.length);
    console.log(`trace page of bundle with ${list.total} traces loaded in ${ms} ms`);
    console.log(`  (trace ${tid}: ${ops} ops; the whole listing was in the DOM after ${complete} ms)`);
    check(ms < 1000, `big bundle's trace ${tid} (${ops} ops) rendered in under 1000 ms`, `${ms} ms`);
    await page.screenshot({ path: join(out, "big-trace.png") });
  } catch (error) {
    fail(`big bundle trace page: ${error.message}`);
  } finally {
    if (page) await page.context().close();
  }
}

// g. The query page: typed into #query-input on /p/ID/query and run with Enter,
// the query pushes ?q= and lists the rows `jitprof query` returned; Back and
// Forward move between the empty page and the results; a row opens its page.
async function checkQuery(browser, id) {
  let page = null;
  const text = options.query;
  const expected = options["query-expect"].split(",").map((item) => item.trim()).filter(Boolean);
  const expectedTotal = options["query-total"] !== undefined ? Number(options["query-total"]) : expected.length;
  try {
    page = await newPage(browser);
    await page.goto(`${server}/p/${id}/query`);
    const input = page.locator("#query-input");
    await input.waitFor();
    await input.pressSequentially(text);
    await input.press("Enter");
    const results = page.locator("#query-results");
    await results.waitFor();
    const pushed = new URL(page.url());
    check(pushed.pathname === `/p/${id}/query` && pushed.searchParams.get("q") === text, `running the query pushes its URL (${pushed.pathname}${pushed.search})`, page.url());
    // Long answers are shown a few hundred rows at a time: show them all.
    for (let round = 0; round < 100 && (await page.locator(".query-more button").count()) > 0; round++) {
      await page.locator(".query-more button").last().click();
    }
    const collection = await results.getAttribute("data-collection");
    const total = Number(await results.getAttribute("data-total"));
    const key = collection === "methods" ? "method" : "traceId";
    const got = await page.$$eval("#query-results tr[data-row]", (rows, key) => rows.map((row) => row.dataset[key] ?? ""), key);
    // Samples outside any trace have no trace id: LIST names the ones in traces.
    const gotSet = new Set(got.filter((item) => item !== ""));
    const expectedSet = new Set(expected);
    const same = gotSet.size === expectedSet.size && [...expectedSet].every((item) => gotSet.has(item));
    check(
      same && total === expectedTotal,
      `query '${text}' in the viewer returns the CLI's ${expectedTotal} row${expectedTotal === 1 ? "" : "s"} (${collection}: ${brief(expected)})`,
      `the page shows ${collection} ${brief(got)} in ${got.length} rows, data-total ${total}; the CLI: ${brief(expected)}, total ${expectedTotal}`,
    );
    await page.screenshot({ path: join(out, "query.png") });

    // Back: the empty query page again; Forward: the same results.
    await page.goBack();
    await page.waitForURL((url) => url.pathname === `/p/${id}/query` && !url.searchParams.has("q"));
    await page.waitForFunction(() => !document.querySelector("#query-results") && document.querySelector("#query-input")?.value === "");
    await page.goForward();
    await page.locator("#query-results").waitFor();
    const again = Number(await page.locator("#query-results").getAttribute("data-total"));
    check(again === total && (await input.inputValue()) === text, "Back shows the empty query page, Forward the results again", `total ${again}, input '${await input.inputValue()}'`);

    // The first row opens its page: a trace (at its op), or the flame graph searched for a method.
    const first = page.locator("#query-results tr[data-row]").first();
    if ((await first.count()) === 0) return;
    const cells = first.locator("td");
    const target = (await cells.count()) > 1 ? cells.nth(1) : cells.first();
    if (collection === "methods") {
      const method = await first.getAttribute("data-method");
      await target.click();
      await page.waitForURL((url) => url.pathname === `/p/${id}` && (url.searchParams.get("search") || "").startsWith(method));
      await page.waitForSelector("#flame[data-frames], .flame-slot .notice");
      const search = await page.locator(".flame-search").inputValue().catch(() => "");
      check(search.startsWith(method), `method row '${method}' opens the flame graph searched for it (${search})`, `search box '${search}'`);
    } else {
      const tid = await first.getAttribute("data-trace-id");
      if (!tid) return skip(`query row link: the first ${collection} row has no trace`);
      // A link in the second cell (guards, ops) has its own target: click a cell of plain text.
      await first.evaluate((row) => row.click());
      await page.waitForURL(new RegExp(`/p/${id}/trace/${tid}(\\?|#|$)`));
      await page.locator(`.trace-header h1[data-trace-id="${tid}"]`).waitFor();
      check(true, `first ${collection} row opens trace ${tid} (${new URL(page.url()).pathname}${new URL(page.url()).search}${new URL(page.url()).hash})`);
    }
  } catch (error) {
    fail(`query page: ${error.message}`);
    if (page) await page.screenshot({ path: join(out, "query.png") }).catch(() => {});
  } finally {
    if (page) await page.context().close();
  }
}

// i. vmprof-python's printed links: /#/RID leads to the run's profile,
// /#/RID/traces to its traces list, with the hot function's loop in it.
async function checkRuntimeLinks(browser, rid, id, name) {
  let page = null;
  try {
    page = await newPage(browser);
    await page.goto(`${server}/#/${rid}`);
    await page.waitForURL(`${server}/p/${id}`);
    check(true, `/#/${rid.slice(0, 8)}… opens the run's profile /p/${id.slice(0, 12)}…`);
    await page.goto(`${server}/#/${rid}/traces`);
    await page.waitForURL(`${server}/p/${id}/traces`);
    await page.locator("tr[data-trace-id]").first().waitFor();
    const names = await page.$$eval("tr[data-trace-id] td.name", (cells) => cells.map((cell) => cell.textContent.trim()));
    const total = (await apiGet(`/api/p/${id}/traces?limit=1`)).total;
    check(names.includes(name),
      `/#/${rid.slice(0, 8)}…/traces opens the run's traces: ${names.length} rows of ${total}, ${name}'s among them`,
      `rows name ${brief(names)}`);
    await page.screenshot({ path: join(out, "runtime-traces.png") });
  } catch (error) {
    fail(`vmprof-python links: ${error.message}`);
    if (page) await page.screenshot({ path: join(out, "runtime-traces.png") }).catch(() => {});
  } finally {
    if (page) await page.context().close();
  }
}

// "6, 15, 21": the distinct items of a list, the first few of them.
function brief(items) {
  const distinct = [...new Set(items)];
  if (!distinct.length) return "none";
  return distinct.length > 12 ? `${distinct.slice(0, 12).join(", ")}, … ${distinct.length} distinct` : distinct.join(", ");
}

// h. A malformed query opened by its URL: the box holds it, and the error
// shows the query with a caret under the failing column, as the CLI does.
async function checkQueryError(browser, id) {
  let page = null;
  const text = options["query-error"];
  const column = Number(options["query-error-column"]);
  try {
    page = await newPage(browser);
    await page.goto(`${server}/p/${id}/query?q=${encodeURIComponent(text)}`);
    const error = page.locator(`#query-error[data-column="${column}"]`);
    await error.waitFor().catch(async () => {
      const shown = await page.locator("#query-error").getAttribute("data-column", { timeout: 1000 }).catch(() => "none");
      throw new Error(`no #query-error[data-column="${column}"] (data-column: ${shown})`);
    });
    const message = ((await error.locator(".message").textContent()) || "").trim();
    const line = await error.locator(".query-line").textContent();
    const caret = await error.locator(".caret-line").textContent();
    const prefilled = await page.locator("#query-input").inputValue();
    check(
      line === text && caret === `${" ".repeat(column - 1)}^` && prefilled === text,
      `malformed query '${text}' shows its error with a caret under column ${column} (${message.slice(0, 60)}${message.length > 60 ? "…" : ""})`,
      `line '${line}', caret '${caret}', input '${prefilled}'`,
    );
    await page.screenshot({ path: join(out, "query-error.png") });
  } catch (error) {
    fail(`query error: ${error.message}`);
  } finally {
    if (page) await page.context().close();
  }
}

// i. Two uploads compared: ticking both in the list offers /diff/OLD/NEW (the
// older as the old run), and so does "Compare with…" the old one on the new
// one's page; its differential flame graph colours NAME's frame as shrunk
// (blue), the tooltip gives the drop, and so does the table.
async function checkDiff(browser, oldId, newId, name) {
  let page = null;
  try {
    page = await newPage(browser);
    await page.goto(`${server}/`);
    const compare = page.locator(".compare-selected");
    await page.check(`tr[data-id="${newId}"] .compare-pick`);
    const hiddenWithOne = await compare.isHidden();
    await page.check(`tr[data-id="${oldId}"] .compare-pick`);
    await compare.waitFor({ state: "visible" });
    const href = await compare.getAttribute("href");
    check(hiddenWithOne && href === `/diff/${oldId}/${newId}`, `ticking two uploads in the list offers ${href}`, `hidden with one: ${hiddenWithOne}, href ${href}`);
    await page.goto(`${server}/p/${newId}`);
    await page.fill(".compare-with", `${server}/p/${oldId}`);
    await page.click(".compare-form button");
    await page.waitForURL(`${server}/diff/${oldId}/${newId}`);
    check(true, `"Compare with…" on the new upload's page opens /diff/${oldId.slice(0, 8)}/${newId.slice(0, 8)}`);
    await page.waitForSelector("#flame[data-frames]");
    const frame = page.locator(`#flame-index li[data-frame^="${name} ("]`).first();
    await frame.waitFor({ state: "attached" });
    const data = await frame.evaluate((li) => ({ ...li.dataset }));
    const [r, g, b] = (/rgb\((\d+), (\d+), (\d+)\)/.exec(data.fill) || []).slice(1).map(Number);
    check(data.diff === "shrank" && Number(data.change) < -20 && b > r && b > g,
      `differential flame graph colours ${name} as shrunk (${data.change} points, ${data.fill}; old ${data.oldTotal} samples, new ${data.total})`,
      JSON.stringify(data));
    const painted = await page.$eval("#flame", (canvas, at) => {
      const ratio = window.devicePixelRatio || 1;
      const pixel = canvas.getContext("2d").getImageData(Math.round(at.x * ratio), Math.round(at.y * ratio), 1, 1).data;
      return `rgb(${pixel[0]}, ${pixel[1]}, ${pixel[2]})`;
    }, { x: Number(data.x) + Number(data.w) / 2, y: Number(data.depth) * 18 + 1 });
    check(painted === data.fill, `the canvas paints ${name}'s frame in that colour (${painted})`, `${painted} vs ${data.fill}`);

    const box = await page.locator("#flame").boundingBox();
    await page.mouse.move(box.x + Number(data.x) + Number(data.w) / 2, box.y + Number(data.depth) * 18 + 9);
    const tooltip = page.locator(".flame-graph .tooltip");
    await tooltip.waitFor({ state: "visible" });
    const tip = (await tooltip.textContent()).replace(/\s+/g, " ");
    check(tip.includes(`${name} (`) && /change: −\d/.test(tip) && tip.includes(`old: ${Number(data.oldTotal).toLocaleString("en-US")} samples`),
      `its tooltip gives old and new samples and the drop (${tip.slice(tip.indexOf("old:"), tip.indexOf("old:") + 120)})`, tip);

    const api = await apiGet(`/api/diff/${oldId}/${newId}`);
    const expected = api.functions.find((f) => f.name === name);
    const row = page.locator(`table.diff-functions tr[data-function="${name}"]`);
    const cells = await row.locator("td").allTextContents();
    const shrunk = await row.locator("td.shrank").count();
    check(expected && expected.self_points < -20 && cells[4] === `−${Math.abs(expected.self_points).toFixed(1)} pts` && shrunk >= 2,
      `the table of changed functions shows ${name}'s drop (${cells.slice(2, 6).join(", ")})`, cells.join(" | "));
    await page.screenshot({ path: join(out, "diff.png"), fullPage: true });
  } catch (error) {
    fail(`diff page: ${error.message}`);
    if (page) await page.screenshot({ path: join(out, "diff.png") }).catch(() => {});
  } finally {
    if (page) await page.context().close();
  }
}
