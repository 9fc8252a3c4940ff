// A line chart drawn as inline SVG: no chart library, nothing fetched from elsewhere.

import { clear, svg } from "./dom.js";

const W = 640;
const H = 200;
const PAD = { left: 70, right: 16, top: 30, bottom: 34 };

/**
 * Draw `points` ([{t: Date, v: number, label: string}], oldest first) into the <svg> `el`.
 * `format` turns a value into axis text; `kind` picks the colour class.
 */
export function drawChart(el, points, { title, format, kind, nice = niceMax }) {
  clear(el);
  const id = el.id;
  const described = points.length
    ? `${points.length} backups from ${points[0].label} to ${points[points.length - 1].label}; ` +
      `latest ${format(points[points.length - 1].v)}, largest ${format(Math.max(...points.map((p) => p.v)))}.`
    : "No finished backups yet.";
  el.append(
    svg("title", { id: `${id}-title` }, title),
    svg("desc", { id: `${id}-desc` }, described),
    svg("text", { x: 12, y: 20, class: "title" }, title),
  );
  if (points.length === 0) {
    el.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "label" }, "No finished backups yet"));
    return;
  }
  const t0 = points[0].t.getTime();
  const t1 = points[points.length - 1].t.getTime();
  const max = nice(Math.max(...points.map((p) => p.v)));
  const x = (t) => PAD.left + (t1 === t0 ? (W - PAD.left - PAD.right) / 2 : ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right));
  const y = (v) => H - PAD.bottom - (max ? (v / max) * (H - PAD.top - PAD.bottom) : 0);

  for (const fraction of [0, 0.5, 1]) {
    const v = max * fraction;
    el.append(
      svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: fraction ? "grid" : "axis" }),
      svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "label" }, format(v)),
    );
  }
  el.append(
    svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom, class: "axis" }),
    svg("text", { x: PAD.left, y: H - 10, class: "label" }, points[0].label),
  );
  if (points.length > 1) {
    el.append(svg("text", { x: W - PAD.right, y: H - 10, "text-anchor": "end", class: "label" }, points[points.length - 1].label));
  }
  const path = points.map((p) => `${x(p.t.getTime()).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  el.append(svg("polyline", { points: path, class: `line ${kind}` }));
  for (const p of points) {
    el.append(
      svg("circle", { cx: x(p.t.getTime()), cy: y(p.v), r: 3.5, class: kind },
        svg("title", {}, `${p.label}: ${format(p.v)}`)),
    );
  }
}

/** A round axis maximum for byte counts: 200 KiB rather than 195.3 KiB. */
export function niceBytes(value) {
  let unit = 1;
  while (value >= 1024 * unit && unit < 1024 ** 4) unit *= 1024;
  return niceMax(value / unit) * unit;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}
