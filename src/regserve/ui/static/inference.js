// The Serving page's Inference Table tab: the model's newest captured requests, filtered by
// status class. Kept apart from serving.js: it reads its own API while its tab is shown.
"use strict";

(() => {
  const { api, el, errorText } = window.regserve;
  const REFRESH_MS = 4000;
  const LIMIT = 200;
  const $ = (id) => document.getElementById(id);
  let rows = null;
  let drawn = "";

  const shown = () => !$("panel-inference").hidden;

  // Asked once: a caller without CAN_MANAGE is told so, and the table is never asked (a 403
  // would be the browser console's error).
  let level = null;

  async function load() {
    const model = "registered_model_name=" + encodeURIComponent($("serving").dataset.model);
    if (level === null) {
      const m = await api("GET", `/api/2.0/regserve/models/get?${model}`);
      level = m.ok ? m.data.permission_level : "";
    }
    if (level !== "CAN_MANAGE") {
      $("inference-note").textContent = "Only callers with CAN_MANAGE on this model may read "
        + "its inference table: its rows hold callers' data.";
      return;
    }
    const r = await api("GET", `/api/2.0/regserve/inference-tables/read?${model}&limit=${LIMIT}`);
    if (!r.ok) {
      rows = null;
      $("inference-rate").textContent = "";
      $("inference-note").textContent = errorText(r);
      $("inference").querySelector("tbody").replaceChildren();
      drawn = "";
      return;
    }
    const rate = r.data.sample_rate;
    $("inference-rate").textContent = rate > 0
      ? `Capturing ${Math.round(rate * 1000) / 10}% of requests.` : "Capture is off.";
    rows = r.data.rows;
    draw();
  }

  function statusClass(row) {
    return row.status_code === null ? "" : String(row.status_code)[0];
  }

  function bodies(row) {
    const cut = (flag) => (flag ? " (truncated)" : "");
    return el("details", {},
      el("summary", { text: "Show" }),
      el("p", { class: "small muted", text: `Request${cut(row.request_truncated)} · ${row.content_type || "no content type"}` }),
      el("pre", { class: "body", text: row.request }),
      el("p", { class: "small muted", text: `Response${cut(row.response_truncated)}` }),
      el("pre", { class: "body", text: row.response === null ? "(no answer)" : row.response }));
  }

  function draw() {
    if (rows === null) return;
    const wanted = $("inference-status").value;
    const picked = rows.filter((row) => !wanted || statusClass(row) === wanted);
    const key = JSON.stringify([wanted, picked]);
    if (key === drawn) return; // an open <details> stays open across refreshes
    drawn = key;
    const body = $("inference").querySelector("tbody");
    const lines = picked.map((row) => el("tr", { "data-status": statusClass(row) },
      el("td", { "data-label": "Time", text: new Date(row.timestamp).toLocaleString() }),
      el("td", { "data-label": "Request Id", text: row.request_id }),
      el("td", { "data-label": "Version", text: row.version }),
      el("td", { "data-label": "Ref", text: row.shadow ? `${row.ref} (shadow)` : row.route ? `${row.ref} -> ${row.route}` : row.ref }),
      el("td", { "data-label": "Caller", text: row.caller }),
      el("td", { "data-label": "Status", text: row.status_code === null ? "no answer" : String(row.status_code) }),
      el("td", { "data-label": "Latency", text: `${row.latency_ms.toFixed(1)} ms` }),
      el("td", { "data-label": "Bodies" }, bodies(row))));
    if (!lines.length) {
      const text = rows.length ? "No captured request has this status." : "No captured requests yet.";
      lines.push(el("tr", {}, el("td", { colspan: 8, class: "muted", text })));
    }
    body.replaceChildren(...lines);
    $("inference-note").textContent = rows.length >= LIMIT
      ? `The newest ${LIMIT} rows; older ones: regserve inference-table.` : "";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("tab-inference").addEventListener("click", load);
    $("inference-status").addEventListener("change", draw);
    setInterval(() => { if (shown()) load(); }, REFRESH_MS);
  });
})();
