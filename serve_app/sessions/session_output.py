"""A speech session's one output: one encoder for the whole session, the audio events in
order, and the usage (characters billed, requests made).

Both speakers (serve_app.sessions.sentence_speaker, serve_app.sessions.incremental_speaker)
write float PCM here as the model makes it; the session's client receives one continuous
pcm / mp3 / Ogg Opus stream (one resampler too), whichever speaker made its pieces.
"""

from __future__ import annotations

import numpy as np

from deployments.audio import StreamEncoder
from serve_app.protocol.session_api import SessionAudio, SessionUsage, TextSpan


class SessionOutput:
    def __init__(self, response_format: str, model_rate: int, sample_rate: int | None) -> None:
        self._encoder = StreamEncoder(response_format, model_rate, sample_rate=sample_rate)
        self.format = response_format
        self.sample_rate = self._encoder.sample_rate
        self.characters = 0  # billed: what the model was given (sentence) or read (incremental)
        self.requests = 0
        self._index = 0
        self._audio_end = 0.0  # seconds of audio sent so far
        self._last: tuple[TextSpan, int] | None = None  # the span and sentence of the last event

    def next_request(self) -> int:
        """Count one more model request; its number in the session (from 0)."""
        self.requests += 1
        return self.requests - 1

    def bill(self, characters: int) -> None:
        self.characters += characters

    def write(self, samples: np.ndarray, span: TextSpan, sentence: int) -> SessionAudio | None:
        """The event for the next PCM samples of `sentence`, speaking `span` (None while the
        encoder holds them back)."""
        data = self._encoder.write(samples)
        return self._event(data, span, sentence) if data else None

    def close(self) -> SessionAudio | None:
        """End the stream: the encoder's tail, as an event of the last span (None when there
        is none)."""
        tail = self._encoder.close()
        if tail and self._last is not None:
            return self._event(tail, *self._last)
        return None

    def abort(self) -> None:
        self._encoder.abort()

    @property
    def usage(self) -> SessionUsage:
        seconds = self._encoder.num_samples / self.sample_rate
        return SessionUsage(characters=self.characters, audio_seconds=round(seconds, 6),
                            requests=self.requests)

    def _event(self, data: bytes, span: TextSpan, sentence: int) -> SessionAudio:
        end = self._encoder.num_samples / self.sample_rate
        start, self._audio_end = self._audio_end, end
        self._last = (span, sentence)
        event = SessionAudio(audio=data, index=self._index, sentence=sentence, span=span,
                             audio_start=start, audio_end=end, format=self.format,
                             sample_rate=self.sample_rate)
        self._index += 1
        return event
