"""One request to a model deployment, built once from an operation's input.

`CallBuilder.prepare` (what `SynthesisService.prepare` asks) turns every typed input into a
`ModelCall`, validated (text and upload limits, the speaker and language the model knows): the deployment, its
model's info, the engine's `SynthesisRequest`, the cache key's extra parts and the saved
voice it bills; a clone carries its upload (prepared by the AudioProcessor when the call is
made), and a request whose text is still arriving (an incremental speech session) carries
the `TextSource` the model reads it from. `ModelCall.invoke` is the one place that picks the
model's method: `synthesize` / `stream`, their `_with_reference` forms for an upload, or
`stream_text` for arriving text.

The text goes through the text front end (serve_app.text.front_end) here, so every surface's
is normalized the same way and SSML means the same everywhere: the engine request reads the
normalized text; an SSML document with breaks, `<lang>` or `<prosody>` becomes several parts
(`CallPart`), which `invoke` speaks one after another with the breaks' silence between them
(streamed too: `PartsStream`) and the prosody rendered by the AudioProcessor's DSP on each
part's whole audio. `characters` stays the user's text as sent (what is billed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.serve.handle import DeploymentHandle

from deployments.engine.types import AudioChunk, ModelInfo, SynthesisRequest, SynthesisResult
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
from serve_app.text.front_end import Script, TextFrontEnd
from serve_app.text.lexicon import Lexicon

if TYPE_CHECKING:
    from deployments.text_relay import TextSource


@dataclass(frozen=True)
class CallPart:
    """One model request of a call in parts (SSML), the silence after it, and its prosody
    (speed and pitch factors the AudioProcessor renders)."""

    request: SynthesisRequest
    pause_after_s: float = 0.0
    speed: float = 1.0
    pitch: float = 1.0


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
    #: The user's text as sent, when the model reads it rewritten (normalized, SSML)
    source_characters: int | None = None
    #: An SSML call in parts (empty: `request` is the whole call), and silence before them
    parts: tuple[CallPart, ...] = ()
    pause_before_s: float = 0.0
    script: Script | None = field(default=None, repr=False, compare=False)

    @property
    def characters(self) -> int:
        """The request's text as the user sent it, as billed (text still arriving is counted
        when it ends; normalization and SSML do not change it)."""
        if self.source_characters is not None:
            return self.source_characters
        return len(self.request.text)

    async def invoke(self, handle: DeploymentHandle, audio: DeploymentHandle, *,
                     stream: bool) -> Any:
        """Make the call on the model's `handle`: a response (`stream=False`, await it for
        the SynthesisResult) or a response generator of AudioChunk (`stream=True`)."""
        if self.clone is not None and self.clone.prepared is None:
            # prepared once per call, however many parts speak it
            self = dataclasses.replace(self, clone=self.clone.prepared_as(
                await audio.prepare_reference.remote(self.clone.reference_audio)))
        if self.parts:
            if stream:
                return PartsStream(self, handle, audio)
            return self._joined(handle, audio)
        if stream:
            handle = handle.options(stream=True)
        if self.text is not None:
            return handle.stream_text.remote(self.request, self.text)
        if self.clone is not None:
            reference = self.clone.prepared
            method = handle.stream_with_reference if stream else handle.synthesize_with_reference
            return method.remote(self.request, reference, self.ref_text, self.clone.x_vector_only)
        return (handle.stream if stream else handle.synthesize).remote(self.request)

    def part(self, part: CallPart) -> ModelCall:
        """One part as a call of its own."""
        return dataclasses.replace(self, request=part.request, parts=())

    async def _joined(self, handle: DeploymentHandle, audio: DeploymentHandle
                      ) -> SynthesisResult:
        """The parts spoken one after another, each rendered with its prosody, with their
        pauses as silence, as one result."""
        pieces: list[np.ndarray] = []
        rate, frames, seconds = 0, 0, 0.0
        result = None
        for i, part in enumerate(self.parts):
            result = await (await self.part(part).invoke(handle, audio, stream=False))
            rate = result.sample_rate
            if i == 0:
                pieces.append(_silence(self.pause_before_s, rate))
            samples = result.audio
            if part.speed != 1.0 or part.pitch != 1.0:
                samples = await audio.prosody.remote(samples, rate, part.speed, part.pitch)
            pieces += [samples, _silence(part.pause_after_s, rate)]
            frames += result.frames
            seconds += result.generation_seconds
        assert result is not None
        return SynthesisResult(np.concatenate(pieces).astype(np.float32), rate, frames,
                               seconds, finish_reason=result.finish_reason)


def _silence(seconds: float, sample_rate: int) -> np.ndarray:
    return np.zeros(round(seconds * sample_rate), dtype=np.float32)


class PartsStream:
    """A call in parts, streamed: each part's model stream in turn, the pauses as chunks of
    silence between them, one final chunk at the end with the totals. Quacks as the model's
    response generator (`__anext__`, `cancel`)."""

    def __init__(self, call: ModelCall, handle: DeploymentHandle,
                 audio: DeploymentHandle) -> None:
        for part in call.parts:
            if part.speed != 1.0 or part.pitch != 1.0:
                raise ApiError(
                    400, "unsupported_while_streaming",
                    "<prosody> rate and pitch are not available while streaming (the DSP "
                    "needs each part's whole audio); remove them or request the audio "
                    "without streaming", "text")
        self._call = call
        self._handle = handle
        self._audio = audio
        self._source = None
        self._cancelled = False
        self._chunks = self._run()

    def __aiter__(self) -> PartsStream:
        return self

    async def __anext__(self) -> AudioChunk:
        return await self._chunks.__anext__()

    def cancel(self) -> None:
        self._cancelled = True
        if self._source is not None:
            self._source.cancel()

    async def _run(self) -> AsyncIterator[AudioChunk]:
        started = time.perf_counter()
        index = frames = tokens = 0
        rate = 0
        last: AudioChunk | None = None
        for i, part in enumerate(self._call.parts):
            if self._cancelled:
                return
            self._source = await self._call.part(part).invoke(self._handle, self._audio,
                                                               stream=True)
            async for chunk in self._source:
                rate = chunk.sample_rate
                if i == 0 and index == 0 and self._call.pause_before_s:
                    yield AudioChunk(_silence(self._call.pause_before_s, rate), rate, index, 0)
                    index += 1
                if chunk.final:
                    frames += chunk.total_frames
                    tokens += chunk.input_tokens
                    last = chunk
                if len(chunk.audio):
                    yield dataclasses.replace(chunk, index=index, final=False)
                    index += 1
                if chunk.final:
                    break
            if part.pause_after_s:
                yield AudioChunk(_silence(part.pause_after_s, rate), rate, index, 0)
                index += 1
            await asyncio.sleep(0)
        if last is None:  # a part's stream ended without its final chunk
            return
        yield AudioChunk(np.zeros(0, dtype=np.float32), rate, index, 0, final=True,
                         total_frames=frames, input_tokens=tokens,
                         generation_seconds=time.perf_counter() - started,
                         finish_reason=last.finish_reason)


class CallBuilder:
    """The one builder of each operation's model call."""

    def __init__(self, args: AppArgs, model_info: Callable[[str], Awaitable[ModelInfo]],
                 front_end: TextFrontEnd | None = None):
        self.args = args
        self._model_info = model_info
        self._front = front_end or TextFrontEnd()

    async def prepare(self, inp: SpeechInput, text: TextSource | None = None,
                      lexicon: Lexicon | None = None) -> ModelCall:
        """The model call of an operation's input, validated: the one builder of each.
        `text`: the text keeps arriving there, read by the model as it speaks (`inp.text` is
        what has arrived so far, validated as any request's text); `lexicon`: the
        pronunciation dictionaries the request resolved to (serve_app.synthesis.lexicons),
        applied after normalization."""
        if isinstance(inp, SavedVoiceInput):
            call = await self._saved_voice_call(inp)
        elif isinstance(inp, CustomVoiceInput):
            call = await self._custom_voice_call(inp)
        elif isinstance(inp, VoiceDesignInput):
            call = await self._voice_design_call(inp)
        else:
            call = await self._voice_clone_call(inp)
        if text is None:
            return await self._spoken(call, inp, lexicon or Lexicon())
        if inp.input_format != "text":
            raise invalid("input_format", "input_format 'ssml' takes the whole document at "
                          "once, not text that keeps arriving; send 'text'")
        if call.clone is not None:
            raise invalid("text", "text that keeps arriving is spoken with a preset, a designed "
                          "or a saved voice, not from an upload")
        return dataclasses.replace(call, text=text, request=dataclasses.replace(
            call.request, text="", streaming_text=True))

    async def _spoken(self, call: ModelCall, inp: SpeechInput, lexicon: Lexicon) -> ModelCall:
        """The call with its text as the model reads it: normalized, looked up in the
        pronunciation dictionaries, or SSML in parts."""
        request = call.request
        if not inp.normalize and inp.input_format == "text" and not lexicon:
            return call
        script = await self._front.script(
            request.text, request.language, normalize=inp.normalize,
            input_format=inp.input_format,
            resolve_language=lambda code: catalog.resolve_language(code.split("-")[0],
                                                                   call.info),
            lexicon=lexicon)
        call = dataclasses.replace(call, source_characters=script.characters, script=script)
        if script.simple:
            return dataclasses.replace(call, request=dataclasses.replace(
                request, text=script.parts[0].text))
        parts = tuple(CallPart(dataclasses.replace(request, text=part.text,
                                                   language=part.language or request.language),
                               part.pause_after_s, part.speed, part.pitch)
                      for part in script.parts)
        return dataclasses.replace(
            call, request=parts[0].request, parts=parts, pause_before_s=script.pause_before_s,
            cache_extra={**call.cache_extra, "parts": [
                (p.request.text, p.request.language, p.pause_after_s, p.speed, p.pitch)
                for p in parts], "pause_before": script.pause_before_s})

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
