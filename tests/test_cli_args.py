"""What the ``pgq`` commands share (pgq.cli.args), as the parser uses it: no database needed."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from pgq.cli.args import non_negative_float, port_number, positive_float, positive_int


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
