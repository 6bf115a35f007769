"""The ingress deployment: every HTTP route and the handle API, over one SynthesisService.

Wyoming (Home Assistant's protocol, when `wyoming.enabled`): a TCP listener on the replica's
own event loop (serve_app.wyoming), over the same service, selector and admission.
HTTP: seed-compatible /api/*, OpenAI-compatible /v1/audio/speech and /v1/models, voice design
and cloning under /v1/audio/, saved voices, jobs, usage, admin, /docs and /openapi.json.
Handle API: the typed methods of `TTSIngress` (custom_voice, voice_design, voice_clone,
stream, speech_session, voices, health), taking and returning the models in
`serve_app.protocol.speech`.

Each replica composes its parts once, in `TTSIngress.__init__`: the `Platform`, the
admission component over it, the SynthesisService with that admission, the saved-voice
resolver and the job runner. Its HTTP app is then built for it
(`__serve_build_asgi_app__`, Ray Serve's late-bound ingress app), with those parts in
`app.state` and the auth middleware handed the admission, so every route is bound to the
instance serving it (serve_app.routes.common) and nothing lives in a process-global slot.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.logging_setup import configure_replica_logging, current_request_id
from deployments.metrics import tts_metrics
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.edge.api_errors import to_api_error
from serve_app.platform.service import Platform
from serve_app.protocol.speech import (
    AudioOutput,
    AudioStreamChunk,
    CustomVoiceInput,
    SpeechInput,
    VoiceCloneInput,
    VoiceDesignInput,
)
from serve_app.routes.common import ReplicaServices
from serve_app.sessions.incremental_speaker import ReplicaTextRelay
from serve_app.sessions.speech_session import (
    SessionEvent,
    SessionSettings,
    TextFeed,
    handle_session,
)
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.job_synthesis import JobSynthesis
from serve_app.synthesis.saved_voices import SavedVoices
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.synthesis.voice_selector import VoiceSelector
from serve_app.wyoming.connection import WyomingServices
from serve_app.wyoming.listener import WyomingListener
from serve_app.wyoming.wyoming_voices import WyomingVoices

logger = logging.getLogger("qtts.ingress")


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=1024,  # well above IngressArgs.socket_budget: see the profiles
)
@serve.ingress()  # the HTTP app is built in each replica, for it: __serve_build_asgi_app__
class TTSIngress:
    async def __init__(
        self,
        args: AppArgs,
        models: dict[str, DeploymentHandle],
        audio: DeploymentHandle,
        aligner: DeploymentHandle | None = None,
    ):
        configure_replica_logging()
        platform = Platform.open(args.platform, clone=args.clone)
        logger.info("platform: %r", platform)
        self.admission = TenantAdmission(platform)
        self.service = SynthesisService(args, models, audio, self.admission, aligner)
        # (not `self.voices`: that name is a handle method)
        self.selector = VoiceSelector(self.service, SavedVoices(self.admission, self.service))
        self.job_synthesis = JobSynthesis(self.service, self.admission, self.selector)
        self.job_synthesis.start()  # this replica's job runner, in its event loop
        self.text_relay = ReplicaTextRelay()  # incremental speech sessions' text
        # the normalizer's slow grammars, built now in a thread (the replica serves meanwhile;
        # a sentence that needs one before it is built waits for that build)
        self._warm_up = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self.service.text_front_end.normalizer.warm))
        self.wyoming: WyomingListener | None = None  # Home Assistant's protocol, when enabled
        if args.wyoming.enabled:
            self.wyoming = WyomingListener(WyomingServices(
                self.service, self.selector, self.text_relay,
                WyomingVoices(self.service, platform, args.wyoming), platform, args.wyoming),
                platform.is_trusted_network)
            await self.wyoming.start()  # on this replica's event loop

    async def __del__(self) -> None:  # Serve calls it when the replica shuts down
        if self.wyoming is not None:
            await self.wyoming.close()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_http_app(ReplicaServices(self.service, self.admission, self.selector,
                                               self.job_synthesis, self.text_relay))

    # ----------------------------------------------------------------- handle API (typed)
    async def custom_voice(self, request: CustomVoiceInput) -> AudioOutput:
        """A preset speaker, or a saved voice of the handle tenant named as `speaker`."""
        return await self._call(request)

    async def voice_design(self, request: VoiceDesignInput) -> AudioOutput:
        return await self._call(request)

    async def voice_clone(self, request: VoiceCloneInput) -> AudioOutput:
        return await self._call(request)

    async def stream(
        self, request: CustomVoiceInput | VoiceDesignInput | VoiceCloneInput
    ) -> AsyncIterator[AudioStreamChunk]:
        """Any of the three operations, streamed: call it with
        `handle.options(stream=True).stream.remote(request)` and iterate. Chunks carry encoded
        bytes of one file in `request.output.format`; the last has final=True and usage.
        Request errors raise ApiError before the first chunk, as for the other methods."""
        request_id = current_request_id() or uuid.uuid4().hex
        retry_after = self.service.args.ingress.retry_after_s
        try:
            opened = await self.service.stream(await self._edge(request), request_id)
        except Exception as exc:  # noqa: BLE001 - the same ApiError as HTTP
            raise to_api_error(exc, retry_after_s=retry_after, request_id=request_id) from None
        try:
            async for piece in opened.chunks():
                yield piece
        except Exception as exc:  # noqa: BLE001 - mid-stream: log with the id, raise ApiError
            logger.error("request %s: stream failed mid-way: %s", request_id, type(exc).__name__)
            raise to_api_error(exc, retry_after_s=retry_after, request_id=request_id) from None

    async def speech_session(
        self, settings: SessionSettings, text: TextFeed | list[str]
    ) -> AsyncIterator[SessionEvent]:
        """The WebSocket session for Ray callers (docs/streaming.md): text pieces from a
        TextFeed (or a list), SessionAudio in order, then SessionDone; errors raise ApiError."""
        async for event in handle_session(self.service, settings, text, self.selector,
                                          self.text_relay):
            yield event

    async def voices(self) -> list[dict]:
        return [entry.__dict__ for entry in await self.service.voices()]

    async def health(self) -> dict:
        return await self.service.health()

    async def _edge(self, request: SpeechInput) -> SpeechInput:
        """The handle API's edge: the voice selector, as for every surface (a saved voice
        named as a CustomVoice `speaker` is resolved here, once, into its VoiceRef)."""
        return await self.selector.typed(request)

    async def _call(self, request: SpeechInput) -> AudioOutput:
        request_id = current_request_id() or uuid.uuid4().hex  # Serve's id: the one in the logs
        try:
            return await self.service.synthesize(await self._edge(request), request_id)
        except Exception as exc:  # noqa: BLE001 - handle callers get the same ApiError as HTTP
            error = to_api_error(
                exc, retry_after_s=self.service.args.ingress.retry_after_s, request_id=request_id
            )
            tts_metrics().count_error(error.code, error.status)
            raise error from None
