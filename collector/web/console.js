// Cordon console: the live flow view. Loaded as a file (the Content-Security-Policy
// allows scripts from the console's own origin only, no inline code).
(function () {
  "use strict";
  function live() {
    var body = document.getElementById("flow-rows");
    var box = document.getElementById("live");
    if (!body || !box || !window.EventSource) return;
    var src = null;
    function start() {
      if (src) return;
      src = new EventSource(box.getAttribute("data-src"));
      src.addEventListener("flow", function (e) {
        var t = document.createElement("tbody");
        t.innerHTML = e.data; // server-rendered and escaped rows
        while (t.firstElementChild) {
          var row = t.firstElementChild;
          row.classList.add("new");
          body.insertBefore(row, body.firstChild);
        }
        while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
      });
    }
    function stop() { if (src) { src.close(); src = null; } }
    box.addEventListener("change", function () { box.checked ? start() : stop(); });
    if (box.checked) start();
  }
  document.addEventListener("DOMContentLoaded", live);
})();
