"""The rule of a queue name, and its one message, for every place that takes one.

The same rule is the constraint ``jobs_queue_name_rule`` (migration 0007; the
domain ``queue_name``'s since 0010), which holds for every path that writes a
job (pgq's enqueue, COPY, ``pgq.enqueue()`` in SQL, a hand-written insert);
tests/test_enqueue_rules.py runs the same names through both. Each caller raises
its own kind of error (a job's :class:`InvalidJob`, a setting's
:class:`ConfigurationError`, a CLI flag's usage error) with :func:`problem`'s text.
"""

from __future__ import annotations

import re
from typing import Any

from pgq.errors import ConfigurationError, PgqError

#: ASCII letters, digits, ``_ . : -``, 1 to 128 of them. The letters are listed, not
#: ranged by a class: the database's rule must not follow its collation.
QUEUE_NAME_CHARS = r"[A-Za-z0-9_.:\-]{1,128}"
QUEUE_NAME = re.compile(rf"\A{QUEUE_NAME_CHARS}\Z")
QUEUE_RULE = "1-128 ASCII letters, digits, '_', '.', ':' or '-'"


def problem(name: Any) -> str | None:
    """What is wrong with ``name`` as a queue name, or None."""
    if isinstance(name, str) and QUEUE_NAME.match(name):
        return None
    return f"queue must be {QUEUE_RULE}, got {name!r}"


def check_queue_name(name: Any, error: type[PgqError] = ConfigurationError) -> str:
    """``name``, or ``error`` saying what is wrong with it."""
    wrong = problem(name)
    if wrong is not None:
        raise error(wrong)
    return str(name)
