// Refreshes the live part of the page (#live) in place every
// data-refresh-ms, by fetching the page again without the lookup's query:
// the lookup stays as asked, and is not asked again on every refresh.
(function () {
  "use strict";
  var body = document.body;
  var every = Number(body.dataset.refreshMs) || 5000;
  function refresh() {
    fetch(window.location.pathname, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        var cur = document.getElementById("live");
        if (fresh && cur) { cur.replaceWith(document.importNode(fresh, true)); }
        var u = doc.getElementById("updated");
        var mine = document.getElementById("updated");
        if (u && mine) { mine.textContent = u.textContent; }
        body.dataset.refreshes = String((Number(body.dataset.refreshes) || 0) + 1);
        body.classList.remove("offline");
      })
      .catch(function () { body.classList.add("offline"); })
      .finally(function () { window.setTimeout(refresh, every); });
  }
  window.setTimeout(refresh, every);
})();
