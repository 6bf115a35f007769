"""WebSocket `/v1/audio/speech/stream`: a speech session over one socket (docs/streaming.md).

Nothing holds the door without a key (serve_app.edge.socket_gate): a socket is authenticated
before anything is held for it. A header key (`Authorization: Bearer` / `X-API-Key`), or no
key at all with authentication off, is checked at the handshake, and a refused key or a
socket over the gate's caps is refused there (an HTTP 401/403/429/503 in the error envelope,
with Retry-After where a retry helps). Without a header key the socket is accepted as
pending (browsers cannot set WebSocket headers) and its first message's `api_key` is checked;
a socket whose first message does not come within `ingress.session_start_timeout_s` gets
error `session_start_timeout` and close 1008, as does a refused key. An authenticated
session then holds a place of its tenant's (the gate), not only of the replica's.

Every other error is an error event (the envelope of serve_app.edge.api_errors, plus `retry_after`
when the server asks to retry) and close code 4000 + the HTTP status (4422, 4404, 4429,
4503, ...). After `done` the client closes (the server does, with 1000, if it has not within
CLIENT_CLOSE_WAIT_S). A `cancel` message or a closed socket stops generation (the request in
flight is cancelled in the model); a client that sends nothing for
`ingress.session_idle_timeout_s` while its text is open gets error `session_idle` (close
4408), which frees the engine slot an incremental session holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deployments.metrics import tts_metrics
from serve_app.edge.api_errors import (
    ApiError,
    from_platform,
    invalid,
    to_api_error,
    validation_error,
)
from serve_app.edge.http_edge import route_path
from serve_app.edge.request_context import acting_as
from serve_app.platform.errors import PlatformError
from serve_app.platform.keys import key_from_headers
from serve_app.protocol.session_api import (
    Cancel,
    ClientMessage,
    Close,
    SessionAudio,
    SessionDone,
    SessionSettings,
    SessionWords,
)
from serve_app.routes.common import replica, selector, service
from serve_app.sessions.speech_session import SpeechSession, new_session_id

logger = logging.getLogger("qtts.speech_session")

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

ENDPOINT = "speech"  # key scopes: the same family as POST /v1/audio/speech
AUTH_CLOSE = 1008
CLIENT_CLOSE_WAIT_S = 5.0
START_TIMEOUT = "session_start_timeout"
_MESSAGE = TypeAdapter(ClientMessage)


class _Cancelled(Exception):
    pass


def _parse(raw: dict) -> object:
    if raw.get("type") == "session":
        raise invalid("type", "the session settings come once, in the first message")
    try:
        return _MESSAGE.validate_python(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def _receive_json(websocket: WebSocket) -> dict:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise invalid("type", "messages are JSON text frames; binary frames are not accepted")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise invalid("type", "a message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise invalid("type", "a message is a JSON object with a 'type'")
    return raw


def error_event(error: ApiError, session_id: str) -> dict:
    body = error.body(session_id)["error"]
    if "Retry-After" in error.headers:
        body["retry_after"] = int(error.headers["Retry-After"])
    return {"type": "error", "error": body}


@router.websocket("/audio/speech/stream")
async def speech_stream(websocket: WebSocket) -> None:
    svc = service(websocket)
    gate = replica(websocket).socket_gate
    session_id = new_session_id()
    client = websocket.client.host if websocket.client else None
    pending = contextlib.ExitStack()
    try:  # before the handshake is accepted: a refusal is an HTTP answer
        pending.enter_context(gate.pending_socket(client))
        principal = None
        if key_from_headers(websocket.headers) is not None or not svc.args.platform.auth_enabled:
            principal = await _authenticate(svc, dict(websocket.headers), None)
            pending.close()  # authenticated: no longer pending
    except Exception as exc:  # noqa: BLE001 - every refusal is the error envelope
        pending.close()
        await _refuse(websocket, svc, exc, session_id)
        return
    await websocket.accept()
    try:
        with pending:
            raw, principal = await _first_message(websocket, svc, principal)
        limits = principal.limits
        with gate.session(principal.tenant_id, limits.max_concurrent if limits else None):
            await _serve(websocket, svc, session_id, raw, principal)
    except WebSocketDisconnect:
        return
    except Exception as exc:  # noqa: BLE001 - every failure is an error event and a close
        error = to_api_error(exc, retry_after_s=svc.args.ingress.retry_after_s,
                             request_id=session_id)
        if error.status >= 500:
            logger.error("session %s failed: %s %s", session_id, error.code, type(exc).__name__)
        code = AUTH_CLOSE if error.status in (401, 403) or error.code == START_TIMEOUT \
            else 4000 + error.status
        with contextlib.suppress(Exception):
            if websocket.application_state == WebSocketState.CONNECTED:
                await websocket.send_json(error_event(error, session_id))
                await websocket.close(code, error.code)


async def _refuse(websocket: WebSocket, svc, exc: Exception, session_id: str) -> None:
    """Refuse the handshake: the error envelope as the HTTP answer where the server can send
    one (uvicorn's denial-response extension), else a close before accepting (a 403)."""
    error = to_api_error(exc, retry_after_s=svc.args.ingress.retry_after_s,
                         request_id=session_id)
    tts_metrics().count_error(error.code, error.status)
    with contextlib.suppress(Exception):
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(JSONResponse(
                error.body(session_id, route_path(websocket.scope)),
                status_code=error.status, headers=error.headers))
        else:
            await websocket.close(AUTH_CLOSE, error.code)


async def _authenticate(svc, headers: dict[str, str], api_key: str | None):
    if api_key is not None and key_from_headers(headers) is None:
        headers = {"x-api-key": api_key}
    try:
        principal = await svc.admission.platform.authenticate(headers)
        principal.require(endpoint=ENDPOINT, feature="speech_sessions")
    except PlatformError as exc:
        raise from_platform(exc) from None
    return principal


async def _first_message(websocket: WebSocket, svc, principal):
    """The session settings, within `session_start_timeout_s` of connecting, and the
    principal (from their `api_key` when the handshake carried no key)."""
    deadline = svc.args.ingress.session_start_timeout_s
    try:
        async with asyncio.timeout(deadline):
            raw = await _receive_json(websocket)
    except TimeoutError:
        raise ApiError(408, START_TIMEOUT, f"no session message within {deadline:g} s of "
                       "connecting (ingress.session_start_timeout_s): send "
                       '{"type": "session", ...} first, with "api_key" unless a key header '
                       "was sent") from None
    if principal is None:
        principal = await _authenticate(svc, dict(websocket.headers), raw.get("api_key")
                                        if isinstance(raw.get("api_key"), str) else None)
    return raw, principal


async def _serve(websocket: WebSocket, svc, session_id: str, raw: dict, principal) -> None:
    try:
        settings = SessionSettings.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None
    with acting_as(principal, ENDPOINT):
        session = SpeechSession(svc, settings, session_id, selector(websocket),
                                replica(websocket).text_relay)
        await session.open()
        await websocket.send_json({"type": "session.created", "session_id": session_id,
                                   "mode": settings.mode, "format": settings.response_format,
                                   "sample_rate": session.sample_rate})
        await _run(websocket, session)


async def _run(websocket: WebSocket, session: SpeechSession) -> None:
    """Receive messages and send audio at once; whichever side ends first decides."""
    incoming: asyncio.Queue = asyncio.Queue()

    async def messages():
        while True:
            item = await incoming.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Close):
                return

    idle_s = session.service.args.ingress.session_idle_timeout_s

    async def receive() -> None:
        text_open = True
        while True:
            try:  # while the text is open, a silent client ends the session (raised: sent)
                async with asyncio.timeout(idle_s if text_open else None):
                    raw = await _receive_json(websocket)
            except TimeoutError:
                raise ApiError(408, "session_idle", f"no message for {idle_s:g} s "
                               "(ingress.session_idle_timeout_s); the session ended") from None
            except ApiError as exc:
                incoming.put_nowait(exc)  # the session fails with it (sent as the error)
                continue
            try:
                message = _parse(raw)
            except ApiError as exc:
                incoming.put_nowait(exc)
                continue
            if isinstance(message, Cancel):
                raise _Cancelled
            text_open = text_open and not isinstance(message, Close)
            incoming.put_nowait(message)

    async def send() -> None:
        async with contextlib.aclosing(session.run(messages())) as events:
            async for event in events:
                if isinstance(event, SessionAudio):
                    await websocket.send_json(event.event())
                    if event.audio:
                        await websocket.send_bytes(event.audio)
                elif isinstance(event, SessionWords):  # after the audio it times
                    await websocket.send_json(event.event())
                elif isinstance(event, SessionDone):
                    await websocket.send_json(event.event())

    loop = asyncio.get_running_loop()
    receiver, sender = loop.create_task(receive()), loop.create_task(send())
    try:
        done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (receiver, sender):
            task.cancel()  # the sender's cancel reaches the model stream of the sentence
        for task in (receiver, sender):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if sender in done:
        if (failure := sender.exception()) is not None:
            raise failure
        await _close_after_done(websocket)
        return
    failure = receiver.exception()
    if isinstance(failure, _Cancelled):
        await websocket.send_json(SessionDone(usage=session.usage, cancelled=True).event())
        await _close_after_done(websocket)
        return
    if failure is not None:
        raise failure


async def _close_after_done(websocket: WebSocket) -> None:
    """After `done` the client closes (the server closes with 1000 if it has not within
    CLIENT_CLOSE_WAIT_S): Ray Serve 2.60's proxy logs a failed request for every socket the
    server side closes, so the normal end is the client's close."""
    try:
        async with asyncio.timeout(CLIENT_CLOSE_WAIT_S):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
    except TimeoutError:
        await websocket.close(1000)
