// The dashboard page: reads the /logs API of the analytics plugin and the
// host's /plugins/status, and keeps the page up to date from /logs/stream.
//
// The data routes need the client token when the proxy has one: /health says
// so (the page then asks before any data call); on a 401 the page asks again,
// keeps it (sessionStorage, or localStorage when the plugin says so) and
// sends it as `Authorization: Bearer`. The DOM is only ever built with
// createElement and textContent (the page runs under Trusted Types, so no
// HTML string can reach it).

import { readEventStream } from "./sse.js";
import { drawTimeChart } from "./charts.js";

const root = document.documentElement;
const settings = {
  storage: root.dataset.tokenStorage === "local" ? window.localStorage : window.sessionStorage,
  hours: clampNumber(root.dataset.hours, 1, 168, 24),
  initialRows: clampNumber(root.dataset.initialRows, 1, 10000, 100),
  maxRows: clampNumber(root.dataset.maxRows, 1, 10000, 500),
  refreshMs: clampNumber(root.dataset.refreshSeconds, 1, 3600, 30) * 1000,
};
const TOKEN_KEY = "ccproxy.dashboard.token";
/** Wait after a new row before the totals and charts are asked again. */
const ANALYTICS_THROTTLE_MS = 800;
const ANALYTICS_FOLLOW_UP_MS = 4000;
/** How long a row that arrived live stays highlighted. */
const FRESH_MS = 3000;
const STREAM_RETRY_FIRST_MS = 1000;
const STREAM_RETRY_MAX_MS = 30000;

const $ = (id) => document.getElementById(id);

function clampNumber(text, low, high, fallback) {
  const value = Number(text);
  return Number.isInteger(value) && value >= low && value <= high ? value : fallback;
}

/** The proxy refused the request for want of the right client token. */
class AuthNeeded extends Error {}

/** Any other answer that is not a success. */
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const state = {
  token: settings.storage.getItem(TOKEN_KEY) ?? "",
  filters: { provider: "", model: "" },
  hours: settings.hours,
  /** request_id -> row, every row the table may show. */
  rows: new Map(),
  /** request_id -> when it arrived live (ms), for the highlight. */
  fresh: new Map(),
  providers: new Set(),
  models: new Set(),
  connectGeneration: 0,
  streamGeneration: 0,
  streamAbort: null,
  analyticsTimer: 0,
  analyticsFollowUp: 0,
  refreshTimer: 0,
  lastAnalytics: null,
  asking: false,
};

// Filters from the address, so a filtered view can be bookmarked.
{
  const query = new URLSearchParams(location.search);
  state.filters.provider = query.get("provider") ?? "";
  state.filters.model = query.get("model") ?? "";
  state.hours = clampNumber(query.get("hours"), 1, 168, state.hours);
}

// ---- talking to the proxy -------------------------------------------------

async function api(path, params = {}, { signal, accept = "application/json", raw = false } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(key, String(value));
  }
  const headers = { accept };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  const response = await fetch(url, { headers, signal, cache: "no-store" });
  if (response.status === 401) {
    throw new AuthNeeded(`${path}: the proxy wants its client token`);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body?.error?.message ?? message;
    } catch {
      // Not JSON: the status says enough.
    }
    throw new HttpError(response.status, `${path}: ${message}`);
  }
  return raw ? response : response.json();
}

function filterParams() {
  return { provider: state.filters.provider, model: state.filters.model };
}

// ---- start, token, failures ------------------------------------------------

async function connect() {
  stopLive();
  // A later connect (the filters changed again) makes this one stop at its
  // next step.
  const generation = ++state.connectGeneration;
  setConnection("connecting", "connecting");
  // Without a token yet, /health (public) says whether the proxy wants one:
  // the page asks first rather than being refused.
  if (!state.token && (await clientTokenRequired())) {
    if (generation === state.connectGeneration) askForToken();
    return;
  }
  let status;
  try {
    // The first data call: a 401 here means the stored token is wrong.
    status = await refreshPlugins();
  } catch (error) {
    if (generation === state.connectGeneration) failed(error);
    return;
  }
  if (generation !== state.connectGeneration) return;
  $("forget-token").hidden = !state.token;
  const analytics = (status.plugins ?? []).find((plugin) => plugin.name === "analytics");
  if (!analytics || analytics.status !== "active") {
    setConnection("off", "no /logs API");
    notice(
      `The analytics plugin is ${analytics ? analytics.status : "not loaded"}, so there are no request logs to show: ` +
        "enable the storage and analytics plugins ([plugins.storage] and [plugins.analytics]).",
    );
    return;
  }
  notice("");
  startStream();
  state.refreshTimer = window.setInterval(() => {
    Promise.all([refreshAnalytics(), refreshPlugins()]).catch(failed);
  }, settings.refreshMs);
  try {
    await Promise.all([loadRows(), refreshAnalytics()]);
  } catch (error) {
    if (generation === state.connectGeneration) failed(error);
  }
}

