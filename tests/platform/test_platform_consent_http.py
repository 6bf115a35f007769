"""Checked consent through the real routes, SynthesisService, platform and the AudioProcessor's
own class (silero-vad, resemblyzer), without Ray: POST /v1/voices/consent-statement, then
POST /v1/voices with a consent recording of the same speaker (saved) or another (422 naming
the score and threshold); a reused code; a reference without speech; GET /v1/audit."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi.testclient import TestClient
from platform_testing import make_prompt  # noqa: I001 - tests/platform helper

from deployments.args import CloneArgs
from deployments.audio_processor import AudioProcessor
from deployments.engine.types import ModelInfo, ModelKind, SynthesisResult
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.routes.common import ReplicaServices
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.fake_handles import FakeHandle
from tests.samples import wav_bytes
from tests.speech import SENTENCES, require_speech, speak

INFO = ModelInfo(kind=ModelKind.BASE, model="tiny", speakers=(), dialect_speakers={},
                 languages=("auto", "english"), sample_rate=24000, device="cpu",
                 dtype="float32", model_size="tiny")
TRANSCRIPT = SENTENCES[0]




class FakeVoiceClone:
    async def info(self):
        return INFO

    async def voice_prompt(self, reference, ref_text, x_vector_only):
        self.reference = reference
        return make_prompt()

    async def synthesize_with_reference(self, request, reference, ref_text, x_vector_only):
        self.reference = reference
        return SynthesisResult(audio=np.zeros(2400, np.float32), sample_rate=24000, frames=3)


class CountingAudioProcessor(AudioProcessor.func_or_class):
    """The AudioProcessor's own class, counting the uploads it prepares as references."""

    prepared = 0

    async def prepare_reference(self, data, param="reference_audio", *, screen=True):
        self.prepared += 1
        return await super().prepare_reference(data, param, screen=screen)


@pytest.fixture
def app(platform):
    args = AppArgs()
    audio = CountingAudioProcessor(args.audio, args.clone)
    clone = FakeVoiceClone()
    admission = TenantAdmission(platform)
    svc = SynthesisService(args, {"VoiceClone": FakeHandle(clone)}, FakeHandle(audio), admission)
    client = TestClient(create_http_app(ReplicaServices(svc, admission)),
                        raise_server_exceptions=False)
    platform.tenants.create("acme")
    client.headers["Authorization"] = f"Bearer {platform.keys.create('acme').secret}"
    client.clone, client.audio = clone, audio
    return client


def _statement(client) -> dict:
    r = client.post("/v1/voices/consent-statement", json={"language": "en"})
    assert r.status_code == 201, r.text
    return r.json()


def _create(client, name: str, reference: bytes, consent: bytes | None, code: str | None):
    files = {"reference_audio": ("ref.wav", reference, "audio/wav")}
    if consent is not None:
        files["consent_audio"] = ("consent.wav", consent, "audio/wav")
    data = {"name": name, "ref_text": TRANSCRIPT}
    if code is not None:
        data["consent_code"] = code
    return client.post("/v1/voices", data=data, files=files)


def test_a_consent_recording_of_the_same_speaker_saves_the_voice(app, platform):
    require_speech()
    statement = _statement(app)
    assert " ".join(statement["code"]) in statement["text"]
    r = _create(app, "kal", speak("kal", TRANSCRIPT), speak("kal", statement["text"]),
                statement["code"])
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["consent_level"] == "checked"
    assert voice["consent_similarity"] >= AppArgs().clone.consent_threshold
    # the prompt was built from the speech only (silero-vad trimmed it)
    assert app.clone.reference.speech_seconds >= 2.0
    events = app.get("/v1/audit").json()["data"]
    assert [e["action"] for e in events] == ["voice.created"]
    assert events[0]["detail"]["consent"] == "checked" and TRANSCRIPT not in repr(events)
    # the code was used up by that check
    again = _create(app, "kal2", speak("kal", TRANSCRIPT), speak("kal", statement["text"]),
                    statement["code"])
    assert again.status_code == 422 and again.json()["error"]["code"] == "consent_code_used"


def test_another_speakers_consent_is_refused_with_the_score(app):
    require_speech()
    statement = _statement(app)
    r = _create(app, "stolen", speak("kal", TRANSCRIPT), speak("slt", statement["text"]),
                statement["code"])
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "consent_speaker_mismatch" and error["param"] == "consent_audio"
    assert "similarity 0." in error["message"]
    assert f"at least {AppArgs().clone.consent_threshold:.2f}" in error["message"]
    assert app.get("/v1/voices").json()["data"] == []


def test_checked_consent_names_what_is_missing(app):
    require_speech()
    reference = speak("kal", TRANSCRIPT)
    r = _create(app, "v", reference, None, None)
    assert r.status_code == 422 and r.json()["error"]["param"] == "consent_code"
    r = _create(app, "v", reference, None, _statement(app)["code"])
    assert r.status_code == 422 and r.json()["error"]["param"] == "consent_audio"
    r = _create(app, "v", reference, speak("kal", SENTENCES[1]), "000000x")
    assert r.status_code == 422 and r.json()["error"]["code"] == "consent_code_unknown"


def test_a_reference_without_speech_is_refused_and_leaves_the_code_usable(app):
    statement = _statement(app)
    r = _create(app, "hum", wav_bytes(3.0), wav_bytes(3.0), statement["code"])
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "audio_no_speech" and error["param"] == "reference_audio"
    assert "s of speech" in error["message"]
    assert asyncio.run(_still_usable(app, statement["code"]))


async def _still_usable(app, code: str) -> bool:
    gate = app.app.state.replica.admission
    tenant = gate.platform.tenants.get("acme")
    return gate.platform.statements.check(tenant.id, code).code == code


def test_a_one_shot_clone_under_checked_consent_prepares_its_reference_once(app, platform):
    require_speech()
    platform.clone = CloneArgs(consent_one_shot="checked")
    statement = _statement(app)
    r = app.post("/v1/audio/clone", data={
        "input": "Hello there.", "ref_text": TRANSCRIPT, "consent_code": statement["code"],
        "response_format": "wav"}, files={
        "reference_audio": ("ref.wav", speak("kal", TRANSCRIPT), "audio/wav"),
        "consent_audio": ("consent.wav", speak("kal", statement["text"]), "audio/wav")})
    assert r.status_code == 200, r.text
    # screened and trimmed once, for the speaker check, and spoken from as it was prepared
    assert app.audio.prepared == 1
    assert app.clone.reference.speech_seconds >= 2.0
    # without the consent recording it is refused before anything is spoken
    r = app.post("/v1/audio/clone", data={"input": "Hi.", "ref_text": TRANSCRIPT}, files={
        "reference_audio": ("ref.wav", speak("kal", TRANSCRIPT), "audio/wav")})
    assert r.status_code == 422 and r.json()["error"]["param"] == "consent_code"
