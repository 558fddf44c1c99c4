// pgq dashboard: the overview's charts, drawn with uPlot (vendored: uPlot.iife.min.js, MIT).
// Per queue, jobs finished per step (completed, failed, retried) and the mean wait and run
// times, from GET /api/metrics/series?range=... (the sweeper's pgq.metrics rows).
(function () {
  "use strict";
  var root = document.getElementById("charts");
  if (!root || !window.uPlot || !window.fetch) return;
  var url = root.dataset.seriesUrl;
  var css = getComputedStyle(document.documentElement);
  function color(name, fallback) { return (css.getPropertyValue(name) || fallback).trim(); }
  var colors = {
    completed: color("--ok", "#1f8a4c"), failed: color("--bad", "#c0392b"), retried: color("--warn", "#b7791f"),
    wait: color("--accent", "#2f5f8f"), run: color("--run", "#2b6cb0"), axis: color("--muted", "#5d6675"),
    grid: color("--line", "#dde1e7")
  };
  var plots = [];
  var current = "1h";

  function axes(unit) {
    var axis = { stroke: colors.axis, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid } };
    var y = Object.assign({}, axis, {
      size: 48, label: unit, labelSize: 14,
      values: function (u, ticks) {
        return ticks.map(function (v) { return v >= 1000 ? +(v / 1000).toFixed(1) + "k" : String(+v.toFixed(2)); });
      }
    });
    return [axis, y];
  }

  function width(el) { return Math.max(240, Math.floor(el.clientWidth || 300)); }

  function ms(value) {
    if (value === null || value === undefined) return "-";
    return value < 1000 ? Math.round(value) + " ms" : (value / 1000).toFixed(1) + " s";
  }

  function chart(holder, title, times, series, unit, bars) {
    var figure = document.createElement("figure");
    figure.className = "chart";
    var caption = document.createElement("figcaption");
    caption.textContent = title;
    figure.appendChild(caption);
    holder.appendChild(figure);
    var opts = {
      width: width(figure), height: 140,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max || 0, 1)]; } } },
      axes: axes(unit),
      legend: { show: true, live: true },
      cursor: { points: { show: false } },
      series: [{}].concat(series.map(function (s) {
        var entry = { label: s.label, stroke: s.color, width: 1.5, value: s.value, spanGaps: !bars,
                      points: { show: !bars, size: 4, fill: s.color } };
        if (bars) {
          entry.fill = s.color;
          entry.paths = uPlot.paths.bars({ size: [0.9, 12], align: 1 });
        }
        return entry;
      }))
    };
    var plot = new uPlot(opts, [times].concat(series.map(function (s) { return s.data; })), figure);
    plots.push({ plot: plot, figure: figure });
  }

  // The charts end where the newest metrics window ends; without a running worker that can be
  // long ago, and jobs finished since are counted on the cards above but not charted yet.
  function until(result) {
    var note = document.createElement("p");
    note.className = "note hint";
    note.dataset.recordedUntil = result.recorded_until || "";
    if (result.recorded_until) {
      var at = new Date(result.recorded_until);
      note.textContent = "Charted up to " + at.toLocaleTimeString() + ", the end of the newest metrics window; " +
        "jobs finished later appear when a running worker's sweeper records the next one (every " +
        result.metrics_interval + " s).";
    }
    return note;
  }

  function draw(result) {
    plots.forEach(function (p) { p.plot.destroy(); });
    plots = [];
    var rows = {};
    root.querySelectorAll("[data-chart-queue]").forEach(function (row) {
      rows[JSON.parse(row.dataset.chartQueue)] = row;
    });
    var names = Object.keys(result.queues);
    if (!names.length) {
      var empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "No metrics rows in this range: a running worker's sweeper writes one every " +
        result.metrics_interval + " s (PGQ_METRICS_INTERVAL).";
      root.replaceChildren(empty);
      return;
    }
    root.replaceChildren();  // rows go in at once: a chart sizes itself to its place on the page
    root.appendChild(until(result));
    names.forEach(function (name) {
      var q = result.queues[name];
      var row = rows[name];
      if (!row) {
        row = document.createElement("div");
        row.className = "chart-row";
        row.dataset.chartQueue = JSON.stringify(name);
        var h3 = document.createElement("h3");
        h3.textContent = name;
        row.appendChild(h3);
        row.appendChild(document.createElement("div")).className = "charts";
      }
      var figures = row.querySelector(".figures");
      if (!figures) {
        figures = document.createElement("p");
        figures.className = "figures";
        row.insertBefore(figures, row.querySelector(".charts"));
      }
      var sum = function (list) { return list.reduce(function (a, b) { return a + (b || 0); }, 0); };
      figures.textContent = sum(q.completed) + " completed, " + sum(q.failed) + " failed, " + sum(q.retried) +
        " retried over " + result.range + " (steps of " + (result.step_seconds >= 3600 ? result.step_seconds / 3600 + " h" :
        result.step_seconds / 60 + " min") + ")";
      var holder = row.querySelector(".charts");
      holder.replaceChildren();
      root.appendChild(row);
      var latencies = q.wait_ms.concat(q.run_ms).some(function (v) { return v !== null; });
      if (!sum(q.completed) && !sum(q.failed) && !sum(q.retried) && !latencies) {
        figures.textContent = "Nothing finished over " + result.range + ".";
        return;
      }
      chart(holder, name + ": jobs finished per step", result.times, [
        { label: "completed", color: colors.completed, data: q.completed },
        { label: "failed", color: colors.failed, data: q.failed },
        { label: "retried", color: colors.retried, data: q.retried }
      ], "jobs", true);
      chart(holder, name + ": mean wait and run time", result.times, [
        { label: "wait", color: colors.wait, data: q.wait_ms, value: function (u, v) { return ms(v); } },
        { label: "run", color: colors.run, data: q.run_ms, value: function (u, v) { return ms(v); } }
      ], "ms", false);
    });
  }

  function load(range) {
    current = range;
    document.querySelectorAll("[data-range]").forEach(function (button) {
      var on = button.dataset.range === range;
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.classList.toggle("primary", on);
    });
    fetch(url + "?range=" + encodeURIComponent(range), { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (result) { if (result && result.range === current) draw(result); })
      .catch(function () {});
  }

  document.querySelectorAll("[data-range]").forEach(function (button) {
    button.addEventListener("click", function () { load(button.dataset.range); });
  });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      plots.forEach(function (p) { p.plot.setSize({ width: width(p.figure), height: 140 }); });
    }, 150);
  });
  load(current);
  // New rows arrive every PGQ_METRICS_INTERVAL: redraw once a minute.
  setInterval(function () { if (!document.hidden) load(current); }, 60000);
})();
