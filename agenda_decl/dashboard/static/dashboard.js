// agenda-decl dashboard: refreshes the live part of the page while it is open. Hand-written,
// no library; the server sends a Content-Security-Policy that allows only this file.
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

  function refresh() {
    if (!box.checked || document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Refresh": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var live = document.getElementById("live");
        var next = fresh.getElementById("live");
        var stamp = fresh.getElementById("updated");
        if (live && next) { live.replaceWith(document.adoptNode(next)); }
        if (stamp) { document.getElementById("updated").textContent = stamp.textContent; }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
