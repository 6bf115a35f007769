"""Saved voices, per tenant: POST/GET /v1/voices, GET/DELETE /v1/voices/{voice}, and
POST /v1/voices/consent-statement.

POST /v1/voices creates a voice in one of two ways:
- clone: multipart/form-data (reference_audio, and consent_audio, as files) or JSON (as data
  URLs), with {name, ref_text | x_vector_only, language, description} and the consent the
  tenant's policy asks (serve_app.synthesis.consent_gate): `checked` (the default):
  consent_code + consent_audio, the speaker reading a statement from
  POST /v1/voices/consent-statement, compared with the reference's; `recorded`:
  consent=true. The reference must hold speech (clone.min_speech_s) and is trimmed to it;
  the clone prompt is computed once (VoiceClone) and stored sealed with the voice's own data
  key, beside the consent evidence.
- design: JSON {name, description, sample_text?, language?, seed?}: VoiceDesign renders a
  sample of the description, VoiceClone builds a clone prompt from that sample, so the voice
  stays the same voice on every later request.
The voice's id (`voice_...`) then works as `voice` on /v1/audio/speech, `speaker` on
/api/tts/synthesize and in /v1/jobs. Another tenant's voice is 404, exactly as a missing one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_app.app.args import VOICE_CLONE, VOICE_DESIGN
from serve_app.edge.api_errors import invalid
from serve_app.platform.keys import Principal
from serve_app.platform.voices import VoiceInfo
from serve_app.protocol.voices_api import CloneVoice, ConsentStatementRequest, DesignVoice
from serve_app.routes.common import admission, rid, selector, service
from serve_app.routes.contract import errors, upload_body
from serve_app.routes.uploads import read_upload
from serve_app.synthesis.consent_gate import ConsentOffer, obtain_consent
from serve_app.synthesis.metering import Metered
from serve_app.synthesis.voice_selector import DESCRIPTION_FIELDS, VoiceRequest

router = APIRouter(prefix="/v1/voices", tags=["saved voices"])

def _voice(info: VoiceInfo) -> dict:
    return {"object": "voice", **info.as_dict()}


@router.post("", status_code=201, responses=errors(404, 409, 413, 415, 422, 429, 503, 504),
             openapi_extra=upload_body(CloneVoice, json_only=DesignVoice))
async def create_voice(request: Request) -> dict:
    svc, gate = service(request), admission(request)
    principal = gate.request_caller().principal
    upload = await read_upload(request, svc.args.audio.max_upload_bytes)
    if upload.audio is None:
        if upload.form:
            raise invalid("reference_audio", "a cloned voice needs reference_audio as a file "
                          "part; or send JSON with a description to design a voice",
                          "missing_value")
        return await _design(request, principal, upload.validated(DesignVoice))
    audio = upload.audio
    body = upload.validated(CloneVoice)
    ref_text = (body.ref_text or "").strip() or None
    if not body.x_vector_only and ref_text is None:
        raise invalid("ref_text", "ref_text (the transcript of reference_audio) is required; or "
                      "set x_vector_only=true", "missing_value")
    level = await gate.platform.consent_level(principal, "voices")

    # metered as a VoiceClone request that produced no audio
    async with svc.meter.admitted(Metered(VOICE_CLONE, rid(request))) as usage:
        reference = await svc.prepare_reference(audio)
        consent = await obtain_consent(svc, gate.platform, principal, level, ConsentOffer(
            body.consent, body.consent_code, upload.consent_audio), reference)
        prompt = await svc.clone_prompt(reference, ref_text, body.x_vector_only)
        info = await gate.platform.create_clone_voice(
            principal, body.name, prompt, consent=consent, reference_audio=audio,
            language=body.language, description=body.description, request_id=rid(request))
        usage.ok()
    return _voice(info)


@router.post("/consent-statement", status_code=201, responses=errors(422, 429))
async def consent_statement(body: ConsentStatementRequest, request: Request) -> dict:
    """A statement for the speaker to read aloud into consent_audio, with a one-time code
    (send it as consent_code), in their language; it expires (`expires_at`)."""
    gate = admission(request)
    principal = gate.request_caller().principal
    statement = await gate.platform.issue_statement(principal, body.language)
    return statement.as_dict()


async def _design(request: Request, principal: Principal, body: DesignVoice) -> dict:
    svc, gate = service(request), admission(request)
    await selector(request).select(VoiceRequest(  # the description, as every VoiceDesign's
        deployment=VOICE_DESIGN, description=body.description, language=body.language,
        fields=DESCRIPTION_FIELDS))

    # metered as the VoiceDesign request that rendered the sample
    metered = Metered(VOICE_DESIGN, rid(request), len(body.sample_text))
    async with svc.meter.admitted(metered) as usage:
        sample, seconds = await svc.design_sample(body.description, body.sample_text,
                                                  body.language, body.seed)
        # the sample is the model's own: no speech screening, no consent to ask
        prompt = await svc.clone_prompt(sample, body.sample_text, False, screen=False)
        info = await gate.platform.create_designed_voice(
            principal, body.name, prompt, description=body.description, sample_audio=sample,
            language=None if body.language == "auto" else body.language,
            request_id=rid(request))
        usage.ok(seconds)
    return _voice(info)


@router.get("")
async def list_voices(request: Request) -> dict:
    gate = admission(request)
    voices = await gate.platform.list_voices(gate.request_caller().principal)
    return {"object": "list", "data": [_voice(v) for v in voices]}


@router.get("/{voice}")
async def get_voice(voice: str, request: Request) -> dict:
    gate = admission(request)
    return _voice(await gate.platform.get_voice(gate.request_caller().principal, voice))


@router.delete("/{voice}")
async def delete_voice(voice: str, request: Request) -> dict:
    gate = admission(request)
    info = await gate.platform.delete_voice(gate.request_caller().principal, voice,
                                            request_id=rid(request))
    return {"id": info.id, "object": "voice", "deleted": True}
