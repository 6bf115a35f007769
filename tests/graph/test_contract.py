"""The published contract is what the server does: every operation of /openapi.json is fuzzed
through the real graph (schemathesis: requests drawn from the schemas, valid and invalid),
and every answer must be declared there (status, content type, body schema), never a 5xx, and
a request the schema does not allow must be refused (so `"enable_streaming": 0` is a 422).

The cases are drawn with a fixed seed (the same few hundred in every CI run; set
QTTS_CONTRACT_EXAMPLES to draw more, and QTTS_CONTRACT_SEED=random for new ones). They run as
a tenant of their own, so its saved voices, jobs and limits touch no other test. What the
document adds to FastAPI's and why: serve_app/routes/contract.py.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.graph.tenants import create_tenant_key, unique_name

pytestmark = pytest.mark.graph

#: Cases per operation (22 operations; some have fewer distinct cases).
EXAMPLES = int(os.environ.get("QTTS_CONTRACT_EXAMPLES", "25"))
RANDOM = os.environ.get("QTTS_CONTRACT_SEED") == "random"
#: Not schemathesis' positive_data_acceptance: what a valid request may name is partly known
#: only to the server (a tenant's saved voices, the checkpoint's speakers and languages, audio
#: the decoder can read), so schema-valid requests are still refused by name (422/415);
#: every rule between fields is in the schema, though (serve_app.protocol.fields).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, negative_data_rejection]



@pytest.fixture(scope="module")
def contract_key(graph) -> str:
    return create_tenant_key(graph.base_url, graph.admin_token, unique_name("contract"))


def fuzz(operation, key: str) -> int:
    """Run EXAMPLES cases of one operation (valid and invalid inputs); the number run."""
    ran = 0
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        nonlocal ran
        ran += 1
        case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS,
                               timeout=60)

    run()
    return ran


def test_every_answer_is_declared_in_the_contract(graph, contract_key, capsys):
    """Each operation in turn (schemathesis' own pytest loader does not run on pytest 9.2);
    all of them run, then every violation is reported, each with its smallest case."""
    loaded = schemathesis.openapi.from_url(f"{graph.base_url}/openapi.json")
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 20
    ran: dict[str, int] = {}
    violations: list[str] = []
    for operation in operations:
        name = f"{operation.method.upper()} {operation.path}"
        try:
            ran[name] = fuzz(operation, contract_key)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - all reported below
            violations.append(f"{name}: {exc}")
    summary = (f"contract: {sum(ran.values())} cases over {len(operations)} operations, "
               f"{len(violations)} with violations; per operation: {ran}")
    with capsys.disabled():
        print(f"\n{summary}")
    assert not violations, "\n\n".join(violations)


# ------------------------------------------------------- what the fuzzer cannot tell alone
def test_the_contract_declares_auth_uploads_and_audio(http):
    spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert paths["/v1/audio/speech"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in paths["/v1/audio/models"]["get"]
    for path in ("/v1/audio/clone", "/v1/voices"):
        body = paths[path]["post"]["requestBody"]["content"]
        assert set(body) == {"multipart/form-data", "application/json"}
    audio = paths["/api/tts/audio/{key}"]["get"]["responses"]["200"]["content"]
    assert "audio/wav" in audio and "application/json" not in audio
    for status in ("401", "403", "422", "429", "503"):
        answer = paths["/v1/audio/speech"]["post"]["responses"][status]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")


@pytest.mark.parametrize("path, allowed", [("/v1/jobs", "GET, POST"),
                                           ("/v1/voices/voice_x", "DELETE, GET"),
                                           ("/api/tts/synthesize", "POST")])
def test_a_405_allows_every_method_of_the_path(http, path, allowed):
    r = http.put(path, json={})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allowed
    assert r.json()["error"]["code"] == "method_not_allowed"


SPEECH = {"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "wav",
          "max_new_tokens": 4}
SEED = {"text": "Hi.", "speaker": "Vivian"}


@pytest.mark.parametrize("path, body, accepted", [
    ("/v1/audio/speech", {**SPEECH, "min_frames": 3.0, "seed": 7.0}, True),  # 3.0 is 3 in JSON
    ("/v1/audio/speech", {**SPEECH, "seed": "7"}, False),
    ("/v1/audio/speech", {**SPEECH, "seed": True}, False),
    ("/v1/audio/speech", {**SPEECH, "min_frames": 2.5}, False),
    ("/api/tts/synthesize", {**SEED, "enable_streaming": False}, True),
    ("/api/tts/synthesize", {**SEED, "enable_streaming": 0}, False),
    ("/api/tts/synthesize", {**SEED, "enable_streaming": "true"}, False),
])
def test_integers_are_whole_numbers_and_flags_are_booleans(http, path, body, accepted):
    r = http.post(path, json=body)
    assert r.status_code == (200 if accepted else 422), r.text


@pytest.mark.parametrize("request_kw, param", [
    ({"method": "POST", "url": "/v1/jobs", "json": {"input": "Hi."}}, "voice"),
    ({"method": "GET", "url": "/v1/usage", "params": {"period": ""}}, "period"),
    ({"method": "POST", "url": "/v1/audio/speech",
      "json": {"model": "", "input": "Hi.", "voice": "alloy"}}, "model"),
])
def test_what_the_contract_refuses_is_refused_by_name(http, request_kw, param):
    r = http.request(**request_kw)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_an_optional_key_listing_still_refuses_a_wrong_key(graph):
    with httpx.Client(base_url=graph.base_url, timeout=30) as client:
        assert client.get("/v1/audio/voices").status_code == 200
        r = client.get("/v1/audio/voices", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
