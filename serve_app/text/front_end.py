"""The one step every surface's text goes through before the model: plain text normalized,
or an SSML document (`input_format: "ssml"`) read into parts.

A `Script` is what the model call speaks: one part for plain text; for SSML a part per run of
text with one language and one prosody, each followed by its pause (`<break>`). Each part's
`offsets` map its text back to the characters the user sent (the SSML document's, for SSML),
so spans and timestamps refer to what the user wrote; `characters` is what is billed: the
user's text as sent (for SSML the document's text, markup and aliases excluded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from serve_app.edge.api_errors import invalid
from serve_app.text import ssml
from serve_app.text.lexicon import Lexicon
from serve_app.text.normalize import (
    NUM2WORDS_LANGUAGES,
    TextNormalizer,
    grammar,
    language_of,
)
from serve_app.text.offsets import Block, OffsetMap

#: What `input_format` takes.
INPUT_FORMATS = ("text", "ssml")


@dataclass(frozen=True)
class ScriptPart:
    """One model request's text: `language` None is the request's language, else the model
    language name of a `<lang>`; `speed`/`pitch`: a `<prosody>` (rendered by the DSP);
    `pause_after_s`: silence after it."""

    text: str
    offsets: OffsetMap = field(repr=False)
    language: str | None = None
    speed: float = 1.0
    pitch: float = 1.0
    pause_after_s: float = 0.0

    @property
    def prosody(self) -> bool:
        return self.speed != 1.0 or self.pitch != 1.0


@dataclass(frozen=True)
class Script:
    parts: tuple[ScriptPart, ...]
    characters: int
    pause_before_s: float = 0.0

    @property
    def simple(self) -> bool:
        """One part, no pause, no prosody: an ordinary model request."""
        return (len(self.parts) == 1 and not self.pause_before_s
                and not self.parts[0].pause_after_s and not self.parts[0].prosody
                and self.parts[0].language is None)


class TextFrontEnd:
    """Normalization and SSML for one replica (its normalizer's cache is the replica's)."""

    def __init__(self, normalizer: TextNormalizer | None = None) -> None:
        self.normalizer = normalizer or TextNormalizer()

    async def script(self, text: str, language: str, *, normalize: bool = True,
                     input_format: str = "text",
                     resolve_language: Callable[[str], str] = lambda code: code,
                     param: str = "text", lexicon: Lexicon | None = None) -> Script:
        """`text` as the model will read it. `language`: the request's model language name;
        `resolve_language`: a `<lang>`'s code to a model language name (raising the usual
        422 for one the model does not speak); `param`: the field, for errors; `lexicon`:
        the request's pronunciation dictionaries, applied after normalization (to SSML's
        text, not to a `<sub>` alias or a `<say-as>` reading)."""
        lexicon = lexicon or Lexicon()
        if input_format == "ssml":
            return await self._ssml(text, language, normalize, resolve_language, param,
                                    lexicon)
        if normalize:
            out = await self.normalizer.normalize_async(text, language)
            spoken, offsets = out.text, out.offsets
        else:
            spoken, offsets = text, OffsetMap.identity(len(text))
        if lexicon:
            spoken, looked_up = lexicon.apply(spoken)
            offsets = looked_up.then(offsets)
        return Script((ScriptPart(spoken, offsets),), len(text))

    async def _ssml(self, document: str, language: str, normalize: bool,
                    resolve_language: Callable[[str], str], param: str,
                    lexicon: Lexicon) -> Script:
        try:
            segments = ssml.parse(document)
        except ssml.SsmlError as exc:
            raise invalid(param, f"{param} is not valid SSML: {exc.message} (at character "
                          f"{exc.offset}).") from None
        parts: list[ScriptPart] = []
        pause_before = 0.0
        run: list[tuple[str, OffsetMap]] = []
        run_key: tuple | None = None
        characters = 0

        def close_run(pause: float = 0.0) -> None:
            nonlocal run, pause_before
            text = "".join(piece for piece, _ in run)
            if text.strip():
                maps = [(m, 0) for _, m in run]
                offsets = _joined(maps, len(text), len(document))
                assert run_key is not None
                parts.append(ScriptPart(text, offsets, run_key[0], run_key[1], run_key[2],
                                        pause))
            elif parts:
                last = parts[-1]
                parts[-1] = ScriptPart(last.text, last.offsets, last.language, last.speed,
                                       last.pitch, last.pause_after_s + pause)
            else:
                pause_before += pause
            run = []

        for segment in segments:
            if segment.kind == "break":
                close_run(segment.pause_s)
                continue
            try:
                model_language = (resolve_language(segment.language.split("-")[0])
                                  if segment.language
                                  else None)
            except Exception as exc:
                message = getattr(exc, "message", str(exc))
                raise invalid(param, f"{param} is not valid SSML: xml:lang="
                              f"{segment.language!r} (at character {segment.start}): "
                              f"{message}") from None
            key = (model_language, segment.speed, segment.pitch)
            if run and key != run_key:
                close_run()
            run_key = key
            spoken_language = model_language or language
            if segment.kind == "text":
                characters += len(segment.text.strip()) and len(segment.text)
                assert segment.offsets is not None
                if normalize:
                    out = await self.normalizer.normalize_async(segment.text, spoken_language)
                    spoken, offsets = out.text, out.offsets.then(segment.offsets)
                else:
                    spoken, offsets = segment.text, segment.offsets
                if lexicon:
                    spoken, looked_up = lexicon.apply(spoken)
                    offsets = looked_up.then(offsets)
                run.append((spoken, offsets))
            else:
                characters += len(segment.text)
                spoken = (segment.alias if segment.kind == "sub" else
                          await _say_as(segment, spoken_language, param))
                run.append((spoken, OffsetMap([Block(0, len(spoken), segment.start,
                                                     segment.end, False)],
                                              len(spoken), len(document))))
        close_run()
        if not parts:
            raise invalid(param, f"{param} is SSML with nothing to speak; put text inside "
                          "<speak>.")
        return Script(tuple(parts), characters, pause_before)


def _joined(maps: list[tuple[OffsetMap, int]], out_length: int, src_length: int) -> OffsetMap:
    """Maps whose sources are already absolute offsets in the document, one after another."""
    blocks: list[Block] = []
    out = 0
    for piece, _ in maps:
        blocks.extend(Block(b.out_start + out, b.out_end + out, b.src_start, b.src_end, b.equal)
                      for b in piece.blocks)
        out += piece.out_length
    return OffsetMap(blocks, out_length, src_length)


# ------------------------------------------------------------------------------- say-as
_ZH_DIGITS = "零一二三四五六七八九"


async def _say_as(segment: ssml.Segment, language: str, param: str) -> str:
    """What a `<say-as>` reads, in the part's language (Chinese, English, or the languages
    num2words reads)."""
    import asyncio

    text = segment.text.strip()
    code = language_of(language, text) or "en"
    kind = segment.interpret_as
    try:
        return await asyncio.to_thread(_read_as, kind or "", text, code, segment.format)
    except ValueError as exc:
        raise invalid(param, f"{param} is not valid SSML: <say-as interpret-as=\"{kind}\"> "
                      f"(at character {segment.start}) {exc}.") from None


def _read_as(kind: str, text: str, code: str, date_format: str | None) -> str:
    from num2words import num2words

    def digit(d: str) -> str:
        if code == "zh":
            return _ZH_DIGITS[int(d)]
        return num2words(int(d), lang=code if code in NUM2WORDS_LANGUAGES else "en")

    if kind == "characters":
        return " ".join(digit(c) if c.isdigit() else c.upper() if code == "en" else c
                        for c in text if not c.isspace())
    if kind == "telephone":
        groups = re.findall(r"\d+", text)
        if not groups:
            raise ValueError("needs a telephone number (digits)")
        separator = "，" if code == "zh" else ", "
        return separator.join((" " if code != "zh" else "").join(digit(d) for d in group)
                              for group in groups)
    if kind in ("cardinal", "ordinal"):
        number = text.replace(",", "").replace(" ", "")
        if not re.fullmatch(r"-?\d+", number):
            raise ValueError(f"needs a whole number, not {len(text)} characters of other text")
        if code == "zh":
            words = grammar("zh")(number)
            return "第" + words if kind == "ordinal" else words
        lang = code if code in NUM2WORDS_LANGUAGES else "en"
        words = num2words(int(number), lang=lang,
                          to="ordinal" if kind == "ordinal" else "cardinal")
        return words.replace("-", " ").replace(",", "")
    if kind == "date":
        text = _iso_date(text, date_format)
    elif kind == "time" and not re.fullmatch(r"\d{1,2}:\d{2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?",
                                             text, re.I):
        raise ValueError("needs a time such as 13:45 or 9:30 pm")
    if code in ("zh", "en"):
        return grammar(code)(text)
    return grammar(code)(text) if code in NUM2WORDS_LANGUAGES else text


def _iso_date(text: str, date_format: str | None) -> str:
    """A date as YYYY-MM-DD, read from ISO or with `format` (ymd, mdy, dmy)."""
    numbers = re.findall(r"\d+", text)
    order = (date_format or "ymd").lower()
    if len(numbers) != 3 or sorted(order) != ["d", "m", "y"]:
        raise ValueError("needs a date of year, month and day (e.g. 2026-12-04, or "
                         "format=\"mdy\" with 12/04/2026)")
    parts = dict(zip(order, numbers, strict=True))
    year, month, day = int(parts["y"]), int(parts["m"]), int(parts["d"])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError(f"has no month {month} day {day}")
    return f"{year:04d}-{month:02d}-{day:02d}"
