// Time charts drawn as SVG by hand: bars (stacked when several series) or
// lines, over a fixed range of time buckets, with a y axis of round numbers
// and time labels below. Colours come from the style sheet (classes), so
// nothing here needs inline styles.

const SVG = "http://www.w3.org/2000/svg";
const MARGIN = { top: 10, right: 10, bottom: 22 };
/** About the width of one character of the axis labels (11 px). */
const LABEL_CHAR_PX = 6.6;

function node(name, attributes = {}, parent = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (parent) parent.appendChild(element);
  return element;
}

function title(parent, text) {
  node("title", {}, parent).textContent = text;
}

/** About `count` round tick values from 0 to at least `max`. */
export function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const rough = max / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const ticks = [];
  for (let value = 0; value < max + step / 2; value += step) {
    ticks.push(Number(value.toPrecision(12)));
    if (value >= max) break;
  }
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks.length * step).toPrecision(12)));
  return ticks;
}

/** The start of each bucket of `bucketMs` from `startMs` to `endMs`. */
export function bucketStarts(startMs, endMs, bucketMs) {
  const first = Math.floor(startMs / bucketMs) * bucketMs;
  const starts = [];
  for (let t = first; t <= endMs; t += bucketMs) starts.push(t);
  return starts;
}

function timeLabel(ms, rangeMs) {
  const date = new Date(ms);
  if (rangeMs <= 36 * 3600 * 1000) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return date.toLocaleDateString([], { month: "short", day: "numeric" });
}

/**
 * Draws one chart into `svg`.
 *
 * options:
 * - `startMs`, `endMs`, `bucketMs`: the time range and bucket width;
 * - `series`: `[{name, className, values: Map(bucketStartMs -> number)}]`;
 * - `kind`: `"bars"` (stacked) or `"lines"`;
 * - `format`: number -> text for the axis and the tooltips.
 *
 * Sets `data-points` on the svg to the number of buckets with data.
 */
export function drawTimeChart(svg, { startMs, endMs, bucketMs, series, kind, format }) {
  const width = Math.max(200, Math.round(svg.clientWidth || svg.getBoundingClientRect().width || 400));
  const height = Math.max(120, Math.round(svg.clientHeight || svg.getBoundingClientRect().height || 180));
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const starts = bucketStarts(startMs, endMs, bucketMs);
  const totals = starts.map((t) =>
    kind === "bars"
      ? series.reduce((sum, s) => sum + (s.values.get(t) ?? 0), 0)
      : Math.max(0, ...series.map((s) => s.values.get(t) ?? 0)),
  );
  const ticks = niceTicks(Math.max(...totals, 0));
  const tickLabels = ticks.map(format);
  // Room for the longest label on the left.
  const left = Math.ceil(Math.max(...tickLabels.map((label) => label.length)) * LABEL_CHAR_PX) + 12;
  const plotWidth = width - left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const slot = plotWidth / starts.length;
  const x = (index) => left + index * slot;

  const withData = starts.filter((t) => series.some((s) => s.values.has(t))).length;
  svg.dataset.points = String(withData);
  const top = ticks[ticks.length - 1] || 1;
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;

  const grid = node("g", { class: "grid" }, svg);
  ticks.forEach((tick, index) => {
    node("line", { x1: left, x2: width - MARGIN.right, y1: y(tick), y2: y(tick) }, grid);
    const label = node("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" }, grid);
    label.textContent = tickLabels[index];
  });
  const labels = node("g", { class: "axis" }, svg);
  const labelEvery = Math.max(1, Math.ceil(starts.length / Math.max(2, Math.floor(plotWidth / 90))));
  starts.forEach((t, index) => {
    if (index % labelEvery !== 0) return;
    const label = node("text", { x: x(index) + slot / 2, y: height - 6, "text-anchor": "middle" }, labels);
    label.textContent = timeLabel(t, endMs - startMs);
  });

  if (withData === 0) {
    const empty = node("text", { class: "empty", x: left + plotWidth / 2, y: MARGIN.top + plotHeight / 2, "text-anchor": "middle" }, svg);
    empty.textContent = "no requests in this range";
    return;
  }

  const plot = node("g", { class: "plot" }, svg);
  if (kind === "bars") {
    const barWidth = Math.max(1, slot * 0.8);
    starts.forEach((t, index) => {
      if (!series.some((s) => s.values.has(t))) return;
      const group = node("g", { class: "bucket" }, plot);
      let base = 0;
      for (const s of series) {
        const value = s.values.get(t) ?? 0;
        if (value <= 0) continue;
        node("rect", {
          class: `bar ${s.className}`,
          x: x(index) + (slot - barWidth) / 2,
          y: y(base + value),
          width: barWidth,
          height: Math.max(1, y(base) - y(base + value)),
        }, group);
        base += value;
      }
      if (base === 0) {
        // Requests without any (say, failed ones): a hairline shows the bucket.
        node("rect", { class: `bar zero`, x: x(index) + (slot - barWidth) / 2, y: y(0) - 1, width: barWidth, height: 1 }, group);
      }
      title(group, `${timeLabel(t, 0)}  ${series.map((s) => `${s.name} ${format(s.values.get(t) ?? 0)}`).join(", ")}`);
    });
    return;
  }
  for (const s of series) {
    let path = "";
    let previous = -2;
    starts.forEach((t, index) => {
      if (!s.values.has(t)) return;
      const cx = x(index) + slot / 2;
      const cy = y(s.values.get(t));
      path += `${index === previous + 1 ? "L" : "M"}${cx.toFixed(1)},${cy.toFixed(1)}`;
      previous = index;
      const point = node("circle", { class: `point ${s.className}`, cx, cy, r: 2.5 }, plot);
      title(point, `${timeLabel(t, 0)}  ${s.name} ${format(s.values.get(t))}`);
    });
    node("path", { class: `line ${s.className}`, d: path }, plot);
  }
}
