"""When each word of a request's text is heard in its audio (`timestamps: "word"`).

The words are found in the text the model read (normalized, SSML parts: `ModelCall.script`)
and reported as the words of the text the user sent, through each part's offset map: the
spoken words that came from one piece of the user's text ("$5" -> "five dollars") are one
word there, timed from the first one's start to the last one's end.

Two sources of times:
- "aligner": the forced-aligner deployment (deployments/aligner_server.py, Qwen3-ForcedAligner
  through qwen-asr's own classes) run on the produced audio with the spoken words. Its
  answer is repaired before it is used (`repair`): clamped into the audio, ends never before
  starts, a word never starting before the one ahead of it ends. A real checkpoint rarely
  needs it; the random-weight test checkpoint always does.
- "estimate", where no aligner is deployed or it fails: the audio's speech (its length less
  the SSML breaks' silence) shared among the words by their spoken length (characters, plus
  one for the gap after each). The engine keeps no per-frame record that could do better:
  with `non_streaming_mode` (CustomVoice and VoiceDesign's default) the talker reads the
  whole text in its prefill and every frame is conditioned on `tts_pad`; in the streaming
  text mode frame i is fed text token i+1, which says when a token was read, not when it
  was heard (the speech lags it by a model-dependent, unrecorded amount).
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ray.serve.handle import DeploymentHandle

from serve_app.protocol.timestamps import WordTimestamp, WordTimings
from serve_app.synthesis.model_call import ModelCall
from serve_app.text.offsets import OffsetMap

logger = logging.getLogger("qtts.timing")

#: A spoken word: one CJK ideograph or kana, else a run of letters and digits (apostrophes
#: inside). These are also the units the aligner times (its own tokenizer keeps exactly
#: them when they are sent separated by spaces).
WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
                  r"|[^\W_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"
                  r"(?:'[^\W_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)*")


@dataclass(frozen=True)
class SpokenWord:
    text: str
    part: int  # which part of the call (SSML) it is spoken in
    char_start: int  # in the user's text
    char_end: int


@dataclass(frozen=True)
class SpokenText:
    """The words a call speaks, with the silence around its parts."""

    words: tuple[SpokenWord, ...]
    pause_before_s: float
    pauses_after_s: tuple[float, ...]  # one per part

    @property
    def parts(self) -> int:
        return len(self.pauses_after_s)


def spoken_text(call: ModelCall, original: str, ssml: bool = False) -> SpokenText:
    """The words `call` speaks, each with its characters in `original` (the user's text;
    `ssml`: an SSML document, whose markup around a word is not part of it)."""
    if call.script is not None:
        pieces = [(p.text, p.offsets, p.pause_after_s) for p in call.script.parts]
        before = call.script.pause_before_s
    else:
        pieces = [(call.request.text, OffsetMap.identity(len(call.request.text)), 0.0)]
        before = 0.0
    words = []
    for index, (text, offsets, _) in enumerate(pieces):
        for m in WORD.finditer(text):
            start, end = offsets.source_span(m.start(), m.end())
            start, end = _trimmed(original, start, end, ssml)
            words.append(SpokenWord(m.group(), index, start, end))
    return SpokenText(tuple(words), before, tuple(p[2] for p in pieces))


def _trimmed(text: str, start: int, end: int, ssml: bool = False) -> tuple[int, int]:
    """The span without the spaces, sentence punctuation, quotes and brackets around it
    (a "$" or "%" that was read stays with its number), and for SSML without the tags
    around it (`<sub alias="...">WWW</sub>` is the word "WWW")."""
    while True:
        before = (start, end)
        while start < end and _edge(text[start]):
            start += 1
        while end > start and _edge(text[end - 1]):
            end -= 1
        if ssml and start < end and text[start] == "<" and (close := text.find(">", start, end)) >= 0:
            start = close + 1
        if ssml and start < end and text[end - 1] == ">" and (open_ := text.rfind("<", start, end)) >= 0:
            end = open_
        if (start, end) == before:
            return start, end


def _edge(ch: str) -> bool:
    return ch.isspace() or ch in _SENTENCE_MARKS or unicodedata.category(ch) in (
        "Ps", "Pe", "Pi", "Pf", "Pd")


_SENTENCE_MARKS = set(".,;:!?\"'…、，。！？；：")


def estimate(spoken: SpokenText, duration: float) -> list[tuple[float, float]]:
    """Each spoken word's (start, end): the speech time of each part shared by its words'
    spoken length, the breaks' silence between the parts."""
    pauses = spoken.pause_before_s + sum(spoken.pauses_after_s)
    speech = max(duration - pauses, 0.0)
    weights = [0.0] * spoken.parts
    for w in spoken.words:
        weights[w.part] += len(w.text) + 1
    total = sum(weights) or 1.0
    times: list[tuple[float, float]] = []
    t = min(spoken.pause_before_s, duration)
    at = 0
    for part in range(spoken.parts):
        per_unit = speech / total
        while at < len(spoken.words) and spoken.words[at].part == part:
            w = spoken.words[at]
            end = t + len(w.text) * per_unit
            times.append((t, end))
            t = end + per_unit
            at += 1
        t = min(t + spoken.pauses_after_s[part], duration)
    return repair(times, duration)


