"""The SSML subset (`input_format: "ssml"`), parsed into segments the front end speaks.

Elements: `<speak>` (the root; `xml:lang`), `<p>` and `<s>` (they end a sentence),
`<break time strength>`, `<say-as interpret-as="characters|cardinal|ordinal|date|time|
telephone" format>`, `<sub alias>`, `<prosody rate pitch>`, `<lang xml:lang>`. Anything else,
an attribute these do not take, or a value outside their range is refused with the element
and its character offset in the document, as is markup that is not well-formed.

The parser is defusedxml's (expat underneath) with a DTD forbidden outright: no entity can be
declared, so none expands (billion laughs) and none is fetched (XXE); the five predefined
entities and character references still read as their characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.sax import SAXParseException
from xml.sax.handler import ContentHandler

import defusedxml.sax
from defusedxml.common import DefusedXmlException

from serve_app.text.offsets import Block, OffsetMap, align

#: say-as interpretations the front end reads.
SAY_AS = ("characters", "cardinal", "ordinal", "date", "time", "telephone")
#: break strengths (SSML leaves their lengths to the processor), in seconds.
BREAK_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.75,
                   "x-strong": 1.0}
MAX_BREAK_S = 10.0
RATES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25,
         "x-fast": 1.5}
PITCHES = {"x-low": 0.8, "low": 0.9, "medium": 1.0, "default": 1.0, "high": 1.1,
           "x-high": 1.2}
#: prosody's range, as the seed route's speed and pitch.
PROSODY_RANGE = (0.5, 2.0)

_ATTRIBUTES = {
    "speak": {"version", "xmlns", "xml:lang", "xmlns:xsi", "xsi:schemaLocation"},
    "p": {"xml:lang"},
    "s": {"xml:lang"},
    "break": {"time", "strength"},
    "say-as": {"interpret-as", "format", "detail"},
    "sub": {"alias"},
    "prosody": {"rate", "pitch"},
    "lang": {"xml:lang"},
}
_TEXT_ONLY = {"say-as", "sub"}


class SsmlError(ValueError):
    """Markup the subset refuses: `message` names the element; `offset` is the character of
    the document where it is."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Segment:
    """A run of the document: text to speak (`kind` text), a say-as or a sub, or a break.

    `text`: the text as written (text, say-as, sub's content), `spoken`: what a sub says
    (its alias); `offsets`: `text` back to the document; `start`/`end`: the document's
    characters of the segment (for a say-as or sub, the whole element)."""

    kind: str  # "text" | "say-as" | "sub" | "break"
    start: int
    end: int
    text: str = ""
    offsets: OffsetMap | None = field(default=None, repr=False)
    interpret_as: str | None = None
    format: str | None = None
    alias: str | None = None
    pause_s: float = 0.0
    language: str | None = None
    speed: float = 1.0
    pitch: float = 1.0


@dataclass
class _Scope:
    name: str
    start: int
    language: str | None
    speed: float
    pitch: float
    attrs: dict[str, str]
    text: list[tuple[str, int, int]] = field(default_factory=list)  # say-as / sub content


def parse(document: str) -> list[Segment]:
    """The segments of an SSML document, in order (SsmlError: what is refused, and where)."""
    handler = _Handler(document)
    try:
        defusedxml.sax.parseString(document.encode("utf-8"), handler, forbid_dtd=True,
                                   forbid_entities=True, forbid_external=True)
    except SsmlError:
        raise
    except DefusedXmlException:
        raise SsmlError("SSML must not declare a DTD or entities (entity expansion and "
                        "external references are refused)", handler.offset_now()) from None
    except SAXParseException as exc:
        offset = handler.offset_at(exc.getLineNumber(), exc.getColumnNumber())
        raise SsmlError(f"the SSML is not well-formed XML: {exc.getMessage()}",
                        offset) from None
    return handler.segments


