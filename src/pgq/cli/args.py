"""What the ``pgq`` commands share: the common options, the subcommands of one action each
and those that list, the argument types of their flags, the app they act on and how a list
prints. Each argument type raises argparse's error with a message that says what was wrong."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from pgq import queue_names
from pgq.app import App
from pgq.output import to_json

T = TypeVar("T")


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", metavar="URL", help="overrides PGQ_DATABASE_URL")
    common.add_argument("--schema", help="overrides PGQ_SCHEMA (default pgq)")
    return common


def add_group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, **parser_args: Any
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``pgq NAME ACTION``: a command whose actions are its subcommands (the one given is
    ``options.NAME_command``); returns them, to add the actions to."""
    group = commands.add_parser(name, help=help_text, **parser_args)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def add_actions(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    actions: Iterable[tuple[str, str]],
    handler: Callable[[argparse.Namespace], int],
    *,
    target: str,
    target_help: str,
) -> None:
    """A subcommand for each ``(action, help)``, each taking one positional ``target``
    (``pgq queues pause QUEUE``); ``handler`` finds which one ran in ``options.action``."""
    for action, help_text in actions:
        one = commands.add_parser(action, parents=[common], help=help_text)
        one.add_argument(target, help=target_help)
        one.set_defaults(handler=handler, action=action)


def add_listing(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    help_text: str,
    items: Callable[[App], Sequence[T]],
    empty: str,
    table: Callable[[Sequence[T]], str],
) -> None:
    """``pgq queues list``, ``pgq workers list``: the ``items`` of the app, printed by
    :func:`print_listing`."""

    def handler(options: argparse.Namespace) -> int:
        with open_app(options) as app:
            found = items(app)
        print_listing(found, options.json, empty, table)
        return 0

    listing = actions.add_parser("list", parents=[common], help=help_text)
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.set_defaults(handler=handler)


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


def print_listing(items: Sequence[T], as_json: bool, empty: str, table: Callable[[Sequence[T]], str]) -> None:
    """What a ``list`` command prints: one JSON array, ``empty`` when there is nothing, or the table."""
    if as_json:
        print(to_json(list(items)))
    elif not items:
        print(empty)
    else:
        print(table(items))
