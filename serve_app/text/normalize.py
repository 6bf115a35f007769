"""Text normalization: numbers, dates, times, money, percentages, units, phone numbers and
common abbreviations written out as the model should read them, before the model sees them.

Chinese and English go through WeTextProcessing's grammars (`tn.chinese` / `tn.english`,
pynini FSTs prebuilt in the package), with a few rules in front where the grammar reads a
case wrong (`$1,299.99` in Chinese, money in cents, number ranges, "dial 911",
"St."/"etc."); German, French, Spanish, Italian, Portuguese, Russian, Japanese and Korean
get their numbers, decimals and percentages read by num2words. benchmarks/normalization.py
measured the choice on tests/text_cases.py (docs/api.md, "Normalization").

Only sentences that `NEEDS_NORMALIZING` flags (a digit, a currency or unit symbol, an
abbreviation) go through a grammar; each normalized sentence is kept in an LRU cache, and
the grammars are built once per process (`grammar`: about 1.2-1.7 s of CPU for each of
Chinese and English), by an ingress replica as it starts (`TextNormalizer.warm`). Callers on an event loop use `TextNormalizer.normalize_async`,
which runs a grammar in a thread.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from serve_app.synthesis.cache import LRUCache
from serve_app.text.offsets import OffsetMap, align

logger = logging.getLogger("qtts.text")

#: A sentence worth a grammar: digits (ASCII or full-width), currency, percent, degree and
#: other symbols read as words, or a common abbreviation with its dot.
NEEDS_NORMALIZING = re.compile(
    r"[0-9０-９$€£¥￥%‰°&@#§+=×÷]"
    r"|\b(?:Dr|Mr|Mrs|Ms|Prof|St|Ave|Mt|Jr|Sr|etc|vs|approx|No|Jan|Feb|Mar|Apr|Jun|Jul|Aug"
    r"|Sep|Sept|Oct|Nov|Dec)\.")

#: The languages whose grammars take long to build (WeTextProcessing's FSTs): an ingress
#: replica builds them as it starts (`TextNormalizer.warm`), not on its first sentence.
SLOW_GRAMMARS = ("en", "zh")
#: The model's language names (ModelInfo.languages) -> the normalizer's language.
LANGUAGE_CODES = {"chinese": "zh", "english": "en", "german": "de", "french": "fr",
                  "spanish": "es", "italian": "it", "portuguese": "pt", "russian": "ru",
                  "japanese": "ja", "korean": "ko"}
#: Languages read by num2words (numbers, decimals, percentages), with their word for percent
#: and their decimal separator.
NUM2WORDS_LANGUAGES = {"de": ("Prozent", ","), "fr": ("pour cent", ","), "es": ("por ciento", ","),
                       "it": ("per cento", ","), "pt": ("por cento", ","), "ru": ("процентов", ","),
                       "ja": ("パーセント", "."), "ko": ("퍼센트", "."), "en": ("percent", ".")}

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])|(?<=[.…])(?=\s+[A-Z0-9\"'“‘(])")
_ABBREVIATION_END = re.compile(
    r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|Ave|Mt|Jr|Sr|vs|approx|No|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|"
    r"Sept|Oct|Nov|Dec|[A-Z])\.$")


@dataclass(frozen=True)
class NormalizedText:
    """What the model reads, and where each of its characters came from in `source`."""

    source: str
    text: str
    offsets: OffsetMap

    @property
    def changed(self) -> bool:
        return self.text != self.source


def language_of(language: str, sentence: str) -> str | None:
    """The normalizer language of a sentence: the request's language, or with `auto` its
    script (Han -> zh, kana -> ja, hangul -> ko, Cyrillic -> ru, Latin and the rest -> en).
    None: no normalizer for it."""
    code = LANGUAGE_CODES.get(language.lower(), language.lower())
    if code != "auto":
        return code if code in ("zh", "en") or code in NUM2WORDS_LANGUAGES else None
    if re.search(r"[\u3040-\u30ff]", sentence):
        return "ja"
    if re.search(r"[\uac00-\ud7af]", sentence):
        return "ko"
    if re.search(r"[\u3400-\u9fff]", sentence):
        return "zh"
    if re.search(r"[\u0400-\u04ff]", sentence):
        return "ru"
    return "en"


def sentences(text: str) -> list[str]:
    """`text` cut into sentences that concatenate back to it (an abbreviation's dot, as in
    "Dr. Smith", ends no sentence)."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        if end <= start or _ABBREVIATION_END.search(text[start:end]):
            continue
        pieces.append(text[start:end])
        start = end
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class TextNormalizer:
    """Normalizes request text (see the module docstring); one per replica, thread-safe."""

    def __init__(self, cache_size: int = 4096,
                 grammar_of: Callable[[str], Callable[[str], str]] | None = None) -> None:
        self._cache: LRUCache[str] = LRUCache(cache_size)  # locks itself
        self._grammar_of = grammar_of or grammar

    def warm(self, codes: tuple[str, ...] = SLOW_GRAMMARS) -> dict[str, float]:
        """Build the grammars of `codes` now (blocking; seconds each took), so that the first
        sentence that needs one does not wait for it. A grammar that fails to build is
        logged and left to fail (and read the sentence as written) when a sentence needs it."""
        took = {}
        for code in codes:
            started = time.perf_counter()
            try:
                self._grammar_of(code)
            except Exception:  # noqa: BLE001 - a missing grammar must not stop the replica
                logger.warning("the %s normalizer could not be built", code, exc_info=True)
            took[code] = time.perf_counter() - started
        return took

    def normalize(self, text: str, language: str = "auto") -> NormalizedText:
        """`text` as the model should read it (blocking: a grammar may run)."""
        pieces: list[tuple[OffsetMap, int]] = []
        out: list[str] = []
        at = 0
        for sentence in sentences(text):
            spoken = self._sentence(sentence, language)
            out.append(spoken)
            pieces.append((align(sentence, spoken), at))
            at += len(sentence)
        result = "".join(out)
        return NormalizedText(text, result, OffsetMap.joined(pieces, len(result), len(text)))

    async def normalize_async(self, text: str, language: str = "auto") -> NormalizedText:
        """`normalize` off the event loop, unless nothing in `text` needs a grammar or every
        sentence that does is cached."""
        if all(self._cached(s, language) is not None for s in sentences(text)
               if NEEDS_NORMALIZING.search(s) and language_of(language, s)):
            return self.normalize(text, language)
        return await asyncio.to_thread(self.normalize, text, language)

    def _cached(self, sentence: str, language: str) -> str | None:
        return self._cache.get(f"{language_of(language, sentence)}\x00{sentence}")

    def _sentence(self, sentence: str, language: str) -> str:
        if not NEEDS_NORMALIZING.search(sentence):
            return sentence
        code = language_of(language, sentence)
        if code is None:
            return sentence
        if (hit := self._cache.get(f"{code}\x00{sentence}")) is not None:
            return hit
        body = sentence.strip()
        lead = sentence[:len(sentence) - len(sentence.lstrip())]
        tail = sentence[len(lead) + len(body):]
        try:
            spoken = lead + self._grammar_of(code)(body) + tail
        except Exception:  # a grammar that fails reads the sentence as written
            logger.warning("normalization failed for a %s sentence of %d characters; it is "
                           "read as written", code, len(sentence), exc_info=True)
            spoken = sentence
        self._cache.put(f"{code}\x00{sentence}", spoken)
        return spoken


