// pgq dashboard: confirmations and live updates. The server pushes a snapshot
// over Server-Sent Events whenever something changes; this script never polls.
// Everything it writes goes through textContent, never innerHTML.
(function () {
  "use strict";
  var body = document.body;
  var base = body.dataset.base || "";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  if (!window.EventSource || !body.dataset.live) return;
  var watch = body.dataset.watch || "";
  var indicator = document.getElementById("live");
  var initial = {};
  document.querySelectorAll("[data-job-status]").forEach(function (el) {
    initial[el.dataset.jobStatus] = el.textContent;
  });
  var reloading = false;

  function reloadSoon() {
    if (reloading) return;
    reloading = true;
    setTimeout(function () { window.location.reload(); }, 300);
  }

  function setLive(state, title) {
    if (!indicator) return;
    indicator.className = "live " + state;
    indicator.title = title;
  }

  function percent(value) { return Math.round((value || 0) * 100) + "%"; }

  function updateProgress(el, progress, message, show) {
    var bar = el.querySelector("progress");
    if (bar) { bar.value = progress || 0; bar.textContent = percent(progress); }
    var pct = el.querySelector(".pct");
    if (pct) pct.textContent = percent(progress);
    var msg = el.querySelector(".msg");
    if (msg) msg.textContent = message || "";
    el.hidden = !show;
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function progressCell(job) {
    var td = document.createElement("td");
    var wrap = document.createElement("div");
    wrap.className = "progress";
    wrap.dataset.jobProgress = job.id;
    var bar = document.createElement("progress");
    bar.max = 1;
    var pct = document.createElement("span");
    pct.className = "pct";
    var msg = document.createElement("span");
    msg.className = "msg";
    wrap.appendChild(bar); wrap.appendChild(pct); wrap.appendChild(document.createTextNode(" ")); wrap.appendChild(msg);
    updateProgress(wrap, job.progress, job.message, true);
    td.appendChild(wrap);
    return td;
  }

  function updateRunning(running) {
    var tbody = document.getElementById("running");
    if (!tbody) return;
    var rows = document.createDocumentFragment();
    running.forEach(function (job) {
      var tr = document.createElement("tr");
      tr.dataset.running = job.id;
      var link = document.createElement("a");
      link.href = base + "/jobs/" + encodeURIComponent(job.id);
      link.textContent = "#" + job.id;
      var first = document.createElement("td");
      first.appendChild(link);
      tr.appendChild(first);
      tr.appendChild(cell(job.task));
      tr.appendChild(cell(job.queue));
      tr.appendChild(cell(String(job.attempts)));
      tr.appendChild(progressCell(job));
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    var empty = document.getElementById("running-empty");
    if (empty) empty.hidden = running.length > 0;
  }

  // "Why isn't it running?" (a waiting job's page): read again through the API when the
  // live counts change (a job started, finished or arrived), at most every 3 s.
  var explainPanel = document.querySelector("[data-job-explain]");
  var explainSeen = null, explainAt = 0, explainTimer = null;

  function showExplain(result) {
    var head = explainPanel.querySelector(".explain-head");
    if (head) head.textContent = (result.text || "").split("\n")[0];
    var list = explainPanel.querySelector(".explain-reasons");
    if (!list) return;
    var items = document.createDocumentFragment();
    (result.reasons || []).forEach(function (reason) {
      var li = document.createElement("li");
      li.textContent = reason;
      items.appendChild(li);
    });
    list.replaceChildren(items);
  }

  function refreshExplain(data) {
    if (!explainPanel || !window.fetch) return;
    var key = JSON.stringify([data.counts, data.paused]);
    if (key === explainSeen) return;
    var wait = explainAt + 3000 - Date.now();
    if (wait > 0) {
      if (!explainTimer) explainTimer = setTimeout(function () { explainTimer = null; refreshExplain(data); }, wait);
      return;
    }
    explainSeen = key;
    explainAt = Date.now();
    fetch(base + "/api/jobs/" + encodeURIComponent(explainPanel.dataset.jobExplain) + "/explain",
          { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (result) { if (result) showExplain(result); })
      .catch(function () { explainSeen = null; });
  }

  function apply(data) {
    if (data.error) { setLive("off", data.error); return; }
    setLive("on", "live: updated " + new Date().toLocaleTimeString());
    var counts = data.counts || {};
    var shown = {};
    document.querySelectorAll("[data-count]").forEach(function (el) {
      var parts = el.dataset.count.split("|");
      var queue = parts[0], state = parts[1];
      var value = queue === "*" ? (data.totals || {})[state] : (counts[queue] || {})[state];
      if (queue !== "*") shown[queue] = true;
      var text = String(value || 0);
      if (el.textContent !== text) el.textContent = text;
    });
    if (document.querySelector("table.counts") || document.querySelector("[data-count='*|pending']")) {
      var missing = Object.keys(counts).some(function (q) { return !shown[q]; });
      if (missing) reloadSoon();  // a new queue: its row comes from the server
    }
    updateRunning(data.running || []);
    var jobs = data.jobs || {};
    Object.keys(jobs).forEach(function (id) {
      var job = jobs[id];
      document.querySelectorAll('[data-job-status="' + id + '"]').forEach(function (el) {
        if (el.textContent !== job.status) {
          el.textContent = job.status;
          el.className = "status s-" + job.status;
        }
      });
      document.querySelectorAll('[data-job-attempts="' + id + '"]').forEach(function (el) {
        el.textContent = job.attempts + "/" + job.max_attempts;
      });
      document.querySelectorAll('[data-job-progress="' + id + '"]').forEach(function (el) {
        if (el.closest("#running")) return;
        updateProgress(el, job.progress, job.message,
          job.status === "running" || (el.dataset.keep === "1" && job.progress !== null && !!job.message));
      });
      if (body.dataset.reloadOnChange && initial[id] !== undefined && initial[id] !== job.status) {
        reloadSoon();  // the detail page shows the new state's result and attempts
      }
    });
    refreshExplain(data);
    var banner = document.getElementById("new-jobs");
    if (banner && banner.dataset.newest !== undefined && data.newest_live_id) {
      var newest = parseInt(banner.dataset.newest || "0", 10);
      banner.hidden = !(data.newest_live_id > newest);
    }
  }

  var source = new EventSource(base + "/events" + (watch ? "?jobs=" + encodeURIComponent(watch) : ""));
  source.addEventListener("snapshot", function (event) {
    try { apply(JSON.parse(event.data)); } catch (e) { setLive("off", String(e)); }
  });
  source.onerror = function () { setLive("off", "live updates disconnected; reconnecting"); };
  window.addEventListener("pagehide", function () { source.close(); });
})();
