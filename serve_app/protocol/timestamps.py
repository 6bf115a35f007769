"""Word timestamps on the wire: each word of the text as the user sent it, when it is heard.

`char_start`/`char_end` index the user's own text (the SSML document, for `input_format:
"ssml"`), whatever normalization or SSML made of it; `word` is that slice. `source` says
how the times were found: "aligner" (the forced-aligner deployment, run on the produced
audio) or "estimate" (no aligner deployed: spread over the audio by the spoken length of
each word).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: How the times were found.
TimingSource = Literal["aligner", "estimate"]


class WordTimestamp(BaseModel):
    model_config = ConfigDict(frozen=True)

    word: str
    start: float = Field(description="Seconds from the start of the audio")
    end: float = Field(description="Seconds from the start of the audio (>= start)")
    char_start: int = Field(description="First character of the word in the text as sent")
    char_end: int = Field(description="One past its last character")


class WordTimings(BaseModel):
    """The words of one audio, in order: times never go back and stay inside the audio."""

    model_config = ConfigDict(frozen=True)

    words: list[WordTimestamp]
    source: TimingSource

    def shifted(self, seconds: float, chars: int) -> list[WordTimestamp]:
        """The words as parts of a longer audio and text (a job's segment, a session's
        sentence): `seconds` and `chars` later."""
        return [w.model_copy(update={"start": round(w.start + seconds, 3),
                                     "end": round(w.end + seconds, 3),
                                     "char_start": w.char_start + chars,
                                     "char_end": w.char_end + chars}) for w in self.words]


class TimedAudio(BaseModel):
    """A whole (non-streamed) answer with `timestamps: "word"`: the audio file, base64, and
    its words."""

    audio: str = Field(description="The audio file in `format`, base64")
    format: str
    content_type: str
    sample_rate: int
    duration_seconds: float
    words: list[WordTimestamp]
    source: TimingSource
