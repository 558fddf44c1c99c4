"""The dashboard's pages, as functions from data to :class:`Html` (escaped by construction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from pgq.job import STATUSES, Job
from pgq.operations import QueueInfo, QueueStats, WorkerInfo
from pgq.redaction import Redactor
from pgq.schedules import Schedule
from pgq.web.data import FINISHED_STATES, LIVE_STATES, STATES, display_state
from pgq.web.markup import Html, duration, esc, h, join, pretty_json, short_json, when

NAV = (
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/queues", "Queues"),
    ("/schedules", "Schedules"),
    ("/workers", "Workers"),
)


@dataclass
class Page:
    """What every page needs besides its own data."""

    base: str
    path: str
    csrf: str
    read_only: bool
    token_mode: bool
    flash: str | None = None
    nav: Sequence[str] = ("/", "/jobs", "/queues", "/schedules", "/workers")

    def url(self, path: str, **params: Any) -> str:
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{self.base}{path}" + (f"?{query}" if query else "")


def layout(
    page: Page,
    title: str,
    content: Html,
    *,
    watch: Sequence[int] = (),
    reload_on_change: bool = False,
    bare: bool = False,
) -> Html:
    """The page around ``content``; ``bare`` (the login page): no navigation, no live updates."""
    links = join(
        h(
            '<a href="{}"{}>{}</a>',
            page.url(path),
            Html(' aria-current="page"') if _current(page.path, path) else "",
            label,
        )
        for path, label in NAV
        if path in page.nav
    )
    logout = (
        h(
            '<form method="post" action="{}" class="inline"><input type="hidden" name="csrf" value="{}">'
            '<button class="link">Log out</button></form>',
            page.url("/logout"),
            page.csrf,
        )
        if page.token_mode
        else ""
    )
    badge = Html('<span class="tag">read-only</span>') if page.read_only else ""
    flash = h('<p class="flash" role="status">{}</p>', page.flash) if page.flash else ""
    return h(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title} · pgq</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" href="{icon}">
<script src="{js}" defer></script>
</head>
<body data-base="{base}" data-watch="{watch}" data-reload-on-change="{reload}" data-live="{live}">
<header class="top">
<a class="brand" href="{home}">pgq</a>
{nav}
</header>
<main>
{flash}{content}
</main>
</body>
</html>
""",
        title=title,
        css=page.url("/static/app.css"),
        icon=page.url("/static/favicon.svg"),
        js=page.url("/static/live.js"),
        base=page.base,
        watch=",".join(str(i) for i in watch),
        reload="1" if reload_on_change else "",
        live="" if bare else "1",
        home=page.url("/"),
        nav=""
        if bare
        else h(
            '<span class="right">{}<span id="live" class="live" title="live updates">●</span>{}</span><nav>{}</nav>',
            badge,
            logout,
            links,
        ),
        flash=flash,
        content=content,
    )


def _current(path: str, link: str) -> bool:
    return path == link if link == "/" else path.startswith(link)


def status_badge(state: str, job_id: int | None = None) -> Html:
    attr = h(' data-job-status="{}"', job_id) if job_id is not None else ""
    return h('<span class="status s-{}"{}>{}</span>', state, attr, state)


def progress_bar(
    job_id: int, progress: float | None, message: str | None, hidden: bool = False, keep: bool = False
) -> Html:
    """A progress bar; live.js shows it while the job runs (and, with ``keep``, after)."""
    value = progress or 0.0
    return h(
        '<div class="progress"{hidden}{keep} data-job-progress="{id}">'
        '<progress max="1" value="{value}">{pct}</progress><span class="pct">{pct}</span> '
        '<span class="msg">{message}</span></div>',
        hidden=Html(" hidden") if hidden else "",
        keep=Html(' data-keep="1"') if keep else "",
        id=job_id,
        value=f"{value:.4f}",
        pct=f"{value:.0%}",
        message=message or "",
    )


