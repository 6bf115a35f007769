"""Saved voices: a voice named in a request becomes a `VoiceRef` once, here.

The voice selector asks `SavedVoices.lookup` for every surface that takes a voice by name
(OpenAI `voice`, the seed's `speaker`, the handle API's `speaker`, jobs, speech sessions): a preset speaker or an
OpenAI voice name is None (the preset rules apply); a saved voice of the caller's tenant, by
id (`voice_...`) or by name, is its id and clone prompt; an id that is not the caller's is a
404 (another tenant's voice is answered exactly as a missing one). Nothing after the edge
looks at the string again: the voice selector (serve_app.synthesis.voice_selector) makes
the request a `SavedVoiceInput` with the `VoiceRef`.
"""

from __future__ import annotations

import contextlib

from serve_app.app.args import CUSTOM_VOICE
from serve_app.edge.api_errors import ApiError
from serve_app.edge.request_context import Caller
from serve_app.platform.errors import NotFound
from serve_app.platform.voices import is_voice_id
from serve_app.protocol.speech import VoiceRef
from serve_app.synthesis import catalog
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.synthesis_service import SynthesisService


class SavedVoices:
    def __init__(self, admission: TenantAdmission, service: SynthesisService):
        self._admission = admission
        self._service = service

    async def lookup(self, name: str, caller: Caller | None = None) -> VoiceRef | None:
        """The caller's saved voice `name` (its id or name), or None when `name` is a preset
        speaker, an OpenAI voice or names no saved voice; 404 for an unknown voice id."""
        if not name or not is_voice_id(name) and await self._is_preset(name):
            return None
        caller = caller or await self._admission.caller()
        try:
            voice_id, prompt = await self._admission.platform.resolve_voice(
                caller.principal, name, audited=True)
        except NotFound:
            if is_voice_id(name):
                raise NotFound(f"no voice {name!r}", param="voice") from None
            return None
        return VoiceRef(voice_id, prompt)

    async def require(self, voice_id: str, caller: Caller) -> VoiceRef:
        """A saved voice known to exist (a job's, resolved when it was submitted)."""
        voice_id, prompt = await self._admission.platform.resolve_voice(caller.principal, voice_id)
        return VoiceRef(voice_id, prompt)

    async def _is_preset(self, name: str) -> bool:
        if name.strip().lower() in catalog.OPENAI_VOICES:
            return True
        if CUSTOM_VOICE not in self._service.deployed_models:
            return False
        info = await self._service.model_info(CUSTOM_VOICE)
        with contextlib.suppress(ApiError):
            catalog.resolve_speaker(name, info)
            return True
        return False
