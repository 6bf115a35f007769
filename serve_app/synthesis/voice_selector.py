"""Which model and voice a request means: decided here, once, for every surface.

Every surface (the seed's /api/tts/synthesize, OpenAI's /v1/audio/speech, /v1/audio/design
and /clone, /v1/jobs, speech sessions and the handle API) hands the selector what its client
named, a `VoiceRequest`, and gets one `VoiceChoice` back, which makes the typed input of each
request (`VoiceChoice.input`). The rules:

- a saved voice of the caller's tenant named as the voice (by id or name) speaks with
  VoiceClone from its stored prompt, whatever model was named, except VoiceDesign, which
  takes no voice;
- reference audio (an upload) is VoiceClone from that audio;
- VoiceClone named without either is a 422 naming the voice field;
- VoiceDesign needs a description of the voice (the surface's description field);
- otherwise CustomVoice: a preset speaker (an OpenAI voice name too, where the surface
  takes them) with an optional style instruction;
- instructions and descriptions are at most `ingress.max_instruction_chars`, and the
  language must be one the chosen model speaks.

Errors name the field as the client's surface names it (`Fields`), with one wording each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serve_app.app.args import CUSTOM_VOICE, VOICE_CLONE, VOICE_DESIGN
from serve_app.edge.api_errors import invalid
from serve_app.platform.jobs.store import JobParams, JobRequest
from serve_app.protocol.speech import (
    CustomVoiceInput,
    SavedVoiceInput,
    SpeechInput,
    VoiceCloneInput,
    VoiceDesignInput,
    VoiceRef,
)
from serve_app.synthesis import catalog
from serve_app.synthesis.saved_voices import SavedVoices
from serve_app.synthesis.synthesis_service import SynthesisService

#: The fields every typed input has besides its text and its voice.
COMMON_FIELDS = ("language", "seed", "output", "max_new_tokens", "min_frames", "normalize",
                 "input_format", "pronunciation_dictionaries", "timestamps")


@dataclass(frozen=True)
class Fields:
    """How a surface names what the selector reads, so that an error names the field the
    client sent; `openai_voices`: whether OpenAI's voice names stand for presets there."""

    voice: str = "voice"
    instructions: str = "instructions"
    description: str = "instructions"
    openai_voices: bool = True


#: OpenAI's /v1/audio/speech and speech sessions: `instructions` is VoiceDesign's description.
OPENAI_FIELDS = Fields()
#: /v1/jobs, /v1/audio/design, /v1/voices and the handle API's VoiceDesignInput.
DESCRIPTION_FIELDS = Fields(description="description")
#: The seed's /api/tts/synthesize and the handle API's CustomVoiceInput.
SPEAKER_FIELDS = Fields(voice="speaker", instructions="instruct", description="description",
                        openai_voices=False)


@dataclass(frozen=True)
class Reference:
    """Reference audio to clone from (an upload), with its transcript or x-vector only."""

    audio: bytes = field(repr=False)
    ref_text: str | None = None
    x_vector_only: bool = False


@dataclass(frozen=True)
class VoiceRequest:
    """What a request names. `model`: as the client named it (a deployment or an OpenAI
    alias); `deployment`: the model a surface stands for instead (design, clone; neither:
    CustomVoice, as the seed and the handle API's CustomVoiceInput). A saved voice overrides
    both. `description`: VoiceDesign's own field where the surface has one (else
    `instructions` describes the voice)."""

    model: str | None = None
    deployment: str | None = None
    voice: str = ""
    instructions: str | None = None
    description: str | None = None
    language: str | None = "auto"
    reference: Reference | None = None
    fields: Fields = OPENAI_FIELDS


@dataclass(frozen=True)
class VoiceChoice:
    """A request's model and voice, decided: the deployment and what it speaks with."""

    deployment: str
    speaker: str | None = None  # CustomVoice: a preset speaker id
    instruct: str | None = None  # CustomVoice: the style instruction
    description: str | None = None  # VoiceDesign
    saved: VoiceRef | None = None  # VoiceClone from a saved voice
    reference: Reference | None = None  # VoiceClone from an upload

    def input(self, text: str, **common: Any) -> SpeechInput:
        """The typed input of one request in this voice (`common`: COMMON_FIELDS)."""
        if self.saved is not None:
            return SavedVoiceInput(text=text, voice=self.saved, **common)
        if self.reference is not None:
            return VoiceCloneInput(text=text, reference_audio=self.reference.audio,
                                   ref_text=self.reference.ref_text,
                                   x_vector_only=self.reference.x_vector_only, **common)
        if self.deployment == VOICE_DESIGN:
            return VoiceDesignInput(text=text, description=self.description or "", **common)
        return CustomVoiceInput(text=text, speaker=self.speaker or "", instruct=self.instruct,
                                **common)

    def job_params(self, **common: Any) -> JobParams:
        """What a job stores of this voice (a saved voice by its id)."""
        return JobParams(**common, speaker=self.speaker, instruct=self.instruct,
                         description=self.description,
                         voice=self.saved.id if self.saved is not None else None)

    @classmethod
    def of_job(cls, request: JobRequest, saved: VoiceRef | None) -> VoiceChoice:
        """A stored job's voice (decided when it was submitted; `saved`: its saved voice,
        loaded again for VoiceClone jobs)."""
        params = request.params
        if request.model == VOICE_CLONE:
            if saved is None:
                raise ValueError("a VoiceClone job needs its saved voice")
            return cls(VOICE_CLONE, saved=saved)
        return cls(request.model, speaker=params.speaker, instruct=params.instruct or None,
                   description=params.description)