def repair(times: Sequence[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """Times made usable: inside [0, duration], end >= start, and no word starting before
    the one ahead of it ended (a word the aligner put too early is moved to that end)."""
    out: list[tuple[float, float]] = []
    floor = 0.0
    for start, end in times:
        start = float(np.clip(start if np.isfinite(start) else floor, floor, duration))
        end = float(np.clip(end if np.isfinite(end) else start, start, duration))
        out.append((start, end))
        floor = end
    return out


def source_words(spoken: SpokenText, times: Sequence[tuple[float, float]],
                 original: str) -> list[WordTimestamp]:
    """The spoken words' times as words of the user's text: the spoken words that came from
    overlapping characters of it become one word."""
    merged: list[list] = []  # [char_start, char_end, start, end]
    for w, (start, end) in zip(spoken.words, times, strict=True):
        if w.char_end <= w.char_start:  # spoken, but from no character the user wrote
            if merged:
                merged[-1][3] = end
            continue
        if merged and w.char_start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], w.char_end)
            last[3] = end
            continue
        merged.append([w.char_start, w.char_end, start, end])
    return [WordTimestamp(word=original[cs:ce], start=round(s, 3), end=round(e, 3),
                          char_start=cs, char_end=ce) for cs, ce, s, e in merged]


class WordTimer:
    """Times a call's words: by the aligner deployment when there is one (its failure falls
    back to the estimate, logged without the text), else estimated."""

    def __init__(self, aligner: DeploymentHandle | None = None, timeout_s: float = 60.0):
        self.aligner = aligner
        self._timeout_s = timeout_s

    async def timings(self, call: ModelCall, original: str, audio: np.ndarray,
                      sample_rate: int, duration: float | None = None, *,
                      ssml: bool = False) -> WordTimings:
        """`audio`: the model's samples for the whole call; `duration`: the length of the
        audio as delivered when it differs (a rendered speed): the times are scaled to it."""
        spoken = spoken_text(call, original, ssml)
        model_duration = len(audio) / sample_rate if sample_rate else 0.0
        times, source = None, "estimate"
        if self.aligner is not None and spoken.words:
            try:
                async with asyncio.timeout(self._timeout_s):
                    raw = await self.aligner.align.remote(
                        np.asarray(audio, dtype=np.float32), sample_rate,
                        [w.text for w in spoken.words])
                if len(raw) == len(spoken.words):
                    times, source = repair(raw, model_duration), "aligner"
                else:
                    logger.warning("aligner timed %d of %d words; estimating", len(raw),
                                   len(spoken.words))
            except Exception as exc:  # noqa: BLE001 - the estimate still answers
                logger.warning("aligner failed (%s); estimating", type(exc).__name__)
        if times is None:
            times = estimate(spoken, model_duration)
        if duration is not None and model_duration > 0 and abs(duration - model_duration) > 1e-6:
            scale = duration / model_duration
            times = repair([(s * scale, e * scale) for s, e in times], duration)
        return WordTimings(words=source_words(spoken, times, original), source=source)


def joined(pieces: Sequence[tuple[WordTimings, float, int]], scale: float,
           duration: float) -> WordTimings:
    """The words of audio joined from pieces (a job's segments): each piece's timings with
    where its audio starts (seconds) and its text starts (characters), times scaled by
    `scale` (a rendered speed) and repaired across the joins (a crossfade overlaps them).
    "aligner" only when every piece was aligned."""
    words = [w for timings, start_s, start_char in pieces
             for w in timings.shifted(start_s, start_char)]
    times = repair([(w.start * scale, w.end * scale) for w in words], duration)
    source = ("aligner" if pieces and all(t.source == "aligner" for t, _, _ in pieces)
              else "estimate")
    return WordTimings(words=[w.model_copy(update={"start": round(s, 3), "end": round(e, 3)})
                              for w, (s, e) in zip(words, times, strict=True)], source=source)
