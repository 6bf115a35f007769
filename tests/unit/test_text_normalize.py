"""Text normalization (serve_app.text.normalize): the case table read as the model should
read it, only flagged sentences through a grammar, each once, and a map back to the user's
characters."""

from __future__ import annotations

import pytest

from serve_app.text.normalize import (
    NEEDS_NORMALIZING,
    TextNormalizer,
    language_of,
    num2words_numbers,
    sentences,
)
from serve_app.text.offsets import align
from tests.text_cases import EN_CASES, ZH_CASES, matches


@pytest.fixture(scope="module")
def normalizer() -> TextNormalizer:
    return TextNormalizer()  # the grammars are built once per process, on first use


@pytest.mark.parametrize(("category", "written", "spoken"), ZH_CASES,
                         ids=[f"zh-{c}-{w}" for c, w, _ in ZH_CASES])
def test_chinese_case_table(normalizer, category, written, spoken):
    out = normalizer.normalize(written, "chinese").text
    assert matches(out, spoken), f"{category}: {written!r} read as {out!r}"


@pytest.mark.parametrize(("category", "written", "spoken"), EN_CASES,
                         ids=[f"en-{c}-{w}" for c, w, _ in EN_CASES])
def test_english_case_table(normalizer, category, written, spoken):
    out = normalizer.normalize(written, "english").text
    assert matches(out, spoken), f"{category}: {written!r} read as {out!r}"


def test_case_tables_have_forty_cases_or_more_per_language():
    assert len(ZH_CASES) >= 40 and len(EN_CASES) >= 40


def test_auto_reads_each_sentence_in_its_script(normalizer):
    out = normalizer.normalize("第3章。It has 3 parts.", "auto").text
    assert out == "第三章。It has three parts."


@pytest.mark.parametrize(("language", "written", "spoken"), [
    ("german", "Es kostet 3,5 Prozent mehr: 12 Äpfel", "Es kostet drei Komma fünf Prozent mehr: zwölf Äpfel"),
    ("french", "Il a 21 ans et 50 %", "Il a vingt et un ans et cinquante pour cent"),
    ("spanish", "Tengo 2 gatos", "Tengo dos gatos"),
    ("russian", "У меня 5 книг", "У меня пять книг"),
])
def test_other_languages_read_numbers_with_num2words(normalizer, language, written, spoken):
    assert normalizer.normalize(written, language).text == spoken


def test_hyphens_between_numbers_are_not_minus_signs():
    assert "minus" not in num2words_numbers("2026-12-04", "en")
    assert num2words_numbers("-5", "en") == "minus five"


def test_only_flagged_sentences_reach_a_grammar_and_each_only_once():
    calls: list[str] = []

    def grammar_of(code: str):
        def read(sentence: str) -> str:
            calls.append(sentence)
            return sentence.replace("3", "three")
        return read

    normalizer = TextNormalizer(grammar_of=grammar_of)
    text = "Hello there. I have 3 cats. Goodbye now."
    assert normalizer.normalize(text, "english").text == "Hello there. I have three cats. Goodbye now."
    assert normalizer.normalize(text, "english").text.count("three") == 1
    assert calls == ["I have 3 cats."]  # the plain sentences never went, the cached one once


def test_a_failing_grammar_reads_the_sentence_as_written():
    def grammar_of(code: str):
        def read(sentence: str) -> str:
            raise RuntimeError("grammar broke")
        return read

    assert TextNormalizer(grammar_of=grammar_of).normalize("I have 3 cats.", "en").text == \
        "I have 3 cats."


def test_flag_regex_passes_plain_text_and_catches_numbers_symbols_abbreviations():
    assert not NEEDS_NORMALIZING.search("Hello, world. 你好，世界")
    for text in ("3 cats", "$", "50%", "Dr. Who", "第３章", "20°", "A&B"):
        assert NEEDS_NORMALIZING.search(text), text


def test_sentences_concatenate_back_and_keep_abbreviations_whole():
    text = "Dr. Smith met Mr. Jones. They paid $5! 然后呢？好。"
    parts = sentences(text)
    assert "".join(parts) == text
    assert parts[0] == "Dr. Smith met Mr. Jones."


def test_language_of():
    assert language_of("auto", "你好") == "zh"
    assert language_of("auto", "こんにちは") == "ja"
    assert language_of("auto", "안녕") == "ko"
    assert language_of("auto", "Привет") == "ru"
    assert language_of("auto", "hello") == "en"
    assert language_of("English", "你好") == "en"
    assert language_of("klingon", "x") is None


# ------------------------------------------------------------------------------ offsets
def test_offsets_of_a_replacement_cover_what_it_replaced(normalizer):
    text = "It costs $1,299.99 today."
    out = normalizer.normalize(text, "english")
    words = out.text.index("one thousand")
    start, end = out.offsets.source_span(words, out.text.index(" today"))
    assert text[start:end].strip() == "$1,299.99"
    start, end = out.offsets.source_span(out.text.index("today"), len(out.text))
    assert text[start:end] == "today."


def test_offsets_of_chinese_map_each_character(normalizer):
    text = "这是第3章，共12页。"
    out = normalizer.normalize(text, "chinese")
    assert out.text == "这是第三章，共十二页。"
    i = out.text.index("十二")
    assert text[slice(*out.offsets.source_span(i, i + 2))] == "12"
    i = out.text.index("页")
    assert text[slice(*out.offsets.source_span(i, i + 1))] == "页"


def test_offsets_span_the_whole_text_across_sentences(normalizer):
    text = "Plain start. Then 5 km. And the end."
    out = normalizer.normalize(text, "english")
    assert out.offsets.source_span(0, len(out.text)) == (0, len(text))
    i = out.text.index("And")
    assert text[slice(*out.offsets.source_span(i, len(out.text)))] == "And the end."


def test_align_identity_and_tokens():
    m = align("same", "same")
    assert m.source_span(1, 3) == (1, 3)
    m = align("Dr. Smith", "doctor Smith")
    assert m.source_span(0, 6) == (0, 3)  # "doctor" came from "Dr."
    assert m.source_span(7, 12) == (4, 9)


def test_warming_builds_the_slow_grammars_once_and_survives_one_that_fails():
    built: list[str] = []

    def grammar_of(code: str):
        built.append(code)
        if code == "zh":
            raise RuntimeError("no FST")
        return str.upper

    normalizer = TextNormalizer(grammar_of=grammar_of)
    took = normalizer.warm()
    assert built == ["en", "zh"] and set(took) == {"en", "zh"}
    assert normalizer.normalize("I have 3 cats.", "english").text == "I HAVE 3 CATS."
