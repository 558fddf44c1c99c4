"""The worker: claims jobs, runs their handlers and writes their outcomes."""

from pgq.worker.worker import Worker

__all__ = ["Worker"]
