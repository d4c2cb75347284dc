// Drives the dashboard page in headless Chromium for tests/e2e/dashboard.rs.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT --token T \
//     --user-data-dir DIR [--chromium /usr/bin/chromium] [--timeout-ms 150000]
//
// Opens /dashboard, gives the page the token when it asks (a wrong one
// first, which must be refused and asked for again), waits until its stream
// of requests is live (or the page gave up: no /logs API) and prints
// {"event":"open","connection":"live"|"off","base":URL}. Then it runs the
// commands the Rust test sends, one JSON line each, and answers each with
// one line {"event": COMMAND, ...}:
//
// - {"cmd":"wait_row","request_id":ID}: the cells of that row of the live
//   table, once it is there;
// - {"cmd":"wait_text","selector":S,"text":T}: once S's text is T;
// - {"cmd":"rows"}: the request ids in the table, top to bottom;
// - {"cmd":"report"}: the charts' marks, the totals, the plugin table, the
//   filters' options and the page's state;
// - {"cmd":"filter","provider":P,"model":M}: chooses them in the filters and
//   waits for the live stream again; the /logs requests made since;
// - {"cmd":"unplug"} / {"cmd":"plug"}: cuts every connection between the
//   page and the proxy and refuses new ones (until the page's first attempt
//   to reconnect has failed too and it waits for the next), then lets them through again (until the page's stream is
//   live again). The browser reaches the proxy through a TCP relay in this
//   script for that, so the page's address has the relay's port;
// - {"cmd":"screenshot","path":F}: a PNG of the whole page;
// - {"cmd":"close"}: answers with every console message, page error, failed
//   request and HTTP error, each tagged with the phase it happened in
//   ("before-token", "wrong-token", "after-token", and after the commands
//   of those names "filtered", "unplugged" and "plugged"), and exits 0.
//
// The Rust test makes the assertions. On a failure it prints
// {"event":"error", ...} with the same record and exits 1; past --timeout-ms
// it exits 2 whatever it was doing. Playwright (playwright-core, pinned in
// package-lock.json, installed with the distribution's Chromium by
// scripts/deps/chromium) only drives the browser; nothing is downloaded.

import net from "node:net";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string", default: "" },
    "user-data-dir": { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "150000" },
  },
});
for (const required of ["url", "user-data-dir"]) {
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

const record = { console: [], page_errors: [], failed_requests: [], http_errors: [], logs_requests: [] };
let phase = options.token ? "before-token" : "after-token";
let recording = true;

const watchdog = setTimeout(() => {
  say({ event: "error", message: `the browser test did not finish within ${timeoutMs} ms`, ...record });
  process.exit(2);
}, timeoutMs);

/** A TCP relay from the browser to the proxy that can be unplugged. */
const relay = { open: true, sockets: new Set(), refused: 0 };
{
  const proxy = new URL(options.url);
  relay.server = net.createServer((client) => {
    if (!relay.open) {
      relay.refused += 1;
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(proxy.port), proxy.hostname);
    for (const [socket, other] of [[client, upstream], [upstream, client]]) {
      relay.sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        relay.sockets.delete(socket);
        other.destroy();
      });
      socket.pipe(other);
    }
  });
  await new Promise((resolve) => relay.server.listen(0, "127.0.0.1", resolve));
  relay.base = `http://127.0.0.1:${relay.server.address().port}`;
}

const commands = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

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
page.on("request", (request) => {
  const url = new URL(request.url());
  if (recording && url.pathname.startsWith("/logs/")) record.logs_requests.push({ phase, url: request.url() });
});
page.on("requestfailed", (request) => {
  if (recording) record.failed_requests.push({ phase, url: request.url(), error: request.failure()?.errorText ?? "" });
});
page.on("response", (response) => {
  if (recording && response.status() >= 400) {
    record.http_errors.push({ phase, url: response.url(), status: response.status() });
  }
});

const rowLocator = (requestId) => page.locator(`#request-rows tr[data-request-id="${String(requestId).replace(/["\\]/g, "\\$&")}"]`);

async function open() {
  const response = await page.goto(new URL("/dashboard", relay.base).href, { waitUntil: "load" });
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
  // Live, or off for good (no /logs API to read).
  await page.locator('#connection[data-state="live"], #connection[data-state="off"]').waitFor();
  const connection = await page.locator("#connection").getAttribute("data-state");
  if (connection === "live") {
    // The first totals are drawn.
    await page.waitForFunction(() => document.querySelector("#chart-tokens")?.dataset.points !== undefined);
  }
  return connection;
}

