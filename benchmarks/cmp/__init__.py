"""The rows of ``benchmarks/compare.py``: one module per family of contenders.

- ``common``: results, fresh databases, CPU meters, waiting for a drain to end.
- ``tight_loop``: our own asyncio + psycopg worker with pgq's job life and no pgq code,
  plus the plain-SQL and enqueue ceilings (binary COPY, single-row insert).
- ``pgq_rows``: pgq through its public API and the ``pgq worker`` command (``pgq_tasks``: its app).
- ``pg_peers``: PgQueuer and Procrastinate on the same PostgreSQL.
- ``redis_peers``: Celery, RQ and BullMQ on a durable Redis of their own.
- ``targets``: issue 14's targets as ratios, met or not.
"""