# ------------------------------------------------------------------------------- grammars
_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"


def _plain_number(digits: str) -> int:
    return int(digits.replace(",", ""))


_BUILDING = threading.Lock()


def grammar(code: str) -> Callable[[str], str]:
    """The normalizer of a language, built once per process (WeTextProcessing's grammars
    load their FSTs here; the first call per language pays for it, and a call while the
    warm-up builds it waits for that build instead of making a second)."""
    with _BUILDING:
        return _build(code)


@functools.cache
def _build(code: str) -> Callable[[str], str]:
    if code == "zh":
        from tn.chinese.normalizer import Normalizer as Chinese
        fst = Chinese(overwrite_cache=False)

        def chinese(text: str) -> str:
            text = _chinese_rules(text)
            return _only_what_reads_differently(text, fst.normalize(text))
        return chinese
    if code == "en":
        from tn.english.normalizer import Normalizer as English
        fst = English(overwrite_cache=False)
        return lambda s: _english_after(fst.normalize(_english_rules(s)))
    if code in NUM2WORDS_LANGUAGES:
        return functools.partial(num2words_numbers, language=code)
    raise ValueError(f"no normalizer for {code}")


_FULL_WIDTH = str.maketrans("０１２３４５６７８９％＄．", "0123456789%$.")
_ZH_CURRENCY = {"$": "美元", "＄": "美元", "€": "欧元", "£": "英镑"}


def _chinese_rules(text: str) -> str:
    """What WeTextProcessing's Chinese grammar reads wrong, rewritten before it: a currency
    sign in front of a number ("$1,299.99" came out as "一美元,两百九十九点九九") becomes the
    unit after it; "&" is "和"; full-width digits and signs are read as ASCII ones."""
    text = text.translate(_FULL_WIDTH)
    text = re.sub(r"([$＄€£])\s?(" + _NUMBER + r")(\.\d+)?",
                  lambda m: f"{_plain_number(m[2])}{m[3] or ''}{_ZH_CURRENCY[m[1]]}", text)
    return text.replace("&", "和")


