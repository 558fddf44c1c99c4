"""What the ``pgq`` commands share: the common options, the argument types of their flags,
and the app they act on. Each argument type raises argparse's error with a message that
says what was wrong."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from pgq import queue_names
from pgq.app import App

T = TypeVar("T")


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", metavar="URL", help="overrides PGQ_DATABASE_URL")
    common.add_argument("--schema", help="overrides PGQ_SCHEMA (default pgq)")
    return common


def _number(text: str, convert: Callable[[str], T], expected: str) -> T:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {value}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number of seconds")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def queue_list(text: str) -> list[str]:
    queues = [part.strip() for part in text.split(",") if part.strip()]
    if not queues:
        raise argparse.ArgumentTypeError("expected queue names separated by commas, e.g. emails,default")
    for queue in queues:
        wrong = queue_names.problem(queue)
        if wrong is not None:
            raise argparse.ArgumentTypeError(wrong)
    return queues


def open_app(options: argparse.Namespace) -> App:
    return App(database_url=options.database_url, schema=options.schema)