/** Whether the proxy wants its client token on the data routes (from /health). */
async function clientTokenRequired() {
  try {
    const response = await fetch("/health", { cache: "no-store" });
    const health = await response.json();
    return health.client_token_required === true;
  } catch {
    // An older proxy or a failed probe: the data calls will tell.
    return false;
  }
}

function stopLive() {
  state.streamGeneration += 1;
  state.streamAbort?.abort();
  state.streamAbort = null;
  window.clearInterval(state.refreshTimer);
  window.clearTimeout(state.analyticsTimer);
  window.clearTimeout(state.analyticsFollowUp);
  state.analyticsTimer = 0;
}

/** What to do with an error of any data call. */
function failed(error) {
  if (error instanceof AuthNeeded) {
    askForToken();
    return;
  }
  if (error?.name === "AbortError") return;
  notice(error instanceof HttpError ? error.message : `The proxy did not answer: ${error?.message ?? error}`);
}

function askForToken() {
  if (state.asking) return;
  state.asking = true;
  stopLive();
  setConnection("off", "needs the client token");
  const dialog = $("token-dialog");
  const error = $("token-error");
  error.hidden = !state.token;
  error.textContent = state.token ? "The proxy refused this token." : "";
  $("token-input").value = "";
  dialog.showModal();
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  state.token = token;
  settings.storage.setItem(TOKEN_KEY, token);
  $("token-dialog").close();
  state.asking = false;
  connect();
});

// Escape closes a modal dialog; without the token there is nothing to show,
// so it stays until one is given.
$("token-dialog").addEventListener("cancel", (event) => event.preventDefault());

$("forget-token").addEventListener("click", () => {
  settings.storage.removeItem(TOKEN_KEY);
  state.token = "";
  location.reload();
});

// ---- the live stream --------------------------------------------------------

function startStream() {
  const generation = ++state.streamGeneration;
  runStream(generation);
}

async function runStream(generation) {
  let delay = STREAM_RETRY_FIRST_MS;
  let reconnecting = false;
  /** Times in a row the stream ended or could not be opened. */
  let drops = 0;
  while (generation === state.streamGeneration) {
    const controller = new AbortController();
    state.streamAbort = controller;
    setConnection("connecting", reconnecting ? "reconnecting" : "connecting", drops);
    try {
      const response = await api("/logs/stream", filterParams(), {
        signal: controller.signal,
        accept: "text/event-stream",
        raw: true,
      });
      if (generation !== state.streamGeneration) return;
      setConnection("live", "live");
      delay = STREAM_RETRY_FIRST_MS;
      drops = 0;
      if (reconnecting) {
        // What failed while the proxy was out of reach works again; rows
        // that ended meanwhile are read, and the totals with them.
        notice("");
        loadRows().catch(failed);
        refreshAnalytics().catch(failed);
      }
      await readEventStream(response, onStreamEvent, controller.signal);
    } catch (error) {
      if (generation !== state.streamGeneration) return;
      if (error instanceof AuthNeeded) {
        askForToken();
        return;
      }
    }
    if (generation !== state.streamGeneration) return;
    reconnecting = true;
    drops += 1;
    const wait = delay + Math.round(Math.random() * delay * 0.2);
    setConnection("retrying", `reconnecting in ${Math.ceil(wait / 1000)} s`, drops);
    await new Promise((resolve) => window.setTimeout(resolve, wait));
    delay = Math.min(delay * 2, STREAM_RETRY_MAX_MS);
  }
}

function onStreamEvent(event) {
  if (event.type !== "message") return;
  let row;
  try {
    row = JSON.parse(event.data);
  } catch {
    console.warn("dashboard: /logs/stream sent an event that is not JSON", event.data.slice(0, 200));
    return;
  }
  if (addRows([row], true) > 0 && !isOwnTraffic(row)) {
    scheduleAnalytics();
  }
}

