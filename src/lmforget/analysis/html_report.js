// lmforget interactive report: plain JavaScript, canvas and SVG, no library, no network.
// Data comes from the JSON element #lmforget-data (written by lmforget.analysis.html_report).
// Every string from the data is inserted with textContent / createTextNode, never as HTML.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("lmforget-data").textContent);
  var TYPES = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array };

  function decode(s, Type) {
    if (s === null || s === undefined) return null;
    var bin = atob(s), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  var M = D.tasks.length, N = D.ex.ids.length, B = D.bins.count, K = D.ex.k;
  var heat = decode(D.heat, Float32Array);
  var exMean = decode(D.ex.mean, Float32Array);
  var exBase = decode(D.ex.base, Float32Array);
  var exSrc = decode(D.ex.source, TYPES[D.ex.source_type]);
  var exTopTask = decode(D.ex.top_task, TYPES[D.ex.top_task_type]);
  var exTopVal = decode(D.ex.top_val, Float32Array);
  var starts = D.bins.starts;
  var binary = D.kind === "binary";
  var state = { task: -1, example: -1, clip: D.clip };

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      var v = attrs[k];
      if (v === null || v === undefined) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(parent, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { add(parent, k); }); return; }
    parent.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
  }
  var SVGNS = "http://www.w3.org/2000/svg";
  // Move each label (in the SVG, so it can be measured) to the first spot near its dot where it covers no other
  // label and no dot, nearest first; a label set apart gets a thin line to its dot. Top to bottom.
  function placeLabels(root, labels, area) {
    var taken = labels.map(function (l) { return { x0: l.x - 5, x1: l.x + 5, y0: l.y - 5, y1: l.y + 5 }; });
    var free = function (b) {
      if (b.x0 < area.x0 || b.x1 > area.x1 || b.y0 < area.y0 || b.y1 > area.y1) return false;
      return taken.every(function (t) { return b.x1 <= t.x0 || b.x0 >= t.x1 || b.y1 <= t.y0 || b.y0 >= t.y1; });
    };
    labels.slice().sort(function (a, b) { return a.y - b.y; }).forEach(function (l) {
      var bb = l.el.getBBox(), w = bb.width, h = bb.height, ascent = Number(l.el.getAttribute("y")) - bb.y;
      var gap = 3, spots = [[gap + 4, -gap - h], [gap + 4, gap], [-w - gap - 4, -gap - h], [-w - gap - 4, gap]], far = [];
      for (var i = 0; i < 8; i++) for (var k = 0; k < 16; k++) {
        [gap + 4 + 30 * i, -w - gap - 4 - 30 * i].forEach(function (dx) {
          far.push([dx, -gap - h - k * (h + 1)], [dx, gap + k * (h + 1)]);
        });
      }
      var dist = function (d) { return Math.hypot(Math.max(d[0], 0, -(d[0] + w)), Math.max(d[1], 0, -(d[1] + h))); };
      far.sort(function (a, b) { return dist(a) - dist(b); });
      var near = spots.length, all = spots.concat(far), pick = 0;
      for (var n = 0; n < all.length; n++) {
        var d = all[n];
        if (free({ x0: l.x + d[0], x1: l.x + d[0] + w, y0: l.y + d[1], y1: l.y + d[1] + h })) { pick = n; break; }
      }
      var dx = all[pick][0], dy = all[pick][1];
      l.el.setAttribute("x", l.x + dx);
      l.el.setAttribute("y", l.y + dy + ascent);  // y is the baseline: the box's top lands at l.y + dy
      taken.push({ x0: l.x + dx, x1: l.x + dx + w, y0: l.y + dy, y1: l.y + dy + h });
      if (pick >= near) {
        var ex = dx < 0 ? l.x + dx + w : l.x + dx, ey = Math.min(Math.max(l.y, l.y + dy), l.y + dy + h);
        root.insertBefore(svg("line", { class: "pareto-leader", x1: l.x, y1: l.y, x2: ex, y2: ey, stroke: "#999", "stroke-width": 0.6 }), root.firstChild);
      }
    });
  }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v, d, sign) {
    if (v === null || v === undefined || !isFinite(v)) return "n/a";
    d = d === undefined ? 4 : d;
    var s = Math.abs(v) !== 0 && (Math.abs(v) < Math.pow(10, -d) || Math.abs(v) >= 1e5) ? v.toExponential(2) : v.toFixed(d);
    return sign && v > 0 ? "+" + s : s;
  }
  function pct(v) { return v === null || v === undefined ? "n/a" : (v > 0 ? "+" : "") + (100 * v).toFixed(1) + "%"; }
  function pval(v) { return v === null || v === undefined ? "n/a" : v < 1e-3 ? v.toExponential(1) : v.toFixed(3); }
  function table(header, rows, numeric) {
    return el("table", null,
      el("thead", null, el("tr", null, header.map(function (h, i) { return el("th", { class: numeric && numeric[i] ? "num" : null, text: h }); }))),
      el("tbody", null, rows.map(function (r) {
        return el("tr", null, r.map(function (c, i) { return el("td", { class: numeric && numeric[i] ? "num" : null }, c); }));
      })));
  }

  // ------------------------------------------------------------------ colours (matplotlib RdBu_r / Reds)
  var RDBU = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
    [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
  var REDS = [[255, 245, 240], [254, 224, 210], [252, 187, 161], [252, 146, 114], [251, 106, 74], [239, 59, 44],
    [203, 24, 29], [165, 15, 21], [103, 0, 13]];
  function colour(v) {
    var stops = binary ? REDS : RDBU;
    var t = binary ? v : (v + state.clip) / (2 * state.clip);
    if (!(t >= 0)) t = 0; if (t > 1) t = 1;
    var x = t * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i, a = stops[i], b = stops[i + 1];
    return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
  }
  function css(v) { var c = colour(v); return "rgb(" + (c[0] | 0) + "," + (c[1] | 0) + "," + (c[2] | 0) + ")"; }

  // ------------------------------------------------------------------ examples
  function binOf(j) { var lo = 0, hi = B - 1; while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (starts[mid] <= j) lo = mid; else hi = mid - 1; } return lo; }
  function binEnd(b) { return b + 1 < B ? starts[b + 1] : N; }
  function textNode(j) {
    var t = D.texts[String(j)];
    if (t === undefined) return el("div", { class: "notext", text: "text not in this report" });
    var d = el("div", { class: "text", title: "click to expand", text: t });
    d.addEventListener("click", function () { d.classList.toggle("open"); });
    return d;
  }
  function valueBar(v, scale) {
    var w = Math.min(60, Math.round(60 * Math.abs(v) / (scale || 1)));
    return el("span", { class: "bar", style: "width:" + w + "px;background:" + css(binary ? v : Math.sign(v) * state.clip * 0.8) });
  }
  function exampleLink(j) { return el("button", { class: "link", text: D.ex.ids[j], onclick: function () { selectExample(j, true); } }); }
  function taskLink(i) { return el("button", { class: "link", text: D.tasks[i], onclick: function () { selectTask(i, true); } }); }
  function exampleItem(j, v, label) {
    return el("div", { class: "item" },
      el("div", { class: "head" }, el("span", { class: "val", text: fmt(v, 4, true) }), valueBar(v, state.clip), exampleLink(j),
        el("span", { class: "src", text: D.ex.sources[exSrc[j]] }),
        el("span", { class: "src", text: exBase ? "base NLL " + fmt(exBase[j], 3) : "" }), label || null),
      textNode(j));
  }

  // ------------------------------------------------------------------ page skeleton
  var app = document.getElementById("app");
  var r2 = D.r2;
  var model = D.model && typeof D.model === "object" ? (D.model.name || JSON.stringify(D.model)) : D.model;
  add(app, [
    el("h1", { text: D.title }),
    el("div", { class: "meta", text: [D.source ? "source " + D.source : null, model ? "model " + model : null,
      "kind " + D.kind, D.analysed_shape[0] + " tasks × " + D.analysed_shape[1].toLocaleString("en") + " upstream examples",
      D.columns_dropped_nan ? D.columns_dropped_nan.toLocaleString("en") + " columns with NaN dropped" : null,
      D.rows_dropped.length ? "rows without scores dropped: " + D.rows_dropped.join(", ") : null].filter(Boolean).join(" · ") }),
    el("div", { class: "cards" },
      card(fmt(D.stats.mean, 4, true), binary ? "share forgotten" : "mean forgetting (NLL increase, nats/token)"),
      card((100 * D.stats.share_positive).toFixed(1) + "%", "entries > 0"),
      card(fmt(r2[0], 3), "R² of rank 1"), r2.length >= 3 ? card(fmt(r2[2], 3), "R² of rank 3") : null,
      card(fmt(D.models.additive, 3), "R² additive μ+aᵢ+bⱼ")),
  ]);
  function card(v, label) { return el("div", { class: "card" }, el("b", { text: v }), el("span", { text: label })); }

  // ------------------------------------------------------------------ heatmap
  var perBin = N / B;
  add(app, el("h2", { text: "The forgetting matrix" }));
  add(app, el("p", { class: "hint", text: "Rows: tasks grouped by task group (within a group by mean forgetting). Columns: upstream examples " +
    "sorted by mean forgetting, most forgotten left" + (perBin > 1.5 ? "; each column averages ~" + Math.round(perBin) + " examples" : "") +
    ". Hover for values; click a row to list its most and least forgotten examples" + (perBin <= 1 ? ", a cell to open its example" : "") + "." }));
  var wrap = el("div", { class: "heatwrap" });
  var canvas = el("canvas", { id: "heat" });
  var tip = el("div", { id: "tip" });
  add(wrap, [canvas, tip]);
  add(app, wrap);
  var rowH = Math.max(3, Math.min(18, Math.floor(560 / M)));
  var showTaskLabels = rowH >= 9;
  var LEFT = showTaskLabels ? 350 : 130, RIGHT = 8, TOP = 4;
  var heatH = M * rowH + TOP + 4;
  var off = document.createElement("canvas");
  off.width = B; off.height = M;
  function paintCells() {
    var ctx = off.getContext("2d"), img = ctx.createImageData(B, M), px = img.data;
    for (var i = 0; i < M; i++) for (var b = 0; b < B; b++) {
      var c = colour(heat[i * B + b]), o = 4 * (i * B + b);
      px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  function plotW() { return canvas.clientWidth - LEFT - RIGHT; }
  function drawHeat() {
    var dpr = window.devicePixelRatio || 1, W = wrap.clientWidth || 1000;
    canvas.style.height = heatH + "px";
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(heatH * dpr);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, heatH);
    ctx.imageSmoothingEnabled = false;
    var pw = W - LEFT - RIGHT;
    ctx.drawImage(off, LEFT, TOP, pw, M * rowH);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.2; ctx.fillStyle = "#1d2329"; ctx.textBaseline = "middle";
    D.group_bounds.forEach(function (g, gi) {
      var y0 = TOP + g[1] * rowH, y1 = TOP + g[2] * rowH;
      if (gi > 0) { ctx.beginPath(); ctx.moveTo(LEFT - (showTaskLabels ? 0 : 6), y0); ctx.lineTo(LEFT + pw, y0); ctx.stroke(); }
      ctx.font = "bold 12px system-ui, sans-serif";
      if (!showTaskLabels) { ctx.textAlign = "right"; ctx.fillText(g[0] + " (" + (g[2] - g[1]) + ")", LEFT - 8, (y0 + y1) / 2, LEFT - 12); }
      else { ctx.font = "bold 11px system-ui, sans-serif"; ctx.textAlign = "left"; ctx.fillText(g[0], 2, (y0 + y1) / 2, 104); }
    });
    if (showTaskLabels) {
      ctx.font = Math.min(12, rowH - 1) + "px system-ui, sans-serif"; ctx.textAlign = "right";
      for (var i = 0; i < M; i++) {
        ctx.fillStyle = i === state.task ? "#0b62a4" : "#1d2329";
        ctx.fillText(D.tasks[i], LEFT - 6, TOP + (i + 0.5) * rowH, LEFT - 118);
      }
    }
    if (state.task >= 0) {
      ctx.strokeStyle = "#111"; ctx.lineWidth = 2;
      ctx.strokeRect(LEFT - 1, TOP + state.task * rowH - 1, pw + 2, rowH + 2);
    }
    if (state.example >= 0) {
      var b = binOf(state.example), x = LEFT + (b + 0.5) * pw / B;
      ctx.strokeStyle = "#111"; ctx.lineWidth = 1.5; ctx.setLineDash([3, 2]);
      ctx.beginPath(); ctx.moveTo(x, TOP); ctx.lineTo(x, TOP + M * rowH); ctx.stroke(); ctx.setLineDash([]);
    }
  }
  function cellAt(ev) {
    var r = canvas.getBoundingClientRect(), x = ev.clientX - r.left - LEFT, y = ev.clientY - r.top - TOP;
    var i = Math.floor(y / rowH);
    if (i < 0 || i >= M) return null;
    var b = x < 0 ? -1 : Math.min(B - 1, Math.floor(x / plotW() * B));
    return { row: i, bin: b, x: ev.clientX - r.left, y: ev.clientY - r.top };
  }
  canvas.addEventListener("mousemove", function (ev) {
    var c = cellAt(ev);
    if (!c) { tip.style.display = "none"; return; }
    var lines = [D.tasks[c.row] + "  (" + D.groups[c.row] + ")"];
    if (c.bin >= 0) {
      var j0 = starts[c.bin], j1 = binEnd(c.bin), v = heat[c.row * B + c.bin];
      if (j1 - j0 === 1) {
        lines.push("example " + D.ex.ids[j0] + "  (" + D.ex.sources[exSrc[j0]] + ")");
        lines.push((binary ? "forgotten: " : "forgetting: ") + fmt(v, 4, true));
      } else {
        var some = [];
        for (var j = j0; j < Math.min(j1, j0 + 3); j++) some.push(D.ex.ids[j]);
        lines.push("examples " + (j0 + 1).toLocaleString("en") + "–" + j1.toLocaleString("en") + " of " + N.toLocaleString("en") +
          " by mean forgetting (" + (j1 - j0) + "): " + some.join(", ") + (j1 - j0 > 3 ? ", …" : ""));
        lines.push((binary ? "share forgotten in bin: " : "mean forgetting in bin: ") + fmt(v, 4, true));
      }
    } else {
      lines.push("task mean " + fmt(D.task_mean[c.row], 4, true));
    }
    tip.textContent = lines.join("\n");
    tip.style.display = "block";
    var left = c.x + 14, w = tip.offsetWidth;
    if (left + w > wrap.clientWidth) left = Math.max(0, c.x - w - 14);
    tip.style.left = left + "px"; tip.style.top = (c.y + 14) + "px";
  });
  canvas.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  canvas.addEventListener("click", function (ev) {
    var c = cellAt(ev);
    if (!c) return;
    if (c.bin >= 0 && binEnd(c.bin) - starts[c.bin] === 1) selectExample(starts[c.bin], false);
    selectTask(c.row, false);
  });

  // colour bar + clip control
  var bar = el("canvas", { width: 220, height: 12 });
  var clipLabel = el("span");
  var legend = el("div", { class: "legend" }, el("span", { text: binary ? "0 (kept)" : "−clip" }), bar,
    el("span", { text: binary ? "1 (forgotten)" : "+clip" }), clipLabel);
  function drawBar() {
    var ctx = bar.getContext("2d");
    for (var x = 0; x < 220; x++) { ctx.fillStyle = css(binary ? x / 219 : (x / 219 * 2 - 1) * state.clip); ctx.fillRect(x, 0, 1, 12); }
    clipLabel.textContent = binary ? "share of the bin's entries whose answer was lost" :
      "NLL increase (nats/token); colour clipped at ±" + fmt(state.clip, 3);
  }
  if (!binary) {
    var slider = el("input", { type: "range", min: "5", max: "400", value: "100", title: "colour limit", "aria-label": "colour limit" });
    slider.addEventListener("input", function () { state.clip = D.clip * slider.value / 100; paintCells(); drawHeat(); drawBar(); });
    add(legend, [el("span", { text: "colour limit" }), slider]);
  }
  add(app, legend);

  // ------------------------------------------------------------------ task and example panels
  var taskPanel = el("section", { class: "panel", id: "task-panel" });
  var examplePanel = el("section", { class: "panel", id: "example-panel" });
  add(app, el("div", { class: "panels" }, taskPanel, examplePanel));

  var taskSelect = el("select", { "aria-label": "task" });
  D.group_bounds.forEach(function (g) {
    var og = el("optgroup", { label: g[0] });
    for (var i = g[1]; i < g[2]; i++) add(og, el("option", { value: String(i), text: D.tasks[i] + "  (" + fmt(D.task_mean[i], 4, true) + ")" }));
    add(taskSelect, og);
  });
  taskSelect.addEventListener("change", function () { selectTask(+taskSelect.value, false); });
  var taskBody = el("div", { id: "task-body" });
  add(taskPanel, [el("h2", { text: "Task" }), el("div", { class: "row" }, taskSelect), taskBody]);

  function selectTask(i, scroll) {
    state.task = i;
    taskSelect.value = String(i);
    var L = D.task_lists[i], r2t = D.task_r2[i];
    taskBody.replaceChildren(
      el("h3", { id: "task-title", text: D.tasks[i] }),
      el("div", { class: "meta", text: "group " + D.groups[i] + " · mean forgetting " + fmt(D.task_mean[i], 4, true) + " · " +
        (100 * D.task_share[i]).toFixed(1) + "% of examples > 0" + (r2t ? " · R² of its row at rank 1/3: " + fmt(r2t[0], 3) + " / " + fmt(r2t[Math.min(2, r2t.length - 1)], 3) : "") }),
      el("h3", { text: "Most forgotten upstream examples" }),
      el("div", { class: "list", id: "task-top" }, L.top.map(function (p) { return exampleItem(p[0], p[1]); })),
      el("h3", { text: "Least forgotten upstream examples" }),
      el("div", { class: "list", id: "task-bottom" }, L.bottom.map(function (p) { return exampleItem(p[0], p[1]); })));
    drawHeat();
    if (scroll) taskPanel.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  var search = el("input", { type: "search", id: "search", placeholder: "search an example by id (all " + N.toLocaleString("en") +
    ") or by text (" + Object.keys(D.texts).length.toLocaleString("en") + " examples with text in this report)" });
  var hits = el("div", { class: "hits", id: "hits" });
  var exampleBody = el("div", { id: "example-body" }, el("p", { class: "hint", text: "Click an example id, or search." }));
  add(examplePanel, [el("h2", { text: "Upstream example" }), search, hits, exampleBody]);
  var textKeys = Object.keys(D.texts), lowerTexts = null, timer = null;
  search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(runSearch, 120); });
  function runSearch() {
    var q = search.value.trim().toLowerCase();
    if (!q) { hits.replaceChildren(); return; }
    var found = [], seen = {};
    function push(j, how) { if (!seen[j] && found.length < 30) { seen[j] = 1; found.push([j, how]); } }
    for (var j = 0; j < N && found.length < 30; j++) if (D.ex.ids[j].toLowerCase() === q) push(j, "id");
    for (j = 0; j < N && found.length < 30; j++) if (D.ex.ids[j].toLowerCase().indexOf(q) >= 0) push(j, "id");
    if (!lowerTexts) lowerTexts = textKeys.map(function (k) { return D.texts[k].toLowerCase(); });
    for (var t = 0; t < textKeys.length && found.length < 30; t++) if (lowerTexts[t].indexOf(q) >= 0) push(+textKeys[t], "text");
    hits.replaceChildren(el("div", null, found.length ? found.map(function (f) {
      var t = D.texts[String(f[0])];
      return el("div", { class: "item" }, el("div", { class: "head" }, exampleLink(f[0]),
        el("span", { class: "src", text: "(" + f[1] + " match) mean " + fmt(exMean[f[0]], 4, true) }),
        t ? el("span", { class: "src", text: t.slice(0, 90) + (t.length > 90 ? "…" : "") }) : null));
    }) : el("div", { class: "notext", text: "no match" })));
  }

  function selectExample(j, scroll) {
    state.example = j;
    var rows = [];
    for (var r = 0; r < K; r++) rows.push([exTopTask[j * K + r], exTopVal[j * K + r]]);
    exampleBody.replaceChildren(
      el("h3", { id: "example-title", text: D.ex.ids[j] }),
      el("div", { class: "meta", text: "source " + D.ex.sources[exSrc[j]] + (exBase ? " · base NLL " + fmt(exBase[j], 3) : "") +
        " · mean forgetting over tasks " + fmt(exMean[j], 4, true) + " · #" + (j + 1).toLocaleString("en") + " of " + N.toLocaleString("en") + " by mean forgetting" }),
      textNode(j),
      el("h3", { text: K < M ? "The " + K + " tasks that forget it most" : "Tasks by how much they make it forgotten" }),
      el("div", { class: "list", id: "example-tasks" }, rows.map(function (p) {
        return el("div", { class: "item" }, el("div", { class: "head" }, el("span", { class: "val", text: fmt(p[1], 4, true) }),
          valueBar(p[1], state.clip), taskLink(p[0]), el("span", { class: "src", text: D.groups[p[0]] })));
      })));
    var t = exampleBody.querySelector(".text"); if (t) t.classList.add("open");
    drawHeat();
    if (scroll) examplePanel.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // ------------------------------------------------------------------ low rank: R^2 curve, models
  add(app, el("h2", { text: "How low-rank is forgetting?" }));
  var GROUP_COLOURS = ["#1f77b4", "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#7f7f7f"];
  function r2Chart() {
    var W = 600, H = 340, L = 48, R = 16, T = 14, Bm = 40, k = r2.length;
    var mods = D.models, lines = [];
    var lo = Math.min(0, mods.additive, mods.example_only, mods.task_only, mods.multiplicative, Math.min.apply(null, r2));
    var x = function (i) { return L + (k === 1 ? 0.5 : (i - 1) / (k - 1)) * (W - L - R); };
    var y = function (v) { return T + (1.02 - v) / (1.02 - lo) * (H - T - Bm); };
    var s = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, id: "r2-chart", role: "img" });
    for (var g = 0; g <= 5; g++) {
      var v = lo + g * (1 - lo) / 5;
      s.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e8eb" }));
      s.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(2)));
    }
    for (var i = 1; i <= k; i++) s.appendChild(svg("text", { x: x(i), y: H - Bm + 16, "text-anchor": "middle" }, String(i)));
    s.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "rank k of the truncated SVD"));
    s.appendChild(svg("text", { x: 12, y: T + (H - T - Bm) / 2, transform: "rotate(-90 12 " + (T + (H - T - Bm) / 2) + ")", "text-anchor": "middle" }, "R²"));
    function hline(v, colour, dash, label) {
      s.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: colour, "stroke-dasharray": dash, "stroke-width": 1.6 }));
      lines.push([colour, dash, label + ": " + fmt(v, 3)]);
    }
    hline(mods.additive, "#d62728", "6 3 2 3", "additive μ+aᵢ+bⱼ");
    hline(mods.example_only, "#2ca02c", "2 3", "example-only (column means)");
    hline(mods.task_only, "#9467bd", "2 3", "task-only (row means)");
    function curve(vals, colour, dash, width, label) {
      var pts = vals.map(function (v, i) { return x(i + 1) + "," + y(v); }).join(" ");
      s.appendChild(svg("polyline", { points: pts, fill: "none", stroke: colour, "stroke-width": width, "stroke-dasharray": dash }));
      vals.forEach(function (v, i) {
        var c = svg("circle", { cx: x(i + 1), cy: y(v), r: width > 1.5 ? 3.5 : 2.5, fill: colour });
        c.appendChild(svg("title", {}, label + ", rank " + (i + 1) + ": R² = " + fmt(v, 3)));
        s.appendChild(c);
      });
      lines.push([colour, dash, label]);
    }
    var groups = Object.keys(D.r2_groups);
    if (groups.length > 1) groups.forEach(function (gname, gi) { curve(D.r2_groups[gname], GROUP_COLOURS[gi % 6], "4 2", 1.2, "rank-k SVD, " + gname + " rows"); });
    curve(r2, "#111", "", 2.2, "rank-k SVD, all tasks");
    var star = svg("text", { x: x(1), y: y(mods.multiplicative) + 6, "text-anchor": "middle", style: "font-size:20px;fill:#ff7f0e" }, "★");
    star.appendChild(svg("title", {}, "multiplicative (rank-1, no bias): " + fmt(mods.multiplicative, 3)));
    s.appendChild(star);
    lines.push(["#ff7f0e", "", "multiplicative (rank-1, no bias): " + fmt(mods.multiplicative, 3)]);
    var leg = el("div", { class: "note" }, lines.map(function (l) {
      return el("div", null, el("span", { class: "bar", style: "width:22px;height:3px;background:" + l[0] + (l[1] ? ";opacity:.75" : "") }), " " + l[2]);
    }));
    return el("div", null, s, leg);
  }
  var groupNames = Object.keys(D.r2_groups);
  var rankRows = r2.map(function (v, i) {
    return [String(i + 1), fmt(v, 3)].concat(groupNames.map(function (g) { return fmt(D.r2_groups[g][i], 3); })).concat([fmt(D.energy[i], 3)]);
  });
  var modelLabels = { additive: "additive μ + aᵢ + bⱼ", multiplicative: "multiplicative (rank-1, no bias)", example_only: "example-only (column means)", task_only: "task-only (row means)" };
  add(app, el("div", { class: "chart" }, r2Chart(),
    el("div", null, el("h3", { text: "Simple models" }),
      table(["model", "R²"], Object.keys(D.models).map(function (m) { return [modelLabels[m] || m, fmt(D.models[m], 3)]; }), [false, true]),
      el("h3", { text: "R² by rank" }),
      table(["k", "all"].concat(groupNames).concat(["share of ‖Z‖²"]), rankRows, [true].concat(rankRows[0].slice(1).map(function () { return true; }))))));
  add(app, el("p", { class: "note", text: "R² = 1 − mean((Z − Z_k)²) / mean((Z − mean Z)²), Z_k the rank-k truncated SVD of the uncentred Z; group curves score the same approximation on that group's rows." }));
  if (D.logistic) {
    add(app, [el("h3", { text: "Logistic matrix factorisation (binary matrix)" }),
      table(["rank", "F1", "precision", "recall", "accuracy"], D.logistic.map(function (d) { return [String(d.rank), fmt(d.f1, 3), fmt(d.precision, 3), fmt(d.recall, 3), fmt(d.accuracy, 3)]; }),
        [true, true, true, true, true])]);
  }

  // ------------------------------------------------------------------ components
  if (D.components.length) {
    add(app, el("h2", { text: "Top components" }));
    add(app, el("p", { class: "hint", text: "Each SVD component σ·u·vᵀ: the tasks (u) and upstream examples (v) with the largest and smallest loadings. Click to open." }));
    D.components.forEach(function (c) {
      function tasks(list) { return list.map(function (p) { return el("div", { class: "item" }, el("div", { class: "head" }, el("span", { class: "val", text: fmt(p[1], 3) }), taskLink(p[0]), el("span", { class: "src", text: D.groups[p[0]] }))); }); }
      function examples(list) { return list.slice(0, 5).map(function (p) { return exampleItem(p[0], exMean[p[0]], el("span", { class: "src", text: "loading " + fmt(p[1], 4) })); }); }
      function enrich(list, end) {
        if (!list || !list.length) return null;
        return el("div", { class: "note", text: "Sources over-represented among the " + end + " examples: " + list.map(function (d) {
          return d.source + " (" + (100 * d.share_top).toFixed(0) + "% vs " + (100 * d.share_rest).toFixed(0) + "%, p " + pval(d.p_bonferroni) + ")";
        }).join("; ") });
      }
      add(app, el("div", { class: "component", id: "component-" + c.component },
        el("h3", { text: "Component " + c.component + ": σ = " + fmt(c.singular_value, 3) + ", " + (100 * c.share).toFixed(1) + "% of ‖Z‖²" }),
        el("div", { class: "cols" },
          el("div", null, el("b", { text: "Tasks, largest loadings" }), tasks(c.top_tasks.slice(0, 5)), el("b", { text: "Tasks, smallest loadings" }), tasks(c.bottom_tasks.slice(0, 5))),
          el("div", null, el("b", { text: "Examples, largest loadings (value: mean forgetting)" }), examples(c.top_examples), enrich(c.enrichment.top, "largest-loading"),
            el("b", { text: "Examples, smallest loadings" }), examples(c.bottom_examples), enrich(c.enrichment.bottom, "smallest-loading")))));
    });
  }

  // ------------------------------------------------------------------ prediction and replay
  if (D.predict) {
    var P = D.predict;
    add(app, el("h2", { text: "Predicting forgetting of unseen tasks" }));
    add(app, el("p", { class: "hint", text: "split " + P.split + ": " + P.n_train + " training / " + P.n_test + " test tasks, " + P.observed +
      " revealed entries per test row, " + P.seeds + " seeds, " + (P.n_columns || 0).toLocaleString("en") + " examples; mean ± std over seeds." }));
    add(app, table(["method"].concat(P.metrics).concat(["seconds"]), P.rows.map(function (r) {
      return [r.method].concat(P.metrics.map(function (m) { return fmt(r[m][0], 4) + " ± " + fmt(r[m][1], 4); })).concat([fmt(r.seconds, 2)]);
    }), [false].concat(P.metrics.map(function () { return true; })).concat([true])));
  }
  if (D.replay) {
    var Rp = D.replay, names = Object.keys(Rp.methods);
    add(app, el("h2", { text: "Replay: held-out forgetting by method" }));
    add(app, el("p", { class: "hint", text: (Rp.recipe ? "study " + Rp.recipe + ", " : "") + Rp.tasks.length + " test tasks, " + Rp.n_heldout +
      " held-out (never replayed) upstream examples. Mean NLL increase over tasks with a 95% t-interval; tests are paired across tasks against random replay." }));
    var lo = 0, hi = 0;
    names.forEach(function (n) { var m = Rp.methods[n], ci = m.ci95 || [m.mean, m.mean]; lo = Math.min(lo, ci[0]); hi = Math.max(hi, ci[1]); });
    var W = 560, rowh = 26, L = 110, Rr = 20, H = names.length * rowh + 36, pad = (hi - lo) * 0.05 || 0.01;
    lo -= pad; hi += pad;
    var xs = function (v) { return L + (v - lo) / (hi - lo) * (W - L - Rr); };
    var s = svg("svg", { width: W, height: H, id: "replay-chart" });
    s.appendChild(svg("line", { x1: xs(0), x2: xs(0), y1: 4, y2: H - 28, stroke: "#999", "stroke-dasharray": "3 3" }));
    names.forEach(function (n, i) {
      var m = Rp.methods[n], yy = 16 + i * rowh;
      s.appendChild(svg("text", { x: L - 8, y: yy + 4, "text-anchor": "end" }, n));
      if (m.ci95) s.appendChild(svg("line", { x1: xs(m.ci95[0]), x2: xs(m.ci95[1]), y1: yy, y2: yy, stroke: "#0b62a4", "stroke-width": 2 }));
      var dot = svg("circle", { cx: xs(m.mean), cy: yy, r: 4.5, fill: "#0b62a4" });
      dot.appendChild(svg("title", {}, n + ": " + fmt(m.mean, 4, true) + (m.ci95 ? " [" + fmt(m.ci95[0], 4) + ", " + fmt(m.ci95[1], 4) + "]" : "")));
      s.appendChild(dot);
    });
    [lo, 0, hi].forEach(function (v) { s.appendChild(svg("text", { x: xs(v), y: H - 12, "text-anchor": "middle" }, fmt(v, 3))); });
    add(app, el("div", { class: "chart" }, s, table(["method", "mean increase", "95% CI", "vs none", "vs random", "t-test p", "Holm p", "Wilcoxon p", "lower than random"],
      names.map(function (n) {
        var m = Rp.methods[n];
        return [n, fmt(m.mean, 4, true), m.ci95 ? "[" + fmt(m.ci95[0], 4) + ", " + fmt(m.ci95[1], 4) + "]" : "n/a", pct(m.reduction_vs_none),
          pct(m.reduction_vs_random), pval(m.t_p), pval(m.t_p_holm), pval(m.wilcoxon_p), m.n ? m.wins + "/" + m.n : ""];
      }), [false, true, true, true, true, true, true, true, true])));
    if (Rp.pareto) {
      var Pa = Rp.pareto, pts = Pa.points, front = {};
      Pa.front.forEach(function (n) { front[n] = true; });
      add(app, el("h3", { text: "Forgetting vs learning: the Pareto front" }));
      add(app, el("p", { class: "hint", text: "Each method's mean held-out forgetting (NLL increase) against its task gain (decrease of the answer NLL on the task's eval split), over " +
        Pa.n_tasks + " tasks. Filled: on the Pareto front (no other method forgets less and learns at least as much). Better = right and down." }));
      var gx = pts.map(function (p) { return p.gain; }), fy = pts.map(function (p) { return p.forgetting; });
      var gl = Math.min.apply(null, gx.concat([0])), gh = Math.max.apply(null, gx), fl = Math.min.apply(null, fy.concat([0])), fh = Math.max.apply(null, fy);
      var gp = (gh - gl) * 0.08 || 0.01, fp = (fh - fl) * 0.08 || 0.01;
      gl -= gp; gh += gp; fl -= fp; fh += fp;
      var PW = 560, PH = 360, PL = 60, PB = 40;
      var px = function (v) { return PL + (v - gl) / (gh - gl) * (PW - PL - 110); };
      var py = function (v) { return 10 + (fh - v) / (fh - fl) * (PH - PB - 10); };
      var ps = svg("svg", { width: PW, height: PH, id: "pareto-chart" });
      ps.appendChild(svg("line", { x1: PL, x2: PW - 110, y1: py(0), y2: py(0), stroke: "#999", "stroke-dasharray": "3 3" }));
      var fr = pts.filter(function (p) { return front[p.method]; }).sort(function (a, b) { return a.gain - b.gain; });
      if (fr.length > 1) ps.appendChild(svg("polyline", { points: fr.map(function (p) { return px(p.gain) + "," + py(p.forgetting); }).join(" "),
        fill: "none", stroke: "#333", "stroke-dasharray": "4 3" }));
      var labels = [];
      pts.forEach(function (p) {
        var dot = svg("circle", { cx: px(p.gain), cy: py(p.forgetting), r: 5, fill: front[p.method] ? "#0b62a4" : "#fff", stroke: "#0b62a4", "stroke-width": 1.5 });
        dot.appendChild(svg("title", {}, p.method + ": forgetting " + fmt(p.forgetting, 4, true) + ", task gain " + fmt(p.gain, 4, true)));
        ps.appendChild(dot);
        var label = svg("text", { class: "pareto-label", x: px(p.gain) + 7, y: py(p.forgetting) - 5 }, p.method);
        ps.appendChild(label);
        labels.push({ el: label, x: px(p.gain), y: py(p.forgetting) });
      });
      [gl, gh].forEach(function (v) { ps.appendChild(svg("text", { x: px(v), y: PH - 22, "text-anchor": "middle" }, fmt(v, 3))); });
      [fl, fh].forEach(function (v) { ps.appendChild(svg("text", { x: PL - 6, y: py(v) + 4, "text-anchor": "end" }, fmt(v, 3))); });
      ps.appendChild(svg("text", { x: (PL + PW - 110) / 2, y: PH - 6, "text-anchor": "middle" }, "task gain (nats/token)"));
      add(app, el("div", { class: "chart" }, ps, table(["method", "forgetting", "task gain", "kept of none's gain", "gain vs none: Holm p", "gain vs random: Holm p", "Pareto front"],
        pts.map(function (p) {
          return [p.method, fmt(p.forgetting, 4, true), fmt(p.gain, 4, true), p.kept == null ? "n/a" : (100 * p.kept).toFixed(1) + "%", pval(p.p_none), pval(p.p_random), front[p.method] ? "yes" : ""];
        }), [false, true, true, true, true, true, false])));
      placeLabels(ps, labels, { x0: 0, x1: PW, y0: 0, y1: PH - PB });
    }
    add(app, [el("h3", { text: "Per task (held-out NLL increase)" }),
      table(["task"].concat(names), Rp.tasks.map(function (t) { return [t].concat(names.map(function (n) { return fmt(Rp.methods[n].per_task[t], 4, true); })); }),
        [false].concat(names.map(function () { return true; })))]);
  }
  add(app, el("footer", { text: "Written by lmforget. " + D.nan_policy + "." }));

  // ------------------------------------------------------------------ start
  paintCells();
  drawBar();
  var first = 0;
  for (var i = 1; i < M; i++) if (D.task_mean[i] > D.task_mean[first]) first = i;
  selectTask(first, false);
  if (D.task_lists[first].top.length) selectExample(D.task_lists[first].top[0][0], false);
  var resizeTimer = null;
  window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawHeat, 100); });
  window.__lmforgetReady = performance.now();
  document.body.setAttribute("data-ready", "1");
})();
