// The dashboard's charts of the last 24 hours (GET /admin/usage's per_hour): plain SVG, no library.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_COLORS = ["#2358c9", "#e8710a", "#137333", "#a142f4", "#b42318", "#00838f", "#6d4c41", "#c2185b"];
// The drawing area inside each SVG's viewBox (760 x 230): axes left and right, hour labels below.
const BOX = { width: 760, height: 230, left: 56, right: 56, top: 24, bottom: 34 };

function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function tooltip(text) { return svgEl("title", {}, text); }

// 1234 -> "1.2k": axis labels that fit.
function shortNumber(value) {
  if (value >= 1e6) return (value / 1e6).toFixed(value >= 1e7 ? 0 : 1).replace(/\.0$/, "") + "M";
  if (value >= 1e3) return (value / 1e3).toFixed(value >= 1e4 ? 0 : 1).replace(/\.0$/, "") + "k";
  return String(Math.round(value * 10) / 10);
}

// A round top for an axis and its tick step: 1, 2 or 5 times a power of ten, about four steps
// (whole steps for counts).
function niceScale(max, whole) {
  if (!(max > 0)) return { top: 4, step: 1 };
  const rough = whole ? Math.max(1, max / 4) : max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map(m => m * power).find(s => s >= rough);
  return { top: step * Math.ceil(max / step), step };
}

function hourLabel(hour) { return hour.slice(11, 13); }  // "2025-01-31T17:00:00Z" -> "17"
function slotName(hour) { return hour.slice(0, 10) + " " + hour.slice(11, 16) + " UTC"; }

// The frame both charts share: gridlines, a y axis (left, or right), the hour labels under the slots.
function drawFrame(svg, slots, scale, side, unit) {
  const plotW = BOX.width - BOX.left - BOX.right;
  const plotH = BOX.height - BOX.top - BOX.bottom;
  const slotW = plotW / slots.length;
  const y = v => BOX.top + plotH - plotH * v / scale.top;
  const x = side === "left" ? BOX.left - 6 : BOX.width - BOX.right + 6;
  for (let v = 0; v <= scale.top + 1e-9; v += scale.step) {
    if (side === "left") svg.append(svgEl("line", { class: "grid", x1: BOX.left, x2: BOX.width - BOX.right, y1: y(v), y2: y(v) }));
    svg.append(svgEl("text", { class: "y-label y-" + side, x, y: y(v) + 4, "text-anchor": side === "left" ? "end" : "start" }, shortNumber(v)));
  }
  svg.append(svgEl("text", { class: "axis-unit", x: side === "left" ? 4 : BOX.width - 4, y: 2, "dominant-baseline": "hanging", "text-anchor": side === "left" ? "start" : "end" }, unit));
  if (side === "left") {
    svg.append(svgEl("line", { class: "axis", x1: BOX.left, x2: BOX.width - BOX.right, y1: y(0), y2: y(0) }));
    slots.forEach((s, i) => {
      const cx = BOX.left + slotW * (i + 0.5);
      // every hour is labelled on a wide screen; CSS hides the odd ones on a narrow one
      svg.append(svgEl("text", { class: "x-label" + (i % 2 ? " odd" : ""), x: cx, y: BOX.height - BOX.bottom + 14, "text-anchor": "middle" }, hourLabel(s.hour)));
    });
    svg.append(svgEl("text", { class: "axis-unit", x: BOX.left + plotW / 2, y: BOX.height - 3, "text-anchor": "middle" }, "hour (UTC), the current hour last"));
  }
  return { slotW, y, plotH };
}

// Hovering (or focusing) a mark shows its value in the readout under the chart as well as the tooltip.
function hoverable(node, text, readout) {
  node.append(tooltip(text));
  node.setAttribute("tabindex", "0");
  const show = () => { readout.textContent = text; };
  node.addEventListener("mouseenter", show);
  node.addEventListener("focus", show);
}

function modelsOf(slots) {
  return [...new Set(slots.flatMap(s => Object.keys(s.tokens_by_model)))].sort();
}

