// PulseBus console: refreshes the live part of a page (the element with
// data-refresh="seconds") in place, without a full reload. Everything works
// without it; it only saves pressing reload.
"use strict";
(function () {
  var live = document.querySelector("[data-refresh]");
  if (!live || !window.fetch || !window.DOMParser) {
    return;
  }
  var seconds = Math.max(2, parseInt(live.getAttribute("data-refresh"), 10) || 5);
  function refresh() {
    if (document.hidden) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", redirect: "error" })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(live.id);
        if (fresh) {
          live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
          live.removeAttribute("data-stale");
        }
      })
      .catch(function () {
        live.setAttribute("data-stale", "true");
      });
  }
  window.setInterval(refresh, seconds * 1000);
})();