def action_form(
    page: Page, url: str, label: str, fields: dict[str, Any], *, confirm: str | None = None, kind: str = ""
) -> Html:
    if page.read_only:
        return Html("")
    hidden = join(h('<input type="hidden" name="{}" value="{}">', k, v) for k, v in fields.items())
    return h(
        '<form method="post" action="{url}" class="inline"{confirm}>'
        '<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">{hidden}'
        '<button class="{kind}">{label}</button></form>',
        url=url,
        confirm=h(' data-confirm="{}"', confirm) if confirm else "",
        csrf=page.csrf,
        next=page.path,
        hidden=hidden,
        kind=kind,
        label=label,
    )


def job_actions(page: Page, job: Job, state: str) -> Html:
    url = page.url("/actions/job")
    buttons = []
    if state in ("failed", "cancelled"):
        buttons.append(action_form(page, url, "Retry", {"id": job.id, "action": "retry"}, kind="primary"))
    if state == "delayed":
        buttons.append(action_form(page, url, "Run now", {"id": job.id, "action": "promote"}))
    if state in LIVE_STATES:
        buttons.append(
            action_form(
                page, url, "Cancel", {"id": job.id, "action": "cancel"}, confirm=f"Cancel job {job.id}?", kind="danger"
            )
        )
    if state in FINISHED_STATES:
        buttons.append(
            action_form(
                page,
                url,
                "Delete",
                {"id": job.id, "action": "remove"},
                confirm=f"Delete job {job.id} for good? Its history is lost.",
                kind="danger",
            )
        )
    return join(buttons)


# ------------------------------------------------------------------- overview


def overview(
    page: Page,
    counts: dict[str, dict[str, int]],
    totals: dict[str, int],
    paused: Sequence[str],
    running: Sequence[Job],
    now: datetime,
    series: dict[str, list[dict[str, Any]]],
    stats: Sequence[QueueStats] = (),
    workers: Sequence[WorkerInfo] = (),
) -> Html:
    cards = join(
        h(
            '<a class="card s-{state}" href="{url}"><span class="n" data-count="*|{state}">{n}</span>'
            '<span class="label">{label}</span></a>',
            state=state,
            label=state,
            url=page.url("/jobs", status="pending" if state == "delayed" else state),
            n=totals[state],
        )
        for state in STATES
    )
    if counts:
        rows = join(
            h(
                '<tr><th scope="row"><a href="{url}">{queue}</a>{paused}</th>{cells}</tr>',
                url=page.url("/jobs", queue=queue),
                queue=queue,
                paused=h(' <span class="tag" data-paused="{}">paused</span>', queue) if queue in paused else "",
                cells=join(
                    h('<td class="num" data-count="{}|{}">{}</td>', queue, state, row[state]) for state in STATES
                ),
            )
            for queue, row in counts.items()
        )
        head = join(
            h('<th scope="col" class="num">{}</th>', f"{state} 24h" if state in FINISHED_STATES else state)
            for state in STATES
        )
        table = h(
            '<div class="scroll"><table class="counts"><thead><tr><th scope="col">queue</th>{}</tr></thead>'
            "<tbody>{}</tbody></table></div>",
            head,
            rows,
        )
    else:
        table = Html('<p class="empty">No jobs yet. Enqueue one and it shows up here at once.</p>')
    running_rows = join(_running_row(page, job) for job in running)
    running_table = h(
        '<section><h2>Running now</h2><div class="scroll"><table class="running"><thead><tr><th>job</th><th>task</th>'
        '<th>queue</th><th>attempt</th><th>progress</th></tr></thead><tbody id="running">{}</tbody></table></div>'
        '<p class="empty" id="running-empty"{}>Nothing is running.</p></section>',
        running_rows,
        Html(" hidden") if running else "",
    )
    charts = join(_queue_charts(queue, rows, now) for queue, rows in sorted(series.items()))
    if not series:
        charts = Html(
            '<p class="empty">No metrics rows yet: a worker\'s sweeper writes one per queue every '
            "<code>PGQ_METRICS_INTERVAL</code> seconds.</p>"
        )
    return layout(
        page,
        "Overview",
        h(
            '<h1>Overview</h1><div class="cards">{cards}</div>'
            '<p class="hint">Live jobs now; completed, failed and cancelled over the last 24 hours.</p>'
            "<section><h2>Queues</h2>{table}</section>{running}{extra}"
            "<section><h2>Last hour</h2>{charts}</section>",
            cards=cards,
            table=table,
            running=running_table,
            extra=join([stats_table(page, stats), workers_section(page, workers, live_only=True)]),
            charts=charts,
        ),
    )


