// Line, bar and scatter charts drawn as SVG: small, dependency-free, readable.

import { h, s } from "./dom.js";

export const PALETTE = ["#4f46e5", "#0891b2", "#d97706", "#db2777", "#059669", "#7c3aed", "#dc2626", "#65a30d", "#0f766e", "#9333ea"];

const M = { left: 52, right: 14, top: 12, bottom: 30 };

/** About `count` round tick values covering [min, max]. */
export function ticks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw) || raw;
  const out = [];
  const first = Math.floor(min / step);
  const last = Math.max(first + 1, Math.ceil(max / step - 1e-9));
  for (let i = first; i <= last; i += 1) out.push(Number((i * step).toPrecision(12)));
  return out;
}

let tip = null;
function tooltip() {
  if (!tip) {
    tip = h("div", { class: "chart-tip", role: "tooltip" });
    document.body.append(tip);
  }
  return tip;
}

function hoverable(node, text) {
  node.append(s("title", {}, text));
  node.addEventListener("mouseenter", (event) => {
    const t = tooltip();
    t.textContent = text;
    t.style.display = "block";
    t.style.left = `${event.pageX + 12}px`;
    t.style.top = `${event.pageY + 12}px`;
  });
  node.addEventListener("mousemove", (event) => {
    tooltip().style.left = `${event.pageX + 12}px`;
    tooltip().style.top = `${event.pageY + 12}px`;
  });
  node.addEventListener("mouseleave", () => (tooltip().style.display = "none"));
  return node;
}

function linked(node, href) {
  if (!href) return node;
  return s("a", { href }, node);
}

function frame(W, height, yTicks, yScale, yFormat, label) {
  const parts = [];
  for (const t of yTicks) {
    const y = yScale(t);
    parts.push(s("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: "grid" }));
    parts.push(s("text", { x: M.left - 6, y: y + 4, class: "tick", "text-anchor": "end" }, yFormat(t)));
  }
  if (label) parts.push(s("text", { x: 12, y: M.top + (height - M.top - M.bottom) / 2, class: "axis-label", transform: `rotate(-90 12 ${M.top + (height - M.top - M.bottom) / 2})`, "text-anchor": "middle" }, label));
  return parts;
}

function legend(series) {
  if (series.length < 2) return null;
  return h(
    "div",
    { class: "legend" },
    series.map((item) => h("span", { class: "legend-item" }, h("i", { style: { background: item.color } }), item.name)),
  );
}

function wrap(title, svgNode, series, extra) {
  return h("figure", { class: "chart" }, title ? h("figcaption", {}, title) : null, svgNode, legend(series), extra || null);
}

function colored(series) {
  return series.map((item, i) => ({ ...item, color: item.color || PALETTE[i % PALETTE.length] }));
}

/**
 * Lines over a shared categorical x axis (one slot per run).
 * lineChart({title, labels: ["run 1", ...], series: [{name, values: [y|null], hrefs, tips}], yFormat})
 */
export function lineChart({ title, labels, series, yFormat = String, yMin, yMax, yLabel, height = 200, width: W = 560 }) {
  const all = colored(series);
  const values = all.flatMap((item) => item.values.filter((v) => Number.isFinite(v)));
  if (!values.length) return wrap(title, h("p", { class: "muted chart-empty" }, "no data yet"), []);
  const lo = yMin ?? Math.min(0, ...values);
  const hi = yMax ?? Math.max(...values);
  const yTicks = ticks(lo, hi, 4);
  const y0 = Math.min(lo, yTicks[0]);
  const y1 = Math.max(hi, yTicks[yTicks.length - 1]);
  const yScale = (v) => height - M.bottom - ((v - y0) / (y1 - y0 || 1)) * (height - M.top - M.bottom);
  const n = labels.length;
  const xScale = (i) => (n <= 1 ? (M.left + W - M.right) / 2 : M.left + 10 + (i / (n - 1)) * (W - M.left - M.right - 20));
  const svgNode = s("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart-svg", role: "img", "aria-label": title || "line chart" }, frame(W, height, yTicks, yScale, yFormat, yLabel));
  const every = Math.max(1, Math.ceil(n / 6));
  labels.forEach((label, i) => {
    if (i % every === 0 || i === n - 1) svgNode.append(s("text", { x: xScale(i), y: height - 10, class: "tick", "text-anchor": "middle" }, label));
  });
  for (const item of all) {
    const points = item.values.map((v, i) => [i, v]).filter(([, v]) => Number.isFinite(v));
    if (points.length > 1) {
      svgNode.append(s("polyline", { points: points.map(([i, v]) => `${xScale(i)},${yScale(v)}`).join(" "), fill: "none", stroke: item.color, "stroke-width": 2, "stroke-linejoin": "round" }));
    }
    for (const [i, v] of points) {
      const dot = s("circle", { cx: xScale(i), cy: yScale(v), r: 4, fill: item.color, class: "point" });
      hoverable(dot, `${item.name}: ${yFormat(v)}${item.tips ? ` — ${item.tips[i]}` : ""}`);
      svgNode.append(linked(dot, item.hrefs && item.hrefs[i]));
    }
  }
  return wrap(title, svgNode, all);
}

/**
 * Grouped bars: one group per category, one bar per series.
 * barChart({title, categories: ["accuracy"], series: [{name, values: [0.8]}], yFormat, yMax})
 */
export function barChart({ title, categories, series, yFormat = String, yMax, height = 220, width: W = 560 }) {
  const all = colored(series);
  const values = all.flatMap((item) => item.values.filter((v) => Number.isFinite(v)));
  if (!values.length || !categories.length) return wrap(title, h("p", { class: "muted chart-empty" }, "no scores to compare"), []);
  const hi = yMax ?? Math.max(...values);
  const yTicks = ticks(0, hi, 4);
  const top = Math.max(hi, yTicks[yTicks.length - 1]);
  const yScale = (v) => height - M.bottom - (v / (top || 1)) * (height - M.top - M.bottom);
  const svgNode = s("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart-svg", role: "img", "aria-label": title || "bar chart" }, frame(W, height, yTicks, yScale, yFormat));
  const groupWidth = (W - M.left - M.right) / categories.length;
  const barWidth = Math.min(all.length === 1 ? 64 : 38, (groupWidth * 0.8) / all.length);
  categories.forEach((category, c) => {
    const start = M.left + c * groupWidth + (groupWidth - barWidth * all.length) / 2;
    svgNode.append(s("text", { x: M.left + c * groupWidth + groupWidth / 2, y: height - 10, class: "tick", "text-anchor": "middle" }, category));
    all.forEach((item, i) => {
      const v = item.values[c];
      if (!Number.isFinite(v)) return;
      const y = yScale(v);
      // One series: each category gets its own colour (a bar per model, say).
      const fill = all.length === 1 ? PALETTE[c % PALETTE.length] : item.color;
      const bar = s("rect", { x: start + i * barWidth + 1, y, width: Math.max(1, barWidth - 2), height: Math.max(1.5, height - M.bottom - y), fill, rx: 2, class: "bar" });
      hoverable(bar, `${item.name} · ${category}: ${yFormat(v)}`);
      svgNode.append(bar);
    });
  });
  return wrap(title, svgNode, all);
}