class _Handler(ContentHandler):
    def __init__(self, document: str) -> None:
        super().__init__()
        self._doc = document
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", document)]
        self._locator = None
        self._stack: list[_Scope] = []
        self._pending: tuple[str, int] | None = None  # text whose end is the next event
        self.segments: list[Segment] = []
        self._seen_root = False

    # ------------------------------------------------------------------------- positions
    def setDocumentLocator(self, locator) -> None:
        self._locator = locator

    def offset_at(self, line: int, column: int) -> int:
        line = min(max(line, 1), len(self._line_starts))
        return min(self._line_starts[line - 1] + max(column, 0), len(self._doc))

    def offset_now(self) -> int:
        if self._locator is None:
            return 0
        return self.offset_at(self._locator.getLineNumber(), self._locator.getColumnNumber())

    def _flush_text(self, end: int) -> None:
        if self._pending is None:
            return
        content, start = self._pending
        self._pending = None
        scope = self._stack[-1]
        if scope.name in _TEXT_ONLY:
            scope.text.append((content, start, end))
            return
        offsets = align(self._doc[start:end], content)
        blocks = offsets.shifted(0, start)
        self._emit(Segment("text", start, end, content,
                           OffsetMap(blocks, len(content), len(self._doc))))

    def _emit(self, segment: Segment) -> None:
        scope = self._stack[-1]
        self.segments.append(Segment(**{**segment.__dict__, "language": scope.language,
                                        "speed": scope.speed, "pitch": scope.pitch}))

    # ---------------------------------------------------------------------------- events
    def characters(self, content: str) -> None:
        at = self.offset_now()
        if self._pending is not None:  # text split by a character or entity reference
            text, start = self._pending
            self._pending = (text + content, start)
        else:
            self._pending = (content, at)

    def startElement(self, name: str, attrs) -> None:
        at = self.offset_now()
        self._flush_text(at)
        attributes = dict(attrs)
        if not self._stack:
            if name != "speak":
                raise SsmlError(f"the root element must be <speak>, not <{name}>", at)
            self._seen_root = True
        elif name == "speak":
            raise SsmlError("<speak> may only be the root element", at)
        if name not in _ATTRIBUTES:
            raise SsmlError(f"<{name}> is not supported; the SSML subset takes "
                            f"{', '.join(f'<{e}>' for e in _ATTRIBUTES)}", at)
        parent = self._stack[-1] if self._stack else None
        if parent is not None and parent.name in _TEXT_ONLY:
            raise SsmlError(f"<{parent.name}> takes text only, not <{name}>", at)
        for attribute in attributes:
            if attribute not in _ATTRIBUTES[name] and not attribute.startswith("xmlns"):
                allowed = ", ".join(sorted(_ATTRIBUTES[name])) or "none"
                raise SsmlError(f"<{name}> does not take the attribute {attribute} "
                                f"(it takes: {allowed})", at)
        language = attributes.get("xml:lang") or (parent.language if parent else None)
        speed = parent.speed if parent else 1.0
        pitch = parent.pitch if parent else 1.0
        if name == "lang" and not attributes.get("xml:lang"):
            raise SsmlError("<lang> needs xml:lang (a language, e.g. en or zh)", at)
        if name == "prosody":
            if "rate" not in attributes and "pitch" not in attributes:
                raise SsmlError("<prosody> needs rate or pitch", at)
            speed = _within(speed * _rate(attributes.get("rate"), at), "rate", at)
            pitch = _within(pitch * _pitch(attributes.get("pitch"), at), "pitch", at)
        if name == "say-as":
            kind = attributes.get("interpret-as")
            if kind not in SAY_AS:
                raise SsmlError(f"<say-as> interpret-as={kind!r} is not supported; it takes "
                                f"{', '.join(SAY_AS)}", at)
        if name == "sub" and not attributes.get("alias"):
            raise SsmlError("<sub> needs alias (the text to speak instead)", at)
        self._stack.append(_Scope(name, at, language, speed, pitch, attributes))
        if name in ("p", "s"):
            self._sentence_boundary(at)
        if name == "break":
            self._emit(Segment("break", at, at, pause_s=_break_seconds(attributes, at)))

    def endElement(self, name: str) -> None:
        at = self.offset_now()
        self._flush_text(at)
        scope = self._stack.pop()
        if name == "break":
            return
        # an end tag starts at `at`; a self-closed element ended there
        end = at if self._doc[:at].endswith("/>") else self._doc.find(">", at) + 1 or len(self._doc)
        if name in _TEXT_ONLY:
            content = "".join(text for text, _, _ in scope.text)
            if not content.strip():
                raise SsmlError(f"<{name}> is empty; it needs the text it stands for",
                                scope.start)
            self._stack.append(scope)  # emitted with its own language and prosody
            if name == "sub":
                self._emit(Segment("sub", scope.start, end, content, alias=scope.attrs["alias"]))
            else:
                self._emit(Segment("say-as", scope.start, end, content,
                                   interpret_as=scope.attrs["interpret-as"],
                                   format=scope.attrs.get("format")))
            self._stack.pop()
        elif name in ("p", "s"):
            self._stack.append(scope)
            self._sentence_boundary(end)
            self._stack.pop()

    def _sentence_boundary(self, at: int) -> None:
        """A space where a paragraph or sentence starts or ends (its text is not run into
        the text beside it)."""
        self._emit(Segment("text", at, at, " ", OffsetMap([Block(0, 1, at, at, False)], 1,
                                                          len(self._doc))))

    def endDocument(self) -> None:
        if not self._seen_root:
            raise SsmlError("the document needs a <speak> root element", 0)


