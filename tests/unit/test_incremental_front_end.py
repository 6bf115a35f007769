"""The text front end for text that keeps arriving (serve_app.text.incremental): however the
text is split, what the model reads is the whole text normalized and looked up, and only
about a word is held back."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.text.incremental import IncrementalFrontEnd, decided_cut
from serve_app.text.lexicon import Lexicon, Rule
from serve_app.text.normalize import TextNormalizer
from tests.text_cases import EN_CASES, ZH_CASES

LONG_EN = ("Call me at 3 pm on 2026-12-04, it costs $1,299.99 and is 3 km away. "
           "Dr. Smith lives on Main St. today; dial 911 if 3-5 people are late.")


@pytest.fixture(scope="module")
def normalizer() -> TextNormalizer:
    return TextNormalizer()


def fed(normalizer: TextNormalizer, pieces: list[str], language: str = "english",
        lexicon: Lexicon | None = None, normalize: bool = True) -> tuple[str, IncrementalFrontEnd]:
    async def go() -> tuple[str, IncrementalFrontEnd]:
        front = IncrementalFrontEnd(
            (lambda s: normalizer.normalize_async(s, language)) if normalize else None, lexicon)
        out = ""
        for piece in pieces:
            out += await front.feed(piece)
        return out + await front.finish(), front
    return asyncio.run(go())


@pytest.mark.parametrize(("language", "text"),
                         [("english", w) for _, w, _ in EN_CASES] + [("english", LONG_EN)]
                         + [("chinese", w) for _, w, _ in ZH_CASES],
                         ids=[f"en-{w}" for _, w, _ in EN_CASES] + ["en-long"]
                         + [f"zh-{w}" for _, w, _ in ZH_CASES])
def test_split_at_every_position_reads_as_the_whole_text_normalized(normalizer, language,
                                                                     text):
    whole = normalizer.normalize(text, language).text
    for at in range(len(text) + 1):
        out, _ = fed(normalizer, [text[:at], text[at:]], language)
        assert out == whole, f"split at {at}: {out!r}"


def test_character_by_character_reads_as_the_whole_text_normalized(normalizer):
    out, front = fed(normalizer, list(LONG_EN))
    assert out == normalizer.normalize(LONG_EN, "english").text
    assert front.source_read(len(out)) == len(LONG_EN)


def test_the_hold_back_is_the_unfinished_word_and_the_last_finished_plain_word():
    assert decided_cut("hello there my fri", False) == len("hello there ")
    assert decided_cut("hello there my friend ", False) == len("hello there my ")
    # a trigger keeps a plain word on each side with it: "dial 911" is read together
    assert decided_cut("please dial 911 now ", False) == len("please ")
    assert decided_cut("please dial 911 now and then ", False) == len("please dial 911 now and ")
    # a sentence end decides everything before it
    assert decided_cut("It is 3 km. Then", False) == len("It is 3 km.")
    assert decided_cut("anything at all", True) == len("anything at all")
    # Chinese characters are words of their own
    assert decided_cut("今天是第3章的开", False) == len("今天是第3章的")


def test_words_are_given_to_the_model_as_they_settle(normalizer):
    async def go() -> list[str]:
        front = IncrementalFrontEnd(lambda s: normalizer.normalize_async(s, "english"))
        return [await front.feed(piece) for piece in ("Hello ", "there ", "my ", "friend")]
    # "my" waits with the unfinished "friend": a number after it would be read with it
    assert asyncio.run(go()) == ["", "Hello ", "there ", ""]


def test_dictionary_graphemes_split_across_pieces_are_still_replaced(normalizer):
    lexicon = Lexicon([[Rule("Qwen", "chwen"), Rule("New York", "Noo York")]])
    text = "I love Qwen in New York, not in New Yorkers or Qwenlike towns."
    want = lexicon.apply(normalizer.normalize(text, "english").text)[0]
    assert "chwen" in want and "Noo York," in want and "New Yorkers" in want
    for at in range(len(text) + 1):
        out, front = fed(normalizer, [text[:at], text[at:]], lexicon=lexicon)
        assert out == want, f"split at {at}: {out!r}"
        assert front.source_read(len(out)) == len(text)


def test_a_possible_grapheme_prefix_is_held_until_decided():
    async def go() -> list[str]:
        front = IncrementalFrontEnd(None, Lexicon([[Rule("New York", "Noo York")]]))
        return [await front.feed("We fly to "), await front.feed("New "),
                await front.feed("Yorkshire "), await front.feed("now "),
                await front.finish()]
    pieces = asyncio.run(go())
    assert pieces[:2] == ["We fly to ", ""]  # "New " may begin "New York": held
    assert "".join(pieces) == "We fly to New Yorkshire now "


def test_what_the_model_read_maps_back_to_the_users_characters(normalizer):
    text = "It costs $5 today and more tomorrow"
    out, front = fed(normalizer, [text[:12], text[12:]])
    assert out == "It costs five dollars today and more tomorrow"
    assert front.source_read(len("It costs ")) == len("It costs ")
    # any part of "five dollars" read: all of "$5"
    assert front.source_read(len("It costs fi")) == len("It costs $5")
    assert front.source_read(len("It costs five dollars today")) == len("It costs $5 today")


def test_normalize_off_passes_text_through_at_once(normalizer):
    async def go() -> list[str]:
        front = IncrementalFrontEnd(None)
        return [await front.feed("It costs $5 to"), await front.feed("day"),
                await front.finish()]
    assert asyncio.run(go()) == ["It costs $5 to", "day", ""]