class VoiceSelector:
    """The one place a request's model and voice are decided (see the module docstring).
    Without saved voices (the Ray-free route tests) every voice is a preset."""

    def __init__(self, service: SynthesisService, saved: SavedVoices | None = None) -> None:
        self._service = service
        self._saved = saved

    async def select(self, req: VoiceRequest) -> VoiceChoice:
        f = req.fields
        svc = self._service
        model = (catalog.resolve_model(req.model, svc.deployed_models) if req.model is not None
                 else req.deployment or CUSTOM_VOICE)
        self._within_limit(f.instructions, req.instructions)
        if req.reference is not None:
            choice = VoiceChoice(VOICE_CLONE, reference=req.reference)
        elif model != VOICE_DESIGN and (saved := await self._lookup(req.voice)) is not None:
            choice = VoiceChoice(VOICE_CLONE, saved=saved)
        elif model == VOICE_CLONE:
            raise invalid(f.voice, f"VoiceClone speaks a saved voice: pass its id or name as "
                          f"{f.voice} (create one with POST /v1/voices), or clone from "
                          "reference audio with POST /v1/audio/clone", "unsupported_value")
        elif model == VOICE_DESIGN:
            description = req.description if req.description is not None else req.instructions
            self._within_limit(f.description, description)
            if not (description or "").strip():
                raise invalid(f.description, f"VoiceDesign needs {f.description}: the voice "
                              "to create, described in words")
            choice = VoiceChoice(VOICE_DESIGN, description=description)
        else:
            info = await svc.model_info(CUSTOM_VOICE)
            speaker = catalog.resolve_speaker(req.voice, info, param=f.voice,
                                              openai_names=f.openai_voices)
            choice = VoiceChoice(CUSTOM_VOICE, speaker=speaker, instruct=req.instructions or None)
        # an unknown language fails now, before a session opens or a job is stored
        catalog.resolve_language(req.language, await svc.model_info(choice.deployment))
        return choice

    async def typed(self, inp: SpeechInput) -> SpeechInput:
        """A handle caller's typed input as it is meant, through the same rules (a saved
        voice named as a CustomVoice `speaker` speaks with VoiceClone)."""
        if isinstance(inp, SavedVoiceInput):
            return inp
        if isinstance(inp, CustomVoiceInput):
            req = VoiceRequest(voice=inp.speaker, instructions=inp.instruct,
                               language=inp.language, fields=SPEAKER_FIELDS)
        elif isinstance(inp, VoiceDesignInput):
            req = VoiceRequest(deployment=VOICE_DESIGN, description=inp.description,
                               language=inp.language, fields=DESCRIPTION_FIELDS)
        else:
            req = VoiceRequest(deployment=VOICE_CLONE, language=inp.language, reference=Reference(
                inp.reference_audio, inp.ref_text, inp.x_vector_only))
        choice = await self.select(req)
        return choice.input(inp.text, **{name: getattr(inp, name) for name in COMMON_FIELDS})

    async def job_voice(self, voice_id: str, caller) -> VoiceRef:
        """A job's saved voice, known to exist (it was resolved when the job was submitted)."""
        if self._saved is None:
            raise RuntimeError("jobs need saved voices (a platform)")
        return await self._saved.require(voice_id, caller)

    async def _lookup(self, name: str) -> VoiceRef | None:
        return await self._saved.lookup(name) if self._saved is not None and name else None

    def _within_limit(self, param: str, value: str | None) -> None:
        """An instruction or voice description within `ingress.max_instruction_chars` (the
        model reads it in full, in front of every request's text)."""
        limit = self._service.args.ingress.max_instruction_chars
        if value is not None and len(value) > limit:
            raise invalid(param, f"{param} is {len(value)} characters long; at most {limit} "
                          "are allowed.")
