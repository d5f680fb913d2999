// regserve UI helpers shared by every page. Data from the server only ever reaches the page
// through textContent and attributes set one by one: never innerHTML.
"use strict";

window.regserve = (() => {
  const CSRF = { "X-Requested-By": "regserve-ui" };

  // A JSON API call with the session cookie; resolves to {status, ok, data, text, ms, headers}.
  async function api(method, url, body) {
    const headers = { ...CSRF };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    const started = performance.now();
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { status: 0, ok: false, data: null, text: String(error), ms: 0, headers: new Headers() };
    }
    const text = await response.text();
    const ms = performance.now() - started;
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (response.status === 401) {
      location.assign("/ui/signin?next=" + encodeURIComponent(location.pathname));
    }
    return { status: response.status, ok: response.ok, data, text, ms, headers: response.headers };
  }

  // el("td", {class: "x"}, "text", child) -> an element; strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function errorText(result) {
    if (result.data && result.data.message) return `${result.data.error_code}: ${result.data.message}`;
    return `HTTP ${result.status} ${result.text.slice(0, 300)}`;
  }

  // A modal confirmation (the page's <dialog id="confirm">); resolves to true on OK. A
  // `danger`ous action (one that stops something) has a red OK button.
  function confirmAction(title, message, okLabel, danger = false) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = message;
    document.getElementById("confirm-ok").textContent = okLabel;
    document.getElementById("confirm-ok").className = danger ? "btn btn-danger-solid" : "btn btn-primary";
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  }

  // Tabs (WAI-ARIA pattern): click or arrow keys select; onShow(id) runs on selection.
  function tabs(list, onShow) {
    const all = [...list.querySelectorAll('[role="tab"]')];
    const select = (tab, focus) => {
      for (const other of all) {
        const on = other === tab;
        other.setAttribute("aria-selected", String(on));
        other.tabIndex = on ? 0 : -1;
        document.getElementById(other.getAttribute("aria-controls")).hidden = !on;
      }
      if (focus) tab.focus();
      if (onShow) onShow(tab.id);
    };
    for (const tab of all) {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (event) => {
        const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (!step) return;
        event.preventDefault();
        select(all[(all.indexOf(tab) + step + all.length) % all.length], true);
      });
    }
  }

  function copyButtons() {
    document.addEventListener("click", async (event) => {
      const button = event.target.closest("[data-copy]");
      if (!button) return;
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (_) {
        button.textContent = "Select and copy";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }

  // MLflow's links name their page in the fragment (/mlflow/#/experiments/1/runs/<id>), which
  // the browser keeps through the redirect to sign-in but never sends: the form carries it on.
  function keepFragment() {
    const next = document.querySelector('form[action="/ui/signin"] input[name="next"]');
    if (next && location.hash.length > 1 && next.value.startsWith("/mlflow/") && !next.value.includes("#")) {
      next.value += location.hash;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    copyButtons();
    keepFragment();
    for (const button of document.querySelectorAll('[data-action="signout"]')) {
      button.addEventListener("click", async () => {
        await api("POST", "/ui/signout");
        location.assign("/ui/signin?signed_out=1");
      });
    }
  });

  return { api, el, errorText, confirmAction, tabs };
})();
