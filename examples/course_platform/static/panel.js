// The job panel: reads pgq's REST API and draws one row per video job. Text only (textContent),
// so nothing from a job can inject HTML.
const API = "/pgq/api";

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function act(path) {
  // The platform's own endpoints (its service layer), not pgq's.
  await fetch(path, { method: "POST" });
  refresh();
}

async function refresh() {
  const response = await fetch(`${API}/jobs?queue=videos&limit=20`);
  if (!response.ok) return;
  const { jobs } = await response.json();
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    cell(row, `#${job.id}`);
    cell(row, `${job.args.video_id} (${job.args.resolution ?? ""})`);
    cell(row, job.status, job.status);
    const progress = document.createElement("progress");
    progress.max = 1;
    progress.value = job.progress ?? (job.status === "completed" ? 1 : 0);
    const td = cell(row, "");
    td.append(progress, ` ${job.progress_message ?? ""}`);
    cell(row, `${job.attempts}/${job.max_attempts}`);
    const actions = row.insertCell();
    const button = document.createElement("button");
    if (["pending", "running"].includes(job.status)) {
      button.textContent = "cancel";
      button.onclick = () => act(`/jobs/${job.id}/cancel`);
      actions.append(button);
    } else if (["failed", "cancelled"].includes(job.status)) {
      button.textContent = "retry";
      button.onclick = () => act(`/jobs/${job.id}/retry`);
      actions.append(button);
    }
  }
}

refresh();
setInterval(refresh, 1000);