function setConnection(stateName, text, drops = 0) {
  const element = $("connection");
  element.dataset.state = stateName;
  element.dataset.drops = String(drops);
  element.textContent = text;
  element.title = drops
    ? `live stream of requests: dropped, ${drops} attempt(s) to reconnect so far`
    : "live stream of requests";
}

function notice(text) {
  const element = $("notice");
  element.textContent = text;
  element.hidden = !text;
}

// ---- rows ------------------------------------------------------------------------

/** Requests the page itself and monitors make: not what the user came to see. */
function isOwnTraffic(row) {
  const path = row.path ?? "";
  return ["/logs/", "/plugins", "/dashboard", "/health"].some((prefix) => path.startsWith(prefix));
}

function matchesFilters(row) {
  return (
    (!state.filters.provider || row.provider === state.filters.provider) &&
    (!state.filters.model || row.model === state.filters.model)
  );
}

async function loadRows() {
  // The table covers the range the totals and charts do.
  const start = new Date(Date.now() - state.hours * 3600 * 1000).toISOString();
  const page = await api("/logs/query", {
    ...filterParams(),
    start_time: start,
    limit: settings.initialRows,
    order: "desc",
  });
  addRows(page.results ?? [], false);
}

/** Adds rows not seen yet (by request id); returns how many. */
function addRows(rows, live) {
  let added = 0;
  for (const row of rows) {
    if (!row || typeof row.request_id !== "string" || state.rows.has(row.request_id)) continue;
    if (!matchesFilters(row) || isOwnTraffic(row)) continue;
    state.rows.set(row.request_id, row);
    if (live) state.fresh.set(row.request_id, Date.now());
    if (row.provider) state.providers.add(row.provider);
    if (row.model) state.models.add(row.model);
    added += 1;
  }
  if (added > 0) {
    trimRows();
    renderRows();
    renderFilterOptions();
    // Again once the highlight of live rows is over.
    if (live) window.setTimeout(renderRows, FRESH_MS + 50);
  }
  return added;
}

function timeOf(row) {
  const ms = Date.parse(row.timestamp);
  return Number.isNaN(ms) ? 0 : ms;
}

function trimRows() {
  if (state.rows.size <= settings.maxRows) return;
  const oldest = [...state.rows.values()].sort((a, b) => timeOf(a) - timeOf(b));
  for (const row of oldest.slice(0, state.rows.size - settings.maxRows)) {
    state.rows.delete(row.request_id);
    state.fresh.delete(row.request_id);
  }
}

function cell(tr, text, className = "", titleText = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  if (titleText) td.title = titleText;
  tr.appendChild(td);
  return td;
}

function renderRows() {
  const rows = [...state.rows.values()].sort((a, b) => timeOf(b) - timeOf(a) || (a.request_id < b.request_id ? 1 : -1));
  const body = $("request-rows");
  const fragment = document.createDocumentFragment();
  const now = Date.now();
  for (const [id, at] of state.fresh) if (now - at >= FRESH_MS) state.fresh.delete(id);
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.requestId = row.request_id;
    if (now - (state.fresh.get(row.request_id) ?? 0) < FRESH_MS) tr.className = "fresh";
    const ms = timeOf(row);
    cell(tr, formatTime(ms), "time", row.timestamp ?? "");
    cell(tr, row.request_id, "id", `${row.request_id}\n${row.method ?? ""} ${row.path ?? ""}`.trim());
    cell(tr, row.provider ?? "–", "provider");
    cell(tr, row.model ?? "–", "model", row.streaming ? "streamed" : "");
    const status = Number(row.status_code);
    cell(tr, String(row.status_code ?? "–"), `status ${status >= 200 && status < 400 ? "ok" : "bad"}`);
    cell(tr, formatMs(row.duration_ms), "num");
    cell(tr, formatCount(row.tokens_input), "num");
    cell(tr, formatCount(row.tokens_output), "num");
    cell(tr, formatCount((row.cache_read_tokens ?? 0) + (row.cache_write_tokens ?? 0)), "num",
      `read ${row.cache_read_tokens ?? 0}, written ${row.cache_write_tokens ?? 0}`);
    cell(tr, row.cost_usd === null || row.cost_usd === undefined ? "–" : formatCost(row.cost_usd), "num");
    fragment.appendChild(tr);
  }
  body.replaceChildren(fragment);
  $("no-rows").hidden = rows.length > 0;
  $("row-count").textContent = rows.length ? `(${rows.length})` : "";
}