async function report() {
  const charts = await page.evaluate(() => {
    const count = (selector) => document.querySelectorAll(selector).length;
    const points = (id) => Number(document.querySelector(id).dataset.points);
    return {
      tokens_points: points("#chart-tokens"),
      tokens_bars: count("#chart-tokens rect.bar"),
      cost_points: points("#chart-cost"),
      cost_bars: count("#chart-cost rect.bar"),
      latency_points: points("#chart-latency"),
      latency_lines: count("#chart-latency path.line"),
      latency_dots: count("#chart-latency circle.point"),
    };
  });
  const text = (selector) => page.locator(selector).textContent();
  const optionsOf = (selector) => page.locator(`${selector} option`).evaluateAll((items) => items.map((item) => item.value));
  return {
    charts,
    totals: {
      requests: await text("#total-requests"),
      tokens: await text("#total-tokens"),
      cost: await text("#total-cost"),
      latency: await text("#total-latency"),
    },
    plugins: await page.locator("#plugin-rows tr").evaluateAll((rows) =>
      rows.map((tr) => ({ name: tr.dataset.plugin, status: tr.children[1].textContent })),
    ),
    filters: { providers: await optionsOf("#filter-provider"), models: await optionsOf("#filter-model") },
    state: {
      connection: await page.locator("#connection").getAttribute("data-state"),
      notice_hidden: await page.locator("#notice").isHidden(),
      notice: await page.locator("#notice").textContent(),
      token_kept: await page.evaluate(() => sessionStorage.getItem("ccproxy.dashboard.token") !== null),
      address: page.url(),
    },
  };
}

async function run(command) {
  switch (command.cmd) {
    case "wait_row": {
      const row = rowLocator(command.request_id);
      await row.waitFor();
      return { cells: await row.locator("td").allTextContents() };
    }
    case "wait_text": {
      await page.waitForFunction(
        ({ selector, text }) => document.querySelector(selector)?.textContent === text,
        { selector: command.selector, text: command.text },
      );
      return {};
    }
    case "rows":
      return { rows: await page.locator("#request-rows tr").evaluateAll((rows) => rows.map((tr) => tr.dataset.requestId)) };
    case "report":
      return report();
    case "filter": {
      phase = "filtered";
      const since = record.logs_requests.length;
      // Each change reconnects at once (the page says "connecting").
      if (command.provider !== undefined) await page.selectOption("#filter-provider", command.provider);
      if (command.model !== undefined) await page.selectOption("#filter-model", command.model);
      await page.locator('#connection[data-state="live"]').waitFor();
      // The browser's request events may come a moment after the page moved on.
      const asked = () => record.logs_requests.slice(since).map((entry) => new URL(entry.url).pathname);
      const deadline = Date.now() + stepMs;
      while (!["/logs/query", "/logs/analytics", "/logs/stream"].every((path) => asked().includes(path)) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return { logs_requests: record.logs_requests.slice(since).map((entry) => entry.url) };
    }
    case "unplug": {
      // The page's connections are cut and new ones refused, as when the
      // network between it and the proxy goes away.
      phase = "unplugged";
      relay.open = false;
      for (const socket of relay.sockets) socket.destroy();
      // The cut stream is a first drop; the first attempt to reconnect
      // fails too, and the page waits longer before the next.
      await page.locator('#connection[data-state="retrying"][data-drops="2"]').waitFor();
      return { connection: await page.locator("#connection").textContent(), refused: relay.refused };
    }
    case "plug": {
      relay.open = true;
      phase = "plugged";
      await page.locator('#connection[data-state="live"]').waitFor();
      return {};
    }
    case "screenshot":
      await page.screenshot({ path: command.path, fullPage: true });
      return {};
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`);
  }
}

try {
  const connection = await open();
  say({ event: "open", connection, base: relay.base });
  for (;;) {
    const { value, done } = await commands.next();
    if (done) throw new Error("the test closed stdin without a close command");
    const command = JSON.parse(value);
    if (command.cmd === "close") break;
    say({ event: command.cmd, ...(await run(command)) });
  }
  // What happens while the browser closes (the stream it cuts) is not the page's doing.
  recording = false;
  say({ event: "close", ...record });
  await context.close();
  clearTimeout(watchdog);
  process.exit(0);
} catch (error) {
  recording = false;
  say({ event: "error", message: String(error?.stack ?? error), ...record });
  await context.close().catch(() => {});
  process.exit(1);
}
