"""Fuzz the tile routes from their OpenAPI document (schemathesis): every TiTiler parameter
(expression, rescale, colormap, bidx, tilesize, histogram, crs...) generated schema-valid and
schema-invalid, against a real layer. No input may cause a server error; a refusal (4xx) comes within
1 s, and a render within the render deadline. The app under test has a short deadline, so a render
that takes long (a low-zoom TiTiler read of the whole region takes seconds) must come back as 503 with Retry-After at that deadline, never later."""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from backend.app import create_app

EXAMPLES = 5
DEADLINE = 1.5  # seconds: the render time limit of the app under test
LAYERS = ("indicator.richness", "habitat.l3", "embedding.pca")
# band math as a client would write it, hostile and not: the generated strings rarely parse
EXPRESSIONS = st.one_of(
    st.from_regex(r"\A(b[0-4]|[0-9]{1,12}|nan|inf|sqrt|where|foo)([-+*/%<>&|]{1,2}(b[0-4]|[0-9]{1,12}|\(b1\)))"
                  r"{0,6}\Z"),
    st.sampled_from(["10**10**10*b1", "b1**b1", "(10**9)**9*b1", "where(b1>0,b1,0)", "b1.__class__", "ｂ１"]),
    st.text(max_size=600),
)


@pytest.fixture(scope="module")
def fuzz_app(computed):
    settings, _, _ = computed
    return create_app(settings.model_copy(update={"render_timeout_s": DEADLINE, "tile_cache_mb": 0}))


@pytest.mark.slow
def test_tile_routes_have_no_server_errors(fuzz_app):
    app = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/tiles/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any("point" in op.path for op in operations) and any("statistics" in op.path for op in operations)
    slowest = 0.0
    for op, mode in [(op, mode) for op in operations for mode in GenerationMode]:
        @given(case=op.as_strategy(generation_mode=mode), layer=st.sampled_from(LAYERS), expression=EXPRESSIONS,
               use_expression=st.booleans())
        @hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case, layer, expression, use_expression):
            nonlocal slowest
            case.path_parameters = {**(case.path_parameters or {}), "layer_id": layer}  # a real layer
            if use_expression and "expression" in str(op.definition.raw):  # noqa: B023 - run within its iteration
                case.query = {**(case.query or {}), "expression": expression}
            t0 = time.perf_counter()
            response = case.call(timeout=4 * DEADLINE)
            took = time.perf_counter() - t0
            slowest = max(slowest, took)
            if response.status_code == 503:  # the deadline answer, the only 5xx allowed
                headers = {key.lower(): value for key, value in response.headers.items()}
                assert headers.get("retry-after"), (case.path, case.query)
            else:
                case.validate_response(response, checks=[not_a_server_error])
            limit = 1.0 if 400 <= response.status_code < 500 else DEADLINE + 1
            assert took < limit, (case.path, case.query, response.status_code, took)

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE
    print(f"\nslowest fuzzed tile request: {slowest * 1000:.0f} ms")
