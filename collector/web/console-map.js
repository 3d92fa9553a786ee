// Cordon console: the service map. The server sends the policy's groups and rules; the
// layout is dagre's (layered, left to right: consumers before providers), drawn by
// cytoscape.js. Clicking a group lists its rules and fades the rest; the search box
// centres a group. The graph is kept in window.cordonMap for the browser tests.
(function () {
  "use strict";
  var box = document.getElementById("map");
  if (!box || !window.cytoscape) return;
  // cytoscape-dagre registers itself with the global cytoscape when it loads.
  var info = document.getElementById("map-info");

  function text(tag, s, cls) {
    var e = document.createElement(tag);
    e.textContent = s;
    if (cls) e.className = cls;
    return e;
  }

  function show(node, cy) {
    cy.elements().addClass("faded");
    var near = node.closedNeighborhood();
    near.removeClass("faded");
    info.replaceChildren();
    var d = node.data();
    info.appendChild(text("h2", d.id));
    if (d.what) info.appendChild(text("p", d.what, "muted"));
    if (d.members !== null && d.members !== undefined) {
      info.appendChild(text("p", d.members + " enrolled host(s)"));
    }
    var list = document.createElement("ul");
    node.connectedEdges().forEach(function (e) {
      var r = e.data();
      list.appendChild(text("li", r.id + ": " + r.source + " \u2192 " + r.target + " " + r.ports + (r.action === "deny" ? " (deny)" : "")));
    });
    info.appendChild(list);
  }

  fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
    .then(function (g) {
      var started = performance.now();
      var elements = g.nodes.map(function (n) {
        var label = n.members === null ? n.id : n.id + " (" + n.members + ")";
        return { data: { id: n.id, label: label, members: n.members, what: n.what } };
      }).concat(g.edges.map(function (e, i) {
        return { data: { id: e.id || "rule " + (i + 1), source: e.source, target: e.target, ports: e.ports, action: e.action } };
      }));
      var cy = cytoscape({
        container: box,
        elements: elements,
        wheelSensitivity: 0.3,
        minZoom: 0.05,
        maxZoom: 3,
        style: [
          { selector: "node", style: { "label": "data(label)", "shape": "round-rectangle", "width": "label", "height": 22, "padding": "6px",
            "background-color": "#ddf4ff", "border-color": "#1f5fbf", "border-width": 1, "font-size": 11, "text-valign": "center", "color": "#1f2328" } },
          { selector: "edge", style: { "width": 1.2, "line-color": "#8c959f", "target-arrow-color": "#8c959f", "target-arrow-shape": "triangle",
            "curve-style": "bezier", "arrow-scale": 0.8 } },
          { selector: "edge[action = 'deny']", style: { "line-color": "#b3261e", "target-arrow-color": "#b3261e", "line-style": "dashed" } },
          { selector: "edge:selected, node:selected", style: { "border-width": 2, "line-color": "#1f5fbf", "target-arrow-color": "#1f5fbf" } },
          { selector: ".faded", style: { "opacity": 0.15 } },
          { selector: "edge.labelled", style: { "label": "data(ports)", "font-size": 9, "text-background-color": "#fff", "text-background-opacity": 1 } }
        ],
        layout: { name: window.cytoscapeDagre ? "dagre" : "breadthfirst", rankDir: "LR", nodeSep: 12, rankSep: 90, edgeSep: 6, fit: true, padding: 20 }
      });
      box.setAttribute("data-layout-ms", Math.round(performance.now() - started));
      box.setAttribute("data-ready", "1");
      window.cordonMap = cy;
      cy.on("tap", "node", function (e) {
        cy.edges().removeClass("labelled");
        e.target.connectedEdges().addClass("labelled");
        show(e.target, cy);
      });
      cy.on("tap", function (e) {
        if (e.target === cy) { cy.elements().removeClass("faded labelled"); info.replaceChildren(text("p", "Click a group.", "muted")); }
      });
      var find = document.getElementById("map-find");
      find.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var n = cy.getElementById(document.getElementById("map-query").value.trim());
        if (n.nonempty()) {
          cy.animate({ center: { eles: n }, zoom: Math.max(cy.zoom(), 1) }, { duration: 200 });
          n.emit("tap");
        }
      });
      document.getElementById("map-fit").addEventListener("click", function () { cy.fit(undefined, 20); });
    })
    .catch(function (err) {
      box.setAttribute("data-error", String(err));
      info.replaceChildren(text("p", "The map could not be loaded: " + err, "error"));
    });
})();