// Tokens per hour, one stacked bar per slot, a segment per model (empty hours stay empty).
function drawTokenChart(svg, legend, readout, slots) {
  const models = modelsOf(slots);
  const color = m => CHART_COLORS[models.indexOf(m) % CHART_COLORS.length];
  svg.replaceChildren();
  const frame = drawFrame(svg, slots, niceScale(Math.max(...slots.map(s => s.tokens)), true), "left", "tokens");
  slots.forEach((s, i) => {
    const group = svgEl("g", { class: "slot", "data-hour": s.hour, "data-tokens": s.tokens });
    const x = BOX.left + frame.slotW * i;
    let base = 0;
    for (const m of models) {
      const tokens = s.tokens_by_model[m] || 0;
      if (!tokens) continue;
      const segment = svgEl("rect", {
        class: "segment", "data-hour": s.hour, "data-model": m, "data-tokens": tokens,
        x: x + frame.slotW * 0.12, width: frame.slotW * 0.76,
        y: frame.y(base + tokens), height: frame.y(base) - frame.y(base + tokens), fill: color(m),
      });
      hoverable(segment, `${slotName(s.hour)} · ${m}: ${tokens} tokens (hour total ${s.tokens} tokens, ${s.requests} requests)`, readout);
      group.append(segment);
      base += tokens;
    }
    svg.append(group);
  });
  legend.replaceChildren(...(models.length
    ? models.map(m => el("span", { "data-model": m }, el("i", { style: "background:" + color(m) }), m))
    : [el("span", { class: "muted" }, "No requests in the last 24 h.")]));
}

// Requests per hour (bars, left axis) and time to first token p50 / p95 (points and lines, right axis).
function drawLatencyChart(svg, readout, slots) {
  svg.replaceChildren();
  const frame = drawFrame(svg, slots, niceScale(Math.max(...slots.map(s => s.requests)), true), "left", "requests");
  const msScale = niceScale(Math.max(0, ...slots.map(s => s.ttft_ms_p95 ?? s.ttft_ms_p50 ?? 0)));
  drawFrame(svg, slots, msScale, "right", "TTFT ms");
  const plotH = frame.plotH;
  const yMs = v => BOX.top + plotH - plotH * v / msScale.top;
  slots.forEach((s, i) => {
    if (!s.requests) return;
    const bar = svgEl("rect", {
      class: "requests-bar", "data-hour": s.hour, "data-requests": s.requests,
      x: BOX.left + frame.slotW * (i + 0.2), width: frame.slotW * 0.6,
      y: frame.y(s.requests), height: frame.y(0) - frame.y(s.requests),
    });
    hoverable(bar, `${slotName(s.hour)}: ${s.requests} requests`, readout);
    svg.append(bar);
  });
  for (const p of ["p50", "p95"]) {
    const key = "ttft_ms_" + p;
    let run = [];
    const flush = () => { if (run.length > 1) svg.append(svgEl("polyline", { class: "ttft-line ttft-" + p, points: run.join(" ") })); run = []; };
    slots.forEach((s, i) => {
      const v = s[key];
      if (v === null || v === undefined) { flush(); return; }  // no timed request that hour: a gap
      const cx = BOX.left + frame.slotW * (i + 0.5);
      run.push(cx + "," + yMs(v));
      const point = svgEl("circle", { class: "ttft-point ttft-" + p, "data-hour": s.hour, "data-ms": v, cx, cy: yMs(v), r: 3.5 });
      hoverable(point, `${slotName(s.hour)}: time to first token ${p} ${Math.round(v * 10) / 10} ms`, readout);
      svg.append(point);
    });
    flush();
  }
}

function renderUsageCharts(slots) {
  const readout = document.getElementById("chart-readout");
  readout.textContent = "Hover over a bar or point for its value.";
  drawTokenChart(document.getElementById("chart"), document.getElementById("legend"), readout, slots);
  drawLatencyChart(document.getElementById("latency-chart"), readout, slots);
}
