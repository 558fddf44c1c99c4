// The queue demo: submits each kind of job and polls the list, drawing the states each job was
// seen in ("pending → running → completed"). Text only (textContent): nothing from a job can
// inject HTML.
const trails = new Map(); // job id -> states seen, in order

function say(text, isError = false) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function detailOf(data) {
  const detail = data && data.detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return detail ? String(detail) : "";
}

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) say(`${method} ${path}: ${response.status} ${detailOf(data) || response.statusText}`, true);
  return response.ok ? data : null;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function button(label, action, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.action = action;
  b.onclick = onclick;
  return b;
}

async function act(job, action) {
  const data = await call("POST", `/api/queue/jobs/${job.id}/${action}`);
  if (data) say(`job ${job.id}: ${data.outcome}`);
  refresh();
}

function filters() {
  const params = new URLSearchParams({ limit: "50" });
  for (const name of ["queue", "state", "task"]) {
    const value = document.getElementById(`filter-${name}`).value;
    if (value) params.set(name, value);
  }
  return params;
}

async function refreshJobs() {
  const response = await fetch(`/api/queue/jobs?${filters()}`);
  if (!response.ok) return;
  const { jobs } = await response.json();
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const trail = trails.get(job.id) ?? [];
    if (trail[trail.length - 1] !== job.state) trail.push(job.state);
    trails.set(job.id, trail);
    const row = body.insertRow();
    row.dataset.jobId = job.id;
    row.dataset.state = job.state;
    cell(row, `#${job.id}`);
    cell(row, job.queue);
    cell(row, job.task);
    cell(row, job.state, job.state).dataset.cell = "state";
    cell(row, trail.join(" → "), "trail").dataset.cell = "trail";
    const progress = document.createElement("progress");
    progress.max = 1;
    progress.value = job.progress ?? (job.status === "completed" ? 1 : 0);
    cell(row, "").append(progress);
    cell(row, `${job.attempts}/${job.max_attempts}`);
    const outcome = job.error ?? (job.result === null ? "" : JSON.stringify(job.result));
    cell(row, outcome, "outcome");
    const actions = row.insertCell();
    if (["pending", "blocked", "running"].includes(job.status)) actions.append(button("Cancel", "cancel", () => act(job, "cancel")));
    if (["failed", "cancelled"].includes(job.status)) actions.append(button("Retry", "retry", () => act(job, "retry")));
  }
}

async function refreshStats() {
  const response = await fetch("/api/queue/stats");
  if (!response.ok) return;
  const { queues } = await response.json();
  const body = document.querySelector("#stats tbody");
  body.replaceChildren();
  for (const [name, q] of Object.entries(queues)) {
    const row = body.insertRow();
    row.dataset.queue = name;
    cell(row, name);
    for (const key of ["waiting", "delayed", "active", "blocked", "completed", "failed", "cancelled"]) {
      cell(row, String(q[key])).dataset.count = key;
    }
  }
}

async function refreshWebhooks() {
  const response = await fetch("/webhook-receiver?limit=20");
  if (!response.ok) return;
  const { received } = await response.json();
  const list = document.getElementById("webhooks");
  list.replaceChildren();
  for (const hook of received) {
    const item = document.createElement("li");
    item.textContent = `${new Date(hook.received_at).toLocaleTimeString()}: ${JSON.stringify(hook.body)}`;
    list.append(item);
  }
}

function refresh() {
  return Promise.all([refreshJobs(), refreshStats(), refreshWebhooks()]);
}

for (const submit of document.querySelectorAll("button[data-kind]")) {
  submit.onclick = async () => {
    const data = await call("POST", "/api/queue/submit", { kind: submit.dataset.kind });
    if (data) say(`${data.kind}: job${data.job_ids.length > 1 ? "s" : ""} ${data.job_ids.join(", ")}`);
    refresh();
  };
}

document.getElementById("cleanup").onclick = async () => {
  const data = await call("POST", "/api/queue/cleanup");
  if (data) say(`cleanup: ${data.deleted.jobs} finished job(s) past retention deleted`);
  refresh();
};

for (const name of ["queue", "state", "task"]) document.getElementById(`filter-${name}`).onchange = refresh;

refresh();
setInterval(refresh, 1000);
