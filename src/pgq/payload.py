"""Turning job arguments into JSON, with errors that point at the bad value."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pgq.errors import ArgsNotSerializable, InvalidJob, PayloadTooLarge


def encode_args(args: Mapping[str, Any] | None, max_bytes: int, task: str = "") -> str:
    """``args`` as compact JSON text, checked for shape, serialisability and size."""
    where = f" of task {task!r}" if task else ""
    if args is None:
        return "{}"
    if not isinstance(args, Mapping):
        raise InvalidJob(
            f"args{where} must be a dict of keyword arguments, got {type(args).__name__}; "
            "the handler is called as fn(**args)"
        )
    for name in args:
        if not isinstance(name, str):
            raise InvalidJob(
                f"args{where} must have string keys (they become keyword arguments), "
                f"got key {name!r} of type {type(name).__name__}"
            )
    try:
        text = json.dumps(args, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        path, value = _first_unserializable(args, "args")
        if path is None:
            raise ArgsNotSerializable(f"args{where} are not JSON-serialisable: {exc}") from None
        raise ArgsNotSerializable(
            f"args{where} are not JSON-serialisable: {path} is a {type(value).__name__} "
            f"({_short_repr(value)}); pass JSON types (str, int, float, bool, None, list, dict), "
            "for example an id or an ISO date string"
        ) from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise PayloadTooLarge(
            f"args{where} are {size} bytes of JSON, over the limit of {max_bytes} bytes "
            "(PGQ_MAX_PAYLOAD_BYTES); store large data elsewhere and pass its id"
        )
    if "\\u0000" in text:
        raise ArgsNotSerializable(
            f"args{where} contain a NUL character (\\u0000), which PostgreSQL's jsonb cannot store"
        )
    return text


def _first_unserializable(value: Any, path: str) -> tuple[str | None, Any]:
    """The path and value of the first part of ``value`` that json cannot encode."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return path, value
        return None, None
    if value is None or isinstance(value, str | int | bool):
        return None, None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path} key {key!r}", key
            found = _first_unserializable(item, f"{path}[{key!r}]")
            if found[0] is not None:
                return found
        return None, None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_unserializable(item, f"{path}[{index}]")
            if found[0] is not None:
                return found
        return None, None
    return path, value


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
