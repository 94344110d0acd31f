// pgmoat console: progressive enhancement only. Every page works without this file;
// with it, the approvals list follows the server's events without a reload.
//
// A row never moves under the operator's pointer (review L4): a new request is added
// at the bottom, and a request that is no longer pending keeps its place with its
// buttons switched off until the pointer and the focus have left the table; only then
// do such rows go.
"use strict";
(function () {
  var table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) return;
  var body = document.getElementById("pending");
  var status = document.getElementById("live-status");
  var refreshing = false, again = false;

  function inside() {
    return table.matches(":hover") || table.contains(document.activeElement);
  }

  // Rows of requests decided or withdrawn elsewhere go once nobody is reaching for them.
  function prune(empty) {
    if (inside()) return;
    body.querySelectorAll("tr.gone").forEach(function (r) { r.remove(); });
    if (empty && !body.querySelector("tr")) body.appendChild(empty);
  }

  function retire(row) {
    if (row.classList.contains("gone")) return;
    row.classList.add("gone");
    row.querySelectorAll("button, input").forEach(function (e) { e.disabled = true; });
    var last = row.lastElementChild;
    if (last) {
      var note = document.createElement("p");
      note.className = "hint";
      note.textContent = "No longer pending.";
      last.appendChild(note);
    }
  }

  function apply(html) {
    var next = document.createElement("tbody");
    next.innerHTML = html;
    var pending = {};
    next.querySelectorAll("tr[data-id]").forEach(function (r) { pending[r.dataset.id] = true; });
    var shown = {};
    body.querySelectorAll("tr[data-id]").forEach(function (r) {
      shown[r.dataset.id] = true;
      if (!pending[r.dataset.id]) retire(r);
    });
    var added = 0;
    next.querySelectorAll("tr[data-id]").forEach(function (r) {
      if (shown[r.dataset.id]) return;
      body.querySelectorAll("tr.empty").forEach(function (e) { e.remove(); });
      r.classList.add("fresh");
      body.appendChild(r);
      added++;
    });
    if (added && status) status.textContent = added + " new request" + (added > 1 ? "s" : "") + " waiting.";
    var empty = next.querySelector("tr.empty");
    prune(empty);
    table.onmouseleave = function () { prune(empty); };
    table.onfocusout = function () { setTimeout(function () { prune(empty); }, 0); };
  }

  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(table.dataset.rows, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(apply)
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
