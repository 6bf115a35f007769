"""Saved voices, per tenant: POST/GET /v1/voices, GET/DELETE /v1/voices/{voice}.

POST /v1/voices creates a voice in one of two ways:
- clone: multipart/form-data (reference_audio as a file) or JSON (reference_audio as a data
  URL), with {name, consent: true (required, recorded), ref_text | x_vector_only, language,
  description}. The clone prompt is computed once (VoiceClone) and stored encrypted.
- design: JSON {name, description, sample_text?, language?, seed?}: VoiceDesign renders a
  sample of the description, VoiceClone builds a clone prompt from that sample, so the voice
  stays the same voice on every later request.
The voice's id (`voice_...`) then works as `voice` on /v1/audio/speech, `speaker` on
/api/tts/synthesize and in /v1/jobs. Another tenant's voice is 404, exactly as a missing one.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from serve_app.args import VOICE_CLONE, VOICE_DESIGN
from serve_app.errors import invalid
from serve_app.protocol.fields import Seed, SpeechText
from serve_app.routes.native import read_upload
from serve_app.tenancy import call_platform, principal_of, tenant_service

router = APIRouter(prefix="/v1/voices", tags=["saved voices"])

DEFAULT_SAMPLE_TEXT = (
    "Hello! This is a sample of my new voice, recorded so that it sounds the same every time."
)


class CloneVoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    consent: bool = Field(description="The speaker consented to being cloned (required)")
    ref_text: str | None = None
    x_vector_only: bool = False
    language: str | None = None
    description: str | None = Field(None, max_length=1000)


class DesignVoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=1000)
    sample_text: SpeechText = Field(DEFAULT_SAMPLE_TEXT, max_length=1000)
    language: str = "auto"
    seed: Seed | None = None


def _voice(info) -> dict:
    return {"object": "voice", **info.as_dict()}


@router.post("", status_code=201)
async def create_voice(request: Request) -> dict:
    svc = tenant_service()
    principal = principal_of(request)
    upload = await read_upload(request, svc.args.audio.max_upload_bytes)
    if upload.audio is None:
        if upload.form:
            raise invalid("reference_audio", "a cloned voice needs reference_audio as a file "
                          "part; or send JSON with a description to design a voice",
                          "missing_value")
        return await _design(svc, principal, upload.validated(DesignVoice), request)
    audio = upload.audio
    body = upload.validated(CloneVoice)
    if not body.consent:
        raise invalid("consent", "consent=true is required: the speaker of reference_audio must "
                      "have agreed to have their voice cloned", "consent_required")
    ref_text = (body.ref_text or "").strip() or None
    if not body.x_vector_only and ref_text is None:
        raise invalid("ref_text", "ref_text (the transcript of reference_audio) is required; or "
                      "set x_vector_only=true", "missing_value")
    started = time.perf_counter()
    ctx = await svc.caller()
    admission = await svc.admit(ctx, VOICE_CLONE, 0)
    status = "failed"
    try:
        prompt = await svc.build_clone_prompt(audio, ref_text, body.x_vector_only)
        info = await call_platform(svc.platform.create_clone_voice(
            principal, body.name, prompt, consent=True, reference_audio=audio,
            language=body.language, description=body.description))
        status = "ok"
    finally:
        await svc.settle(admission, ctx, request_id=request.state.request_id, model=VOICE_CLONE,
                         status=status, started=started)
    return _voice(info)




async def _design(svc, principal, body: DesignVoice, request: Request) -> dict:
    svc.instruction("description", body.description)
    started = time.perf_counter()
    ctx = await svc.caller()
    admission = await svc.admit(ctx, VOICE_DESIGN, len(body.sample_text))
    status, seconds = "failed", 0.0
    try:
        sample, seconds = await svc.design_sample(body.description, body.sample_text,
                                                  body.language, body.seed)
        prompt = await svc.build_clone_prompt(sample, body.sample_text, False)
        info = await call_platform(svc.platform.create_designed_voice(
            principal, body.name, prompt, description=body.description, sample_audio=sample,
            language=None if body.language == "auto" else body.language))
        status = "ok"
    finally:
        await svc.settle(admission, ctx, request_id=request.state.request_id, model=VOICE_DESIGN,
                         status=status, characters=len(body.sample_text), audio_seconds=seconds,
                         started=started)
    return _voice(info)


@router.get("")
async def list_voices(request: Request) -> dict:
    voices = await call_platform(tenant_service().platform.list_voices(principal_of(request)))
    return {"object": "list", "data": [_voice(v) for v in voices]}


@router.get("/{voice}")
async def get_voice(voice: str, request: Request) -> dict:
    return _voice(await call_platform(
        tenant_service().platform.get_voice(principal_of(request), voice)))


@router.delete("/{voice}")
async def delete_voice(voice: str, request: Request) -> dict:
    info = await call_platform(tenant_service().platform.delete_voice(principal_of(request), voice))
    return {"id": info.id, "object": "voice", "deleted": True}
