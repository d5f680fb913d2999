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

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function format(value) {
    if (value === 0) return "0";
    if (value >= 100) return value.toFixed(0);
    return String(Number(value.toPrecision(3)));
  }

  // series: {version: [[timestampMs, value], ...]}; returns a <figure>.
  function lineChart(title, unit, series) {
    const versions = Object.keys(series).sort((a, b) => Number(a) - Number(b));
    const points = versions.flatMap((v) => series[v]);
    const figure = document.createElement("figure");
    figure.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    caption.append(Object.assign(document.createElement("span"), { className: "unit", textContent: ` (${unit})` }));
    figure.append(caption);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    figure.append(chart);
    if (!points.length) {
      chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "No requests yet"));
      return figure;
    }
    const times = points.map((p) => p[0]);
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t1 - t0 < 10 * 60000) t0 = t1 - 10 * 60000; // at least ten minutes wide
    const top = niceMax(Math.max(...points.map((p) => p[1])));
    const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
      chart.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, format(v)));
    }
    for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
      chart.append(svg("text", { x: x(t), y: H - 8, "text-anchor": anchor, class: "axis" }, clock(t)));
    }
    const summary = [];
    versions.forEach((version, i) => {
      const color = COLORS[i % COLORS.length];
      const line = series[version].slice().sort((a, b) => a[0] - b[0]);
      const path = line.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      chart.append(svg("path", { d: path, stroke: color, class: "series" }));
      for (const p of line) {
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
