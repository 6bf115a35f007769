"""Voice design and voice cloning over HTTP, returning audio bytes.

POST /v1/audio/design  JSON {input, description, language, response_format, speed, pitch,
                            sample_rate, loudness_lufs, seed, max_new_tokens, stream_format}
POST /v1/audio/clone   multipart/form-data (reference_audio as a file) or JSON (reference_audio
                       as a data URL `data:audio/...;base64,...`), plus {input, ref_text,
                       x_vector_only, language, response_format, speed, pitch, sample_rate,
                       loudness_lufs, seed, max_new_tokens, stream_format}; and the consent
                       the tenant's one-shot policy asks (none by default; `recorded`:
                       consent=true; `checked`: consent_code + consent_audio, as
                       POST /v1/voices takes them). The reference must hold speech.
stream_format "audio" or "sse" streams the audio while it is generated (docs/streaming.md).
The server never fetches a URL or opens a path given by a client: only bytes are accepted.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from deployments.audio import ReferenceAudio
from serve_app.app.args import VOICE_CLONE, VOICE_DESIGN
from serve_app.edge.api_errors import invalid
from serve_app.protocol.audio_api import CloneBody, DesignBody, SpeechBody
from serve_app.protocol.speech import SpeechInput, VoiceCloneInput
from serve_app.protocol.timestamps import TimedAudio
from serve_app.routes.common import replica, selector, service, speech_response
from serve_app.routes.contract import audio_content, errors, upload_body
from serve_app.routes.uploads import Upload, read_upload
from serve_app.synthesis.consent_gate import ConsentOffer, obtain_consent
from serve_app.synthesis.voice_selector import (
    DESCRIPTION_FIELDS,
    Reference,
    VoiceChoice,
    VoiceRequest,
)

router = APIRouter(prefix="/v1/audio", tags=["voice design and cloning"])

BodyModel = TypeVar("BodyModel", bound=BaseModel)

#: What design and clone answer: audio, or an error of the request, its tenant or the model.
_SPEECH_ANSWERS = {200: audio_content("The audio in response_format; streamed with "
                                      "stream_format; with timestamps 'word' (not streamed) "
                                      "JSON with the audio and its words", sse=True,
                                      json_model=TimedAudio),
                   **errors(400, 404, 422, 429, 503, 504)}


@router.post("/design", response_class=Response, responses=_SPEECH_ANSWERS)
async def design(body: DesignBody, request: Request) -> Response:
    choice = await selector(request).select(VoiceRequest(
        deployment=VOICE_DESIGN, description=body.description, language=body.language,
        fields=DESCRIPTION_FIELDS))
    return await speech_response(request, _input(request, body, choice), body.stream_format)


@router.post("/clone", response_class=Response,
             responses={**_SPEECH_ANSWERS, **errors(413, 415)},
             openapi_extra=upload_body(CloneBody))
async def clone(request: Request) -> Response:
    svc = service(request)
    upload = await read_upload(request, svc.args.audio.max_upload_bytes)
    if upload.audio is None:
        raise invalid("reference_audio", "reference_audio is required: a file part "
                      "(multipart) or a data URL (JSON)", "missing_value")
    body = upload.validated(CloneBody)
    prepared = await _one_shot_consent(request, upload, body)
    choice = await selector(request).select(VoiceRequest(
        deployment=VOICE_CLONE, language=body.language,
        reference=Reference(upload.audio, body.ref_text, body.x_vector_only)))
    inp = _input(request, body, choice)
    if prepared is not None and isinstance(inp, VoiceCloneInput):
        inp = inp.prepared_as(prepared)  # the consent check's reference: prepared once
    return await speech_response(request, inp, body.stream_format)


async def _one_shot_consent(request: Request, upload: Upload, body: CloneBody
                            ) -> ReferenceAudio | None:
    """The consent the tenant's one-shot policy asks, checked before anything is spoken
    (without a platform, in the Ray-free route tests, none is asked); the reference as it
    prepared it for a speaker check (the clone then speaks from it), else None."""
    gate = replica(request).admission
    if gate is None or upload.audio is None:
        return None
    principal = gate.request_caller().principal
    level = await gate.platform.consent_level(principal, "one_shot")
    if level == "none":
        return None
    svc = service(request)
    offer = ConsentOffer(body.consent, body.consent_code, upload.consent_audio)
    if level != "checked":  # nothing compared: the reference is prepared once, by the call
        await obtain_consent(svc, gate.platform, principal, level, offer, None)
        return None
    reference = await svc.prepare_reference(upload.audio)
    await obtain_consent(svc, gate.platform, principal, level, offer, reference)
    return reference


def _input(request: Request, body: SpeechBody, choice: VoiceChoice) -> SpeechInput:
    return choice.input(body.input, language=body.language, seed=body.seed,
                        output=body.render_options(service(request).args.audio.default_format),
                        max_new_tokens=body.max_new_tokens, min_frames=body.min_frames,
                        normalize=body.normalize, input_format=body.input_format,
                        pronunciation_dictionaries=body.pronunciation_dictionaries,
                        timestamps=body.timestamps)

