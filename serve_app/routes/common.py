"""What every route shares: the services of the replica serving it, the request id, audio
responses.

Routes are bound to the ingress instance that serves them: each replica builds its own app
(`TTSIngress.__serve_build_asgi_app__`, serve_app.app.ingress) with that replica's
`ReplicaServices` in `app.state`, and a handler reaches them through its request (or
WebSocket) with the functions below. Nothing is kept in module or class globals.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection

from deployments.audio.marking import AIMark, mark_headers
from serve_app.edge.api_errors import ApiError, invalid
from serve_app.edge.http_edge import REQUEST_ID_HEADER
from serve_app.edge.socket_gate import SocketGate
from serve_app.protocol.speech import AudioOutput, SpeechInput
from serve_app.protocol.timestamps import TimedAudio
from serve_app.routes.stream_responses import stream_response
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.synthesis.voice_selector import VoiceSelector

T = TypeVar("T")
#: What the typed inputs call the text (serve_app.protocol.speech), which errors name.
TEXT_PARAM = "text"

if TYPE_CHECKING:
    from serve_app.sessions.incremental_speaker import ReplicaTextRelay
    from serve_app.synthesis.admission import TenantAdmission
    from serve_app.synthesis.job_synthesis import JobSynthesis

__all__ = ["REQUEST_ID_HEADER", "ReplicaServices", "admission", "audio_response", "jobs",
           "rid", "selector", "service", "speech_response", "timed_response"]


@dataclass(frozen=True)
class ReplicaServices:
    """What the routes of one ingress replica reach. Without a platform (the Ray-free route
    tests) only `service` is there (and a selector over it without saved voices), and nothing
    is authenticated or metered."""

    service: SynthesisService
    admission: TenantAdmission | None = None
    selector: VoiceSelector | None = None  # create_http_app makes one when there is none
    jobs: JobSynthesis | None = None
    text_relay: ReplicaTextRelay | None = None  # incremental speech sessions
    socket_gate: SocketGate | None = None  # WebSocket budgets (create_http_app makes one)


def replica(conn: HTTPConnection) -> ReplicaServices:
    return conn.app.state.replica


def service(conn: HTTPConnection) -> SynthesisService:
    return replica(conn).service


def admission(conn: HTTPConnection) -> TenantAdmission:
    return _present(replica(conn).admission, "a platform (tenants, keys, usage)")


def selector(conn: HTTPConnection) -> VoiceSelector:
    return _present(replica(conn).selector, "a voice selector")


def jobs(conn: HTTPConnection) -> JobSynthesis:
    return _present(replica(conn).jobs, "a job runner")


def _present(part: T | None, what: str) -> T:
    if part is None:
        raise RuntimeError(f"this app has no {what}")
    return part


def rid(request: HTTPConnection) -> str:
    return request.state.request_id


def audio_response(out: AudioOutput) -> Response:
    return Response(
        content=out.audio,
        media_type=out.content_type,
        headers={
            "X-Audio-Duration": f"{out.duration_seconds:.3f}",
            "X-Sample-Rate": str(out.sample_rate),
            "X-Processing-Time": f"{out.processing_seconds:.3f}",
            "X-Cache": "hit" if out.cached else "miss",
            **(mark_headers(AIMark(out.model_kind or "", out.marked_as)) if out.marked_as
               else {}),
        },
    )


async def speech_response(conn: HTTPConnection, inp: SpeechInput,
                          stream_format: str | None, text_field: str = "input") -> Response:
    """One operation's answer: the audio, or (`stream_format` "audio" / "sse") its stream.
    `text_field`: what the surface calls the text (OpenAI's `input`), which an error about
    the text (its length, its SSML) names."""
    svc = service(conn)
    if stream_format == "audio" and inp.timestamps != "none":
        raise invalid("timestamps", "stream_format 'audio' is the audio file alone, with no "
                      "room for words: send stream_format 'sse' (a speech.alignment event) or "
                      "no stream_format (a JSON answer), or timestamps 'none'")
    try:
        if stream_format:
            return stream_response(await svc.stream(inp, rid(conn)), stream_format)
        out = await svc.synthesize(inp, rid(conn))
    except ApiError as exc:
        if exc.param != TEXT_PARAM or text_field == TEXT_PARAM:
            raise
        message = exc.message
        if message.startswith(TEXT_PARAM + " "):
            message = text_field + message[len(TEXT_PARAM):]
        raise ApiError(exc.status, exc.code, message, text_field, exc.headers) from None
    return timed_response(out) if out.timings is not None else audio_response(out)


def timed_response(out: AudioOutput) -> Response:
    """A whole answer with `timestamps: "word"`: JSON with the audio (base64) and its words,
    with the audio response's headers."""
    assert out.timings is not None
    body = TimedAudio(audio=base64.b64encode(out.audio).decode(), format=out.format.value,
                      content_type=out.content_type, sample_rate=out.sample_rate,
                      duration_seconds=out.duration_seconds, words=out.timings.words,
                      source=out.timings.source)
    headers = dict(audio_response(out).headers)
    headers.pop("content-type", None)
    headers.pop("content-length", None)
    return JSONResponse(body.model_dump(mode="json"), headers=headers)
