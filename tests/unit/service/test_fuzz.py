# -*- coding: utf-8 -*-
"""API fuzzing from the served OpenAPI schema (schemathesis), tiny model on CPU.

Every operation of ``/openapi.json`` gets generated requests, valid and invalid by the
schema (bounded in examples and time); none may answer 5xx, every answer must match the
schema (status code, content type, body), and afterwards ``/health`` is 200 and
``requests_running`` is back to 0.
"""

import pytest

schemathesis = pytest.importorskip('schemathesis')
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (content_type_conformance, not_a_server_error,  # noqa: E402
                                 response_schema_conformance, status_code_conformance)

from conftest import settled  # noqa: E402

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def operations(app):
    schema = schemathesis.openapi.from_asgi('/openapi.json', app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in ops} >= {('POST', '/v1/chat/completions'), ('POST', '/predict'),
                                                            ('GET', '/health'), ('GET', '/v1/models')}
    return ops


@pytest.mark.parametrize('mode', [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=['valid', 'invalid'])
def test_no_server_errors(app, engine, mode):
    """schemathesis' not_a_server_error check, with hypothesis driving each operation's strategy."""
    seen = {}
    for op in operations(app):
        @given(op.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case):
            response = case.call(timeout=30)
            key = '%s %s' % (case.method, case.path)
            seen.setdefault(key, set()).add(response.status_code)
            assert response.status_code < 500, (key, case.body, response.status_code, response.text[:300])
            # and the answer is the one the schema promises (status, content type, body schema)
            case.validate_response(response, checks=CHECKS)
        try:
            run()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE and op.method.upper() == 'GET', op.path   # nothing to break
    assert seen, 'nothing was generated'
    print(sorted((k, sorted(v)) for k, v in seen.items()))


def test_alive_after_fuzzing(client, engine):
    assert client.get('/health').status_code == 200
    assert settled(engine)
    metrics = client.get('/metrics').text
    running = [line for line in metrics.splitlines() if line.startswith('requests_running ')]
    assert running == ['requests_running 0.0'], running
