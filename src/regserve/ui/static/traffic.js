// The Serving page's Traffic tab: how the split URL /model/{name}/invocations shares its
// requests (the config and where traffic goes now), its TRAFFIC_* events, and for a caller with
// CAN_MANAGE a form that sets the config or resets it to the default, through the same
// PUT /api/2.0/regserve/endpoints/traffic as `regserve traffic set|reset`. The API checks the
// config and its message is shown as it is; a refresh never redraws a form with unsaved edits.
"use strict";

window.regserveTraffic = (() => {
  const { api, el, errorText, confirmAction } = window.regserve;
  const PATH = "/api/2.0/regserve/endpoints/traffic";
  const EVENTS = "/api/2.0/preview/mlflow/endpoints/get-event-history";
  const $ = (id) => document.getElementById(id);

  // `page`: what serving.js shares with the tab: {model, view, changed, eventRows, refresh}.
  function tab(page) {
    const { model, view, changed } = page;
    const Q = "registered_model_name=" + encodeURIComponent(model);
    // rows: [{ref, percent}] as typed (percent a string); filled: the config the form shows.
    // busy: a PUT is in flight (its buttons stay disabled through refreshes meanwhile).
    const form = { rows: [], dirty: false, filled: null, busy: false };

    async function refresh() {
      $("split-url").textContent = `${location.origin}/model/${encodeURIComponent(model)}/invocations`;
      const [config, events] = await Promise.all([
        api("GET", `${PATH}?${Q}`),
        view.known ? api("GET", `${EVENTS}?${Q}`) : null,
      ]);
      drawConfig(config);
      drawAccess();
      drawRefs();
      if (config.ok) fillForm(config.data);
      drawEvents(events && events.ok ? events.data.events : []);
    }

    // -- the config in force ------------------------------------------------------------------

    function drawConfig(r) {
      if (!changed("traffic", r.ok ? r.data : errorText(r))) return;
      const body = $("traffic").querySelector("tbody");
      if (!r.ok) {
        body.replaceChildren();
        $("traffic-note").textContent = errorText(r);
        return;
      }
      const t = r.data;
      const now = Object.fromEntries(t.effective_routes.map((e) => [e.ref, e]));
      const set = t.is_default ? t.effective_routes.map((e) => ({ ref: e.ref, percent: null })) : t.routes;
      const rows = set.map((route) => {
        const live = now[route.ref];
        return el("tr", {},
          el("td", { "data-label": "Ref", text: route.ref }),
          el("td", { "data-label": "Set", text: route.percent === null ? "default" : `${route.percent}%` }),
          el("td", { "data-label": "Now", text: live ? `${live.percent}%` : "no traffic (not Ready)" }),
          el("td", { "data-label": "Version", text: live ? live.endpoint_version_name : "" }));
      });
      if (t.shadow) {
        rows.push(el("tr", {},
          el("td", { "data-label": "Ref", text: `${t.shadow.ref} (shadow)` }),
          el("td", { "data-label": "Set", text: `${t.shadow.percent}% copied` }),
          el("td", { "data-label": "Now", text: "answers never returned" }),
          el("td", { "data-label": "Version", text: "" })));
      }
      if (!rows.length) {
        rows.push(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No version takes traffic now." })));
      }
      body.replaceChildren(...rows);
      $("traffic-note").textContent = t.is_default
        ? "No traffic config: requests go to the Production version, else the latest Ready version." : "";
    }

    function drawEvents(events) {
      const mine = events.filter((e) => e.event_type.startsWith("TRAFFIC_"));
      if (!changed("traffic-events", mine)) return;
      const rows = page.eventRows(mine, false);
      if (!rows.length) {
        rows.push(el("tr", {}, el("td", { colspan: 3, class: "muted", text: "No traffic events yet." })));
      }
      $("traffic-events").querySelector("tbody").replaceChildren(...rows);
    }

    // -- the form -----------------------------------------------------------------------------

    // A caller without CAN_MANAGE sees the config and no form; a manager of a model that is
    // not served sees the form, its buttons disabled (the API sets no config then).
    function drawAccess() {
      const manage = view.level === "CAN_MANAGE";
      $("traffic-form").hidden = !manage;
      const reason = !manage
        ? `Changing the traffic config needs CAN_MANAGE; you hold ${view.level || "no permission"}.`
        : view.enabled ? "" : "Enable serving to set its traffic config.";
      $("traffic-reason").textContent = reason;
      $("traffic-reason").hidden = !reason;
      $("save-traffic").disabled = !view.enabled || form.busy;
      $("reset-traffic").disabled = !view.enabled || form.busy;
    }

    // The refs to pick from: versions not archived, the stages in use, latest and the aliases.
    function drawRefs() {
      const live = view.versions.filter((v) => v.current_stage !== "Archived");
      const options = live.map((v) => [v.version, `Version ${v.version}`]);
      for (const stage of ["Production", "Staging"]) {
        const held = live.filter((v) => v.current_stage === stage).map((v) => v.version);
        if (held.length) options.push([stage, `Stage: version ${held.at(-1)}`]);
      }
      if (live.length) options.push(["latest", "The latest Ready version"]);
      for (const v of live) for (const alias of v.aliases) options.push([alias, `Alias: version ${v.version}`]);
      if (!changed("traffic-refs", options)) return;
      $("traffic-refs").replaceChildren(...options.map(([value, label]) => el("option", { value, label })));
    }

    function fillForm(t) {
      const shown = JSON.stringify([t.routes, t.shadow]);
      if (form.dirty || form.filled === shown) return;
      form.filled = shown;
      form.rows = t.routes.map((r) => ({ ref: r.ref, percent: String(r.percent) }));
      $("shadow-ref").value = t.shadow ? t.shadow.ref : "";
      $("shadow-percent").value = t.shadow ? String(t.shadow.percent) : "";
      drawRows();
    }

    function edited() {
      form.dirty = true;
      $("traffic-result").textContent = "";
      drawSum();
    }

    function drawRows(focus) {
      const inputs = [];
      $("traffic-routes").querySelector("tbody").replaceChildren(...form.rows.map((row, i) => {
        const n = i + 1;
        const ref = el("input", {
          value: row.ref, list: "traffic-refs", autocomplete: "off", "aria-label": `Ref of route ${n}`,
          oninput: (event) => { row.ref = event.target.value; edited(); },
        });
        inputs.push(ref);
        return el("tr", {},
          el("td", { class: "ref-cell" }, ref),
          el("td", { class: "percent-cell" }, el("input", {
            type: "number", min: 0, max: 100, step: 1, inputmode: "numeric", value: row.percent,
            "aria-label": `Percent of route ${n}`,
            oninput: (event) => { row.percent = event.target.value; edited(); },
          })),
          el("td", { class: "actions" }, el("button", {
            type: "button", class: "btn btn-small btn-danger-quiet", text: "Remove",
            "aria-label": `Remove route ${n}`, onclick: () => removeRow(i),
          })));
      }));
      if (!form.rows.length) {
        $("traffic-routes").querySelector("tbody").append(el("tr", {}, el("td", {
          colspan: 3, class: "muted", text: "No routes: the default takes all the traffic.",
        })));
      }
      if (focus !== undefined && inputs[focus]) inputs[focus].focus();
      drawSum();
    }

    function percents() {
      return form.rows.map((r) => (r.percent.trim() === "" ? NaN : Number(r.percent)));
    }

    function drawSum() {
      const total = percents().filter(Number.isFinite).reduce((a, b) => a + b, 0);
      const ok = total === 100;
      const out = $("traffic-sum");
      out.textContent = !form.rows.length ? "No routes: Save split goes back to the default."
        : ok ? "Sum: 100%" : `Sum: ${total}% (must be 100)`;
      out.className = "sum" + (!form.rows.length ? "" : ok ? " sum-ok" : " sum-bad");
    }

    // A new row takes what the others leave of 100.
    function addRow() {
      const total = percents().filter(Number.isFinite).reduce((a, b) => a + b, 0);
      form.rows.push({ ref: "", percent: String(Math.max(0, 100 - total)) });
      edited();
      drawRows(form.rows.length - 1);
    }

    function removeRow(i) {
      form.rows.splice(i, 1);
      edited();
      drawRows(Math.min(i, form.rows.length - 1));
      if (!form.rows.length) $("add-route").focus();
    }

    // "" is sent as null: the API says that a whole number is missing.
    const percentOf = (text) => (text.trim() === "" ? null : Number(text));

    async function save(event) {
      event.preventDefault();
      const shadow = $("shadow-ref").value.trim();
      await put({
        registered_model_name: model,
        routes: form.rows.map((r) => ({ ref: r.ref.trim(), percent: percentOf(r.percent) })),
        shadow: shadow ? { ref: shadow, percent: percentOf($("shadow-percent").value) } : null,
      }, "Saved: the split URL follows the new config now.");
    }

    async function reset() {
      const ok = await confirmAction("Reset the traffic config?",
        `Requests to the split URL of '${model}' go to the Production version, else the latest ` +
        "Ready version, as without a config; the routes and the shadow are dropped.", "Reset");
      if (!ok) return;
      await put({ registered_model_name: model, routes: [] },
        "Reset: requests go to the Production version, else the latest Ready version.");
    }

    // The API's answer, next to the form: its message when it refuses (nothing changed then,
    // and the form keeps what was typed); on success the form shows the config anew.
    async function put(body, done) {
      form.busy = true;
      drawAccess();
      const r = await api("PUT", PATH, body);
      form.busy = false;
      $("traffic-error").textContent = r.ok ? "" : errorText(r);
      $("traffic-error").hidden = r.ok;
      $("traffic-result").textContent = r.ok ? done : "";
      if (r.ok) {
        form.dirty = false;
        form.filled = null;
      }
      drawAccess();
      page.refresh();
    }

    function wire() {
      $("traffic-form").addEventListener("submit", save);
      $("add-route").addEventListener("click", addRow);
      $("reset-traffic").addEventListener("click", reset);
      for (const id of ["shadow-ref", "shadow-percent"]) $(id).addEventListener("input", edited);
    }

    return { refresh, wire };
  }

  return { tab };
})();
