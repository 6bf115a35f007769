"""Captions (WebVTT and SRT) from word timestamps: GET /v1/jobs/{id}/captions.vtt and .srt.

Cues follow the text: a cue ends where a sentence ends (., !, ?, 。, ！, ？, …, a line
break) or where its next word would not fit in `max_lines` lines of `max_chars` characters;
its text is the user's text from its first word to its last (punctuation included), wrapped
at spaces into those lines (a word longer than a line gets a line of its own). A cue lasts
from its first word's start to its last word's end (at least a millisecond: both formats
need an end after the start).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from serve_app.protocol.timestamps import WordTimestamp

MAX_CHARS = 42  # per line: the common broadcast guideline
MAX_LINES = 2
_SENTENCE_END = re.compile(r"[.!?。！？…\n]")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


def cues(words: list[WordTimestamp], text: str, *, max_chars: int = MAX_CHARS,
         max_lines: int = MAX_LINES) -> list[Cue]:
    out: list[Cue] = []
    group: list[WordTimestamp] = []

    def close() -> None:
        if group:
            body = " ".join(text[group[0].char_start:_cue_end(group[-1], text)].split())
            out.append(Cue(group[0].start, max(group[-1].end, group[0].start + 0.001),
                           tuple(_wrap(body, max_chars))))
            group.clear()

    for i, word in enumerate(words):
        if group:
            candidate = " ".join(text[group[0].char_start:word.char_end].split())
            if len(_wrap(candidate, max_chars)) > max_lines:
                close()
        group.append(word)
        following = words[i + 1].char_start if i + 1 < len(words) else len(text)
        if _SENTENCE_END.search(text[word.char_end:following]):
            close()
    close()
    return out


def _cue_end(word: WordTimestamp, text: str) -> int:
    """The word's end with the punctuation right after it ("world," "end.")."""
    end = word.char_end
    while end < len(text) and not text[end].isspace() and not text[end].isalnum():
        end += 1
    return end


def _wrap(body: str, max_chars: int) -> list[str]:
    lines: list[str] = []
    for token in body.split(" "):
        if lines and len(lines[-1]) + 1 + len(token) <= max_chars:
            lines[-1] += " " + token
        else:
            lines.append(token)
    return lines


def _stamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def webvtt(cue_list: list[Cue]) -> str:
    blocks = ["WEBVTT"]
    for cue in cue_list:
        lines = [line.replace("-->", "->") for line in cue.lines]
        blocks.append(f"{_stamp(cue.start, '.')} --> {_stamp(cue.end, '.')}\n" + "\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def srt(cue_list: list[Cue]) -> str:
    blocks = [f"{i}\n{_stamp(cue.start, ',')} --> {_stamp(cue.end, ',')}\n" + "\n".join(cue.lines)
              for i, cue in enumerate(cue_list, 1)]
    return "\n\n".join(blocks) + "\n"
