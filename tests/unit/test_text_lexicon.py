"""Pronunciation dictionaries applied to text (serve_app.text.lexicon): literal graphemes,
case and word-boundary rules, the longest match and the first dictionary win, and the map
back to the user's characters survives normalization."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.text.front_end import TextFrontEnd
from serve_app.text.lexicon import Lexicon, Rule


def read(text: str, *dictionaries: list[Rule]) -> str:
    return Lexicon(list(dictionaries)).apply(text)[0]


@pytest.mark.parametrize(("rule", "text", "spoken"), [
    (Rule("Qwen", "chwen"), "Qwen and QWEN and qwen", "chwen and chwen and chwen"),
    (Rule("SQL", "sequel", case_sensitive=True), "SQL or sql", "sequel or sql"),
    (Rule("cat", "dog"), "cat concat cats cat.", "dog concat cats dog."),
    (Rule("cat", "dog", word_boundaries=False), "cat concat", "dog condog"),
    (Rule("C++", "C plus plus"), "C++ and C++11", "C plus plus and C plus plus11"),
    (Rule("a.b", "A B"), "a.b axb", "A B axb"),  # literal: "." is not a wildcard
    (Rule("提示", "提词"), "系统提示词", "系统提词词"),  # CJK characters are words of their own
    (Rule("Dr. Who", "Doctor Who"), "Meet Dr. Who.", "Meet Doctor Who."),
])
def test_an_entry_reads_its_grapheme_as_its_alias(rule, text, spoken):
    assert read(text, [rule]) == spoken


def test_the_longest_grapheme_wins_and_then_the_earlier_dictionary():
    first = [Rule("Qwen", "first")]
    second = [Rule("Qwen", "second"), Rule("Qwen TTS", "the product")]
    assert read("Qwen TTS, Qwen", first, second) == "the product, first"


def test_an_alias_is_not_rewritten_again():
    assert read("A", [Rule("A", "B"), Rule("B", "C")]) == "B"


def test_the_map_points_each_alias_at_the_users_grapheme():
    text = "Say Qwen now"
    spoken, offsets = Lexicon([[Rule("Qwen", "the chwen model")]]).apply(text)
    start = spoken.index("chwen")
    assert offsets.source_span(start, start + 5) == (4, 8)  # all of "Qwen"
    now = spoken.index("now")
    assert offsets.source_span(now, now + 3) == (9, 12)


def test_after_normalization_spans_still_point_at_what_the_user_sent():
    text = "I owe $5 to Qwen."
    script = asyncio.run(TextFrontEnd().script(
        text, "English", lexicon=Lexicon([[Rule("five", "FIVE"), Rule("Qwen", "chwen")]])))
    part = script.parts[0]
    assert "FIVE" in part.text and "chwen" in part.text
    start = part.text.index("chwen")
    assert part.offsets.source_span(start, start + 5) == (12, 16)
    assert script.characters == len(text)  # usage: the user's characters


def test_an_empty_lexicon_changes_nothing():
    assert not Lexicon() and read("anything", []) == "anything"