# --------------------------------------------------------------------------- attributes
_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$")
_RELATIVE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(%|st)?\s*$")


def _break_seconds(attributes: dict[str, str], at: int) -> float:
    if "time" in attributes:
        match = _TIME.match(attributes["time"])
        if not match:
            raise SsmlError(f"<break> time={attributes['time']!r} is not a duration; write "
                            "e.g. 500ms or 1.5s", at)
        seconds = float(match[1]) / (1000 if match[2] == "ms" else 1)
        if seconds > MAX_BREAK_S:
            raise SsmlError(f"<break> time={attributes['time']!r} is longer than "
                            f"{MAX_BREAK_S:g}s", at)
        return seconds
    strength = attributes.get("strength", "medium")
    if strength not in BREAK_STRENGTHS:
        raise SsmlError(f"<break> strength={strength!r} is not one of "
                        f"{', '.join(BREAK_STRENGTHS)}", at)
    return BREAK_STRENGTHS[strength]


def _rate(value: str | None, at: int) -> float:
    """A speed factor: a keyword, a percentage of the normal rate ("150%"), a relative one
    ("+20%", "-10%") or a plain factor ("1.2")."""
    if value is None:
        return 1.0
    if value in RATES:
        return RATES[value]
    match = _RELATIVE.match(value)
    if not match or match[2] == "st":
        raise SsmlError(f"<prosody> rate={value!r} is not a rate; write one of "
                        f"{', '.join(RATES)}, a percentage (150%, +20%) or a factor (1.2)", at)
    number = float(match[1])
    if match[2] == "%":
        return 1 + number / 100 if value.strip()[0] in "+-" else number / 100
    return number


def _pitch(value: str | None, at: int) -> float:
    """A frequency factor: a keyword, semitones ("+2st") or a relative percentage ("-10%")."""
    if value is None:
        return 1.0
    if value in PITCHES:
        return PITCHES[value]
    match = _RELATIVE.match(value)
    if not match or match[2] is None or value.strip()[0] not in "+-":
        raise SsmlError(f"<prosody> pitch={value!r} is not a pitch; write one of "
                        f"{', '.join(PITCHES)}, semitones (+2st, -1st) or a relative "
                        "percentage (+10%, -5%)", at)
    number = float(match[1])
    return 2 ** (number / 12) if match[2] == "st" else 1 + number / 100


def _within(factor: float, attribute: str, at: int) -> float:
    low, high = PROSODY_RANGE
    if not low <= factor <= high:
        raise SsmlError(f"<prosody> {attribute} comes to {factor:.2f}x, outside "
                        f"{low:g}x-{high:g}x", at)
    return factor
