"""Fuzz the REST API from its OpenAPI document (schemathesis): no input may cause a server error,
and every answer must match the documented status codes, content types and schemas."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.reports_data import rclient, synth  # noqa: F401 (fixtures)

EXAMPLES = 40
OURS = ("/api/reports", "/api/species", "/api/habitats", "/api/indicators")


@pytest.mark.slow
def test_api_has_no_server_errors(rclient):
    # the REST API only: tiles and OGC services have their own tests
    schema = schemathesis.openapi.from_asgi("/openapi.json", rclient.app).include(path_regex="^/api/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/api/reports" and op.method.upper() == "POST" for op in operations)
    for op, mode in [(op, mode) for op in operations for mode in GenerationMode]:  # schema-valid and invalid
        # a JSON schema cannot say "not self-intersecting" or "inside the mapped region": schema-valid
        # areas may rightly get a 422, so positive-data acceptance is not checked
        kwargs = ({"excluded_checks": [positive_data_acceptance]} if op.path.startswith(OURS)
                  else {"checks": [not_a_server_error]})

        @given(case=op.as_strategy(generation_mode=mode))
        @hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            # our routes must also answer only documented codes, content types and schemas
            case.call_and_validate(**kwargs)  # noqa: B023 (called right away)

        try:
            fuzz()
        except Unsatisfiable:  # nothing to break in an operation without parameters
            assert mode is GenerationMode.NEGATIVE
