"""``python -m pgq.worker.child FD``: run one suspect job and answer on FD.

An entry point of its own, so that ``pgq.worker.isolation`` (which the worker
imports) is not also run as ``__main__``. See pgq.worker.isolation.
"""

import sys

from pgq.worker.isolation import child_main

if __name__ == "__main__":
    child_main(int(sys.argv[1]))
