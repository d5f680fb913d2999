// The Serving page: status, versions, request box, events, metrics, traffic and cluster settings.
// Every few seconds it re-reads the state and redraws only the parts whose data changed;
// the request box and the cluster form are never redrawn by a refresh.
"use strict";

(() => {
  const { api, el, errorText, confirmAction, tabs } = window.regserve;
  const root = document.getElementById("serving");
  const MODEL = root.dataset.model;
  const Q = "registered_model_name=" + encodeURIComponent(MODEL);
  const EP = "/api/2.0/preview/mlflow/endpoints";
  const REFRESH_MS = 4000;
  const $ = (id) => document.getElementById(id);

  const view = {
    tab: "tab-versions", sub: "tab-logs", selected: null, enabled: false, level: "",
    refusal: null, versions: [], served: {}, aliases: {}, examples: {},
    cluster: null, clusterDirty: false, nodeTypes: null, busy: false, again: false,
    known: root.dataset.served === "true", // served now or before: it has events and metrics
    clusterLocked: null, metrics: [], rangeHours: 1,
  };
  const drawn = new Map();
  // True (and remembered) when `data` differs from what was last drawn under `key`.
  function changed(key, data) {
    const text = JSON.stringify(data);
    if (drawn.get(key) === text) return false;
    drawn.set(key, text);
    return true;
  }

  const pretty = (s) => s.replace(/^(ENDPOINT|VERSION)_STATE_/, "").toLowerCase().replace(/_/g, " ");
  const titled = (s) => pretty(s).replace(/^\w/, (c) => c.toUpperCase());
  const when = (ms) => new Date(ms).toLocaleString();

  // A failed version's message carries its log's last lines: show the exception line and link
  // to the full log. The same rule as regserve/ui/failures.py (the model list): change both.
  const EXCEPTION_LINE = /^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure|Fault)(?::\s.*)?$/;
  function headline(message, version) {
    const lines = (message || "").split("\n");
    if (lines.length < 2) return { text: message || "", logVersion: null };
    const first = lines[0].replace(/\s*Last log lines:\s*$/, "");
    const causes = lines.slice(1).map((l) => l.trimEnd()).filter((l) => EXCEPTION_LINE.test(l));
    const scope = first.match(/^[^.]*\(failed: v(\w+)[^)]*\)\./);
    const logVersion = version || (scope ? scope[1] : null);
    if (!causes.length) return { text: first, logVersion };
    return { text: scope ? `${scope[0]} ${causes.at(-1)}` : causes.at(-1), logVersion };
  }

  // Fills `node` with a message's headline and, when it was shortened, a link to the log.
  function drawMessage(node, message, version) {
    const line = headline(message, version);
    const parts = [line.text];
    if (line.logVersion) {
      parts.push(" ", el("a", {
        href: "#logs-" + encodeURIComponent(line.logVersion), class: "log-link", text: "Full log",
        onclick: (event) => { event.preventDefault(); showLog(line.logVersion); },
      }));
    }
    node.replaceChildren(...parts);
    return node;
  }

  function badge(node, state) {
    node.textContent = titled(state);
    node.className = "badge state-" + pretty(state).replace(/ /g, "_");
  }

  // -- status ---------------------------------------------------------------------------------

  function drawStatus(status) {
    view.enabled = !!status;
    $("status-enabled").hidden = !status;
    $("status-disabled").hidden = !!status;
    if (status) {
      badge($("status-badge"), status.state);
      drawMessage($("status-message"), status.state_message, null);
    }
    const manage = view.level === "CAN_MANAGE";
    $("enable").disabled = !!view.refusal;
    $("stop").hidden = !manage;
    const reason = view.refusal && !status ? view.refusal
      : !manage && status ? `Stopping serving needs CAN_MANAGE; you hold ${view.level || "no permission"}.` : "";
    $("enable-reason").textContent = reason;
    $("enable-reason").hidden = !reason;
  }

  // "Updating cluster: A -> B" while the desired config is not the running one yet (not when
  // the last update failed: the status message says so).
  function drawClusterUpdate(status) {
    const desired = status && status.desired_cluster_config;
    const actual = status && status.actual_cluster_config;
    const failed = status && /The last cluster update failed/.test(status.state_message || "");
    let text = "";
    if (desired && actual && !failed) {
      text = desired.node_type_id !== actual.node_type_id
        ? `Updating cluster: ${actual.node_type_id} -> ${desired.node_type_id}`
        : `Updating cluster: ${actual.node_type_id} (new tags)`;
      text += "; the versions keep serving meanwhile.";
    }
    $("cluster-update").textContent = text;
    $("cluster-update").hidden = !text;
  }

  // -- versions -------------------------------------------------------------------------------

  function refsOf(version) {
    return Object.entries(view.aliases).filter(([, v]) => v === version).map(([ref]) => ref);
  }

  function versionState(version) {
    const served = view.served[version];
    return served ? served.state : view.enabled ? "NOT_SERVED" : "NOT_ENABLED";
  }

  function tagsOf(info) {
    const tags = [];
    if (info.current_stage && info.current_stage !== "None") tags.push(["stage", info.current_stage]);
    for (const alias of info.aliases) tags.push(["alias", "@" + alias]);
    return tags;
  }

  function tagList(info) {
    return tagsOf(info).map(([kind, text]) => el("span", { class: "tag tag-" + kind, text }));
  }

  // Local backend: whether a served version's workers are loaded, or idle and why; the time of
  // its last request in the tooltip (list-versions: loaded, idle_reason, last_request_timestamp).
  function loadNote(served) {
    if (!served || typeof served.loaded !== "boolean") return null;
    const why = { IDLE_TIMEOUT: "idle timeout", MEMORY_BUDGET: "memory budget" }[served.idle_reason];
    const text = served.loaded ? "loaded" : why ? `idle (${why})` : "idle";
    const last = served.last_request_timestamp;
    const title = last ? "Last request " + new Date(last).toLocaleString() : "No request yet";
    return el("span", { class: "load-note muted", text, title });
  }

  function loadOf(served) {
    return served ? [served.loaded, served.idle_reason, served.last_request_timestamp] : null;
  }

  function drawVersionList() {
    const items = view.versions.map((info) => ({
      info, state: versionState(info.version), load: loadOf(view.served[info.version]),
    }));
    if (!changed("version-list", [items, view.selected])) return;
    const list = $("version-list");
    list.replaceChildren(...items.map(({ info, state }) => {
      const current = info.version === view.selected;
      const stateBadge = el("span", {});
      badge(stateBadge, state);
      const button = el("button", {
        type: "button", class: "version-item" + (current ? " current" : ""),
        "aria-current": current ? "true" : null, "data-version": info.version,
        onclick: () => selectVersion(info.version),
      }, el("span", { class: "version-label", text: "Version " + info.version }), stateBadge,
      loadNote(view.served[info.version]), el("span", { class: "tags" }, ...tagList(info)));
      return el("li", {}, button);
    }));
    if (!items.length) list.append(el("li", { class: "muted", text: "No versions registered yet." }));
  }

  function scoringUrl(ref) {
    return `${location.origin}/model/${encodeURIComponent(MODEL)}/${encodeURIComponent(ref)}/invocations`;
  }

  function drawVersionDetail() {
    const info = view.versions.find((v) => v.version === view.selected);
    const served = view.served[view.selected];
    const state = info ? versionState(info.version) : "";
    const refs = info ? [info.version, ...refsOf(info.version)] : [];
    const example = view.examples[view.selected];
    if (!changed("version-detail", [info, served, state, refs, example !== undefined])) return;
    $("version-detail").hidden = !info;
    $("version-title").textContent = info ? "Version " + info.version : "No version selected";
    if (info) badge($("version-state"), state); else $("version-state").textContent = "";
    $("version-tags").replaceChildren(...(info ? tagList(info) : []));
    drawMessage($("version-message"), served ? served.state_message || ""
      : info && info.current_stage === "Archived" ? "Archived versions are not served."
      : view.enabled ? "" : "Enable serving to deploy this version.", info ? info.version : null);
    $("urls").replaceChildren(...refs.map((ref) => {
      const id = "url-" + ref.replace(/[^A-Za-z0-9_-]/g, "_");
      return el("li", {},
        el("span", { class: "ref", text: ref === info.version ? "Version " + ref : ref }),
        el("code", { id, text: scoringUrl(ref) }),
        el("button", { type: "button", class: "btn btn-small copy", "data-copy": id, text: "Copy" }));
    }));
    drawSnippets(info ? scoringUrl(info.version) : scoringUrl("1"), example);
    const ready = state === "VERSION_STATE_READY";
    $("send-request").disabled = !ready;
    $("send-hint").textContent = !info ? "" : ready ? "Sends the request to " + scoringUrl(info.version)
      : "Send Request is enabled once this version is Ready.";
  }

  function drawSnippets(url, example) {
    const body = JSON.stringify(example && example.input_example ? example.input_example
      : { dataframe_records: [{ feature: 1.0 }] });
    $("snippet-curl").textContent = [
      `curl -X POST "${url}" \\`,
      `  -H "Authorization: Bearer $REGSERVE_TOKEN" \\`,
      `  -H "Content-Type: application/json" \\`,
      `  -d '${body.replace(/'/g, "'\\''")}'`,
    ].join("\n");
    $("snippet-python").textContent = [
      "import os",
      "",
      "import requests",
      "",
      `url = ${JSON.stringify(url)}`,
      'headers = {"Authorization": f"Bearer {os.environ[\'REGSERVE_TOKEN\']}"}',
      `payload = ${body}`,
      "response = requests.post(url, headers=headers, json=payload, timeout=60)",
      "response.raise_for_status()",
      "print(response.json())",
    ].join("\n");
  }

  function selectVersion(version) {
    if (version !== view.selected) clearResponse();
    view.selected = version;
    drawVersionList();
    drawVersionDetail();
    loadExample(version, false);
    refreshVersionTabs();
  }

  // The Model Versions tab, `version` selected, its Logs sub-tab open and in view.
  function showLog(version) {
    if (view.versions.some((v) => v.version === version)) selectVersion(version);
    else view.selected = version;
    $("tab-versions").click();
    $("tab-logs").click();
    $("logs").scrollIntoView({ block: "nearest" });
  }

  // JSON as a person reads a request: objects and arrays of objects or arrays open up, one
  // item a line; an array or object of plain values stays on one line (a row, the columns).
  function formatJson(value, indent = "") {
    const plain = (v) => v === null || typeof v !== "object";
    const inline = (v) => plain(v) ? JSON.stringify(v) : Array.isArray(v)
      ? `[${v.map(inline).join(", ")}]`
      : `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${inline(x)}`).join(", ")}}`;
    if (plain(value)) return JSON.stringify(value);
    const items = Array.isArray(value) ? value : Object.values(value);
    if (indent && items.every(plain)) return inline(value);
    if (!items.length) return Array.isArray(value) ? "[]" : "{}";
    const inner = indent + "  ";
    const lines = Array.isArray(value) ? value.map((v) => inner + formatJson(v, inner))
      : Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${formatJson(v, inner)}`);
    const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
    return `${open}\n${lines.join(",\n")}\n${indent}${close}`;
  }

  // The request box's JSON, or null with the reason shown (nothing is sent).
  function requestJson() {
    const text = $("request-body").value;
    try {
      const value = JSON.parse(text);
      $("request-error").hidden = true;
      return value;
    } catch (error) {
      $("request-error").textContent = text.trim()
        ? `The request is not valid JSON (${error.message}): fix it and send again.`
        : "The request is empty: type a JSON body or press Show Example.";
      $("request-error").hidden = false;
      return null;
    }
  }

  function formatRequest() {
    const value = requestJson();
    if (value !== null) $("request-body").value = formatJson(value);
  }

  function clearResponse() {
    $("response-status").textContent = "";
    $("response-status").className = "badge";
    $("response-latency").textContent = "";
    $("response-body").textContent = "";
  }

  async function loadExample(version, show) {
    if (view.examples[version] === undefined) {
      const r = await api("GET", `/api/2.0/regserve/models/get-input-example?${Q}&version=${encodeURIComponent(version)}`);
      // null: the version was logged without one (a 200, so the console stays clean)
      view.examples[version] = !r.ok ? { error: errorText(r) } : r.data.input_example !== null ? r.data
        : { error: `Version ${version} was logged without an input example.` };
      if (version === view.selected) drawVersionDetail();
    }
    if (!show) return;
    const example = view.examples[version];
    if (example.input_example) {
      $("request-body").value = formatJson(example.input_example);
      $("request-error").hidden = true;
      $("send-hint").textContent = `Loaded the input example logged with version ${version}.`;
    } else {
      $("send-hint").textContent = example.error;
    }
  }

  async function sendRequest() {
    const version = view.selected;
    if (requestJson() === null) return;
    $("response-status").textContent = "Sending…";
    $("response-status").className = "badge";
    const r = await api("POST", `/model/${encodeURIComponent(MODEL)}/${encodeURIComponent(version)}/invocations`,
      $("request-body").value);
    if (version !== view.selected) return; // another version was picked meanwhile
    $("response-status").textContent = `${r.status || "No answer"}`;
    $("response-status").className = "badge " + (r.ok ? "state-ready" : "state-failed");
    const answeredBy = r.headers.get("X-Model-Version");
    $("response-latency").textContent = `${Math.round(r.ms)} ms` + (answeredBy ? ` · version ${answeredBy}` : "");
    $("response-body").textContent = r.data !== null ? formatJson(r.data) : r.text;
  }

  // -- logs and events ------------------------------------------------------------------------

  function eventRows(events, withVersion) {
    // data-label: a narrow screen shows each row as a card, its cells labelled (ui.css)
    return events.slice().reverse().map((e) => el("tr", {},
      el("td", { class: "nowrap", "data-label": "Timestamp", text: when(e.timestamp) }),
      el("td", { "data-label": "Event Type" }, el("span", { class: "event-type", text: e.event_type })),
      withVersion ? el("td", { "data-label": "Version", text: e.endpoint_version_name || "" }) : null,
      drawMessage(el("td", { class: "message", "data-label": "Message" }), e.message,
        e.endpoint_version_name || null)));
  }

  function drawEvents(tableId, events, withVersion) {
    if (!changed(tableId, events)) return;
    const body = $(tableId).querySelector("tbody");
    const rows = eventRows(events, withVersion);
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", { colspan: withVersion ? 4 : 3, class: "muted",
        text: view.known ? "No events yet." : "No events yet: serving was never enabled for this model." })));
    }
    body.replaceChildren(...rows);
  }

  async function refreshVersionTabs() {
    const version = view.selected;
    if (!version || view.tab !== "tab-versions") return;
    const v = encodeURIComponent(version);
    if (view.sub === "tab-logs") {
      // A version that served and stopped (archived, serving disabled) left its last log;
      // one that never served has none, and is not asked (its 404 would be a console error).
      const info = view.versions.find((i) => i.version === version);
      const kept = !view.served[version] && Boolean(info && info.has_log);
      const r = view.served[version] || kept
        ? await api("GET", `${EP}/get-version-logs?${Q}&endpoint_version_name=${v}`) : null;
      if (version !== view.selected) return; // another version was picked meanwhile
      const text = !r ? "This version is not served and has not served: it has no log."
        : r.ok ? r.data.logs || "(empty)" : errorText(r);
      $("logs-note").hidden = !kept;
      $("logs-note").textContent = kept
        ? `Version ${version} is not served any more: this is the last log it left.` : "";
      if (changed("logs", [version, text])) {
        const logs = $("logs");
        const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
        logs.textContent = text;
        if (atEnd) logs.scrollTop = logs.scrollHeight;
      }
    } else {
      const r = view.known
        ? await api("GET", `${EP}/get-event-history?${Q}&endpoint_version_name=${v}`) : null;
      drawEvents("version-events", r && r.ok ? r.data.events : [], false);
    }
  }

  async function refreshModelEvents() {
    const r = view.known ? await api("GET", `${EP}/get-event-history?${Q}`) : null;
    drawEvents("model-events", r && r.ok ? r.data.events : [], true);
  }

  // -- traffic (traffic.js) ---------------------------------------------------------------------

  const traffic = window.regserveTraffic.tab({ model: MODEL, view, changed, eventRows, refresh });

  // -- metrics --------------------------------------------------------------------------------

  async function refreshMetrics() {
    const r = view.known ? await api("GET", `${EP}/get-metric-history?${Q}`) : null;
    view.metrics = r && r.ok ? r.data.metrics : [];
    drawMetrics();
  }

  // Redrawn each minute even without new figures: the x-axis ends at now.
  function drawMetrics() {
    const t1 = Date.now();
    if (!changed("metrics", [view.metrics, view.rangeHours, Math.floor(t1 / 60000)])) return;
    const t0 = t1 - view.rangeHours * 3600000;
    const charts = [
      ["Requests per minute", "requests", "requests_per_minute", true],
      ["Latency p50", "ms", "latency_p50_ms", false],
      ["Latency p99", "ms", "latency_p99_ms", false],
      ["Errors per minute", "errors", "errors_per_minute", true],
      // a minute without a batch has no batch size (a gap, not a zero); it may be fractional
      ["Batch size (mean)", "requests per batch", "batch_size_mean", false],
      ["Queue depth (most at once)", "requests", "queue_depth_max", true],
    ];
    $("charts").replaceChildren(...charts.map(([title, unit, key, count]) => {
      const series = {};
      for (const m of view.metrics.filter((m) => m.key === key)) {
        (series[m.endpoint_version_name] ||= []).push([m.timestamp, m.value]);
      }
      return window.regserveCharts.lineChart(title, unit, series, { t0, t1, count });
    }));
  }

  function selectRange(hours) {
    view.rangeHours = hours;
    for (const button of document.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.range) === hours));
    }
    drawMetrics();
  }

  // -- cluster settings -----------------------------------------------------------------------

  async function refreshCluster(status) {
    if (!view.nodeTypes) {
      const r = await api("GET", "/api/2.0/clusters/list-node-types");
      view.nodeTypes = r.ok ? r.data.node_types : [];
      // The API says "1 Cores", as Databricks does; the page says "1 core".
      const cores = (text) => text.replace(/\b(\d+(?:\.\d+)?) Cores\b/,
        (_, n) => `${n} ${Number(n) === 1 ? "core" : "cores"}`);
      $("instance-type").replaceChildren(...view.nodeTypes.map((t) => el("option",
        { value: t.node_type_id, text: `${t.node_type_id} (${cores(t.description)})` })));
    }
    const config = status ? status.desired_cluster_config || status.actual_cluster_config : null;
    if (config && !view.clusterDirty) {
      view.cluster = { node_type_id: config.node_type_id, tags: config.tags.map((t) => ({ ...t })) };
      $("instance-type").value = config.node_type_id;
      drawTags();
    }
    // A caller who may not change the cluster sees it read-only: nothing to edit, no Save.
    const manage = view.level === "CAN_MANAGE";
    const locked = !manage;
    if (locked !== view.clusterLocked) {
      view.clusterLocked = locked;
      $("instance-type").disabled = locked;
      $("add-tag-fields").hidden = locked;
      $("tags-actions-head").hidden = locked;
      $("save-cluster").hidden = locked;
      drawTags();
    }
    $("save-cluster").disabled = !status;
    $("cluster-reason").textContent = !status ? "Enable serving to configure its cluster."
      : manage ? "" : `Changing the cluster needs CAN_MANAGE; you hold ${view.level || "no permission"}.`;
  }

  function drawTags(editing) {
    const tags = view.cluster ? view.cluster.tags : [];
    $("tags").querySelector("tbody").replaceChildren(...tags.map((tag, i) => {
      if (i === editing) {
        const key = el("input", { value: tag.key, "aria-label": "Tag key" });
        const value = el("input", { value: tag.value, "aria-label": "Tag value" });
        const done = () => { tag.key = key.value.trim() || tag.key; tag.value = value.value; view.clusterDirty = true; drawTags(); };
        return el("tr", {}, el("td", {}, key), el("td", {}, value),
          el("td", {}, el("button", { type: "button", class: "btn btn-small", onclick: done, text: "Done" })));
      }
      if (view.clusterLocked) return el("tr", {}, el("td", { text: tag.key }), el("td", { text: tag.value }));
      return el("tr", {}, el("td", { text: tag.key }), el("td", { text: tag.value }), el("td", { class: "actions" },
        el("button", { type: "button", class: "btn btn-small", "aria-label": `Edit tag ${tag.key}`, text: "Edit",
          onclick: () => drawTags(i) }),
        el("button", { type: "button", class: "btn btn-small btn-danger-quiet", "aria-label": `Delete tag ${tag.key}`,
          text: "Delete", onclick: () => { tags.splice(i, 1); view.clusterDirty = true; drawTags(); } })));
    }));
    if (!tags.length) {
      $("tags").querySelector("tbody").append(el("tr", {},
        el("td", { colspan: view.clusterLocked ? 2 : 3, class: "muted", text: "No tags." })));
    }
  }

  function addTag() {
    const key = $("tag-key").value.trim();
    const error = !view.cluster ? "Enable serving first." : !key ? "A tag needs a key."
      : view.cluster.tags.some((t) => t.key === key) ? `There is already a tag '${key}': edit it instead.` : "";
    $("tag-error").textContent = error;
    $("tag-error").hidden = !error;
    if (error) return;
    view.cluster.tags.push({ key, value: $("tag-value").value });
    view.clusterDirty = true;
    $("tag-key").value = "";
    $("tag-value").value = "";
    drawTags();
    $("tag-key").focus();
  }

  async function saveCluster(event) {
    event.preventDefault();
    const nodeType = $("instance-type").value;
    // Updates are blue-green: the running cluster serves until the new one's versions are Ready.
    const ok = await confirmAction("Save cluster settings?",
      `A new serving cluster of '${MODEL}' starts with instance type ${nodeType} beside the ` +
      "running one. The versions keep serving from the running cluster while the new one " +
      "starts; traffic moves to it once its versions are Ready.", "Save");
    if (!ok) return;
    const r = await api("PUT", `${EP}/update-cluster-config`, {
      registered_model_name: MODEL,
      desired_cluster_config: { node_type_id: nodeType, tags: view.cluster.tags },
    });
    $("cluster-result").textContent = r.ok
      ? "Saved: the new cluster is starting; the versions keep serving meanwhile." : errorText(r);
    if (r.ok) {
      view.clusterDirty = false;
      $("tag-error").hidden = true; // an Add refused before the Save is no longer the news
    }
    refresh();
  }

  // -- actions --------------------------------------------------------------------------------

  let resultTimer = null;
  function actionResult(text) {
    $("action-result").textContent = text;
    clearTimeout(resultTimer);
    resultTimer = setTimeout(() => { $("action-result").textContent = ""; }, 8000);
  }

  async function enable() {
    const r = await api("POST", `${EP}/enable`, { registered_model_name: MODEL });
    actionResult(r.ok ? "Serving enabled: the versions are starting." : errorText(r));
    refresh();
  }

  async function stop() {
    const ok = await confirmAction("Stop serving?",
      `Every served version of '${MODEL}' stops answering and its cluster is terminated.`, "Stop serving",
      true);
    if (!ok) return;
    const r = await api("POST", `${EP}/disable`, { registered_model_name: MODEL });
    actionResult(r.ok ? "Serving stopped." : errorText(r));
    if (r.ok) clearResponse();
    refresh();
  }

  // -- the refresh loop -----------------------------------------------------------------------

  async function refresh() {
    if (view.busy) { view.again = true; return; }
    view.busy = true;
    try {
      do {
        view.again = false;
        await refreshOnce();
      } while (view.again);
    } finally {
      view.busy = false;
    }
  }

  // Only routes that can answer are asked: the list of served models says whether this one is
  // served (get-status, list-versions and list-version-aliases answer 400 when it is not), and
  // a model never served has no events or metrics to ask for.
  async function refreshOnce() {
    const [model, list] = await Promise.all([
      api("GET", `/api/2.0/regserve/models/get?${Q}`),
      api("GET", `${EP}/list`),
    ]);
    $("page-error").hidden = model.ok;
    if (!model.ok) {
      $("page-error").textContent = errorText(model);
      if (model.status === 404) stopRefreshing(); // the model was deleted: nothing to re-read
      return;
    }
    const endpoint = list.ok
      ? list.data.endpoints.find((e) => e.registered_model_name === MODEL) || null : null;
    if (endpoint) view.known = true;
    const [versions, aliases] = endpoint ? await Promise.all([
      api("GET", `${EP}/list-versions?${Q}`),
      api("GET", `${EP}/list-version-aliases?${Q}`),
    ]) : [null, null];
    const info = model.data.registered_model;
    view.level = model.data.permission_level;
    view.refusal = model.data.enable_refusal;
    view.versions = info.versions;
    $("description").textContent = info.description || "";
    view.served = Object.fromEntries((versions && versions.ok ? versions.data.endpoint_versions : [])
      .map((v) => [v.endpoint_version_name, v]));
    view.aliases = Object.fromEntries((aliases && aliases.ok ? aliases.data.aliases : [])
      .map((a) => [a.alias, a.endpoint_version_name]));
    drawStatus(endpoint);
    drawClusterUpdate(endpoint);
    if (view.selected === null || !view.versions.some((v) => v.version === view.selected)) {
      const live = view.versions.filter((v) => v.current_stage !== "Archived");
      const pick = (live.length ? live : view.versions).at(-1);
      if (pick) selectVersion(pick.version);
    }
    drawVersionList();
    drawVersionDetail();
    await Promise.all([
      refreshVersionTabs(),
      view.tab === "tab-events" ? refreshModelEvents() : null,
      view.tab === "tab-metrics" ? refreshMetrics() : null,
      view.tab === "tab-traffic" ? traffic.refresh() : null,
      refreshCluster(endpoint),
    ]);
  }

  let timer = null;
  function stopRefreshing() {
    clearInterval(timer);
    timer = null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    tabs(root.querySelector('[aria-label="Serving"]'), (id) => { view.tab = id; refresh(); });
    tabs(root.querySelector('[aria-label="Version details"]'), (id) => { view.sub = id; refreshVersionTabs(); });
    tabs(root.querySelector('[aria-label="Call the model"]'));
    $("enable").addEventListener("click", enable);
    $("stop").addEventListener("click", stop);
    $("show-example").addEventListener("click", () => view.selected && loadExample(view.selected, true));
    $("send-request").addEventListener("click", sendRequest);
    $("format-request").addEventListener("click", formatRequest);
    for (const button of document.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => selectRange(Number(button.dataset.range)));
    }
    $("add-tag").addEventListener("click", addTag);
    $("instance-type").addEventListener("change", () => { view.clusterDirty = true; });
    $("cluster-form").addEventListener("submit", saveCluster);
    traffic.wire();
    const wanted = location.hash.match(/^#logs-(.+)$/);
    if (wanted) view.selected = decodeURIComponent(wanted[1]);
    refresh().then(() => { if (wanted) showLog(view.selected); });
    timer = setInterval(refresh, REFRESH_MS);
  });
})();
