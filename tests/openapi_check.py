"""Every response of the dashboard's API, checked against the OpenAPI document it generates.

:class:`CheckedClient` is Starlette's TestClient that records each ``/api``
response; :func:`check_responses` validates them all: the operation exists, the
status is one it declares, and the JSON body matches the declared schema
(JSON Schema 2020-12, as OpenAPI 3.1 uses).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
from openapi_spec_validator import validate

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@dataclass
class Seen:
    method: str
    path: str
    status: int
    body: Any


class CheckedClient(TestClient):
    """A TestClient that remembers the API's responses (paths below ``prefix``)."""

    def __init__(self, *args: Any, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix = prefix
        self.seen: list[Seen] = []

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        path = response.request.url.path
        if path.startswith(self.prefix + "/api/") and path != self.prefix + "/api/openapi.json":
            try:
                body = response.json()
            except ValueError:
                body = response.text
            self.seen.append(Seen(method.lower(), path[len(self.prefix) :], response.status_code, body))
        return response


@cache
def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")


def operation_for(doc: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The operation serving ``method path``: the template with the fewest parameters wins, as in routing."""
    matches = [
        (template.count("{"), template, ops[method])
        for template, ops in doc["paths"].items()
        if method in ops and _pattern(template).match(path)
    ]
    if not matches:
        return None
    _, template, operation = min(matches)
    return template, operation


def check_responses(doc: dict[str, Any], seen: list[Seen]) -> int:
    """Validate every seen response against ``doc``; returns how many were checked."""
    validate(doc)
    checked = 0
    for entry in seen:
        found = operation_for(doc, entry.method, entry.path)
        if found is None:
            assert entry.status in (404, 405, 401, 400), f"{entry.method} {entry.path}: no operation, {entry.status}"
            assert isinstance(entry.body, dict) and set(entry.body) == {"error"}, entry
            continue
        template, operation = found
        declared = operation["responses"].get(str(entry.status))
        assert declared is not None, (
            f"{entry.method.upper()} {template} answered {entry.status}, which the document does not declare"
        )
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        assert schema is not None, f"{entry.method.upper()} {template} {entry.status}: no schema"
        jsonschema.validate(
            entry.body,
            {**schema, "components": doc["components"]},
            cls=jsonschema.Draft202012Validator,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        checked += 1
    return checked