def _running_row(page: Page, job: Job) -> Html:
    return h(
        '<tr data-running="{id}"><td><a href="{url}">#{id}</a></td><td>{task}</td><td>{queue}</td><td>{attempts}</td>'
        "<td>{bar}</td></tr>",
        id=job.id,
        url=page.url(f"/jobs/{job.id}"),
        task=job.task,
        queue=job.queue,
        attempts=job.attempts,
        bar=progress_bar(job.id, job.progress, job.progress_message),
    )


def _queue_charts(queue: str, rows: list[dict[str, Any]], now: datetime) -> Html:
    end = now.replace(second=0, microsecond=0)
    slots = [end - timedelta(minutes=59 - i) for i in range(60)]
    by_minute = {row["minute"]: row for row in rows}
    completed = [float(by_minute[m]["completed"]) if m in by_minute else 0.0 for m in slots]
    failed = [float(by_minute[m]["failed"]) if m in by_minute else 0.0 for m in slots]
    waits = [r["wait_ms"] for r in rows if r["wait_ms"] is not None]
    runs = [r["run_ms"] for r in rows if r["run_ms"] is not None]
    figures = h(
        '<p class="figures">{done} completed, {failed} failed in the last hour{wait}{run}</p>',
        done=f"{sum(completed):.0f}",
        failed=f"{sum(failed):.0f}",
        wait=f"; wait {duration(waits[-1] / 1000)}" if waits else "",
        run=f"; run {duration(runs[-1] / 1000)}" if runs else "",
    )
    return h(
        '<div class="chart-row"><h3>{queue}</h3>{figures}<div class="charts">{a}{b}</div></div>',
        queue=queue,
        figures=figures,
        a=bar_chart(f"{queue}: completed per minute", completed, slots, "ok"),
        b=bar_chart(f"{queue}: failed per minute", failed, slots, "bad"),
    )


def bar_chart(title: str, values: Sequence[float], slots: Sequence[datetime], kind: str) -> Html:
    """A 60-bar chart as inline SVG (drawn here: no chart library, nothing to download)."""
    width, height, top = 300, 64, max(max(values, default=0.0), 1.0)
    step = width / max(len(values), 1)
    bars = join(
        h(
            '<rect x="{x}" y="{y}" width="{w}" height="{bh}" class="bar {kind}"><title>{label}: {v}</title></rect>',
            x=f"{i * step:.1f}",
            y=f"{height - (v / top) * (height - 2):.1f}",
            w=f"{max(step - 1, 1):.1f}",
            bh=f"{(v / top) * (height - 2):.1f}",
            kind=kind,
            label=slot.strftime("%H:%M"),
            v=f"{v:.0f}",
        )
        for i, (v, slot) in enumerate(zip(values, slots, strict=True))
        if v > 0
    )
    return h(
        '<figure class="chart"><figcaption>{title} <span class="max">max {top}</span></figcaption>'
        '<svg viewBox="0 0 {w} {hgt}" preserveAspectRatio="none" role="img" aria-label="{title}">'
        '<line x1="0" y1="{hgt}" x2="{w}" y2="{hgt}" class="axis"></line>{bars}</svg></figure>',
        title=title,
        top=f"{top:.0f}",
        w=width,
        hgt=height,
        bars=bars,
    )


# ----------------------------------------------------------------------- jobs


