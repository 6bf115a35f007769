"""Async jobs and usage: POST/GET /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs/{id}/audio,
GET /v1/usage.

GET /v1/jobs/{id}/captions.vtt and .srt: captions from its word timestamps.

POST /v1/jobs takes the fields of /v1/audio/speech (`model`, `input`, `voice` (a preset, an
OpenAI voice or a saved voice id), `instructions`, `language`, `seed`, `response_format`,
`speed`, `sample_rate`, `max_new_tokens`) plus `description` (VoiceDesign), `webhook_url`
and `webhook_secret`; text may be long (`jobs.max_text_chars`): it is split at sentence ends,
synthesized segment by segment and joined with a crossfade. Answers 202 with the job's id
(and, when the server made the webhook secret, that secret, once). The runner is the one of
any ingress replica; a job survives the replica that ran it (docs/platform.md).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from deployments.audio import RenderOptions
from serve_app.platform.jobs.store import JobRequest
from serve_app.protocol.jobs_api import PERIOD_PATTERN, JobBody
from serve_app.routes.common import admission, jobs, selector, service
from serve_app.routes.contract import audio_content, errors
from serve_app.synthesis import captions
from serve_app.synthesis.job_synthesis import JobWords, check_job_text
from serve_app.synthesis.voice_selector import DESCRIPTION_FIELDS, VoiceRequest

router = APIRouter(prefix="/v1", tags=["jobs and usage"])
CAPTION_CHARS = Query(captions.MAX_CHARS, ge=10, le=200,
                      description="Most characters of a caption line")
CAPTION_LINES = Query(captions.MAX_LINES, ge=1, le=4, description="Most lines of a cue")

@router.post("/jobs", status_code=202, responses=errors(404, 422, 429, 503))
async def submit(body: JobBody, request: Request) -> JSONResponse:
    gate = admission(request)
    caller = gate.request_caller()
    choice = await selector(request).select(VoiceRequest(
        model=body.model, voice=body.voice or "", instructions=body.instructions,
        description=body.description, language=body.language, fields=DESCRIPTION_FIELDS))
    model = choice.deployment
    # an SSML job's words are not timed yet: none by default, a 422 when asked for
    timestamps = ("none" if body.input_format == "ssml" and "timestamps" not in
                  body.model_fields_set else body.timestamps)
    check_job_text(body.input, body.input_format, gate.platform.args.jobs.segment_chars,
                   timestamps=timestamps)
    params = choice.job_params(language=body.language, seed=body.seed,
                               max_new_tokens=body.max_new_tokens, normalize=body.normalize,
                               pronunciation_dictionaries=body.pronunciation_dictionaries,
                               input_format=body.input_format,
                               timestamps=timestamps)
    # the dictionaries it names are the tenant's (404 now, not when a segment is spoken)
    await service(request).pronunciations.lexicon(body.pronunciation_dictionaries or (),
                                                  caller)
    output = RenderOptions(format=body.response_format, speed=body.speed,
                           sample_rate=body.sample_rate)
    job = JobRequest(model=model, text=body.input, params=params,
                     output=output.model_dump(mode="json"))
    # a job is one request against the tenant's per-minute and concurrency limits (429 +
    # Retry-After like any request); its segments are billed one by one as they finish
    admitted = await gate.admit(caller, model, 0)
    await asyncio.to_thread(admitted.release)
    ticket = await gate.platform.submit_job(caller.principal, job, webhook_url=body.webhook_url,
                                            webhook_secret=body.webhook_secret)
    jobs(request).wake()
    status = await gate.platform.job_status(caller.principal, ticket.id)
    answer = status.as_dict()
    if ticket.webhook_secret:
        answer["webhook_secret"] = ticket.webhook_secret  # shown this once
    return JSONResponse(answer, status_code=202, headers={"Location": f"/v1/jobs/{ticket.id}"})


@router.get("/jobs")
async def list_jobs(request: Request, limit: int = 100) -> dict:
    gate = admission(request)
    found = await gate.platform.list_jobs(gate.request_caller().principal,
                                          max(1, min(limit, 1000)))
    return {"object": "list", "data": [j.as_dict() for j in found]}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> dict:
    gate = admission(request)
    return (await gate.platform.job_status(gate.request_caller().principal, job_id)).as_dict()


@router.get("/jobs/{job_id}/audio", response_class=Response, responses={
    200: audio_content("The job's audio, in its response_format"), **errors(409)})
async def job_audio(job_id: str, request: Request) -> Response:
    gate = admission(request)
    data, content_type = await gate.platform.job_result(gate.request_caller().principal, job_id)
    return Response(content=data, media_type=content_type)


@router.get("/jobs/{job_id}/captions.vtt", response_class=PlainTextResponse, responses={
    200: {"description": "WebVTT captions of the job's audio", "content": {"text/vtt": {}}},
    **errors(404, 409, 422)})
async def job_captions_vtt(job_id: str, request: Request,
                           max_chars: int = CAPTION_CHARS, max_lines: int = CAPTION_LINES
                           ) -> PlainTextResponse:
    cue_list = await _cues(request, job_id, max_chars, max_lines)
    return PlainTextResponse(captions.webvtt(cue_list), media_type="text/vtt")


@router.get("/jobs/{job_id}/captions.srt", response_class=PlainTextResponse, responses={
    200: {"description": "SRT captions of the job's audio", "content": {"application/x-subrip": {}}},
    **errors(404, 409, 422)})
async def job_captions_srt(job_id: str, request: Request,
                           max_chars: int = CAPTION_CHARS, max_lines: int = CAPTION_LINES
                           ) -> PlainTextResponse:
    cue_list = await _cues(request, job_id, max_chars, max_lines)
    return PlainTextResponse(captions.srt(cue_list), media_type="application/x-subrip")


async def _cues(request: Request, job_id: str, max_chars: int, max_lines: int
                ) -> list[captions.Cue]:
    """404: no such job, or it did not ask for timestamps; 409: not finished."""
    gate = admission(request)
    data = await gate.platform.job_words(gate.request_caller().principal, job_id)
    words = JobWords.model_validate_json(data)
    return captions.cues(words.words, words.text, max_chars=max_chars, max_lines=max_lines)


@router.get("/usage")
async def usage(request: Request, period: str = Query("month", pattern=PERIOD_PATTERN)) -> dict:
    """The caller's tenant's usage: period = month | day | YYYY-MM | YYYY-MM-DD."""
    gate = admission(request)
    principal = gate.request_caller().principal
    summary = await gate.platform.usage_summary(principal.tenant_id, period)
    return {"object": "usage", "tenant": principal.tenant_name, **summary.as_dict()}
