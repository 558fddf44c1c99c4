"""``pgq bench``: how fast is pgq on this database?

Runs in its own schema (``pgq_bench``, dropped afterwards), never touching the
user's jobs. Each scenario prints a line as it finishes; the table at the end
holds every figure, and ``--json`` writes them with the server's settings and
the machine's description.
"""

from pgq.bench.runner import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
