// pgmoat console: progressive enhancement only. Every page works without this file;
// with it, the approvals list follows the server's events without a reload.
"use strict";
(function () {
  var table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) return;
  var body = document.getElementById("pending");
  var status = document.getElementById("live-status");
  var refreshing = false, again = false;

  // Keep what the operator typed (reason, grant) across a refresh of the rows.
  function typed() {
    var kept = {};
    body.querySelectorAll("input[type=text]").forEach(function (i) {
      if (i.value) kept[i.id] = i.value;
    });
    return kept;
  }

  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    var before = {};
    body.querySelectorAll("tr[data-id]").forEach(function (r) { before[r.dataset.id] = true; });
    fetch(table.dataset.rows, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var kept = typed();
        var focused = document.activeElement && document.activeElement.id;
        body.innerHTML = html;
        Object.keys(kept).forEach(function (id) {
          var i = document.getElementById(id);
          if (i) i.value = kept[id];
        });
        if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
        var added = 0;
        body.querySelectorAll("tr[data-id]").forEach(function (r) {
          if (!before[r.dataset.id]) { r.classList.add("fresh"); added++; }
        });
        if (added && status) status.textContent = added + " new request" + (added > 1 ? "s" : "") + " waiting.";
      })
      .catch(function () { if (status) status.textContent = "Could not refresh; reload the page."; })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  var events = new EventSource(table.dataset.live);
  events.addEventListener("changed", refresh);
  // After a dropped connection, catch up on whatever was missed.
  events.addEventListener("open", refresh);
})();
