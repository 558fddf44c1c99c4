"""The LISTEN/NOTIFY channels of one pgq installation (one schema), named in one place.

The SQL functions of the migrations send on the same names (``{channel}`` in
their text is :func:`jobs`), and so do the named queries, which take the
channel as a parameter.
"""

from __future__ import annotations


def jobs(schema: str) -> str:
    """Jobs became due (an enqueue, a retry, a rescue, a freed slot): workers claim."""
    return f"{schema}_jobs"


def cancel(schema: str) -> str:
    """A running job was asked to stop: its worker cancels it."""
    return f"{schema}_cancel"


def queues(schema: str) -> str:
    """A queue was paused, resumed or had its limits changed: workers read them again."""
    return f"{schema}_queues"


def done(schema: str) -> str:
    """A job ended: the sessions in ``app.wait`` look (migration 0015)."""
    return f"{schema}_done"


def probe(schema: str) -> str:
    """A listener's own check that its session still hears notifications."""
    return f"{schema}_probe"
