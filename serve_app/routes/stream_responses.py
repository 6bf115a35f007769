"""HTTP framing of streamed audio, shared by every route that streams.

Two shapes (docs/streaming.md):
- chunked audio (`stream_format: "audio"`, `enable_streaming: true`): one audio file in the
  requested format sent as it is encoded (Transfer-Encoding: chunked). A failure after the
  first byte closes the connection without the terminating chunk, so clients see a truncated
  transfer, never a short file that looks complete.
- SSE (`stream_format: "sse"`, OpenAI's events): `speech.audio.delta` events with base64 audio,
  then one `speech.audio.done` with usage; a failure sends an `error` event and ends.
Either failure is logged by Serve's access log as `200 aborted` (serve_app.edge.http_edge).
Mid-stream failures are logged with the request id (never the text or the audio). The
`X-Request-ID` response header is Serve's proxy's (it echoes the request's id on every
answer); setting it here as well sent it twice (`"id, id"` in httpx).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from deployments.audio.marking import mark_headers
from deployments.logging_setup import current_request_id, mark_aborted
from serve_app.edge.api_errors import ApiError
from serve_app.synthesis.audio_stream import AudioStream

logger = logging.getLogger("qtts.streaming")

_NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _headers(stream: AudioStream) -> dict[str, str]:
    return {"X-Sample-Rate": str(stream.sample_rate), "X-Audio-Format": stream.format.value,
            **(mark_headers(stream.mark) if stream.mark is not None else {}), **_NO_BUFFERING}


def _log_failure(stream: AudioStream, sent: int, exc: BaseException) -> None:
    logger.error("request %s: stream failed after %d chunks: %s", stream.request_id, sent,
                 type(exc).__name__, exc_info=not isinstance(exc, ApiError))


def audio_stream_response(stream: AudioStream) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for piece in stream.chunks():
                yield piece.audio
                sent += 1
        except Exception as exc:
            _log_failure(stream, sent, exc)
            raise  # the server drops the connection: no terminating chunk

    return StreamingResponse(body(), media_type=stream.content_type, headers=_headers(stream))


def sse_event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def sse_response(stream: AudioStream) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for piece in stream.chunks():
                if piece.audio:
                    yield sse_event({"type": "speech.audio.delta",
                                     "audio": base64.b64encode(piece.audio).decode()})
                    sent += 1
                if piece.final and piece.timings is not None:  # after the audio it times
                    yield sse_event({"type": "speech.alignment",
                                     **piece.timings.model_dump(mode="json")})
                if piece.final:
                    usage = piece.usage.model_dump() if piece.usage else None
                    yield sse_event({"type": "speech.audio.done", "usage": usage})
        except Exception as exc:
            _log_failure(stream, sent, exc)
            mark_aborted(current_request_id())  # the access log's 200 says "aborted" too
            error = exc if isinstance(exc, ApiError) else ApiError(
                500, "stream_failed",
                f"The stream failed after {sent} chunks (request {stream.request_id}).")
            yield sse_event({"type": "error", **error.body(stream.request_id)})

    return StreamingResponse(body(), media_type="text/event-stream", headers=_headers(stream))


def stream_response(stream: AudioStream, stream_format: str) -> StreamingResponse:
    """`stream_format` "sse" -> OpenAI's events, anything else -> chunked audio."""
    return sse_response(stream) if stream_format == "sse" else audio_stream_response(stream)
