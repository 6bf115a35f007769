"""Long text cut into segments at sentence boundaries, for one synthesis call each.

Sentences end at Chinese/Japanese full stops, question and exclamation marks (。！？；…), at
Latin ones (. ! ? ;) followed by a space or the end, and at line breaks; closing quotes and
brackets stay with their sentence. Sentences are packed greedily up to `max_chars`; a longer
sentence is cut at clause marks (，、：, :), and only a clause longer than that at a word
boundary (a hard cut for text without spaces).
"""

from __future__ import annotations

import re

_CLOSERS = "\"'”’」』）)】》"
#: Where a sentence ends (also used by the speech session's splitter on growing text).
SENTENCE_END = re.compile(
    rf"(?:[。！？；…]+|[.!?;]+(?=\s|$|[{_CLOSERS}]))[{_CLOSERS}]*\s*|\n+\s*"
)
#: Where an over-long sentence may be cut.
CLAUSE_BREAK = re.compile(r"(?:[，、：]|[,:](?=\s))\s*")


def _cut(pattern: re.Pattern[str], text: str) -> list[str]:
    parts, start = [], 0
    for match in pattern.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def split_sentences(text: str) -> list[str]:
    return _cut(SENTENCE_END, text)


def _hard_cut(text: str, max_chars: int) -> list[str]:
    out = []
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars + 1)
        cut = cut if cut > max_chars // 2 else max_chars
        out.append(text[:cut])
        text = text[cut:]
    return out + [text] if text.strip() else out


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    segments: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > max_chars:
            segments.append(current)
            current = ""
        current += piece
    if current.strip():
        segments.append(current)
    return segments


def segment_text(text: str, max_chars: int) -> list[str]:
    """Segments of at most `max_chars` characters whose concatenation is `text` (minus
    blank space at the edges); each is stripped."""
    pieces: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _cut(CLAUSE_BREAK, sentence):
            pieces.extend([clause] if len(clause) <= max_chars else _hard_cut(clause, max_chars))
    return [s.strip() for s in _pack(pieces, max_chars) if s.strip()]
