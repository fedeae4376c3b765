// gotasks dashboard: confirmations, select-all, and the overview's live
// chart and queue counts (polling api/stats). No dependencies, no build.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var STATUSES = ["READY", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED"];
  var SERIES = [["successful", "successful"], ["failed", "failed"], ["cancelled", "cancelled"]];

  function el(name, attrs, text) {
    var e = name.indexOf("svg:") === 0 ? document.createElementNS(SVG, name.slice(4)) : document.createElement(name);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hhmm(d) { return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()); }

  // dur formats seconds like the server's fmtDuration.
  function dur(s) {
    if (s <= 0) return "0s";
    if (s < 1) return Math.round(s * 1000) + "ms";
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + pad(Math.floor(s % 60)) + "s";
    if (s < 172800) return Math.floor(s / 3600) + "h" + pad(Math.floor(s % 3600 / 60)) + "m";
    return Math.floor(s / 86400) + "d" + pad(Math.floor(s % 86400 / 3600)) + "h";
  }

  // niceStep is the grid step for four steps up to at least v: 1, 2 or 5
  // times a power of ten, and a whole number.
  function niceStep(v) {
    var raw = Math.max(v / 4, 1);
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= raw) return Math.max(1, Math.round(steps[i] * p));
    return Math.round(10 * p);
  }

  // drawChart draws the stacked bars of finished tasks per minute.
  function drawChart(box, data) {
    var pts = data.throughput || [];
    var W = Math.max(box.clientWidth, 300), H = box.clientHeight || 240;
    var m = { l: 44, r: 8, t: 10, b: 22 };
    var pw = W - m.l - m.r, ph = H - m.t - m.b;
    var max = 0;
    pts.forEach(function (p) { max = Math.max(max, p.successful + p.failed + p.cancelled); });
    var step = niceStep(max), top = 4 * step;
    var svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", "class": "throughput" });
    for (var i = 0; i <= 4; i++) {
      var y = m.t + ph - ph * i / 4;
      svg.appendChild(el("svg:line", { x1: m.l, x2: W - m.r, y1: y, y2: y, "class": i ? "gridline" : "axis" }));
      svg.appendChild(el("svg:text", { x: m.l - 6, y: y + 4, "text-anchor": "end" }, String(step * i)));
    }
    var bw = pts.length ? pw / pts.length : pw;
    var total = 0;
    pts.forEach(function (p, i) {
      var x = m.l + i * bw, base = m.t + ph;
      var d = new Date(p.minute);
      var g = el("svg:g", { "class": "minute" });
      g.appendChild(el("svg:title", {}, hhmm(d) + " UTC: " + p.successful + " successful, " + p.failed + " failed, " + p.cancelled + " cancelled"));
      // A transparent full-height rect makes the whole column hoverable.
      g.appendChild(el("svg:rect", { x: x, y: m.t, width: bw, height: ph, fill: "transparent" }));
      SERIES.forEach(function (s) {
        var v = p[s[0]];
        if (!v) return;
        total += v;
        var h = ph * v / top;
        base -= h;
        g.appendChild(el("svg:rect", { x: x + bw * 0.12, y: base, width: Math.max(bw * 0.76, 1), height: h, "class": "bar bar-" + s[1] }));
      });
      svg.appendChild(g);
      if (d.getUTCMinutes() % 10 === 0) {
        svg.appendChild(el("svg:text", { x: x + bw / 2, y: H - 6, "text-anchor": "middle" }, hhmm(d)));
      }
    });
    box.replaceChildren(svg);
    box.dataset.draws = String(Number(box.dataset.draws || 0) + 1);
    box.dataset.points = String(pts.length);
    box.dataset.total = String(total);
  }

  // drawQueues rebuilds the overview's queue table from the stats.
  function drawQueues(table, data, root) {
    var tbody = el("tbody");
    (data.queues || []).forEach(function (q) {
      var tr = el("tr", { "data-queue": q.queue });
      var td = el("td");
      td.appendChild(el("a", { href: root + "tasks?queue=" + encodeURIComponent(q.queue) }, q.queue));
      tr.appendChild(td);
      STATUSES.forEach(function (s) {
        var n = (q.counts || {})[s] || 0, c = el("td", { "class": "num" });
        if (n) c.appendChild(el("a", { href: root + "tasks?queue=" + encodeURIComponent(q.queue) + "&status=" + s }, String(n)));
        else c.appendChild(el("span", { "class": "muted" }, "0"));
        tr.appendChild(c);
      });
      tr.appendChild(el("td", { "class": "num" }, String(q.total)));
      var due = el("td");
      if (q.oldest_due) due.appendChild(el("span", { title: q.oldest_due }, dur(q.age_seconds)));
      else due.appendChild(el("span", { "class": "muted" }, "—"));
      tr.appendChild(due);
      var st = el("td");
      st.appendChild(q.paused ? el("span", { "class": "badge badge-paused" }, "paused") : el("span", { "class": "badge" }, "active"));
      tr.appendChild(st);
      tbody.appendChild(tr);
    });
    if (!tbody.children.length) {
      var tr = el("tr", { "class": "empty" });
      tr.appendChild(el("td", { colspan: "9" }, "No tasks yet."));
      tbody.appendChild(tr);
    }
    table.replaceChild(tbody, table.tBodies[0]);
  }

  function overview() {
    var box = document.getElementById("chart");
    if (!box) return;
    var root = document.body.dataset.root || "./";
    var table = document.getElementById("queues-table");
    var at = document.getElementById("stats-at");
    var data = JSON.parse(document.getElementById("stats-json").textContent);
    drawChart(box, data);
    window.addEventListener("resize", function () { drawChart(box, data); });
    var every = Number(box.dataset.refresh) || 5000;
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(box.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (d) {
          data = d;
          drawChart(box, d);
          if (table) drawQueues(table, d, root);
          if (at) { at.textContent = "as of " + d.at.replace("T", " ").replace(/\.\d+/, ""); at.classList.remove("stale"); }
        })
        .catch(function (e) { if (at) at.textContent = "refresh failed (" + e.message + "); retrying"; })
        .finally(function () { busy = false; });
    }, every);
  }

  function forms() {
    document.querySelectorAll("[data-confirm]").forEach(function (b) {
      b.addEventListener("click", function (e) {
        if (!window.confirm(b.dataset.confirm)) e.preventDefault();
      });
    });
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll("#tasks-table input[name=id]").forEach(function (c) { c.checked = all.checked; });
      });
    }
    // The flash message was shown: drop it from the address bar so that a
    // reload does not show it again.
    if (document.getElementById("flash") && window.history.replaceState) {
      var u = new URL(window.location.href);
      u.searchParams.delete("flash");
      u.searchParams.delete("flash_kind");
      window.history.replaceState(null, "", u.pathname + u.search + u.hash);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    forms();
    overview();
  });
})();
