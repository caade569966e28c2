// agenda-decl dashboard: refreshes the live part of the page while it is open. Hand-written,
// no library; the server sends a Content-Security-Policy that allows only this file.
//
// One refresh at a time: the next starts `seconds` after the previous answer, or later when
// the page was slow to build (ten times its duration), so that an open page never keeps a
// large store busy more than a tenth of the time (a Redis overview reads every job, in short
// scripts that each hold the server while they run).
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh"), 10) || 0;
  var box = document.getElementById("auto-refresh");
  var key = "agenda-decl-auto-refresh";
  if (!box) { return; }
  if (!seconds) { box.parentNode.style.display = "none"; return; }
  box.checked = window.localStorage.getItem(key) !== "off";
  box.addEventListener("change", function () {
    window.localStorage.setItem(key, box.checked ? "on" : "off");
  });

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var live = document.getElementById("live");
    var next = fresh.getElementById("live");
    var stamp = fresh.getElementById("updated");
    if (live && next) { live.replaceWith(document.adoptNode(next)); }
    if (stamp) { document.getElementById("updated").textContent = stamp.textContent; }
  }

  function later(took) {
    window.setTimeout(refresh, Math.max(seconds * 1000, took * 10));
  }

  function refresh() {
    if (!box.checked || document.hidden) { later(0); return; }
    var began = Date.now();
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) { swap(html); } })
      .catch(function () { /* the next turn tries again */ })
      .then(function () { later(Date.now() - began); });
  }
  later(0);
})();