/**
 * Points: scatterChart({title, points: [{x, y, series, label, href}], xFormat, yFormat, xLabel, yLabel})
 */
export function scatterChart({ title, points, xFormat = String, yFormat = String, xLabel, yLabel, yMin, yMax, height = 260, width: W = 560, highlight, highlightLabel }) {
  const usable = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const names = [...new Set(usable.map((p) => p.series || ""))];
  const series = colored(names.map((name) => ({ name: name || "points" })));
  const colorOf = Object.fromEntries(series.map((item) => [item.name, item.color]));
  if (!usable.length) return wrap(title, h("p", { class: "muted chart-empty" }, "no points with both values"), []);
  const xs = usable.map((p) => p.x);
  const ys = usable.map((p) => p.y);
  const xTicks = ticks(Math.min(...xs), Math.max(...xs), 5);
  const yTicks = ticks(yMin ?? Math.min(...ys), yMax ?? Math.max(...ys), 4);
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [Math.min(yTicks[0], yMin ?? Infinity), Math.max(yTicks[yTicks.length - 1], yMax ?? -Infinity)];
  const xScale = (v) => M.left + 8 + ((v - x0) / (x1 - x0 || 1)) * (W - M.left - M.right - 16);
  const yScale = (v) => height - M.bottom - 6 - ((v - y0) / (y1 - y0 || 1)) * (height - M.top - M.bottom - 12);
  const svgNode = s("svg", { viewBox: `0 0 ${W} ${height + 12}`, class: "chart-svg", role: "img", "aria-label": title || "scatter plot" }, frame(W, height, yTicks, yScale, yFormat, yLabel));
  for (const t of xTicks) svgNode.append(s("text", { x: xScale(t), y: height - 10, class: "tick", "text-anchor": "middle" }, xFormat(t)));
  if (xLabel) svgNode.append(s("text", { x: (M.left + W) / 2, y: height + 8, class: "axis-label", "text-anchor": "middle" }, xLabel));
  let highlighted = false;
  for (const p of usable) {
    const special = highlight && highlight(p);
    highlighted ||= Boolean(special);
    const dot = s("circle", { cx: xScale(p.x), cy: yScale(p.y), r: special ? 7 : 5, fill: colorOf[p.series || "points"], "fill-opacity": 0.75, stroke: special ? "#111827" : "white", "stroke-width": special ? 2 : 1, class: "point" });
    hoverable(dot, `${p.label ? `${p.label}: ` : ""}${xLabel || "x"} ${xFormat(p.x)}, ${yLabel || "y"} ${yFormat(p.y)}`);
    svgNode.append(linked(dot, p.href));
  }
  // The enlarged, outlined point says what it is in the legend (the best value, say).
  const key = highlighted && highlightLabel ? h("div", { class: "legend highlight-legend" }, h("span", { class: "legend-item" }, h("i", { class: "legend-ring" }), highlightLabel)) : null;
  return wrap(title, svgNode, names.length > 1 ? series : [], key);
}

