// Drives the dashboard page in headless Chromium for tests/e2e/dashboard.rs.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT --token T \
//     --screenshot target/test-artifacts/dashboard.png --user-data-dir DIR \
//     [--chromium /usr/bin/chromium] [--timeout-ms 60000]
//
// Talks to the Rust test in JSON lines: prints {"event":"live"} once the
// page is open, has the token and its stream of requests is connected; then
// reads one line {"request_id": "...", "model": "..."} naming a request the
// test made after that, waits for its row in the live table and for the
// charts, takes the screenshot and prints {"event":"done", ...} with what it
// saw: the row's cells, the charts' marks, the totals, the plugin table, and
// every console message, page error, failed request and HTTP error, each
// tagged with the phase it happened in ("before-token", "wrong-token" after
// a wrong token was given, or "after-token").
// The Rust test makes the assertions. On a failure it prints
// {"event":"error", ...} (with the same record, and still a screenshot) and
// exits 1; past --timeout-ms it exits 2 whatever it was doing.
//
// Playwright (playwright-core, pinned in package-lock.json, installed with
// the distribution's Chromium by scripts/deps/chromium) only drives the
// browser; nothing is downloaded.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string", default: "" },
    screenshot: { type: "string" },
    "user-data-dir": { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "60000" },
  },
});
for (const required of ["url", "screenshot", "user-data-dir"]) {
  if (!options[required]) {
    console.error(`dashboard.mjs: --${required} is required`);
    process.exit(64);
  }
}
const timeoutMs = Number(options["timeout-ms"]);
/** Each wait for the page; the whole run is bounded by --timeout-ms. */
const stepMs = Math.min(20000, timeoutMs);

function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const record = { console: [], page_errors: [], failed_requests: [], http_errors: [] };
let phase = options.token ? "before-token" : "after-token";
let recording = true;

const watchdog = setTimeout(() => {
  say({ event: "error", message: `the browser test did not finish within ${timeoutMs} ms`, ...record });
  process.exit(2);
}, timeoutMs);

/** The next line on stdin, parsed; bounded by the watchdog. */
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function nextMessage() {
  const { value, done } = await stdinLines.next();
  if (done) throw new Error("the test closed stdin before naming its request");
  return JSON.parse(value);
}

const context = await chromium.launchPersistentContext(options["user-data-dir"], {
  executablePath: options.chromium,
  headless: true,
  // The flags that work as root in a container, and nothing that talks to
  // the network by itself.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
  timeout: stepMs,
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(stepMs);

page.on("console", (message) => {
  if (!recording) return;
  record.console.push({ phase, type: message.type(), text: message.text(), url: message.location().url });
});
page.on("pageerror", (error) => {
  if (recording) record.page_errors.push({ phase, message: String(error?.stack ?? error) });
});
page.on("requestfailed", (request) => {
  if (recording) record.failed_requests.push({ phase, url: request.url(), error: request.failure()?.errorText ?? "" });
});
page.on("response", (response) => {
  if (recording && response.status() >= 400) {
    record.http_errors.push({ phase, url: response.url(), status: response.status() });
  }
});

async function screenshot() {
  mkdirSync(dirname(options.screenshot), { recursive: true });
  await page.screenshot({ path: options.screenshot, fullPage: true });
}

try {
  const response = await page.goto(new URL("/dashboard", options.url).href, { waitUntil: "load" });
  if (response?.status() !== 200) throw new Error(`GET /dashboard answered ${response?.status()}`);

  if (options.token) {
    // The page finds out it needs the token and asks for it; a wrong one
    // is refused and asked for again.
    await page.locator("#token-dialog[open]").waitFor({ state: "visible" });
    await page.locator("#token-input").fill(`wrong-${options.token}`);
    phase = "wrong-token";
    await page.locator("#token-submit").click();
    await page.locator("#token-error:not([hidden])").waitFor({ state: "visible" });
    record.refused_token_message = await page.locator("#token-error").textContent();
    await page.locator("#token-input").fill(options.token);
    phase = "after-token";
    await page.locator("#token-submit").click();
    await page.locator("#token-dialog").waitFor({ state: "hidden" });
  }
  await page.locator('#connection[data-state="live"]').waitFor();
  // The first totals are drawn (an empty range says so in each chart).
  await page.waitForFunction(() => document.querySelector("#chart-tokens")?.dataset.points !== undefined);
  say({ event: "live" });

  const wanted = await nextMessage();
  const row = page.locator(`#request-rows tr[data-request-id="${wanted.request_id.replace(/["\\]/g, "\\$&")}"]`);
  await row.waitFor();
  const cells = await row.locator("td").allTextContents();
  // Totals and charts follow a moment after the row (they are asked again).
  await page.waitForFunction(
    () =>
      Number(document.querySelector("#chart-tokens")?.dataset.points) > 0 &&
      Number(document.querySelector("#chart-latency")?.dataset.points) > 0,
  );
  const charts = await page.evaluate(() => {
    const count = (selector) => document.querySelectorAll(selector).length;
    return {
      tokens_points: Number(document.querySelector("#chart-tokens").dataset.points),
      tokens_bars: count("#chart-tokens rect.bar"),
      cost_points: Number(document.querySelector("#chart-cost").dataset.points),
      cost_bars: count("#chart-cost rect.bar"),
      latency_points: Number(document.querySelector("#chart-latency").dataset.points),
      latency_lines: count("#chart-latency path.line"),
      latency_dots: count("#chart-latency circle.point"),
    };
  });
  const text = (selector) => page.locator(selector).textContent();
  const totals = {
    requests: await text("#total-requests"),
    tokens: await text("#total-tokens"),
    cost: await text("#total-cost"),
    latency: await text("#total-latency"),
  };
  const plugins = await page.locator("#plugin-rows tr").evaluateAll((rows) =>
    rows.map((tr) => ({ name: tr.dataset.plugin, status: tr.children[1].textContent })),
  );
  const options_of = (selector) =>
    page.locator(`${selector} option`).evaluateAll((items) => items.map((item) => item.value));
  const filters = {
    providers: await options_of("#filter-provider"),
    models: await options_of("#filter-model"),
  };
  const state = {
    connection: await page.locator("#connection").getAttribute("data-state"),
    notice_hidden: await page.locator("#notice").isHidden(),
    token_kept: await page.evaluate(() => sessionStorage.getItem("ccproxy.dashboard.token") !== null),
  };
  await screenshot();
  // What happens while the browser closes (the stream it cuts) is not the page's doing.
  recording = false;
  say({ event: "done", row: cells, charts, totals, plugins, filters, state, ...record });
  await context.close();
  clearTimeout(watchdog);
  process.exit(0);
} catch (error) {
  recording = false;
  await screenshot().catch(() => {});
  say({ event: "error", message: String(error?.stack ?? error), ...record });
  await context.close().catch(() => {});
  process.exit(1);
}
