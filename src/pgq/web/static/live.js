// pgq dashboard: confirmations, local times and live updates. The server pushes a
// snapshot (JSON) over Server-Sent Events whenever something changes; this script
// never polls. Everything it writes goes through textContent, never innerHTML, and
// what the page tells it (which queue a cell counts, which jobs it shows) is JSON in
// data- attributes: a queue named "a|b" is just a string.
(function () {
  "use strict";
  var body = document.body;
  var base = body.dataset.base || "";

  function json(text, fallback) {
    try { return JSON.parse(text); } catch (e) { return fallback; }
  }

  // A live reload must never take the place of the user's own action: once a form is
  // submitted, a reload that was due is cancelled and no new one is started (the page
  // the form loads is the fresh one). Without this, a reload 300 ms after a snapshot
  // replaced a Resume click's POST with a GET, and the queue stayed paused.
  var submitting = false, reloadTimer = null;
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    submitting = true;
    if (reloadTimer) { clearTimeout(reloadTimer); reloadTimer = null; }
  });

  // ------------------------------------------------------------ times
  // The server writes UTC; the reader wants their own clock, and "3 s ago".
  function ago(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }
  function inFuture(seconds) {
    seconds = Math.round(seconds);
    if (seconds < 60) return "in " + seconds + " s";
    if (seconds < 3600) return "in " + Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return "in " + Math.floor(seconds / 3600) + " h";
    return "in " + Math.floor(seconds / 86400) + " d";
  }
  function localText(date) {
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }
  function showTime(el) {
    var date = new Date(el.getAttribute("datetime"));
    if (isNaN(date.getTime())) return;
    var delta = (Date.now() - date.getTime()) / 1000;
    var relative = delta >= -1 ? ago(delta) : inFuture(-delta);
    el.title = date.toISOString().replace(".000Z", "Z") + " (UTC)";
    el.textContent = el.dataset.ago ? relative : localText(date) + " (" + relative + ")";
  }
  function showTimes() { document.querySelectorAll("time[datetime]").forEach(showTime); }
  showTimes();
  setInterval(showTimes, 1000);

  // ------------------------------------------------------------ flash
  // A page that reloads itself (its job changed state) keeps the message of the action
  // that changed it.
  var FLASH_KEY = "pgq-flash:" + location.pathname + location.search;
  var flash = document.getElementById("flash");
  if (!flash) {
    var kept = json(sessionStorage.getItem(FLASH_KEY) || "null", null);
    if (kept && Date.now() - kept.at < 60000) {
      var main = document.querySelector("main");
      var p = document.createElement("p");
      p.className = "flash"; p.id = "flash"; p.setAttribute("role", "status");
      var span = document.createElement("span");
      span.className = "flash-text"; span.textContent = kept.text;
      p.appendChild(span);
      if (kept.href) {
        var link = document.createElement("a");
        link.className = "flash-job"; link.href = kept.href; link.textContent = kept.link;
        p.appendChild(document.createTextNode(" ")); p.appendChild(link);
      }
      if (main) main.insertBefore(p, main.firstChild);
    }
  }
  sessionStorage.removeItem(FLASH_KEY);

  if (!window.EventSource || !body.dataset.live) return;

  // ------------------------------------------------------------ reloads
  // Never more than one reload every 10 s per page for the same reason, whatever the
  // data says: a page that cannot show what the snapshot holds must not reload in a
  // loop. A different reason reloads at once: a job that goes pending -> running ->
  // completed within seconds reloads for each, or its page would keep "running"'s
  // attempts under a "completed" badge (no later snapshot would ask again).
  // sessionStorage outlives a page, so a reason seen by the page before a navigation
  // counts too: reasons say what the page showed, not only what it is told.
  var RELOAD_KEY = "pgq-reload:" + location.pathname + location.search;
  // A page that must reload (the 503 page, once the database answers) asks again when
  // the 10 s are up: snapshots come only on a change, so the next one may never come.
  // Without this, a reload that still met the 503 (the pages' pool reconnects a moment
  // after the live hub does) left the error page up for good.
  var RELOAD_GAP = 10000;  // ms between two reloads of a page for the same reason
  var reloading = false, retryTimer = null;
  function reloadSoon(reason, mustReload) {
    if (reloading || submitting) return;
    reason = reason || "";
    var last = json(sessionStorage.getItem(RELOAD_KEY) || "null", null);
    var wait = last && last.reason === reason ? last.at + RELOAD_GAP - Date.now() : 0;
    if (wait > 0) {
      if (mustReload && !retryTimer) {
        retryTimer = setTimeout(function () {
          retryTimer = null;
          reloadSoon(reason, true);
        }, wait + 50);
      }
      return;
    }
    reloading = true;
    sessionStorage.setItem(RELOAD_KEY, JSON.stringify({ at: Date.now(), reason: reason }));
    var shown = document.getElementById("flash");
    if (shown) {
      var a = shown.querySelector("a.flash-job");
      sessionStorage.setItem(FLASH_KEY, JSON.stringify({
        text: (shown.querySelector(".flash-text") || shown).textContent,
        href: a ? a.getAttribute("href") : null, link: a ? a.textContent : null, at: Date.now()
      }));
    }
    reloadTimer = setTimeout(function () { window.location.reload(); }, 300);
  }

  var watch = json(body.dataset.watch || "[]", []);
  var indicator = document.getElementById("live");
  var stale = document.getElementById("stale");
  var lastGood = new Date(body.dataset.loaded || Date.now());
  var initial = {};
  document.querySelectorAll("[data-job-status]").forEach(function (el) {
    initial[el.dataset.jobStatus] = el.textContent;
  });

  function setLive(state, title) {
    if (!indicator) return;
    indicator.className = "live " + state;
    indicator.title = title;
  }
  function hhmm(date) {
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(date.getHours()) + ":" + pad(date.getMinutes());
  }
  function showStale(text) {
    if (!stale) return;
    stale.textContent = text + ", figures from " + hhmm(lastGood);
    stale.hidden = false;
    body.classList.add("is-stale");
  }
  function hideStale() {
    if (stale) stale.hidden = true;
    body.classList.remove("is-stale");
  }

  // ---------------------------------------------------------- progress
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

  // ----------------------------------------------------------- explain
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

  // --------------------------------------------------------- new jobs
  // The first page of a list shows "new jobs arrived" when a job newer than its first row
  // matches its filters: asked of the API (one row) when the newest live id grows.
  var banner = document.getElementById("new-jobs");
  var newestSeen = null, newestChecking = false;
  function checkNewJobs(data) {
    if (!banner || !window.fetch || !data.newest_live_id) return;
    var mine = parseInt(banner.dataset.newest || "0", 10);
    if (data.newest_live_id <= mine || data.newest_live_id === newestSeen || newestChecking) return;
    newestChecking = true;
    fetch(json(banner.dataset.check, ""), { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) {
        newestSeen = data.newest_live_id;
        if (page && page.jobs && page.jobs.length && page.jobs[0].id > mine) banner.hidden = false;
      })
      .catch(function () {})
      .then(function () { newestChecking = false; });
  }

  // ------------------------------------------------------------ apply
  function apply(data) {
    if (data.error) {
      setLive("off", data.error);
      showStale(data.database === false ? "Database unreachable" : "Live updates paused");
      return;
    }
    if (body.dataset.errorStatus === "503") { reloadSoon("", true); return; }  // the database is back
    lastGood = new Date();
    hideStale();
    setLive("on", "live: updated " + lastGood.toLocaleTimeString());
    var counts = data.counts || {};
    document.querySelectorAll("[data-count]").forEach(function (el) {
      var key = json(el.dataset.count, null);
      if (!key) return;
      var value = key[0] === "*" ? (data.totals || {})[key[1]] : (counts[key[0]] || {})[key[1]];
      var text = String(value || 0);
      if (el.textContent !== text) el.textContent = text;
    });
    var listed = document.querySelector("[data-queues]");
    if (listed) {
      var shown = json(listed.dataset.queues, []);
      var missing = Object.keys(counts).some(function (q) { return shown.indexOf(q) < 0; });
      if (missing) reloadSoon();  // a new queue: its row comes from the server
    }
    var paused = data.paused || [];
    document.querySelectorAll("[data-paused]").forEach(function (el) {
      el.hidden = paused.indexOf(json(el.dataset.paused, null)) < 0;
    });
    document.querySelectorAll("[data-queue-state]").forEach(function (el) {
      var isPaused = paused.indexOf(json(el.dataset.queueState, null)) >= 0;
      var badge = el.querySelector(".status");
      var state = isPaused ? "paused" : "active";
      if (badge && badge.textContent !== state) {
        badge.textContent = state;
        badge.className = "status s-" + state;
        reloadSoon();  // its Pause / Resume button follows
      }
    });
    (data.workers || []).forEach(function (w) {
      document.querySelectorAll("[data-worker-beat]").forEach(function (el) {
        if (json(el.dataset.workerBeat, null) !== w.id) return;
        var time = el.querySelector("time");
        if (time) { time.setAttribute("datetime", w.last_heartbeat); showTime(time); }
      });
      document.querySelectorAll("[data-worker-busy]").forEach(function (el) {
        if (json(el.dataset.workerBusy, null) === w.id) el.textContent = w.busy + "/" + w.concurrency;
      });
    });
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
        // The reason names the state this page showed as well as the new one: the page
        // a form leaves may see the same change just before the page the form loads
        // renders, and must not stop that page's own reload for the 10 s guard.
        reloadSoon("job " + id + " " + initial[id] + " -> " + job.status);
      }
    });
    refreshExplain(data);
    checkNewJobs(data);
  }

  var source = new EventSource(base + "/events" + (watch.length ? "?jobs=" + watch.join(",") : ""));
  // A stream also ends on purpose (every few minutes) and reconnects at once: only a
  // connection still down after 5 s is worth a banner.
  var downTimer = null;
  function connected() { if (downTimer) { clearTimeout(downTimer); downTimer = null; } }
  source.addEventListener("snapshot", function (event) {
    connected();
    var data = json(event.data, null);
    if (data === null) { setLive("off", "a snapshot could not be read"); return; }
    apply(data);
  });
  source.onerror = function () {
    setLive("off", "live updates disconnected; reconnecting");
    if (!downTimer) downTimer = setTimeout(function () { showStale("Dashboard unreachable"); }, 5000);
  };
  source.onopen = function () { connected(); };
  window.addEventListener("pagehide", function () { source.close(); });
})();