const TICK_STEPS = [1, 5, 15, 30, 60, 120, 180, 360, 720, 1440, 2880].map((minutes) => minutes * 60000);

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs <= 2 * 86400000) return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString("en-GB", { day: "numeric", month: "short" });
}

/**
 * Values over time, one slot per bucket of `step` ms from `start` to `end`: stacked bars
 * (sums: cost, tokens, calls) or lines (rates, percentiles; null leaves a gap).
 * timeChart({title, start, end, step, series: [{name, values: Map(t -> v)}], bars, yFormat})
 */
export function timeChart({ title, start, end, step, series, bars = false, yFormat = String, height = 190, width: W = 560, empty = "no data in this window" }) {
  const all = colored(series);
  const slots = [];
  for (let t = start; t < end; t += step) slots.push(t);
  const at = (item, t) => {
    const v = item.values.get(t);
    return Number.isFinite(v) ? v : bars ? 0 : null;
  };
  const totals = slots.map((t) => (bars ? all.reduce((sum, item) => sum + at(item, t), 0) : Math.max(...all.map((item) => at(item, t) ?? -Infinity))));
  const finite = totals.filter((v) => Number.isFinite(v) && v > -Infinity);
  if (!finite.length || (bars && !finite.some((v) => v > 0))) return wrap(title, h("p", { class: "muted chart-empty" }, empty), []);
  const yTicks = ticks(0, Math.max(...finite), 4);
  const top = Math.max(...finite, yTicks[yTicks.length - 1]);
  const yScale = (v) => height - M.bottom - (v / (top || 1)) * (height - M.top - M.bottom);
  const xScale = (t) => M.left + ((t - start) / (end - start || 1)) * (W - M.left - M.right);
  const svgNode = s("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart-svg time-chart", role: "img", "aria-label": title || "chart over time" }, frame(W, height, yTicks, yScale, yFormat));
  const spanMs = end - start;
  // Ticks on round times (whole hours, days...) about six across, in the reader's time zone.
  const tickStep = TICK_STEPS.find((ms) => spanMs / ms <= 7) || 7 * 86400000;
  const zone = new Date(start).getTimezoneOffset() * 60000;
  for (let t = Math.ceil((start - zone) / tickStep) * tickStep + zone; t <= end; t += tickStep) {
    const x = xScale(t);
    if (x > W - M.right - 14) break;
    svgNode.append(s("text", { x, y: height - 10, class: "tick", "text-anchor": "middle" }, timeLabel(t, spanMs)));
  }
  const slotWidth = (W - M.left - M.right) / Math.max(1, slots.length);
  if (bars) {
    const width = Math.max(1, slotWidth - (slotWidth > 4 ? 1.5 : 0.5));
    slots.forEach((t) => {
      let base = 0;
      for (const item of all) {
        const v = at(item, t);
        if (!(v > 0)) continue;
        const y0 = yScale(base);
        const y1 = yScale(base + v);
        base += v;
        const bar = s("rect", { x: xScale(t) + (slotWidth - width) / 2, y: y1, width, height: Math.max(1, y0 - y1), fill: item.color, class: "bar", "data-t": t });
        hoverable(bar, `${all.length > 1 ? `${item.name} · ` : ""}${timeLabel(t, 0)} ${new Date(t).toLocaleDateString("en-GB", { day: "numeric", month: "short" })}: ${yFormat(v)}`);
        svgNode.append(bar);
      }
    });
  } else {
    for (const item of all) {
      let run = [];
      const flush = () => {
        if (run.length > 1) svgNode.append(s("polyline", { points: run.join(" "), fill: "none", stroke: item.color, "stroke-width": 1.8, "stroke-linejoin": "round" }));
        run = [];
      };
      slots.forEach((t) => {
        const v = at(item, t);
        if (v === null) {
          flush();
          return;
        }
        const x = xScale(t) + slotWidth / 2;
        run.push(`${x},${yScale(v)}`);
        const dot = s("circle", { cx: x, cy: yScale(v), r: 2.6, fill: item.color, class: "point", "data-t": t });
        hoverable(dot, `${item.name} · ${timeLabel(t, 0)} ${new Date(t).toLocaleDateString("en-GB", { day: "numeric", month: "short" })}: ${yFormat(v)}`);
        svgNode.append(dot);
      });
      flush();
    }
  }
  return wrap(title, svgNode, all);
}
