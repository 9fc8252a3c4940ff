"""Property-based run of the OpenAPI schema: no 5xx, and every response matches the schema.

Bounded (MAX_EXAMPLES per operation and mode) so it stays fast. Requests
carry an admin token, so every operation is reached past authentication;
the role matrix covers the refusals. Driven through ``as_strategy`` rather
than schemathesis' pytest plugin, whose lazy fixtures do not run on pytest 9.

Negative cases (data the schema forbids) must still get a documented,
schema-conforming answer and never a 5xx. schemathesis' own
``negative_data_rejection`` check is not used: on a query string, a
"negative" value often travels as the very same bytes as a valid one (the
string "5" or the list [5] for an integer, [false] for a boolean), so it
flags correct answers at random. The strictness it is after is tested
directly in test_errors.py.
"""

from __future__ import annotations

import pytest
import schemathesis
from apihelpers import API, Shared, bearer
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    ("POST", f"{API}/backups"),
    ("GET", f"{API}/backups"),
    ("POST", f"{API}/backups/cleanup"),
    ("GET", f"{API}/backups/{{backup_id}}"),
    ("DELETE", f"{API}/backups/{{backup_id}}"),
    ("POST", f"{API}/backups/{{backup_id}}/verify"),
    ("POST", f"{API}/backups/{{backup_id}}/restore"),
    ("GET", f"{API}/backups/{{backup_id}}/restores/{{job_id}}"),
    ("GET", f"{API}/audit-logs"),
    ("POST", f"{API}/backups/{{backup_id}}/keep"),
    ("GET", f"{API}/me"),
    ("GET", f"{API}/summary"),
    ("GET", f"{API}/check"),
    ("POST", f"{API}/pitr-restores"),
    ("GET", f"{API}/pitr-restores/{{job_id}}"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]


def examples_for(method: str, path: str, mode: GenerationMode) -> int:
    # Each valid POST /backups runs a real pg_dump; its body has three valid values.
    if (method, path, mode) == ("POST", f"{API}/backups", GenerationMode.POSITIVE):
        return 6
    # Its one input is a boolean; each call connects to the server and writes a probe.
    if path == f"{API}/check":
        return 5
    return MAX_EXAMPLES


@pytest.fixture(scope="module")
def api_schema(shared: Shared) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", shared.app)


def test_every_operation_is_exercised(api_schema: schemathesis.BaseSchema) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# Negative data is what a schema forbids; the probes take no input, so they have none.
NO_INPUT = ("/healthz", "/readyz", "/metrics", f"{API}/me", f"{API}/summary")
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and path in NO_INPUT)
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_matches_its_schema(
    api_schema: schemathesis.BaseSchema, shared: Shared, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    headers = bearer(shared.tokens.admin)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples_for(method, path, mode),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
