/* Lineage page: draws the lineage API's table graph as SVG (sources left, targets right) and,
 * when a column is selected, highlights its column-level lineage from the column graph API.
 * Test hooks: #lineage gets data-ready, data-nodes and data-edges; every node is
 * g.node[data-id], every table edge path.edge[data-source][data-target], every highlighted
 * column g.col.hl, every column edge path.col-edge[data-source][data-target]. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var NODE_W = 250;
  var GAP_X = 110;
  var GAP_Y = 28;
  var HEAD = 30;
  var ROW = 22;
  var PAD = 20;
  // OpenLineage indirect transformations: the column selects rows rather than feeding values
  var INDIRECT = ["FILTER", "JOIN", "GROUP_BY", "SORT", "WINDOW", "CONDITIONAL"];

  var root = document.getElementById("lineage");
  if (!root) return;
  var wrap = root.querySelector(".graph-wrap");
  var status = root.querySelector(".status");
  var columnStatus = document.getElementById("column-status");
  var edgeList = document.getElementById("edge-list");
  var svg = null;
  var boxes = {}; // node id -> {x, y, node}
  var depth = root.dataset.depth || "3";

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, cls) {
    var t = el("text", { x: x, y: y, class: cls || "" }, parent);
    t.textContent = content;
    return t;
  }

  function fit(label, max) {
    return label.length > max ? label.slice(0, max - 1) + "…" : label;
  }

  function href(template, name) {
    return template.replace("__NAME__", encodeURIComponent(name));
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(
      function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) throw new Error(body.detail || body.title || resp.statusText);
          return body;
        });
      }
    );
  }

  /* Longest-path layers: upstream nodes negative, downstream positive, the root at 0. */
  function layers(graph, rootId) {
    var ids = graph.nodes.map(function (n) { return n.id; });
    function reach(forward) {
      var seen = {};
      seen[rootId] = true;
      var todo = [rootId];
      while (todo.length) {
        var cur = todo.pop();
        graph.edges.forEach(function (e) {
          var from = forward ? e.source : e.target;
          var to = forward ? e.target : e.source;
          if (from === cur && !seen[to]) {
            seen[to] = true;
            todo.push(to);
          }
        });
      }
      return seen;
    }
    var down = reach(true);
    var up = reach(false);
    var layer = {};
    layer[rootId] = 0;
    for (var i = 0; i < ids.length; i++) {
      var moved = false;
      graph.edges.forEach(function (e) {
        if (up[e.source] && e.source !== rootId && layer[e.target] !== undefined && layer[e.target] <= 0) {
          var want = layer[e.target] - 1;
          if (layer[e.source] === undefined || want < layer[e.source]) {
            layer[e.source] = want;
            moved = true;
          }
        }
        if (down[e.target] && e.target !== rootId && layer[e.source] !== undefined && layer[e.source] >= 0) {
          var next = layer[e.source] + 1;
          if (layer[e.target] === undefined || next > layer[e.target]) {
            layer[e.target] = next;
            moved = true;
          }
        }
      });
      if (!moved) break;
    }
    ids.forEach(function (id) { if (layer[id] === undefined) layer[id] = 0; });
    return layer;
  }

  function height(node) {
    var n = node.type === "path" ? 1 : Math.max(1, (node.columns || []).length);
    return HEAD + n * ROW + 6;
  }

  function layout(graph, rootId) {
    var layer = layers(graph, rootId);
    var byLayer = {};
    graph.nodes.forEach(function (n) {
      (byLayer[layer[n.id]] = byLayer[layer[n.id]] || []).push(n);
    });
    var keys = Object.keys(byLayer).map(Number).sort(function (a, b) { return a - b; });
    var min = keys[0];
    var heights = {};
    var tallest = 0;
    keys.forEach(function (k) {
      byLayer[k].sort(function (a, b) {
        if (a.id === rootId) return -1;
        if (b.id === rootId) return 1;
        return a.id < b.id ? -1 : 1;
      });
      heights[k] = byLayer[k].reduce(function (s, n) { return s + height(n) + GAP_Y; }, -GAP_Y);
      tallest = Math.max(tallest, heights[k]);
    });
    keys.forEach(function (k) {
      var y = PAD + (tallest - heights[k]) / 2;
      byLayer[k].forEach(function (n) {
        boxes[n.id] = { x: PAD + (k - min) * (NODE_W + GAP_X), y: y, node: n };
        y += height(n) + GAP_Y;
      });
    });
    return { width: PAD * 2 + keys.length * NODE_W + (keys.length - 1) * GAP_X, height: tallest + PAD * 2 };
  }

  function curve(x1, y1, x2, y2) {
    var dx = Math.max(40, (x2 - x1) / 2);
    return "M" + x1 + "," + y1 + " C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
  }

  function defs() {
    var d = el("defs", {}, svg);
    [["arrow", ""], ["arrow-hl", ""]].forEach(function (m) {
      var marker = el("marker", { id: m[0], viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, d);
      el("path", { d: "M0,0 L10,5 L0,10 z" }, marker);
    });
  }

  function drawNode(box, rootId) {
    var n = box.node;
    var g = el("g", {
      class: "node" + (n.id === rootId ? " root" : "") + (n.type === "path" ? " path" : ""),
      "data-id": n.id,
      transform: "translate(" + box.x + "," + box.y + ")",
    }, svg);
    var h = height(n);
    el("rect", { class: "box", width: NODE_W, height: h, rx: 6 }, g);
    el("rect", { class: "head", width: NODE_W, height: HEAD, rx: 6 }, g);
    var label = n.type === "path" ? (n.path || n.id) : (n.full_name || n.id);
    var titleTarget = g;
    if (n.type !== "path") {
      titleTarget = el("a", { href: href(root.dataset.lineageHref, label) + "?depth=" + depth }, g);
      el("title", {}, titleTarget).textContent = "Lineage of " + label;
    }
    text(titleTarget, 10, 20, fit(label, 32), "title");
    if (n.type === "path") {
      text(g, 10, HEAD + 16, "file or volume path", "muted");
      return;
    }
    var pii = n.pii_columns || [];
    (n.columns || []).forEach(function (c, i) {
      var isPii = pii.indexOf(c) >= 0;
      var row = el("g", {
        class: "col" + (isPii ? " pii" : ""),
        "data-table": n.full_name,
        "data-column": c,
        tabindex: "0",
        role: "button",
        "aria-pressed": "false",
        "aria-label": "Column " + c + " of " + n.full_name + (isPii ? " (personal data)" : "") + ": show its lineage",
        transform: "translate(0," + (HEAD + 3 + i * ROW) + ")",
      }, g);
      el("rect", { x: 2, width: NODE_W - 4, height: ROW, rx: 3 }, row);
      text(row, 12, 15, fit(c, 28));
      if (isPii) text(row, NODE_W - 36, 15, "PII", "flag");
      row.addEventListener("click", function () { select(n.full_name, c); });
      row.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          select(n.full_name, c);
        }
      });
    });
  }

  function drawEdges(edges) {
    var group = el("g", { class: "edges" }, svg);
    svg.insertBefore(group, svg.querySelector("g.node"));
    edges.forEach(function (e) {
      var s = boxes[e.source];
      var t = boxes[e.target];
      if (!s || !t) return;
      el("path", {
        class: "edge",
        "data-source": e.source,
        "data-target": e.target,
        d: curve(s.x + NODE_W, s.y + HEAD / 2, t.x - 2, t.y + HEAD / 2),
        "marker-end": "url(#arrow)",
      }, group);
      var li = document.createElement("li");
      li.textContent = e.source + " → " + e.target + (e.statement_count ? " (" + e.statement_count + " run" + (e.statement_count === 1 ? "" : "s") + ")" : "");
      li.dataset.source = e.source;
      li.dataset.target = e.target;
      edgeList.appendChild(li);
    });
  }

  function columnPos(table, column, side) {
    var box = boxes[table];
    if (!box) return null;
    var i = (box.node.columns || []).indexOf(column);
    if (i < 0) return null;
    return { x: box.x + (side === "right" ? NODE_W : -2), y: box.y + HEAD + 3 + i * ROW + ROW / 2 };
  }

  function clearSelection() {
    svg.classList.remove("has-selection");
    svg.querySelectorAll("g.col").forEach(function (c) {
      c.classList.remove("hl", "selected");
      c.setAttribute("aria-pressed", "false");
    });
    var old = svg.querySelector("g.col-edges");
    if (old) old.remove();
    columnStatus.textContent = "";
    root.dataset.columnEdges = "0";
    root.dataset.highlighted = "0";
    delete root.dataset.selected;
  }

  function find(table, column) {
    var match = null;
    svg.querySelectorAll("g.col").forEach(function (c) {
      if (c.dataset.table === table && c.dataset.column === column) match = c;
    });
    return match;
  }

  function select(table, column) {
    var url = root.dataset.columnSrc + encodeURIComponent(table) + "/" + encodeURIComponent(column) +
      "?direction=both&depth=" + encodeURIComponent(depth);
    columnStatus.textContent = "Loading the lineage of " + table + "." + column + "…";
    getJson(url)
      .then(function (graph) {
        clearSelection();
        svg.classList.add("has-selection");
        var names = {};
        graph.nodes.forEach(function (n) {
          var c = find(n.table, n.column);
          if (c) {
            c.classList.add("hl");
            names[n.id] = n;
          }
        });
        var picked = find(table, column);
        if (picked) {
          picked.classList.add("selected");
          picked.setAttribute("aria-pressed", "true");
        }
        var group = el("g", { class: "col-edges" }, svg);
        var drawn = 0;
        var described = [];
        graph.edges.forEach(function (e) {
          var s = names[e.source];
          var t = names[e.target];
          if (!s || !t) return;
          var a = columnPos(s.table, s.column, "right");
          var b = columnPos(t.table, t.column, "left");
          if (!a || !b) return;
          var how = (e.transformation || "").toUpperCase();
          el("path", {
            class: "col-edge" + (INDIRECT.indexOf(how) >= 0 ? " indirect" : ""),
            "data-source": e.source,
            "data-target": e.target,
            d: curve(a.x, a.y, b.x, b.y),
            "marker-end": "url(#arrow-hl)",
          }, group);
          drawn++;
          described.push(e.source + " → " + e.target + (e.transformation ? " (" + e.transformation.toLowerCase() + ")" : ""));
        });
        root.dataset.selected = table + "." + column;
        root.dataset.columnEdges = String(drawn);
        root.dataset.highlighted = String(Object.keys(names).length);
        columnStatus.textContent = described.length
          ? "Column lineage of " + table + "." + column + ": " + described.join("; ") + "."
          : "No column-level lineage recorded for " + table + "." + column + ".";
      })
      .catch(function (err) {
        columnStatus.textContent = "Could not load the column lineage: " + err.message;
      });
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && svg) clearSelection();
  });

  getJson(root.dataset.graphSrc)
    .then(function (graph) {
      var rootId = graph.root || root.dataset.root;
      var size = layout(graph, rootId);
      svg = el("svg", {
        class: "lineage-graph",
        width: size.width,
        height: size.height,
        viewBox: "0 0 " + size.width + " " + size.height,
        role: "group",
        "aria-label": "Lineage graph of " + rootId,
      }, wrap);
      defs();
      graph.nodes.forEach(function (n) { drawNode(boxes[n.id], rootId); });
      drawEdges(graph.edges);
      root.dataset.nodes = String(graph.nodes.length);
      root.dataset.edges = String(svg.querySelectorAll("path.edge").length);
      root.dataset.ready = "true";
      root.setAttribute("aria-busy", "false");
      status.textContent = graph.edges.length
        ? graph.nodes.length + " tables and paths, " + graph.edges.length + " links."
        : "No lineage recorded for this table yet.";
    })
    .catch(function (err) {
      root.setAttribute("aria-busy", "false");
      root.dataset.error = err.message;
      status.textContent = "Could not load the lineage: " + err.message;
      status.classList.add("alert", "error");
    });
})();