def jobs_list(
    page: Page,
    jobs: Sequence[Job],
    now: datetime,
    filters: dict[str, Any],
    redact: Redactor,
    next_before: int | None,
    error: str | None = None,
) -> Html:
    status_options = join(
        h('<option value="{}"{}>{}</option>', s, Html(" selected") if filters.get("status") == s else "", s or "any")
        for s in ("", *STATUSES)
    )
    form = h(
        '<form method="get" action="{action}" class="filters">'
        '<label>State <select name="status">{options}</select></label>'
        '<label>Queue <input name="queue" value="{queue}" autocomplete="off"></label>'
        '<label>Task <input name="task" value="{task}" autocomplete="off"></label>'
        '<label>Key <input name="key" value="{key}" autocomplete="off"></label>'
        '<label>Job id <input name="id" value="" inputmode="numeric" placeholder="go to id"></label>'
        '<button class="primary">Filter</button> <a href="{action}">clear</a></form>',
        action=page.url("/jobs"),
        options=status_options,
        queue=filters.get("queue") or "",
        task=filters.get("task") or "",
        key=filters.get("key") or "",
    )
    problem = h('<p class="flash error" role="alert">{}</p>', error) if error else ""
    rows = join(_job_row(page, job, now, redact) for job in jobs)
    if jobs:
        table = h(
            '<div class="scroll"><table class="jobs"><thead><tr><th>id</th><th>state</th><th>queue</th><th>task</th>'
            '<th class="num">attempts</th><th class="opt">run at</th><th class="opt">args</th></tr></thead>'
            "<tbody>{}</tbody></table></div>",
            rows,
        )
    else:
        table = Html('<p class="empty">No jobs match.</p>')
    pager = []
    if filters.get("before_id"):
        pager.append(h('<a href="{}">← newest</a>', page.url("/jobs", **{**filters, "before_id": None})))
    if next_before is not None:
        pager.append(h('<a href="{}">older →</a>', page.url("/jobs", **{**filters, "before_id": next_before})))
    newest = jobs[0].id if jobs and not filters.get("before_id") else ""
    banner = h(
        '<p class="flash" id="new-jobs" data-newest="{}" hidden><a href="{}">New jobs arrived: show them</a></p>',
        newest,
        page.url("/jobs", **{k: v for k, v in filters.items() if k != "before_id"}),
    )
    return layout(
        page,
        "Jobs",
        h('<h1>Jobs</h1>{}{}{}{}<p class="pager">{}</p>', form, problem, banner, table, join(pager, " ")),
        watch=[job.id for job in jobs],
    )


def _job_row(page: Page, job: Job, now: datetime, redact: Redactor) -> Html:
    state = display_state(job, now)
    return h(
        '<tr><td><a href="{url}">#{id}</a></td><td>{badge}{bar}</td><td>{queue}</td><td>{task}</td>'
        '<td class="num" data-job-attempts="{id}">{attempts}/{max}</td><td class="opt">{run_at}</td>'
        '<td class="opt args"><code>{args}</code></td></tr>',
        url=page.url(f"/jobs/{job.id}"),
        id=job.id,
        badge=status_badge(state, job.id),
        bar=progress_bar(job.id, job.progress, job.progress_message, hidden=state != "running"),
        queue=job.queue,
        task=job.task,
        attempts=job.attempts,
        max=job.max_attempts,
        run_at=when(job.run_at),
        args=short_json(redact(job.args)),
    )


def explain_panel(job: Job, text: str | None) -> Html:
    """ "Why isn't it running?": pgq.explain's lines, for a job that waits. live.js refreshes it."""
    if text is None:
        return Html("")
    lines = text.splitlines()
    reasons = [line[2:] for line in lines[1:] if line.startswith("- ")]
    return h(
        '<section class="explain" data-job-explain="{id}"><h2>Why isn\'t it running?</h2>'
        '<p class="explain-head">{head}</p><ul class="explain-reasons">{items}</ul></section>',
        id=job.id,
        head=lines[0] if lines else "",
        items=join(h("<li>{}</li>", reason) for reason in reasons),
    )


