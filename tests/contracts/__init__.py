"""Contract checks against Kalshi's OpenAPI spec (``kalshi-openapi.yaml``, a copy of
Kalshi's published spec v3.28.0 kept here so that tests depend on no file outside the repo).

``follows_spec(exchanges)`` validates what ``tests.fakes.FakeKalshi`` recorded with openapi-core:
every request (method, path, query, body, auth headers) and every response the fake produced by
itself. Not checked, on purpose:

- replies produced by an injected fault (their whole point is to break the contract);
- a 429 ``{"error": "..."}`` body: that is what Kalshi really sends (docs/KALSHI.md, Rate
  limits), while the spec says ErrorResponse; a known contradiction;
- reply statuses for which the operation documents no body (e.g. a 404 where the spec lists
  only ``description: Not found``).

The spec is parsed once per process (``kalshi_openapi()``); it is large.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).with_name("kalshi-openapi.yaml")
# One of the spec's servers is https://external-api.kalshi.com/trade-api/v2, so requests are
# validated with their full path (prefix included) against that host.
SPEC_HOST = "https://external-api.kalshi.com"


@lru_cache(maxsize=1)
def spec_dict() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as handle:
        return yaml.load(handle, Loader=loader)  # noqa: S506 (a safe loader)


@lru_cache(maxsize=1)
def kalshi_openapi() -> OpenAPI:
    return OpenAPI.from_dict(spec_dict())


class SpecRequest:
    """openapi-core's Request protocol over a recorded request."""

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> None:
        parts = urlsplit(url)
        self.host_url = SPEC_HOST
        self.path = parts.path
        self.method = method.lower()
        self.body = body or None
        self.content_type = headers.get("content-type", "application/json" if body else "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(parts.query, keep_blank_values=True)),
            header=Headers(headers),
            cookie=ImmutableMultiDict(),
        )


class SpecResponse:
    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status_code = status
        self.headers = Headers(headers)
        self.content_type = headers.get("content-type", "application/json")
        self.data = data


def _errors(iterator: Iterable[Exception]) -> list[str]:
    """One line per problem: the schema errors when there are some, else the error itself."""
    out = []
    for error in iterator:
        cause = error.__cause__
        schema_errors = getattr(cause, "schema_errors", None) or getattr(
            error, "schema_errors", None
        )
        if schema_errors:
            out.extend(f"{e.message} at {list(e.absolute_path)}" for e in schema_errors)
        elif cause is not None:
            out.append(f"{type(error).__name__}: {cause}")
        else:
            out.append(f"{type(error).__name__}: {error}")
    return out


@lru_cache(maxsize=1)
def _operations() -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    """(path regex, operations) for every path of the spec."""
    out = []
    for template, operations in spec_dict()["paths"].items():
        parts = re.split(r"(\{[^}]+\})", template)
        pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p)
        out.append((re.compile(f"^{pattern}$"), operations))
    # Literal paths win over templated ones (/markets/trades before /markets/{ticker}).
    out.sort(key=lambda item: item[0].pattern.count("[^/]+"))
    return out


def _documents_body(method: str, path: str, status: int) -> bool:
    """Whether the spec gives a body schema for this operation's ``status`` reply."""
    spec_path = path.removeprefix("/trade-api/v2")
    for pattern, operations in _operations():
        if pattern.match(spec_path) and method.lower() in operations:
            response = operations[method.lower()].get("responses", {}).get(str(status))
            if response is None:
                return False
            if "$ref" in response:
                name = response["$ref"].rsplit("/", 1)[1]
                response = spec_dict()["components"]["responses"][name]
            return "content" in response
    return False


def exchange_violations(exchange: Any) -> list[str]:
    """Spec violations of one ``tests.fakes.Exchange`` (request, and response when checkable)."""
    openapi = kalshi_openapi()
    req = exchange.request
    spec_request = SpecRequest(req.method, req.url, req.headers, req.content)
    where = f"{req.method} {req.path}"
    problems = [f"{where} request: {e}" for e in _errors(openapi.iter_request_errors(spec_request))]
    response = exchange.response
    if response is None or exchange.fault is not None:
        return problems
    if response.status == 429 and b'"error"' in response.content:
        return problems  # Kalshi's real 429 body contradicts the spec; see the module docstring.
    if not _documents_body(req.method, req.path, response.status):
        return problems
    spec_response = SpecResponse(response.status, response.headers, response.content)
    problems += [
        f"{where} -> {response.status} response: {e}"
        for e in _errors(openapi.iter_response_errors(spec_request, spec_response))
    ]
    return problems


def follows_spec(exchanges: Iterable[Any]) -> list[str]:
    """All spec violations in ``exchanges`` (empty when everything conforms)."""
    problems: list[str] = []
    for exchange in exchanges:
        problems.extend(exchange_violations(exchange))
    return problems


def assert_follows_spec(exchanges: Iterable[Any]) -> None:
    problems = follows_spec(exchanges)
    assert not problems, "contract violations:\n" + "\n".join(problems)
