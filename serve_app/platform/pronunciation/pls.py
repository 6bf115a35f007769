"""W3C Pronunciation Lexicon Specification (PLS 1.0) files, in and out.

Import reads `<lexicon>`'s `<lexeme>`s: every `<grapheme>` of a lexeme becomes an entry
read as the lexeme's `<alias>`. A lexeme with a `<phoneme>` is refused (422 naming it: the
models read text, not a phonetic alphabet), as is one with neither, or more than one alias.
The parser is defusedxml's with a DTD forbidden outright: no entity is declared, expanded
(billion laughs) or fetched (XXE).

Export writes each entry as a lexeme of one grapheme and its alias. PLS has no case or
word-boundary rules; this service's own attributes carry them
(`qtts:case-sensitive="true"`, `qtts:word-boundaries="false"` on the lexeme, in the
namespace `QTTS_NS`), written only where they differ from the defaults, so a file round-trips
and any other PLS reader ignores them.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from serve_app.platform.errors import InvalidRequest
from serve_app.platform.pronunciation.dictionary_store import EntryData

PLS_NS = "http://www.w3.org/2005/01/pronunciation-lexicon"
QTTS_NS = "https://github.com/qwen3-tts-serve/pls"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
CONTENT_TYPE = "application/pls+xml"
PARAM = "file"


def _tag(element: Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _flag(lexeme: Element, name: str, default: bool, where: str) -> bool:
    value = lexeme.get(f"{{{QTTS_NS}}}{name}")
    if value is None:
        return default
    if value not in ("true", "false"):
        raise InvalidRequest(f"{where}: qtts:{name} is {value!r}; use true or false",
                             param=PARAM)
    return value == "true"


def parse(data: bytes) -> tuple[list[EntryData], str | None]:
    """A PLS file's alias entries and its `xml:lang` (422 naming the lexeme for anything
    this service cannot read)."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except DefusedXmlException:
        raise InvalidRequest("the PLS file declares a DTD or entities, which are not "
                             "accepted", param=PARAM) from None
    except SafeET.ParseError as exc:
        raise InvalidRequest(f"the file is not well-formed XML: {exc}", param=PARAM) from None
    if _tag(root) != "lexicon":
        raise InvalidRequest(f"a PLS file's root is <lexicon>, not <{_tag(root)}>", param=PARAM)
    entries: list[EntryData] = []
    for n, lexeme in enumerate((e for e in root if _tag(e) == "lexeme"), 1):
        graphemes = [(g.text or "").strip() for g in lexeme if _tag(g) == "grapheme"]
        first = graphemes[0] if graphemes else ""
        where = f"lexeme {n}" + (f" ({first!r})" if first else "")
        if any(_tag(c) == "phoneme" for c in lexeme):
            raise InvalidRequest(
                f"{where} has a <phoneme>: the models read text, not a phonetic alphabet; "
                "write what to say as an <alias>", param=PARAM, code="unsupported_value")
        aliases = [(a.text or "").strip() for a in lexeme if _tag(a) == "alias"]
        if not graphemes or not all(graphemes):
            raise InvalidRequest(f"{where} has no <grapheme> text", param=PARAM)
        if len(aliases) != 1 or not aliases[0]:
            raise InvalidRequest(f"{where} needs exactly one <alias> with text (it has "
                                 f"{len(aliases)})", param=PARAM)
        case_sensitive = _flag(lexeme, "case-sensitive", False, where)
        boundaries = _flag(lexeme, "word-boundaries", True, where)
        entries += [EntryData(g, aliases[0], case_sensitive, boundaries) for g in graphemes]
    return entries, root.get(XML_LANG)


def render(entries: tuple[EntryData, ...] | list[EntryData], language: str | None) -> bytes:
    """The entries as a PLS 1.0 file (alias entries), UTF-8."""
    root = Element("lexicon", {"version": "1.0", "xmlns": PLS_NS, "xmlns:qtts": QTTS_NS,
                               "alphabet": "ipa", "xml:lang": language or "und"})
    for entry in entries:
        attributes = {}
        if entry.case_sensitive:
            attributes["qtts:case-sensitive"] = "true"
        if not entry.word_boundaries:
            attributes["qtts:word-boundaries"] = "false"
        lexeme = SubElement(root, "lexeme", attributes)
        SubElement(lexeme, "grapheme").text = entry.grapheme
        SubElement(lexeme, "alias").text = entry.alias
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="unicode"
                                                                  ).encode() + b"\n"
