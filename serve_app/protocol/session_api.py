"""The wire format of a speech session (WebSocket `/v1/audio/speech/stream` and the handle
method `TTSIngress.speech_session`): text arrives in pieces, audio leaves as it is made.

Client -> server: one `SessionSettings` first, then `TextDelta`, `Flush`, `Close` and
`Cancel` messages (JSON objects told apart by `type`). Server -> client: `SessionAudio`
(on the WebSocket: an `audio.span` event followed by one binary frame), with
`timestamps: "word"` a `SessionWords` (`words` event) after each sentence's audio, then
`SessionDone`;
errors are `{"type": "error", "error": {...}}` (the envelope of serve_app.edge.api_errors).
docs/streaming.md has the protocol message by message.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.protocol.fields import (
    PRONUNCIATION_DESCRIPTION,
    MaxNewTokens,
    MinFrames,
    Normalize,
    OutputSampleRate,
    PronunciationDictionaries,
    Seed,
    Timestamps,
)
from serve_app.protocol.timestamps import TimingSource, WordTimestamp

#: How text becomes requests. "incremental": one request (one engine slot) reads the text as
#: it arrives, in the model's streaming-text mode, and waits when it runs out; a flush ends
#: that request (it speaks what it has) and later text starts the next one. "sentence": each
#: sentence (or flushed piece) is one request on the session's voice and seed (any backend,
#: the model kind's default text mode). docs/streaming.md says which to use when.
SessionMode = Literal["sentence", "incremental"]
#: Formats a session streams: raw s16le, or one continuous mp3 / Ogg Opus file.
SessionFormat = Literal["pcm", "mp3", "opus"]


class SessionSettings(BaseModel):
    """The first message: who speaks, how, in which format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["session"] = "session"
    model: str = Field("tts-1", description="CustomVoice, VoiceDesign, or tts-1 / tts-1-hd / "
                       "gpt-4o-mini-tts (CustomVoice)")
    voice: str = Field("", description="A preset speaker, an OpenAI voice name, or a saved "
                       "voice (id or name); unused by VoiceDesign")
    language: str = "auto"
    instructions: str | None = Field(None, description="Style instruction (CustomVoice) or "
                                     "the voice description (VoiceDesign)")
    response_format: SessionFormat = "pcm"
    sample_rate: OutputSampleRate | None = None
    seed: Seed | None = Field(None, description="Used for every sentence; omitted: one random "
                              "seed for the whole session (so a designed voice stays the same)")
    mode: SessionMode = "sentence"
    api_key: str | None = Field(None, description="For browsers, which cannot set headers on "
                                "a WebSocket; a header key is preferred")
    max_new_tokens: MaxNewTokens | None = Field(None, description="Cap per request (a "
                                                "sentence, or an incremental utterance)")
    min_frames: MinFrames | None = Field(None, description="Per request (benchmarking aid)")
    normalize: Normalize = Field(True, description="Normalize the text (mode 'incremental': "
                                 "as it arrives, holding back about a word)")
    pronunciation_dictionaries: PronunciationDictionaries | None = Field(
        None, description=PRONUNCIATION_DESCRIPTION)
    timestamps: Timestamps = Field("none", description="'word' (mode 'sentence'): a `words` "
                                   "event after each sentence's audio, its words' times in "
                                   "the session's audio and characters in its text")


class TextDelta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["text"] = "text"
    text: str = Field(max_length=100_000)


class Flush(BaseModel):
    """Speak what has arrived so far now, even without a sentence end (incremental mode:
    end the current utterance; the next text starts another)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["flush"] = "flush"


class Close(BaseModel):
    """No more text: speak the rest, then `done`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["close"] = "close"


class Cancel(BaseModel):
    """Stop now: generation stops, the rest of the text is dropped, then `done`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["cancel"] = "cancel"


ClientMessage = Annotated[TextDelta | Flush | Close | Cancel, Field(discriminator="type")]


class TextSpan(BaseModel):
    """[start, end) in characters of the session's text (all deltas concatenated)."""

    model_config = ConfigDict(frozen=True)
    start: int
    end: int


class SessionAudio(BaseModel):
    """The next bytes of the session's one audio stream and the text they speak."""

    model_config = ConfigDict(frozen=True)

    audio: bytes
    index: int = Field(description="0, 1, 2, ... in order")
    sentence: int = Field(description="Which request (a sentence, or an incremental "
                          "utterance) this audio belongs to")
    span: TextSpan = Field(description="The text this audio belongs to: the sentence, or "
                           "(incremental) the text the model read while making it")
    audio_start: float = Field(description="Seconds into the session's audio")
    audio_end: float
    format: SessionFormat
    sample_rate: int

    def event(self) -> dict:
        """The JSON event sent before the binary frame of `audio` on the WebSocket."""
        return {"type": "audio.span", "index": self.index, "sentence": self.sentence,
                "bytes": len(self.audio), "span": self.span.model_dump(),
                "audio_start": round(self.audio_start, 6), "audio_end": round(self.audio_end, 6)}


class SessionWords(BaseModel):
    """When each word of a sentence is heard (`timestamps: "word"`), sent after its audio:
    seconds into the session's audio, characters of the session's text."""

    model_config = ConfigDict(frozen=True)

    sentence: int
    words: list[WordTimestamp]
    source: TimingSource

    def event(self) -> dict:
        return {"type": "words", "sentence": self.sentence, "source": self.source,
                "words": [w.model_dump() for w in self.words]}


class SessionUsage(BaseModel):
    model_config = ConfigDict(frozen=True)

    characters: int = Field(description="Characters spoken (what is billed)")
    audio_seconds: float = Field(description="Audio returned, in seconds")
    requests: int = Field(description="Requests made: sentences, or incremental utterances "
                          "(one usage row each)")


class SessionDone(BaseModel):
    model_config = ConfigDict(frozen=True)

    usage: SessionUsage
    cancelled: bool = False

    def event(self) -> dict:
        return {"type": "done", "cancelled": self.cancelled, "usage": self.usage.model_dump()}
