"""pgq's settings: environment variables prefixed ``PGQ_``, overridable in code.

Every field documents its default; ``docs/configuration.md`` lists them all.
Arguments given to :class:`pgq.App` override the environment, and CLI flags
override both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pgq.db import channels
from pgq.errors import ConfigurationError

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


class Settings(BaseSettings):
    """Configuration of one pgq installation and its workers."""

    model_config = SettingsConfigDict(env_prefix="PGQ_", extra="forbid", validate_default=True)

    database_url: str | None = Field(
        default=None,
        description=(
            "PostgreSQL URL (postgresql://user:password@host:port/dbname). "
            "Default: none, which starts an embedded PostgreSQL in `data_dir`."
        ),
    )
    schema_name: str = Field(
        default="pgq",
        validation_alias=AliasChoices("PGQ_SCHEMA", "schema_name", "schema"),
        description=(
            "Schema holding pgq's tables. Default `pgq`. Several schemas make several "
            "independent installations in one database. Lower-case letters, digits and "
            "underscores, at most 40 characters."
        ),
    )
    data_dir: Path = Field(
        default=Path(".pgq"),
        description="Folder of the embedded PostgreSQL when no database URL is set. Default `./.pgq`.",
    )
    max_payload_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest JSON size of a job's args (and result), in bytes. Default 1 MiB.",
    )
    pool_min_size: int = Field(default=1, ge=0, description="Connections kept open. Default 1.")
    pool_max_size: int = Field(default=10, ge=1, description="Most connections open. Default 10.")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a connection. Default 5.")
    statement_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Seconds any pgq statement may run before PostgreSQL cancels it (0: none). Default 30.",
    )
    auto_migrate: bool | None = Field(
        default=None,
        description=(
            "Migrate the schema on first connection. Default: on for the embedded "
            "PostgreSQL, off for a configured database (run `pgq migrate` there)."
        ),
    )

    # Worker settings (read by `pgq worker`).
    queues: Annotated[list[str], NoDecode] = Field(
        default=["default"],
        description="Queues a worker serves, comma-separated. Default `default`.",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Jobs one worker process runs at once. Default: 100 when every task the worker "
            "knows is async (a slot costs next to nothing), 10 when any is a plain function "
            "(each running one takes a thread, and often a database connection)."
        ),
    )
    poll_interval: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between polls when no notification arrives. Default 2.",
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="Seconds between a worker's heartbeats. Default 5."
    )
    heartbeat_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds without heartbeat before a worker is dead. Default 30.",
    )
    shutdown_timeout: float = Field(
        default=30.0, ge=0, description="Seconds running jobs get to finish on SIGTERM. Default 30."
    )
    event_loop: str = Field(
        default="auto",
        description=(
            "The event loop `pgq worker` (and `app.run_worker`) runs on: `uvloop`, `asyncio`, or "
            "`auto` for uvloop when it is installed (`pip install 'pgq-jobs[fast]'`), else asyncio. "
            "Default `auto`."
        ),
    )
    sweep_interval: float = Field(
        default=5.0, gt=0, description="Seconds between sweeps of the elected sweeper. Default 5."
    )
    metrics_interval: float = Field(default=10.0, gt=0, description="Seconds between rows of `metrics`. Default 10.")
    vacuum_threshold: int = Field(
        default=10_000,
        ge=0,
        description=(
            "The sweeper vacuums `jobs` when it holds this many dead rows (every claim and finish leaves one, "
            "and the claim steps over them until vacuum; autovacuum looks only once a minute). 0 leaves it "
            "to autovacuum. Default 10000."
        ),
    )
    retention: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Seconds finished jobs stay in `job_history`. Default 7 days.",
    )
    retention_completed: float | None = Field(
        default=None, gt=0, description="Seconds completed jobs are kept. Default: `retention`."
    )
    retention_failed: float | None = Field(
        default=None, gt=0, description="Seconds failed jobs are kept (the dead-letter set). Default: `retention`."
    )
    retention_cancelled: float | None = Field(
        default=None, gt=0, description="Seconds cancelled jobs are kept. Default: `retention`."
    )
    history_partition: Literal["hourly", "daily", "weekly"] = Field(
        default="daily",
        description=(
            "How much finished time one partition of `job_history` holds: hourly, daily or weekly (UTC). "
            "Retention drops a partition whole once all of it has expired. Default daily."
        ),
    )
    # Service-level objectives (see docs/operations.md#service-level-objectives): thresholds for
    # every queue that sets none of its own; unset: not checked.
    slo_wait_p95: float | None = Field(
        default=None, gt=0, description="Seconds of queue latency (due to start) p95 above which a queue is in breach."
    )
    slo_run_p95: float | None = Field(
        default=None, gt=0, description="Seconds of processing time p95 above which a queue is in breach."
    )
    slo_utilization: float | None = Field(
        default=None, ge=0, le=100, description="Worker utilisation in % below which a queue is in breach."
    )
    slo_error_rate: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Error rate in % (failed over finished) above which a queue is in breach.",
    )
    slo_completion_rate: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Completion rate in % (completed over finished) below which a queue is in breach.",
    )
    metrics_retention: float = Field(
        default=30 * 24 * 3600.0, gt=0, description="Seconds rows of `metrics` are kept. Default 30 days."
    )
    timeout_grace: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Seconds past its timeout before the sweeper takes a job from a live worker that did not "
            "end it. Default 10."
        ),
    )
    listen_url: str | None = Field(
        default=None,
        description=(
            "Direct URL for LISTEN and the sweeper's lock when `database_url` goes "
            "through a transaction pooler. Default: `database_url`."
        ),
    )
    pooler: str = Field(
        default="none",
        description=(
            "`transaction` when `database_url` goes through PgBouncer (or another pooler) in "
            "transaction mode: no session settings at connect, no server-side prepared statements; "
            "LISTEN and the sweeper then use `listen_url`, and without one they are off (polling "
            "only, no rescue by this worker), which pgq logs loudly. Default `none`."
        ),
    )
    read_url: str | None = Field(
        default=None,
        description=(
            "URL of a read replica: the dashboard's pages, the REST API's GETs and `pgq stats` read there "
            "(`app.reader`); actions and enqueues stay on the primary. Default: none (all on `database_url`)."
        ),
    )
    log_format: str = Field(default="text", description="`text` or `json`. Default `text`.")

    # Dashboard settings (read by `pgq dashboard` and `pgq.web.create_app`).
    dashboard_token: str | None = Field(
        default=None,
        description=(
            "Token guarding `pgq dashboard`: sent as `Authorization: Bearer TOKEN` or entered once in its "
            "login form. Required to listen on an address other than 127.0.0.1 (unless `--read-only "
            "--insecure-no-auth`). Default: none."
        ),
    )
    otel: bool = Field(
        default=True,
        description=(
            "OpenTelemetry spans (`pgq.enqueue`, `pgq.run`) and metrics when `opentelemetry-api` is installed "
            "(`pgq-jobs[otel]`); false turns them off. Default true."
        ),
    )
    encryption_keys: str | None = Field(
        default=None,
        description=(
            "Keys of `@app.task(encrypt=True)`: comma-separated base64 encodings of 32-byte keys. The first "
            "encrypts, all of them decrypt (put a new key first; `pgq keys rotate` re-encrypts live jobs). "
            "Default: none."
        ),
    )
    redact_keys: Annotated[list[str], NoDecode] = Field(
        default=["password", "token", "secret", "api_key", "authorization"],
        description=(
            "Keys of job args (at any depth, any case) the dashboard and its API show as `[redacted]`, "
            "comma-separated. Default `password,token,secret,api_key,authorization`."
        ),
    )

    @field_validator("schema_name")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        if not SCHEMA_NAME.match(value):
            raise ValueError(
                "must be lower-case letters, digits and underscores, starting with a letter "
                f"or underscore, at most 40 characters; got {value!r}"
            )
        return value

    @field_validator("queues", "redact_keys", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("pooler")
    @classmethod
    def _known_pooler(cls, value: str) -> str:
        if value not in ("none", "transaction"):
            raise ValueError(f"must be 'none' or 'transaction' (PgBouncer's pool_mode), got {value!r}")
        return value

    @field_validator("event_loop")
    @classmethod
    def _known_event_loop(cls, value: str) -> str:
        if value not in ("auto", "asyncio", "uvloop"):
            raise ValueError(f"must be 'auto', 'asyncio' or 'uvloop', got {value!r}")
        return value

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in ("text", "json"):
            raise ValueError(f"must be 'text' or 'json', got {value!r}")
        return value

    @property
    def notify_channel(self) -> str:
        """The LISTEN/NOTIFY channel of this installation."""
        return channels.jobs(self.schema_name)

    @property
    def done_channel(self) -> str:
        """The channel on which a job's end wakes the sessions in ``app.wait`` (migration 0015)."""
        return channels.done(self.schema_name)

    @property
    def claim_settle(self) -> float:
        """Seconds after which a claim a worker sent has ended in the database, committed
        or not, even if its answer never came back: the statement timeout, a connection's
        timeout, and slack. Until then its jobs may still appear under the worker's id."""
        return self.statement_timeout + self.connect_timeout + 10.0


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with non-None ``overrides`` on top.

    Raises :class:`ConfigurationError` naming each bad value instead of
    pydantic's longer report.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    if "schema" in given:
        given["schema_name"] = given.pop("schema")
    unknown = set(given) - set(Settings.model_fields)
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(Settings.model_fields))}"
        )
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            env = "PGQ_" + (where.upper() if where != "schema_name" else "SCHEMA")
            problems.append(f"{where} ({env}): {error['msg']}")
        raise ConfigurationError("invalid pgq settings: " + "; ".join(problems)) from None


def reference_markdown() -> str:
    """The configuration reference (``docs/configuration.md``), generated from :class:`Settings`."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from pgq.settings.Settings by `python -m pgq.settings`; a test keeps it in sync. -->",
        "",
        "pgq reads environment variables prefixed `PGQ_`. Keyword arguments of `pgq.App(...)` override",
        "them (`pgq.App(concurrency=20)`), and CLI flags override both.",
        "",
        "| variable | App argument | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        env = "PGQ_SCHEMA" if name == "schema_name" else f"PGQ_{name.upper()}"
        argument = "schema" if name == "schema_name" else name
        default = field.default
        if isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, Path):
            shown = str(default)
        else:
            shown = "unset" if default is None else str(default)
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{env}` | `{argument}` | `{shown}` | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(reference_markdown(), end="")
