"""One request to a model deployment, built once from an operation's input.

`CallBuilder.prepare` (what `SynthesisService.prepare` asks) turns every typed input into a
`ModelCall`, validated (text and upload limits, the speaker and language the model knows): the deployment, its
model's info, the engine's `SynthesisRequest`, the cache key's extra parts and the saved
voice it bills; a clone carries its upload (prepared by the AudioProcessor when the call is
made), and a request whose text is still arriving (an incremental speech session) carries
the `TextSource` the model reads it from. `ModelCall.invoke` is the one place that picks the
model's method: `synthesize` / `stream`, their `_with_reference` forms for an upload, or
`stream_text` for arriving text.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.serve.handle import DeploymentHandle

from deployments.engine.types import ModelInfo, SynthesisRequest
from serve_app.app.args import CUSTOM_VOICE, VOICE_CLONE, VOICE_DESIGN, AppArgs
from serve_app.edge.api_errors import ApiError, invalid
from serve_app.protocol.speech import (
    CustomVoiceInput,
    SavedVoiceInput,
    SpeechInput,
    VoiceCloneInput,
    VoiceDesignInput,
)
from serve_app.synthesis import catalog

if TYPE_CHECKING:
    from deployments.text_relay import TextSource


@dataclass(frozen=True)
class ModelCall:
    deployment: str
    info: ModelInfo
    request: SynthesisRequest
    cache_extra: dict = field(default_factory=dict)
    voice: str | None = None  # the saved voice's id, for usage
    clone: VoiceCloneInput | None = None
    ref_text: str | None = None
    text: TextSource | None = None  # text still arriving: the model reads it from here

    @property
    def characters(self) -> int:
        """The request's text, as billed (text still arriving is counted when it ends)."""
        return len(self.request.text)

    async def invoke(self, handle: DeploymentHandle, audio: DeploymentHandle, *,
                     stream: bool) -> Any:
        """Make the call on the model's `handle`: a response (`stream=False`, await it for
        the SynthesisResult) or a response generator of AudioChunk (`stream=True`)."""
        if stream:
            handle = handle.options(stream=True)
        if self.text is not None:
            return handle.stream_text.remote(self.request, self.text)
        if self.clone is not None:
            reference = await audio.prepare_reference.remote(self.clone.reference_audio)
            method = handle.stream_with_reference if stream else handle.synthesize_with_reference
            return method.remote(self.request, reference, self.ref_text, self.clone.x_vector_only)
        return (handle.stream if stream else handle.synthesize).remote(self.request)


class CallBuilder:
    """The one builder of each operation's model call."""

    def __init__(self, args: AppArgs, model_info: Callable[[str], Awaitable[ModelInfo]]):
        self.args = args
        self._model_info = model_info

    async def prepare(self, inp: SpeechInput, text: TextSource | None = None) -> ModelCall:
        """The model call of an operation's input, validated: the one builder of each.
        `text`: the text keeps arriving there, read by the model as it speaks (`inp.text` is
        what has arrived so far, validated as any request's text)."""
        if isinstance(inp, SavedVoiceInput):
            call = await self._saved_voice_call(inp)
        elif isinstance(inp, CustomVoiceInput):
            call = await self._custom_voice_call(inp)
        elif isinstance(inp, VoiceDesignInput):
            call = await self._voice_design_call(inp)
        else:
            call = await self._voice_clone_call(inp)
        if text is None:
            return call
        if call.clone is not None:
            raise invalid("text", "text that keeps arriving is spoken with a preset, a designed "
                          "or a saved voice, not from an upload")
        return dataclasses.replace(call, text=text, request=dataclasses.replace(
            call.request, text="", streaming_text=True))

    def _common(self, inp: SpeechInput, info: ModelInfo) -> dict:
        return {"text": self._text(inp.text),
                "language": catalog.resolve_language(inp.language, info),
                "seed": inp.seed, "max_new_tokens": inp.max_new_tokens,
                "min_frames": inp.min_frames}

    async def _custom_voice_call(self, inp: CustomVoiceInput) -> ModelCall:
        info = await self._model_info(CUSTOM_VOICE)
        return ModelCall(CUSTOM_VOICE, info, SynthesisRequest(
            **self._common(inp, info),
            speaker=catalog.resolve_speaker(inp.speaker, info),
            instruct=inp.instruct or None,
        ))

    async def _voice_design_call(self, inp: VoiceDesignInput) -> ModelCall:
        info = await self._model_info(VOICE_DESIGN)
        return ModelCall(VOICE_DESIGN, info, SynthesisRequest(
            **self._common(inp, info), instruct=inp.description,
        ))

    async def _voice_clone_call(self, inp: VoiceCloneInput) -> ModelCall:
        info = await self._model_info(VOICE_CLONE)
        ref_text = (inp.ref_text or "").strip() or None
        if ref_text is not None:
            self._text(ref_text, "ref_text")
        if not inp.x_vector_only and ref_text is None:
            raise invalid(
                "ref_text",
                "ref_text (the transcript of reference_audio) is required for ICL cloning; "
                "or set x_vector_only=true to clone from the speaker embedding alone",
                "missing_value",
            )
        self.check_upload(len(inp.reference_audio))
        extra = {"reference": hashlib.sha256(inp.reference_audio).hexdigest(),
                 "ref_text": ref_text, "xvec": inp.x_vector_only}
        return ModelCall(VOICE_CLONE, info, SynthesisRequest(**self._common(inp, info)),
                         extra, clone=inp, ref_text=ref_text)

    async def _saved_voice_call(self, inp: SavedVoiceInput) -> ModelCall:
        info = await self._model_info(VOICE_CLONE)
        return ModelCall(VOICE_CLONE, info, SynthesisRequest(
            **self._common(inp, info), voice_prompt=inp.voice.prompt,
        ), {"voice": inp.voice.id}, voice=inp.voice.id)

    def _text(self, text: str, param: str = "text") -> str:
        limit = self.args.ingress.max_text_chars
        if len(text) > limit:
            if param == "ref_text":
                raise invalid(param, f"{param} is {len(text)} characters long; at most {limit} "
                              "are allowed.")
            raise invalid(param, f"{param} is {len(text)} characters long; at most {limit} fit in "
                          "one request, and a job (POST /v1/jobs) takes longer text.")
        return text

    def check_upload(self, size: int, param: str = "reference_audio") -> None:
        limit = self.args.audio.max_upload_bytes
        if size > limit:
            raise ApiError(
                413, "audio_too_large", f"{param} is {size} bytes; at most {limit} are allowed",
                param,
            )
        if size == 0:
            raise invalid(param, f"{param} is empty", "audio_empty")