_READ_AS_WRITTEN = re.compile(r"[^\dA-Za-z$€£¥￥%‰°&@#§+=×÷/:.\-]+")
_HALF_WIDTH_PUNCTUATION = {"，": ",", "。": ".", "！": "!", "？": "?", "；": ";", "：": ":"}


def _only_what_reads_differently(source: str, spoken: str) -> str:
    """The Chinese grammar's output with what it changes besides reading (its prebuilt FST
    also turns traditional characters into simplified ones, drops interjections and erhua,
    and full-width punctuation into half-width) put back as written: a change of the
    grammar is kept only where the text it replaced has a digit, a letter or a symbol."""
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, source, spoken, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        written, read = source[i1:i2], spoken[j1:j2]
        if tag == "equal" or not _READ_AS_WRITTEN.fullmatch(written or "x"):
            tail = written[-1:]
            if read and _HALF_WIDTH_PUNCTUATION.get(tail) == read[-1]:
                read = read[:-1] + tail
            out.append(read)
        else:
            out.append(written)  # not reading: characters, punctuation, an interjection
    return "".join(out)


_EN_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"),
                "€": ("euro", "euros", "cent", "cents"),
                "£": ("pound", "pounds", "penny", "pence")}
_EN_ABBREVIATIONS = [
    (re.compile(r"\betc\."), "et cetera"),
    (re.compile(r"\bvs\.?(?=\s)"), "versus"),
    (re.compile(r"\bapprox\."), "approximately"),
    (re.compile(r"\b([A-Z][a-z]+\s+)St\.(?=\s|$)"), r"\1Street"),
    (re.compile(r"\b([A-Z][a-z]+\s+)Ave\.(?=\s|$)"), r"\1Avenue"),
    (re.compile(r"\bNo\.\s?(?=\d)"), "number "),
]


def _english_rules(text: str) -> str:
    """What WeTextProcessing's English grammar reads wrong, rewritten before it: money in
    units and cents ("$1,299.99" is not "... point nine nine dollars"), numbers with
    thousands separators (it dropped the "one" of "1,500"), ranges ("3-5 days" is "three to
    five days", not daltons), digits dialled ("dial 911"), and street and Latin
    abbreviations."""
    from num2words import num2words

    def money(m: re.Match) -> str:
        one, many, cent, cents = _EN_CURRENCY[m[1]]
        units = _plain_number(m[2])
        hundredths = int((m[3] or "0").ljust(2, "0")[:2])
        said = [] if units == 0 and hundredths else [
            f"{num2words(units)} {one if units == 1 else many}"]
        if hundredths:
            said.append(f"{num2words(hundredths)} {cent if hundredths == 1 else cents}")
        return " ".join(said).replace("-", " ").replace(",", "")

    text = re.sub(r"([$€£])\s?(" + _NUMBER + r")(?:\.(\d{1,2}))?(?!\d)", money, text)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = re.sub(r"(?<![-–/:.\d])(\d{1,4})\s?[-–]\s?(\d{1,4})(?![-–/:.]?\d)", r"\1 to \2", text)
    text = re.sub(r"\b(dial|call|phone)(\s+)(\d{3,})\b(?![-–.]?\d)",
                  lambda m: m[1] + m[2] + " ".join(m[3]), text)
    for pattern, replacement in _EN_ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    return text


def _english_after(text: str) -> str:
    return re.sub(r"\s+,", ",", text)


def num2words_numbers(text: str, language: str) -> str:
    """Numbers, decimals (the language's separator), percentages and (English) ordinals
    read by num2words; everything else as written."""
    from num2words import num2words

    percent, decimal = NUM2WORDS_LANGUAGES[language]
    group = "," if decimal == "." else "."

    def number(digits: str) -> str:
        digits = re.sub(rf"(?<=\d){re.escape(group)}(?=\d{{3}}(?!\d))", "", digits)
        value = float(digits.replace(decimal, ".")) if decimal in digits else int(digits)
        return num2words(value, lang=language)

    # a minus sign, not a hyphen between numbers ("2026-12-04")
    num = rf"(?<![\w.,])-?\d+(?:{re.escape(group)}\d{{3}})*(?:{re.escape(decimal)}\d+)?"
    if language == "en":
        text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b",
                      lambda m: num2words(int(m[1]), lang="en", to="ordinal"), text)
    text = re.sub(rf"({num})\s?%", lambda m: f"{number(m[1])} {percent}", text)
    return re.sub(num, lambda m: number(m[0]), text)