def job_detail(page: Page, job: Job, now: datetime, redact: Redactor, explain: str | None = None) -> Html:
    state = display_state(job, now)
    facts = [
        ("queue", h('<a href="{}">{}</a>', page.url("/jobs", queue=job.queue), job.queue)),
        ("task", h('<a href="{}">{}</a>', page.url("/jobs", task=job.task), job.task)),
        ("state", status_badge(state, job.id)),
        ("attempts", h('<span data-job-attempts="{}">{}/{}</span>', job.id, job.attempts, job.max_attempts)),
        ("priority", esc(job.priority)),
        ("key", esc(job.key or "")),
        ("group", esc(job.group_key or "")),
        (
            "waits for" if job.status == "blocked" else "parents",
            join((h('<a href="{}">#{}</a>', page.url(f"/jobs/{p}"), p) for p in job.depends_on or ()), ", "),
        ),
        ("created", when(job.created_at)),
        ("run at", when(job.run_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("timeout", esc(duration(job.timeout))),
        ("worker", esc(job.worker_id or "")),
    ]
    if job.started_at and job.finished_at:
        facts.append(("ran for", esc(duration(job.finished_at - job.started_at))))
    dl = join(h("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in facts if v)
    progress = progress_bar(
        job.id, job.progress, job.progress_message, hidden=job.progress is None and state != "running"
    )
    result = (
        h("<section><h2>Result</h2><pre>{}</pre></section>", pretty_json(redact(job.result)))
        if job.result is not None
        else ""
    )
    return layout(
        page,
        f"Job {job.id}",
        h(
            '<h1>Job #{id} <small>{task}</small></h1><div class="actions">{actions}</div>'
            '<section class="grid"><dl class="facts">{dl}</dl><div>{progress}</div></section>{explain}'
            "<section><h2>Arguments</h2><pre>{args}</pre></section>{result}"
            "<section><h2>Attempts</h2>{timeline}</section>",
            id=job.id,
            task=job.task,
            actions=job_actions(page, job, state),
            dl=dl,
            progress=progress,
            explain=explain_panel(job, explain),
            args=pretty_json(redact(job.args)),
            result=result,
            timeline=timeline(job, state),
        ),
        watch=[job.id],
        reload_on_change=True,
    )


def timeline(job: Job, state: str) -> Html:
    items = []
    for entry in job.errors:
        at = entry.get("at")
        trace = entry.get("traceback")
        items.append(
            h(
                '<li class="attempt bad"><div class="head"><strong>attempt {attempt}</strong> failed {at}: '
                '<span class="etype">{type}</span></div><p class="emsg">{message}</p>{trace}</li>',
                attempt=entry.get("attempt", "?"),
                at=h('<time datetime="{}">{}</time>', at, str(at)[:19].replace("T", " ") + " UTC") if at else "",
                type=entry.get("type", "error"),
                message=entry.get("message", ""),
                trace=h("<details><summary>traceback</summary><pre>{}</pre></details>", trace) if trace else "",
            )
        )
    failed_attempts = {e.get("attempt") for e in job.errors}
    if job.attempts and job.attempts not in failed_attempts:
        outcome = {"running": "running", "completed": "completed", "cancelled": "cancelled"}.get(state, state)
        if state in ("pending", "delayed"):
            outcome = "returned to the queue"
        items.append(
            h(
                '<li class="attempt s-{state}"><div class="head"><strong>attempt {n}</strong> {outcome} {when}'
                "</div></li>",
                state=state,
                n=job.attempts,
                outcome=outcome,
                when=h("since {}", when(job.started_at))
                if state == "running" and job.started_at
                else when(job.finished_at),
            )
        )
    if not items:
        return Html('<p class="empty">Not run yet.</p>')
    return h('<ol class="timeline">{}</ol>', join(items))


# ------------------------------------------------------------------ schedules


def schedules_page(page: Page, schedules: Sequence[Schedule], redact: Redactor) -> Html:
    url = page.url("/actions/schedule")
    rows = []
    for s in schedules:
        toggle = (
            action_form(
                page, url, "Disable", {"name": s.name, "action": "disable"}, confirm=f"Disable schedule {s.name}?"
            )
            if s.enabled
            else action_form(page, url, "Enable", {"name": s.name, "action": "enable"})
        )
        run = action_form(page, url, "Run now", {"name": s.name, "action": "trigger"}, kind="primary")
        last = (
            h('{} <a href="{}">#{}</a>', when(s.last_run_at), page.url(f"/jobs/{s.last_job_id}"), s.last_job_id)
            if s.last_job_id
            else when(s.last_run_at)
        )
        rows.append(
            h(
                "<tr><th scope=row>{name}</th><td><code class=nowrap>{cron}</code> <small>{tz}</small></td>"
                "<td>{task}</td><td>{queue}</td><td><code>{args}</code></td><td>{enabled}</td><td>{next}</td><td>{last}</td>"
                '<td class="actions">{toggle}{run}</td></tr>',
                name=s.name,
                cron=s.cron,
                tz=s.timezone,
                task=s.task,
                queue=s.queue or "(task's)",
                args=short_json(redact(s.args), 60),
                enabled=status_badge("enabled" if s.enabled else "disabled"),
                next=when(s.next_run_at) if s.enabled else "",
                last=last,
                toggle=toggle,
                run=run,
            )
        )
    if rows:
        body = h(
            '<div class="scroll"><table><thead><tr><th>name</th><th>cron</th><th>task</th><th>queue</th><th>args</th>'
            "<th>state</th><th>next run</th><th>last run</th><th></th></tr></thead><tbody>{}</tbody></table></div>",
            join(rows),
        )
    else:
        body = Html(
            '<p class="empty">No schedules. Declare one with <code>@app.periodic(cron=...)</code> or '
            "<code>pgq schedules add</code>.</p>"
        )
    return layout(page, "Schedules", h("<h1>Schedules</h1>{}", body))


# ---------------------------------------------------------------- login, errors


def login_page(page: Page, next_path: str, error: str | None = None) -> Html:
    return layout(
        page,
        "Log in",
        h(
            '<h1>Log in</h1><form method="post" action="{action}" class="login">{error}'
            '<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">'
            '<label>Dashboard token <input type="password" name="token" autocomplete="current-password" required '
            'autofocus></label><button class="primary">Log in</button>'
            "<p class=hint>The token is <code>PGQ_DASHBOARD_TOKEN</code> of the server running the dashboard.</p>"
            "</form>",
            action=page.url("/login"),
            error=h('<p class="flash error" role="alert">{}</p>', error) if error else "",
            csrf=page.csrf,
            next=next_path,
        ),
        bare=True,
    )


def error_page(page: Page, title: str, message: str) -> Html:
    return layout(page, title, h('<h1>{}</h1><p class="flash error" role="alert">{}</p>', title, message))


# ------------------------------------------------------ queues, workers, stats


def ms(value: float | None) -> str:
    return "" if value is None else duration(value / 1000)


def stats_table(page: Page, stats: Sequence[QueueStats]) -> Html:
    if not stats:
        return Html("")
    rows = join(
        h(
            '<tr><th scope="row"><a href="{url}">{queue}</a></th><td class="num">{cpm}</td><td class="num">{fpm}</td>'
            '<td class="num">{wait50} / {wait95}</td>'
            '<td class="num">{run50} / {run95}</td><td class="num">{oldest}</td></tr>',
            url=page.url("/jobs", queue=s.queue),
            queue=s.queue,
            cpm=f"{s.completed_per_minute:.1f}",
            fpm=f"{s.failed_per_minute:.1f}",
            wait50=ms(s.wait_ms_p50) or "-",
            wait95=ms(s.wait_ms_p95) or "-",
            run50=ms(s.run_ms_p50) or "-",
            run95=ms(s.run_ms_p95) or "-",
            oldest=duration(s.oldest_waiting_seconds) or "-",
        )
        for s in stats
    )
    return h(
        '<section><h2>Throughput and latency</h2><div class="scroll"><table class="stats"><thead><tr><th>queue</th>'
        '<th class="num">done/min</th><th class="num">failed/min</th>'
        '<th class="num">wait p50 / p95</th><th class="num">run p50 / p95</th>'
        '<th class="num">oldest waiting</th></tr></thead><tbody>{rows}</tbody></table></div>'
        '<p class="hint">Per minute over the last 5 minutes; times of recent completed jobs (as '
        "<code>pgq stats</code>). Shown when the page loaded.</p></section>",
        rows=rows,
    )


def queues_page(page: Page, queues: Sequence[QueueInfo], failed: dict[str, int]) -> Html:
    url = page.url("/actions/queue")
    rows = []
    for q in queues:
        toggle = (
            action_form(page, url, "Resume", {"name": q.name, "action": "resume"}, kind="primary")
            if q.paused
            else action_form(
                page,
                url,
                "Pause",
                {"name": q.name, "action": "pause"},
                confirm=f"Pause queue {q.name}? Workers stop taking its jobs until it is resumed.",
            )
        )
        retry = (
            action_form(
                page,
                url,
                f"Retry {failed.get(q.name, 0)} failed",
                {"name": q.name, "action": "retry-failed"},
                confirm=f"Retry every failed job of queue {q.name}?",
            )
            if failed.get(q.name)
            else ""
        )
        rows.append(
            h(
                '<tr><th scope="row"><a href="{url}">{name}</a></th><td>{state}</td>'
                '<td class="num" data-count="{name}|pending">{waiting}</td>'
                '<td class="num" data-count="{name}|delayed">{delayed}</td>'
                '<td class="num" data-count="{name}|running">{active}</td>'
                '<td class="num">{failed}</td><td class="num">{workers}</td>'
                '<td class="num">{oldest}</td><td class="actions">{toggle}{retry}</td></tr>',
                url=page.url("/jobs", queue=q.name),
                name=q.name,
                state=status_badge("paused") if q.paused else status_badge("active"),
                waiting=q.waiting,
                delayed=q.delayed,
                active=q.active,
                failed=failed.get(q.name, 0),
                workers=q.workers,
                oldest=duration(q.oldest_waiting_seconds) or "-",
                toggle=toggle,
                retry=retry,
            )
        )
    if rows:
        body = h(
            '<div class="scroll"><table><thead><tr><th>queue</th><th>state</th><th class="num">pending</th>'
            '<th class="num">delayed</th><th class="num">running</th><th class="num">failed (all)</th>'
            '<th class="num">workers</th><th class="num">oldest waiting</th><th></th></tr></thead>'
            "<tbody>{}</tbody></table></div>",
            join(rows),
        )
    else:
        body = Html('<p class="empty">No queues yet: a queue appears with its first job.</p>')
    return layout(page, "Queues", h("<h1>Queues</h1>{}", body))


def workers_section(page: Page, workers: Sequence[WorkerInfo], live_only: bool = False) -> Html:
    shown = [w for w in workers if w.status in ("running", "stopping")] if live_only else list(workers)
    if live_only and not shown:
        return Html(
            '<section><h2>Workers</h2><p class="empty">No live worker. Start one with '
            "<code>pgq worker module:app</code>.</p></section>"
        )
    rows = join(
        h(
            '<tr><th scope="row">{name}</th><td>{status}</td><td>{host}:{pid}</td><td>{queues}</td>'
            '<td class="num">{busy}/{slots}</td><td>{beat}</td><td>{running}</td><td>{started}</td></tr>',
            name=w.name,
            status=status_badge(w.status),
            host=w.host,
            pid=w.pid,
            queues=", ".join(w.queues),
            busy=len(w.running),
            slots=w.concurrency,
            beat=f"{duration(w.seconds_since_heartbeat)} ago",
            running=join((h('<a href="{}">#{}</a>', page.url(f"/jobs/{i}"), i) for i in w.running[:20]), " "),
            started=when(w.started_at),
        )
        for w in shown
    )
    table = h(
        '<div class="scroll"><table><thead><tr><th>worker</th><th>state</th><th>host:pid</th><th>queues</th>'
        '<th class="num">busy</th><th>heartbeat</th><th>running</th><th>started</th></tr></thead>'
        "<tbody>{}</tbody></table></div>",
        rows,
    )
    if live_only:
        return h("<section><h2>Workers</h2>{}</section>", table)
    return table if shown else Html('<p class="empty">No workers have run in the last day.</p>')


def workers_page(page: Page, workers: Sequence[WorkerInfo]) -> Html:
    return layout(page, "Workers", h("<h1>Workers</h1>{}", workers_section(page, workers)))
