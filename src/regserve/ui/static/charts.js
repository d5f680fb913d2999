// Small hand-written SVG line charts: one line per model version.
"use strict";

window.regserveCharts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2272b4", "#e0702c", "#2e8b57", "#9c4dcc", "#c43a3a", "#6b7280"];
  const W = 520, H = 220, PAD = { left: 52, right: 12, top: 14, bottom: 30 };

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  // The y-axis' ticks from 0 to at least `max`: four steps, or whole steps for counts.
  function ticks(max, integer) {
    if (!integer) {
      const top = niceMax(max);
      return [0, 1, 2, 3, 4].map((i) => (top * i) / 4);
    }
    let step = 1;
    for (const s of [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000]) {
      step = s;
      if (s * 4 >= max) break;
    }
    while (step * 4 < max) step *= 10;
    const count = Math.max(1, Math.ceil(max / step));
    return Array.from({ length: count + 1 }, (_, i) => i * step);
  }

  const MINUTE = 60000;

  // A count's missing minutes (no traffic) as zeros, from t0 to t1.
  function filled(points, t0, t1) {
    const known = new Map(points.map((p) => [Math.floor(p[0] / MINUTE) * MINUTE, p[1]]));
    const line = [];
    for (let t = Math.ceil(t0 / MINUTE) * MINUTE; t <= t1; t += MINUTE) line.push([t, known.get(t) || 0]);
    return line;
  }

  // A path through the points; a gap of more than a minute (no traffic, no latency) is not drawn.
  function pathOf(line, x, y) {
    return line.map((p, j) => {
      const jump = !j || p[0] - line[j - 1][0] > MINUTE;
      return `${jump ? "M" : "L"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`;
    }).join(" ");
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function format(value) {
    if (value === 0) return "0";
    if (value >= 100) return value.toFixed(0);
    return String(Number(value.toPrecision(3)));
  }

  // series: {version: [[timestampMs, value], ...]}, drawn from t0 to t1 (now); `count`: a
  // per-minute count (idle minutes are zeros, ticks whole numbers). Returns a <figure>.
  function lineChart(title, unit, series, { t0, t1, count = false }) {
    const versions = Object.keys(series).sort((a, b) => Number(a) - Number(b));
    const lines = {};
    for (const v of versions) {
      const inRange = series[v].filter((p) => p[0] >= t0 - MINUTE && p[0] <= t1).sort((a, b) => a[0] - b[0]);
      if (inRange.length) lines[v] = count ? filled(inRange, t0, t1) : inRange;
    }
    versions.splice(0, versions.length, ...Object.keys(lines).sort((a, b) => Number(a) - Number(b)));
    const points = versions.flatMap((v) => lines[v]);
    const figure = document.createElement("figure");
    figure.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    caption.append(Object.assign(document.createElement("span"), { className: "unit", textContent: ` (${unit})` }));
    figure.append(caption);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, "data-end": t1 });
    figure.append(chart);
    if (!points.length) {
      chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "No requests in this range"));
      return figure;
    }
    const marks = ticks(Math.max(...points.map((p) => p[1])), count);
    const top = marks.at(-1);
    const x = (t) => PAD.left + ((Math.max(t, t0) - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
    for (const v of marks) {
      chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
      chart.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, format(v)));
    }
    for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
      chart.append(svg("text", { x: x(t), y: H - 8, "text-anchor": anchor, class: "axis" }, clock(t)));
    }
    const summary = [];
    versions.forEach((version, i) => {
      const color = COLORS[i % COLORS.length];
      const line = lines[version];
      chart.append(svg("path", { d: pathOf(line, x, y), stroke: color, class: "series", "data-version": version }));
      for (const p of count ? line.filter((q) => q[1] > 0) : line) {
        const dot = svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, fill: color });
        dot.append(svg("title", {}, `Version ${version}, ${clock(p[0])}: ${format(p[1])} ${unit}`));
        chart.append(dot);
      }
      const last = line[line.length - 1];
      summary.push(`version ${version}: latest ${format(last[1])} ${unit}`);
    });
    chart.setAttribute("aria-label", `${title}. ${summary.join("; ")}`);
    const legend = document.createElement("ul");
    legend.className = "legend";
    versions.forEach((version, i) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLORS[i % COLORS.length];
      item.append(swatch, document.createTextNode(`Version ${version}`));
      legend.append(item);
    });
    figure.append(legend);
    return figure;
  }

  return { lineChart };
})();
