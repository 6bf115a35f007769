"""The speech session's sentence splitter on a text that arrives in pieces (no Ray)."""

from __future__ import annotations

from itertools import pairwise

from serve_app.sessions.sentence_speaker import SentenceSplitter

TEXT = ("Hello there. How are you today? Pi is 3.14 today. 你好。再见！ A very long sentence "
        "without any end that keeps going, and going on and on forever")


def spoken(splitter: SentenceSplitter, spans) -> list[str]:
    return [splitter.text[s.start:s.end] for s in spans]


def test_spans_cover_the_text_whatever_the_piece_size():
    for size in (1, 2, 3, 7, len(TEXT)):
        splitter = SentenceSplitter(max_chars=40)
        spans = []
        for i in range(0, len(TEXT), size):
            spans += splitter.feed(TEXT[i:i + size])
        spans += splitter.flush()
        assert "".join(spoken(splitter, spans)) == TEXT
        assert all(a.end == b.start for a, b in pairwise(spans))
        assert all(len(t) <= 40 for t in spoken(splitter, spans))


def test_a_sentence_is_released_only_once_its_end_is_certain():
    splitter = SentenceSplitter()
    assert splitter.feed("Pi is 3.") == []  # may still become 3.14
    assert splitter.feed("14 and more.") == []
    assert spoken(splitter, splitter.feed(" Next")) == ["Pi is 3.14 and more. "]
    assert spoken(splitter, splitter.feed("。")) == ["Next。"]  # a CJK stop is final at once


def test_flush_speaks_the_rest_but_never_whitespace_alone():
    splitter = SentenceSplitter()
    assert spoken(splitter, splitter.feed("no end yet")) == []
    assert spoken(splitter, splitter.flush()) == ["no end yet"]
    splitter.feed("  ")
    assert splitter.flush() == []
