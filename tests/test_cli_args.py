"""What the ``pgq`` commands share (pgq.cli.args), as the parser uses it: no database needed."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import pytest

from pgq.cli import build_parser
from pgq.cli.args import non_negative_float, port_number, positive_float, positive_int, print_listing


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (positive_int, "ten", "expected a whole number, got 'ten'"),
        (positive_int, "0", "must be at least 1, got 0"),
        (port_number, "x", "expected a whole number, got 'x'"),
        (port_number, "70000", "a port is 1-65535, got 70000"),
        (non_negative_float, "soon", "expected a number of seconds, got 'soon'"),
        (non_negative_float, "-1", "must be a finite number >= 0, got '-1'"),
        (non_negative_float, "inf", "must be a finite number >= 0, got 'inf'"),
        (positive_float, "x", "expected a number of seconds, got 'x'"),
        (positive_float, "0", "must be more than 0"),
    ],
)
def test_argument_types_say_what_was_wrong(parse: Any, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        parse(text)
    assert str(raised.value) == message


def test_argument_types_return_the_number() -> None:
    assert (positive_int(" 7 "), port_number("8080"), non_negative_float("0"), positive_float("0.5")) == (
        7,
        8080,
        0.0,
        0.5,
    )


@pytest.mark.parametrize(
    ("argv", "dest", "action"),
    [
        (["jobs", "show", "1"], "jobs_command", "show"),
        (["schedules", "list"], "schedules_command", "list"),
        (["keys", "rotate"], "keys_command", "rotate"),
        (["embedded", "status"], "embedded_command", "status"),
        (["queues", "list"], "queues_command", "list"),
        (["workers", "list"], "workers_command", "list"),
    ],
)
def test_a_command_group_names_its_action(argv: list[str], dest: str, action: str) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == action


@pytest.mark.parametrize(
    ("argv", "target", "value"),
    [
        (["schedules", "remove", "nightly"], "name", "nightly"),
        (["schedules", "enable", "nightly"], "name", "nightly"),
        (["schedules", "disable", "nightly"], "name", "nightly"),
        (["schedules", "trigger", "nightly"], "name", "nightly"),
        (["queues", "pause", "emails"], "queue", "emails"),
        (["queues", "resume", "emails"], "queue", "emails"),
    ],
)
def test_an_action_knows_which_it_is_and_its_target(argv: list[str], target: str, value: str) -> None:
    options = build_parser().parse_args(argv)
    assert (options.action, getattr(options, target)) == (argv[1], value)


def test_a_listing_prints_json_a_word_or_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    def table(items: Any) -> str:
        return f"table of {len(items)}"

    print_listing([], True, "no things", table)
    print_listing([], False, "no things", table)
    print_listing([{"a": 1}], False, "no things", table)
    assert capsys.readouterr().out == "[]\nno things\ntable of 1\n"


def test_the_worker_processes_get_each_flag_once() -> None:
    options = build_parser().parse_args(
        ["worker", "app:app", "--processes", "2", "--queues", "a,b", "--no-scheduler", "--no-sweeper"]
    )
    cli_main = importlib.import_module("pgq.cli.main")  # pgq.cli.main is also the function main
    child = cli_main._child_args(options)
    assert child == [
        "worker",
        "app:app",
        "--processes",
        "1",
        "--log-level",
        "INFO",
        "--queues",
        "a,b",
        "--no-scheduler",
        "--no-sweeper",
    ]
