"""The ``pgq`` command.

Every command reads the ``PGQ_*`` environment (``PGQ_DATABASE_URL``,
``PGQ_SCHEMA``, ``PGQ_DATA_DIR``, ...) and accepts ``--database-url`` and
``--schema`` to override it. Errors are one line on stderr and exit code 2.

- :mod:`pgq.cli.main`: the parser and the commands of jobs, workers, schedules, the
  database and the dashboard;
- :mod:`pgq.cli.ops`: the operator's commands (act on jobs, queues, workers, stats);
- :mod:`pgq.cli.args`: what both share (common options, argument types, the app).
"""

from pgq.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
