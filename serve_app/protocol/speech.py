"""The typed operations shared by the handle API and the HTTP routes.

A Python caller holding the ingress handle sends these models and gets `AudioOutput` back;
each HTTP surface translates its own wire format into them, so validation and behaviour are
defined once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from deployments.audio import ReferenceAudio, RenderOptions
from deployments.audio.formats import AudioFormat
from deployments.engine.types import VoicePrompt
from serve_app.protocol.fields import (
    INPUT_FORMAT_DESCRIPTION,
    PRONUNCIATION_DESCRIPTION,
    TIMESTAMPS_DESCRIPTION,
    InputFormat,
    MaxNewTokens,
    MinFrames,
    Normalize,
    PronunciationDictionaries,
    Seed,
    SpeechText,
    Timestamps,
)
from serve_app.protocol.timestamps import WordTimings


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: SpeechText = Field(description="Text to speak (at most max_text_chars)")
    language: str = Field("auto", description="auto, a code (zh, en, ...) or a model language name")
    seed: Seed | None = None
    output: RenderOptions = Field(default_factory=RenderOptions)
    max_new_tokens: MaxNewTokens | None = None
    min_frames: MinFrames | None = None
    normalize: Normalize = True
    input_format: InputFormat = Field("text", description=INPUT_FORMAT_DESCRIPTION)
    pronunciation_dictionaries: PronunciationDictionaries | None = Field(
        None, description=PRONUNCIATION_DESCRIPTION)
    timestamps: Timestamps = Field("none", description=TIMESTAMPS_DESCRIPTION)


class CustomVoiceInput(_Input):
    speaker: str = Field(description="A preset speaker (e.g. Vivian), case-insensitive; the "
                         "handle API also takes a saved voice's id or name")
    instruct: str | None = Field(None, description="Natural-language style instruction")


class VoiceDesignInput(_Input):
    description: str = Field(min_length=1, description="The voice to create, in natural language")


class VoiceCloneInput(_Input):
    reference_audio: bytes = Field(description="Encoded audio file (wav, flac, mp3, ogg, m4a, ...)")
    ref_text: str | None = Field(None, description="Transcript of the reference (ICL mode)")
    x_vector_only: bool = Field(False, description="Clone from the speaker embedding only")
    #: `reference_audio` as the AudioProcessor prepared it (screened, trimmed), when that was
    #: done already (a one-shot clone's consent check): the call uses it instead of preparing
    #: the upload again. Not a field: never sent, never part of the API.
    _prepared: ReferenceAudio | None = PrivateAttr(default=None)

    @property
    def prepared(self) -> ReferenceAudio | None:
        return self._prepared

    def prepared_as(self, reference: ReferenceAudio) -> VoiceCloneInput:
        """This input with its upload already prepared as `reference`."""
        copy = self.model_copy()
        copy._prepared = reference
        return copy


@dataclass(frozen=True)
class VoiceRef:
    """A tenant's saved voice, resolved once at the edge (serve_app.synthesis.saved_voices): its id
    (what usage records name) and the clone prompt VoiceClone speaks it with."""

    id: str
    prompt: VoicePrompt = field(repr=False)


class SavedVoiceInput(_Input):
    """Speech in a saved voice (VoiceClone from the stored prompt). Made at the edge: HTTP
    and handle callers name a saved voice as `voice`/`speaker`, which is resolved into this."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    voice: VoiceRef


#: Any operation's input: the operation is the input's type.
SpeechInput = CustomVoiceInput | VoiceDesignInput | VoiceCloneInput | SavedVoiceInput


class AudioOutput(BaseModel):
    model_config = ConfigDict(frozen=True)

    audio: bytes
    format: AudioFormat
    content_type: str
    sample_rate: int
    duration_seconds: float
    processing_seconds: float
    request_id: str
    cached: bool = False
    cache_key: str | None = None
    #: The deployment (model kind) that spoke; `marked_as`: the audio carries the AI-generated
    #: mark (deployments.audio.marking) naming this request id (the one that generated it: a
    #: cache hit is the same file), and its response the X-AI-* headers.
    model_kind: str | None = None
    marked_as: str | None = None
    #: `timestamps: "word"`: when each word of the text is heard in `audio`
    timings: WordTimings | None = None


class StreamUsage(BaseModel):
    """OpenAI-style usage of a finished stream: text tokens in, codec frames out."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int
    output_tokens: int
    total_tokens: int


class AudioStreamChunk(BaseModel):
    """One piece of a streamed synthesis, as the handle API yields it.

    `audio` is the next run of bytes of one file in `format` (concatenate them all: the first
    chunk carries the container header, the last one the codec's tail). The last chunk has
    `final=True` and `usage`; a stream that ends without a final chunk failed.
    """

    model_config = ConfigDict(frozen=True)

    audio: bytes
    index: int
    format: AudioFormat
    content_type: str
    sample_rate: int
    duration_seconds: float = Field(description="Audio encoded so far, in seconds")
    elapsed_seconds: float = Field(description="Since the request arrived")
    request_id: str
    final: bool = False
    usage: StreamUsage | None = None
    text_chars: int = Field(0, description="Text still arriving (speech sessions): characters "
                            "of it the model had read when this audio was made")
    timings: WordTimings | None = Field(None, description="`timestamps: \"word\"`: on the "
                                        "final chunk, the words of all the audio before it")
