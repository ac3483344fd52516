"""Schemathesis against a live gunicorn on the test services (PostgreSQL, Redis, S3, a Celery worker).

Every response must be a non-5xx the document describes (status, content type, required headers, body
schema), bad input must be refused, and auth must be enforced where the document says so. Two checks are
left out, for reasons the document cannot express: ``positive_data_acceptance`` (a schema-valid cursor,
upload or model name can still be one the server rightly refuses: an opaque cursor it never issued,
bytes that are no image, a model it lacks) and, for the multipart uploads only (jobs, batches),
``negative_data_rejection`` (multipart carries only strings, so a "wrong type" field arrives as a valid
one). Unknown query parameters are not generated: the server ignores them by design. The console's
static files (tag ``console``) are documented but not fuzzed. FUZZ_EXAMPLES raises the example
count for a longer hunt (400 per operation passed, in about 50 s).
"""

from __future__ import annotations

import base64
import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from core.settings import load_settings
from tests.conftest import free_port
from tests.support.processes import Gunicorn
from web.openapi import build_spec

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
SPEC = build_spec(load_settings())
MULTIPART = {("/v1/jobs", "POST"), ("/v1/batches", "POST")}
# The console's static files are not API: described for completeness, not fuzzed.
schema = schemathesis.openapi.from_dict(SPEC, config=schemathesis.Config.from_dict({
    "generation": {"max-examples": EXAMPLES, "allow-extra-parameters": False},
    "checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 413, 415, 422,
                                                                 429]}},
})).exclude(tag="console")


@pytest.fixture(scope="module")
def live_server(service_env, worker, tmp_path_factory):  # type: ignore[no-untyped-def]
    # URL_FETCH_DEADLINE_SECONDS: a generated URL that happens to resolve must not hold the run.
    server = Gunicorn({"RATE_LIMIT_AUTH": "10000/minute", "URL_FETCH_DEADLINE_SECONDS": "3"},
                      tmp_path_factory.mktemp("fuzz") / "gunicorn.log",
                      free_port(), workers=2)
    server.start()
    assert requests.get(f"{server.url}/openapi.json", timeout=5).json() == SPEC
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bearer(service_env):  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from core.tokens import issue_token

    return {"Authorization": f"Bearer {issue_token(get_settings(), 'fuzzer')}"}


@pytest.fixture(scope="module")
def text_model_installed(model_repo) -> bool:  # type: ignore[no-untyped-def]
    from ml.repository import ModelRepository

    return "text" in ModelRepository(model_repo).names()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_honours_its_contract(case, live_server, bearer, text_model_installed):  # type: ignore[no-untyped-def]
    response = case.call(base_url=live_server.url, headers=bearer, timeout=30)
    excluded = [positive_data_acceptance]
    if (case.path, case.method) in MULTIPART:
        excluded.append(negative_data_rejection)
    # The session's repository may lack the text model: then 503 model_unavailable is the documented answer.
    if (case.path == "/v1/text" and not text_model_installed and response.status_code == 503
            and response.json()["error"]["code"] == "model_unavailable"):
        excluded.append(not_a_server_error)
    case.validate_response(response, headers=bearer, excluded_checks=excluded,
                           transport_kwargs={"base_url": live_server.url, "headers": bearer})


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/v1/jobs/%00", None, 404),
    ("GET", "/status/job%00id", None, 404),
    ("GET", "/v1/jobs?cursor=" + base64.urlsafe_b64encode(b"2026-01-01T00:00:00|a\x00b").decode(), None, 400),
    ("GET", "/v1/lookup/" + "a" * 64 + "%0A", None, 400),
    ("POST", "/v1/auth/token", {"api_key": "ds_0123456789abcdef\x00_secret"}, 401),
])
def test_inputs_the_fuzzer_seldom_makes_are_client_errors(live_server, bearer, method, path, body, status):  # type: ignore[no-untyped-def]
    """Regressions. A NUL reached PostgreSQL, which raises rather than finding nothing: 500. A sha256
    with a trailing newline passed ``re.match("^...$")``."""
    response = requests.request(method, live_server.url + path, headers=bearer, json=body, timeout=10)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}