// ---- filters ---------------------------------------------------------------------

function renderFilterOptions() {
  fillSelect($("filter-provider"), state.providers, state.filters.provider);
  fillSelect($("filter-model"), state.models, state.filters.model);
}

function fillSelect(select, values, selected) {
  const wanted = ["", ...[...values].sort()];
  if (selected && !values.has(selected)) wanted.push(selected);
  const current = [...select.options].map((option) => option.value);
  if (current.length === wanted.length && current.every((value, index) => value === wanted[index])) {
    select.value = selected;
    return;
  }
  select.replaceChildren(
    ...wanted.map((value) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value || "all";
      return option;
    }),
  );
  select.value = selected;
}

function onFiltersChanged() {
  state.filters.provider = $("filter-provider").value;
  state.filters.model = $("filter-model").value;
  state.hours = clampNumber($("filter-hours").value, 1, 168, settings.hours);
  const query = new URLSearchParams();
  if (state.filters.provider) query.set("provider", state.filters.provider);
  if (state.filters.model) query.set("model", state.filters.model);
  if (state.hours !== settings.hours) query.set("hours", String(state.hours));
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
  state.rows.clear();
  state.fresh.clear();
  renderRows();
  connect();
}

for (const id of ["filter-provider", "filter-model", "filter-hours"]) {
  $(id).addEventListener("change", onFiltersChanged);
}
$("filters").addEventListener("submit", (event) => event.preventDefault());

// ---- totals and charts --------------------------------------------------------

function scheduleAnalytics() {
  // A refresh a moment after a new row, at most one per moment while rows
  // keep coming (a throttle, so a busy proxy still gets fresh charts) ...
  if (!state.analyticsTimer) {
    state.analyticsTimer = window.setTimeout(() => {
      state.analyticsTimer = 0;
      refreshAnalytics().catch(failed);
    }, ANALYTICS_THROTTLE_MS);
  }
  // ... and one more a little after the last: the stream may announce a
  // row before the store has written it.
  window.clearTimeout(state.analyticsFollowUp);
  state.analyticsFollowUp = window.setTimeout(() => refreshAnalytics().catch(failed), ANALYTICS_FOLLOW_UP_MS);
}

/** What the data shown depends on: an answer asked under others is stale. */
function viewKey() {
  return JSON.stringify([state.filters.provider, state.filters.model, state.hours]);
}

async function refreshAnalytics() {
  const asked = viewKey();
  const data = await api("/logs/analytics", { ...filterParams(), hours: state.hours });
  if (asked !== viewKey()) return;
  // Whatever failed before (the proxy out of reach) works again.
  notice("");
  state.lastAnalytics = { data, at: Date.now() };
  for (const entry of data.by_provider ?? []) if (entry.provider) state.providers.add(entry.provider);
  for (const entry of data.by_model ?? []) if (entry.model) state.models.add(entry.model);
  renderFilterOptions();
  renderTotals(data.summary ?? {});
  renderCharts();
}

function renderTotals(summary) {
  const total = summary.total_requests ?? 0;
  $("total-requests").textContent = formatCount(total);
  $("total-failed").textContent = total ? `${formatCount(summary.failed_requests ?? 0)} failed` : "";
  $("total-tokens").textContent = `${formatCount(summary.total_tokens_input ?? 0)} / ${formatCount(summary.total_tokens_output ?? 0)}`;
  $("total-cache").textContent = `cache: ${formatCount(summary.total_cache_read_tokens ?? 0)} read, ${formatCount(summary.total_cache_write_tokens ?? 0)} written`;
  $("total-cost").textContent = formatCost(summary.total_cost_usd ?? 0);
  $("total-cost-per").textContent = total ? `${formatCost((summary.total_cost_usd ?? 0) / total)} a request` : "";
  $("total-latency").textContent = total ? `${formatMs(summary.p50_duration_ms)} / ${formatMs(summary.p95_duration_ms)}` : "–";
  $("total-latency-p99").textContent = total ? `p99 ${formatMs(summary.p99_duration_ms)}, mean ${formatMs(summary.avg_duration_ms)}` : "";
}

