"""Args are checked at enqueue against the handler's annotations, as the handler will receive
them from JSON (docs/enqueueing.md#types): a wrong one is InvalidJob naming it, nothing is
written, and ``@app.task(validate=False)`` turns the check off."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

import pgq
from pgq.testing import drain_async


def _count(conn: Any) -> int:
    return int(conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"])


def test_a_value_of_the_wrong_type_is_refused_by_name(app: pgq.App, conn: Any) -> None:
    @app.task
    def send_welcome(user_id: int, email: str, tags: list[str] | None = None) -> None: ...

    with pytest.raises(pgq.InvalidJob, match=r"user_id: input should be a valid integer.*got 'x'"):
        send_welcome.enqueue(user_id="x", email="a@example.com")
    with pytest.raises(pgq.InvalidJob, match=r"user_id: .*integer.*got '5'"):  # strict: no conversion
        send_welcome.options(queue="mail").enqueue(user_id="5", email="a@example.com")
    with pytest.raises(pgq.InvalidJob, match=r"tags\.1: input should be a valid string"):
        app.enqueue("send_welcome", {"user_id": 1, "email": "a", "tags": ["x", 2]})
    with pytest.raises(pgq.InvalidJob, match="validate=False"):
        app.enqueue(send_welcome, {"user_id": True, "email": "a"})  # a bool is not an int
    assert _count(conn) == 0
    job_id = send_welcome.enqueue(user_id=7, email="a@example.com", tags=["new"])
    assert app.get_job(job_id).args == {"user_id": 7, "email": "a@example.com", "tags": ["new"]}


async def test_async_enqueue_and_enqueue_many_are_checked(app: pgq.App, conn: Any) -> None:
    @app.task
    async def charge(amount: float, currency: str) -> None: ...

    with pytest.raises(pgq.InvalidJob, match=r"currency: input should be a valid string"):
        await charge.enqueue_async(amount=5, currency=978)
    specs = [charge.spec(amount=1.5, currency="EUR"), charge.spec(amount="lots", currency="EUR")]
    with pytest.raises(pgq.InvalidJob, match=r"amount: input should be a valid number"):
        app.enqueue_many(specs)
    assert _count(conn) == 0  # one bad spec rejects the batch
    assert len(app.enqueue_many([charge.spec(amount=2, currency="EUR")])) == 1  # an int is a float


def test_values_json_gives_as_strings_are_checked_as_their_strings(app: pgq.App) -> None:
    @app.task
    def remind(at: datetime, ref: uuid.UUID) -> None: ...

    remind.enqueue(at="2026-12-06T10:00:00+00:00", ref=uuid.uuid4())  # a UUID is stored as its string
    with pytest.raises(pgq.InvalidJob, match=r"at: input should be a valid datetime.*got 'tomorrow'"):
        remind.enqueue(at="tomorrow", ref=str(uuid.uuid4()))


class Plain:
    """A class pydantic cannot check."""


def test_what_cannot_be_checked_is_not(app: pgq.App) -> None:
    @app.task
    def loose(a, b: Any, c: Plain, d: NotDefinedAnywhere = None) -> None: ...  # type: ignore[no-untyped-def,name-defined]  # noqa: F821

    @app.task
    def typed(a: int, c: Plain) -> None: ...

    @app.task(validate=False)
    def unchecked(n: int) -> None: ...

    @app.task(batch_size=10)
    def batched(jobs: list[pgq.Job]) -> list[None]:
        return [None for _ in jobs]

    loose.enqueue(a="x", b=[1], c={"any": "thing"}, d=3)  # an unresolvable annotation: nothing checked
    typed.enqueue(a=1, c={"any": "thing"})
    with pytest.raises(pgq.InvalidJob, match=r"a: input should be a valid integer"):
        typed.enqueue(a="1", c={})
    unchecked.enqueue(n="not a number")
    batched.enqueue(n="anything")


def test_a_schedule_s_args_are_checked_when_it_is_declared(app: pgq.App) -> None:
    @app.task
    def report(day: int) -> None: ...

    with pytest.raises(pgq.InvalidJob, match=r"day: input should be a valid integer"):
        app.periodic(cron="0 3 * * *", args={"day": "monday"})(report)
    with pytest.raises(pgq.InvalidJob, match=r"day: input should be a valid integer"):
        app.add_schedule("nightly", "0 3 * * *", "report", {"day": "monday"})


class Order(pydantic.BaseModel):
    id: int
    amount: float
    placed: datetime


@dataclasses.dataclass
class Address:
    city: str
    zip: str


async def test_models_and_dataclasses_are_stored_as_json_and_rebuilt_for_the_handler(app: pgq.App) -> None:
    received: list[Any] = []

    @app.task
    async def charge(order: Order, ship_to: Address | None = None, lines: list[Order] | None = None) -> None:
        received.append((order, ship_to, lines))

    placed = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    order = Order(id=7, amount=12.5, placed=placed)
    job_id = charge.enqueue(order=order, ship_to=Address("Lyon", "69001"), lines=[order])
    stored = app.get_job(job_id).args
    assert stored == {
        "order": {"id": 7, "amount": 12.5, "placed": "2026-12-06T10:00:00Z"},
        "ship_to": {"city": "Lyon", "zip": "69001"},
        "lines": [{"id": 7, "amount": 12.5, "placed": "2026-12-06T10:00:00Z"}],
    }
    # A dict of the fields is taken too, and checked as the model would check it.
    charge.enqueue(order={"id": 8, "amount": 1, "placed": "2026-12-06T11:00:00+00:00"})
    with pytest.raises(pgq.InvalidJob, match=r"order\.amount: input should be a valid number"):
        charge.enqueue(order={"id": 9, "amount": "lots", "placed": "2026-12-06T11:00:00+00:00"})
    outcomes = await drain_async(app)
    assert [outcome.status for outcome in outcomes] == ["completed", "completed"]
    first, second = received
    assert first == (order, Address("Lyon", "69001"), [order])
    assert second[0] == Order(id=8, amount=1.0, placed=datetime(2026, 12, 6, 11, 0, tzinfo=UTC))
    assert second[1:] == (None, None)


async def test_a_stored_value_that_does_not_fit_its_model_fails_the_job_for_good(app: pgq.App, conn: Any) -> None:
    @app.task
    def ship(to: Address) -> None: ...

    conn.execute('select pgq.enqueue(\'ship\', \'{"to": {"city": "Lyon"}}\'::jsonb)')  # SQL is not checked
    [outcome] = await drain_async(app)
    assert outcome.status == "failed"
    row = conn.execute("select errors from pgq.job_history").fetchone()
    assert row["errors"][0]["type"] == "InvalidArgs" and "to.zip: field required" in row["errors"][0]["message"]
