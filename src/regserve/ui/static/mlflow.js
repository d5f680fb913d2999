// Added to MLflow's own web UI (/mlflow/) by the gateway (gateway/mlflow_ui.py): a way back to
// regserve. On a registered model's pages (#/models/<name>...) it leads to that model's Serving
// page, elsewhere to the registered models. MLflow's built JavaScript is not changed.
"use strict";

(() => {
  const MODEL = /^#\/models\/([^/?]+)/;

  function target() {
    const found = MODEL.exec(location.hash);
    if (!found) return { href: "/ui/", text: "regserve: Serving" };
    let name;
    try { name = decodeURIComponent(found[1]); } catch (_) { name = found[1]; }
    return { href: "/ui/models/" + encodeURIComponent(name), text: "Serving page in regserve" };
  }

  function place() {
    const link = document.createElement("a");
    link.id = "regserve-back";
    Object.assign(link.style, {
      position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483647",
      padding: "6px 12px", borderRadius: "16px", background: "#1b2431", color: "#fff",
      font: "600 13px system-ui, sans-serif", textDecoration: "none",
      boxShadow: "0 1px 4px rgba(0,0,0,.3)",
    });
    const update = () => {
      const { href, text } = target();
      link.href = href;
      link.textContent = "◆ " + text;
    };
    update();
    window.addEventListener("hashchange", update);
    document.body.append(link);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", place);
  else place();
})();