function renderCharts() {
  if (!state.lastAnalytics) return;
  const { data, at } = state.lastAnalytics;
  const bucketMs = Math.max(1, Number(data.bucket_seconds) || 3600) * 1000;
  const endMs = at;
  const startMs = endMs - (Number(data.hours) || state.hours) * 3600 * 1000;
  const series = (name, className, key) => {
    const values = new Map();
    for (const bucket of data.timeline ?? []) {
      const t = Date.parse(bucket.bucket_start);
      const value = Number(bucket[key]);
      // Buckets without requests (the API may list them) have no point.
      if (Number.isNaN(t) || !Number.isFinite(value) || !(Number(bucket.requests) > 0)) continue;
      values.set(Math.floor(t / bucketMs) * bucketMs, value);
    }
    return { name, className, values };
  };
  const range = { startMs, endMs, bucketMs };
  drawTimeChart($("chart-tokens"), {
    ...range,
    kind: "bars",
    format: formatCount,
    series: [series("input", "input", "tokens_input"), series("output", "output", "tokens_output")],
  });
  drawTimeChart($("chart-cost"), {
    ...range,
    kind: "bars",
    format: formatCost,
    series: [series("cost", "cost", "cost_usd")],
  });
  drawTimeChart($("chart-latency"), {
    ...range,
    kind: "lines",
    format: formatMs,
    series: [series("average", "avg", "avg_duration_ms"), series("p95", "p95", "p95_duration_ms")],
  });
}

let resizeFrame = 0;
new ResizeObserver(() => {
  window.cancelAnimationFrame(resizeFrame);
  resizeFrame = window.requestAnimationFrame(renderCharts);
}).observe($("chart-tokens"));

// ---- plugin health -------------------------------------------------------------

async function refreshPlugins() {
  const status = await api("/plugins/status");
  renderPlugins(status);
  return status;
}

function renderPlugins(status) {
  const plugins = [...(status.plugins ?? [])].sort((a, b) => String(a.name).localeCompare(String(b.name)));
  const body = $("plugin-rows");
  const fragment = document.createDocumentFragment();
  for (const plugin of plugins) {
    const tr = document.createElement("tr");
    tr.dataset.plugin = plugin.name;
    const troubled = plugin.status === "active" && ((plugin.panics ?? 0) > 0 || (plugin.errors ?? 0) > 0);
    cell(tr, plugin.name, "name", plugin.description ?? "");
    cell(tr, plugin.status, `badge ${plugin.status === "active" ? (troubled ? "warn" : "ok") : plugin.status === "disabled" ? "off" : "bad"}`);
    cell(tr, plugin.version ?? "–");
    cell(tr, plugin.calls === undefined ? "–" : formatCount(plugin.calls), "num");
    cell(tr, plugin.errors === undefined ? "–" : formatCount(plugin.errors), "num");
    cell(tr, plugin.panics === undefined ? "–" : formatCount(plugin.panics), "num");
    cell(tr, plugin.hook_time_ms === undefined ? "–" : formatMs(plugin.hook_time_ms), "num",
      plugin.hook_calls ? `${plugin.hook_calls} hook calls` : "");
    cell(tr, plugin.reason ?? "", "note");
    fragment.appendChild(tr);
  }
  body.replaceChildren(fragment);
  const active = plugins.filter((plugin) => plugin.status === "active").length;
  const dropped = status.hooks?.dropped ?? 0;
  $("plugin-summary").textContent =
    `(${active} active of ${plugins.length}${dropped ? `, ${formatCount(dropped)} hook events dropped` : ""})`;
}

// ---- formatting --------------------------------------------------------------------

/** The time of day, with the date when it is not today. */
function formatTime(ms) {
  if (!ms) return "–";
  const date = new Date(ms);
  if (date.toDateString() === new Date().toDateString()) return date.toLocaleTimeString();
  return date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

const countFormat = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

function formatCount(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) return "–";
  return number < 10000 ? String(Math.round(number)) : countFormat.format(number);
}

function formatCost(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) return "–";
  if (number === 0) return "$0";
  if (number < 0.01) return `$${number.toPrecision(2)}`;
  return `$${number.toFixed(2)}`;
}

function formatMs(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) return "–";
  if (number < 1000) return `${Math.round(number)} ms`;
  return `${(number / 1000).toFixed(number < 10000 ? 2 : 1)} s`;
}

// ---- go ------------------------------------------------------------------------------

$("filter-hours").value = String(state.hours);
if (![...$("filter-hours").options].some((option) => option.value === String(state.hours))) {
  const option = document.createElement("option");
  option.value = String(state.hours);
  option.textContent = `${state.hours} hours`;
  $("filter-hours").appendChild(option);
  $("filter-hours").value = String(state.hours);
}
renderFilterOptions();
renderRows();
connect();
