// The job panel: reads pgq's REST API and draws one row per video job; its buttons call the
// platform's own endpoints (its service layer). Text only (textContent), so nothing from a job can
// inject HTML. Rows are kept by job id and updated in place, so a priority or time being typed
// survives the refresh every second.
const API = "/pgq/api";
const WAITING = ["pending", "blocked"]; // what PATCH /jobs/{id} can change
const rows = new Map(); // job id -> { row, cells, status }

function say(text, isError = false) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function detailOf(data) {
  // {"detail": "..."} from the platform's routes; FastAPI's own 422 gives a list.
  const detail = data && data.detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return detail ? String(detail) : "";
}

async function act(method, path, body, done) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    say(`${method} ${path}: ${error}`, true);
    return false;
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok) say(done(data));
  else say(`${method} ${path}: ${response.status} ${detailOf(data) || response.statusText}`, true);
  await refresh();
  return response.ok;
}

function button(label, action, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.action = action;
  b.onclick = onclick;
  return b;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function localInputValue(iso) {
  // An <input type="datetime-local"> value, in the browser's time zone.
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function makeRow(job) {
  const row = document.createElement("tr");
  row.dataset.jobId = job.id;
  const cells = {};
  for (const name of ["id", "video", "status", "progress", "attempts", "priority", "runAt", "actions"]) {
    cells[name] = row.insertCell();
    cells[name].dataset.cell = name;
  }
  cells.id.textContent = `#${job.id}`;
  const progress = document.createElement("progress");
  progress.max = 1;
  cells.progressBar = progress;
  cells.progressText = document.createTextNode("");
  cells.progress.append(progress, cells.progressText);
  return { row, cells, status: null };
}

function buildControls(entry, job) {
  // Rebuilt only when the job's status changes: inputs keep what is being typed meanwhile.
  const { cells } = entry;
  cells.priority.replaceChildren();
  cells.runAt.replaceChildren();
  cells.actions.replaceChildren();
  entry.priorityInput = null;
  entry.runAtInput = null;
  if (WAITING.includes(job.status)) {
    const priority = document.createElement("input");
    priority.type = "number";
    priority.step = "1";
    priority.name = "priority";
    priority.oninput = () => (priority.dataset.dirty = "1");
    cells.priority.append(
      priority,
      button("Set", "set-priority", async () => {
        const value = priority.value === "" ? null : Number(priority.value);
        if (await act("PATCH", `/jobs/${job.id}`, { priority: value }, (d) => `job ${job.id}: priority ${d.priority}`))
          delete priority.dataset.dirty;
      }),
    );
    const runAt = document.createElement("input");
    runAt.type = "datetime-local";
    runAt.name = "run_at";
    runAt.oninput = () => (runAt.dataset.dirty = "1");
    cells.runAt.append(
      runAt,
      button("Reschedule", "reschedule", async () => {
        const when = new Date(runAt.value); // the browser's local time
        const value = Number.isNaN(when.getTime()) ? runAt.value : when.toISOString();
        const done = (d) => `job ${job.id}: runs at ${new Date(d.run_at).toLocaleString()}`;
        if (await act("PATCH", `/jobs/${job.id}`, { run_at: value }, done)) delete runAt.dataset.dirty;
      }),
    );
    entry.priorityInput = priority;
    entry.runAtInput = runAt;
  }
  if (["pending", "running", "blocked"].includes(job.status)) {
    cells.actions.append(
      button("Cancel", "cancel", () => act("POST", `/jobs/${job.id}/cancel`, undefined, (d) => `job ${job.id}: ${d.outcome}`)),
    );
  }
  if (["failed", "cancelled"].includes(job.status)) {
    cells.actions.append(
      button("Retry", "retry", () => act("POST", `/jobs/${job.id}/retry`, undefined, (d) => `job ${job.id}: ${d.outcome}`)),
    );
  }
  cells.actions.append(
    button("Remove", "remove", () => act("DELETE", `/jobs/${job.id}`, undefined, () => `job ${job.id}: removed`)),
  );
}

function update(entry, job) {
  const { cells } = entry;
  cells.video.textContent = `${job.args.video_id} (${job.args.resolution ?? ""})`;
  cells.status.textContent = job.status;
  cells.status.className = job.status;
  cells.progressBar.value = job.progress ?? (job.status === "completed" ? 1 : 0);
  cells.progressText.textContent = ` ${job.progress_message ?? ""}`;
  cells.attempts.textContent = `${job.attempts}/${job.max_attempts}`;
  if (entry.status !== job.status) {
    buildControls(entry, job);
    entry.status = job.status;
  }
  if (entry.priorityInput) {
    if (!entry.priorityInput.dataset.dirty) entry.priorityInput.value = job.priority;
  } else {
    cells.priority.textContent = job.priority;
  }
  if (entry.runAtInput) {
    if (!entry.runAtInput.dataset.dirty) entry.runAtInput.value = localInputValue(job.run_at);
  } else {
    cells.runAt.textContent = new Date(job.run_at).toLocaleString();
  }
}

async function refreshCounts() {
  const response = await fetch("/api/jobs/stats");
  if (!response.ok) return;
  const counts = await response.json();
  const box = document.getElementById("counts");
  box.replaceChildren();
  for (const name of ["waiting", "active", "delayed", "paused", "completed", "failed", "total"]) {
    const span = document.createElement("span");
    span.dataset.count = name;
    span.textContent = `${name} ${counts[name]}`;
    box.append(span);
  }
}

async function refresh() {
  refreshCounts();
  const response = await fetch(`${API}/jobs?queue=videos&limit=20`);
  if (!response.ok) return;
  const { jobs } = await response.json();
  const body = document.querySelector("#jobs tbody");
  const seen = new Set();
  jobs.forEach((job, index) => {
    seen.add(job.id);
    let entry = rows.get(job.id);
    if (!entry) {
      entry = makeRow(job);
      rows.set(job.id, entry);
    }
    update(entry, job);
    // Put it in place without moving rows that already are (a moved row would lose the focus).
    if (body.children[index] !== entry.row) body.insertBefore(entry.row, body.children[index] ?? null);
  });
  for (const [id, entry] of rows) {
    if (!seen.has(id)) {
      entry.row.remove();
      rows.delete(id);
    }
  }
}

document.getElementById("create-test-job").onclick = () =>
  act("POST", "/jobs/test", undefined, (d) => `job ${d.job_id} created`);

refresh();
setInterval(refresh, 1000);
