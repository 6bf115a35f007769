"""An SSML document cut into smaller SSML documents, for jobs (long text spoken segment by
segment).

The cut is made on the parsed document, never on its markup: between `<p>` and `<s>`
elements, at a `<break>`, or at a sentence end inside text, and each piece is written back as
a document of its own with the language (`<lang>`), prosody (`<prosody>`), `<sub>`,
`<say-as>` and `<break>` of its runs as the whole document had them, so the pieces spoken one
after another say what the document says, pauses included. A sentence longer than a segment
is cut between words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from serve_app.text import ssml
from serve_app.text.normalize import sentences


@dataclass(frozen=True)
class _Unit:
    markup: str
    length: int  # characters of text it speaks (for packing)
    cut_after: bool  # a segment may end after it


def split_document(document: str, max_chars: int) -> list[str]:
    """SSML documents of about `max_chars` characters of text each (a unit longer than that is
    one segment of its own); none that only pauses at the edges is dropped: a break belongs
    to the segment before it. Raises ssml.SsmlError for markup the subset refuses."""
    units = _units(ssml.parse(document), max_chars)
    segments: list[list[_Unit]] = []
    current: list[_Unit] = []
    group: list[_Unit] = []  # units since the last place a cut may go

    def size(units: list[_Unit]) -> int:
        return sum(u.length for u in units)

    for unit in units:
        group.append(unit)
        if not unit.cut_after:
            continue
        if current and size(current) + size(group) > max_chars and size(group):
            segments.append(current)
            current = []
        current += group
        group = []
    current += group
    if current:
        segments.append(current)
    if not any(size(s) for s in segments):
        return []
    # a pause-only segment (breaks before any text) goes with the segment after it
    out: list[list[_Unit]] = []
    carry: list[_Unit] = []
    for segment in segments:
        if not size(segment):
            if out:
                out[-1].extend(segment)
            else:
                carry.extend(segment)
            continue
        out.append(carry + segment)
        carry = []
    return ["<speak>" + "".join(u.markup for u in s) + "</speak>" for s in out]


def _units(segments: list[ssml.Segment], max_chars: int) -> list[_Unit]:
    units: list[_Unit] = []
    for segment in segments:
        if segment.kind == "break":
            units.append(_Unit(f'<break time="{round(segment.pause_s * 1000)}ms"/>', 0, True))
        elif segment.kind == "text":
            if segment.start == segment.end:  # a <p>/<s> boundary
                units.append(_Unit(" ", 0, True))
                continue
            pieces = sentences(segment.text)
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                words = [piece] if len(piece) <= max_chars else re.findall(r"\s*\S+\s*", piece)
                for j, word in enumerate(words):
                    ends_sentence = not last or bool(re.search(r"[.!?。！？;；…]\s*$", piece))
                    cut = j < len(words) - 1 or ends_sentence
                    units.append(_Unit(_wrapped(escape(word), segment), len(word.strip()), cut))
        elif segment.kind == "sub":
            units.append(_Unit(_wrapped(f"<sub alias={quoteattr(segment.alias or '')}>"
                                        f"{escape(segment.text)}</sub>", segment),
                               len(segment.text), False))
        else:
            fmt = f" format={quoteattr(segment.format)}" if segment.format else ""
            units.append(_Unit(_wrapped(f"<say-as interpret-as="
                                        f"{quoteattr(segment.interpret_as or '')}{fmt}>"
                                        f"{escape(segment.text)}</say-as>", segment),
                               len(segment.text), False))
    return units


def _wrapped(markup: str, segment: ssml.Segment) -> str:
    """`markup` in the prosody and language the document gave its run."""
    attributes = []
    if segment.speed != 1.0:
        attributes.append(f'rate="{segment.speed!r}"')
    if segment.pitch != 1.0:
        attributes.append(f'pitch="{(segment.pitch - 1) * 100:+.6g}%"')
    if attributes:
        markup = f"<prosody {' '.join(attributes)}>{markup}</prosody>"
    if segment.language:
        markup = f"<lang xml:lang={quoteattr(segment.language)}>{markup}</lang>"
    return markup
