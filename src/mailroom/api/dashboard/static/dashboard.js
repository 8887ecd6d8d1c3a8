// Mailroom dashboard: the little the pages need a script for. Everything works without it
// except live updates and local times.
"use strict";

(function () {
  // Times come from the server in UTC (ISO 8601); show them in the browser's zone.
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.textContent = format.format(when); el.title = el.getAttribute("datetime"); }
    });
  }

  // The sign-in form sends the browser's time zone: "today" on the overview is the user's.
  function browserZone() {
    const field = document.querySelector("input[data-browser-tz]");
    if (field) {
      try { field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { /* keep UTC */ }
    }
  }

  // Buttons that change something ask first.
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  // Rows come from the server as HTML it escaped; parse them inside a <tbody>.
  function rowFrom(html) {
    const holder = document.createElement("tbody");
    holder.innerHTML = html;
    localTimes(holder);
    return holder.firstElementChild;
  }

  function live() {
    const table = document.querySelector("table[data-live]");
    if (!table || !window.EventSource) { return; }
    const rows = table.querySelector("tbody");
    const state = document.getElementById("live-state");
    let after = table.getAttribute("data-after");
    let source = null;
    function watched() {
      return Array.from(rows.querySelectorAll("tr[data-final='0']")).slice(0, 200)
        .map(function (tr) { return tr.getAttribute("data-id"); }).join(",");
    }
    function connect() {
      const url = table.getAttribute("data-live") + "&after=" + encodeURIComponent(after) +
        "&ids=" + encodeURIComponent(watched());
      source = new EventSource(url);
      source.addEventListener("update", function (event) {
        const message = JSON.parse(event.data);
        after = message.after;
        message.changed.forEach(function (item) {
          const old = document.getElementById("e-" + item.id);
          if (old) { old.replaceWith(rowFrom(item.html)); }
        });
        message["new"].forEach(function (item) {
          if (document.getElementById("e-" + item.id)) { return; }
          const row = rowFrom(item.html);
          row.classList.add("fresh");
          rows.insertBefore(row, rows.firstElementChild);
        });
        const empty = document.querySelector(".empty");
        if (empty && rows.firstElementChild) { empty.remove(); }
      });
      source.addEventListener("signout", function () {
        source.close();
        window.location.reload();
      });
      source.onerror = function () {
        // The browser reconnects by itself, but with the first URL: reconnect with what
        // the page has now, unless the server said to stop (sign-in needed: reload).
        source.close();
        if (state) { state.textContent = "Live updates paused: reconnecting…"; }
        window.setTimeout(function () {
          fetch(window.location.href, { redirect: "manual" }).then(function (r) {
            if (r.type === "opaqueredirect" || r.status === 401) { window.location.reload(); return; }
            if (state) { state.textContent = "Live: new emails appear here as they arrive."; }
            connect();
          }, function () { window.setTimeout(connect, 3000); });
        }, 3000);
      };
    }
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    browserZone();
    confirmations();
    live();
  });
})();
