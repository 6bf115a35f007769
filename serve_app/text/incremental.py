"""The text front end for text that keeps arriving (a speech session in mode "incremental").

The model reads such text as it arrives, so the front end cannot wait for the whole text: it
rewrites what is decided and holds back only the tail that more text could still change.

Normalization cuts the text into units and normalizes each on its own. A word (a run of
non-space characters; a Chinese, Japanese or Korean character is a word of its own) is a
*trigger* when `NEEDS_NORMALIZING` finds something in it (a digit, a currency or unit sign,
an abbreviation's dot). A cut is made only between two plain words, so every trigger is
normalized together with the words around it up to its plain neighbours ("dial 911",
"Main St.", "3 km", "2026年12月4日"), and a sentence end always cuts. A word is decided once
a space (or a CJK character) follows it, so the hold-back is the unfinished word plus the
last finished one (the context a trigger after it may need): about one word.

Pronunciation dictionaries then rewrite the normalized stream; what is held back there is a
tail that could still begin a grapheme (the lexicon's trie walk reached the end of the text),
usually nothing. With `normalize: false` only that is held back. `finish()` (the input
ended: a flush or the close) releases everything.

`source_read(n)` maps the first `n` characters of the model's text back to the number of the
user's characters they came from, so spans and usage refer to what the user sent.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from serve_app.text.lexicon import Lexicon
from serve_app.text.normalize import NEEDS_NORMALIZING, NormalizedText, sentences
from serve_app.text.offsets import Block, OffsetMap

#: A word: one CJK character, or a run of other non-space characters; with its spaces after.
_WORD = re.compile(r"(?:[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]"
                   r"|[^\s\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]+)\s*|\s+")

Normalize = Callable[[str], Awaitable[NormalizedText]]


def decided_cut(text: str, final: bool) -> int:
    """How much of `text` (which starts at a cut) can be normalized now: the end of the last
    complete sentence or the last cut between two finished plain words; all of it when
    `final`."""
    if final:
        return len(text)
    # the last sentence may go on; those before it are decided
    sentence_start = cut = sum(len(piece) for piece in sentences(text)[:-1])
    words = [(m.start() + sentence_start, m.end() + sentence_start, m.group())
             for m in _WORD.finditer(text[sentence_start:])]
    # the last word is unfinished unless spaces (or a CJK character's end) follow it
    finished = len(words)
    if words and not words[-1][2][-1:].isspace() and not _is_cjk(words[-1][2]):
        finished -= 1
    plain = [not NEEDS_NORMALIZING.search(w) for _, _, w in words]
    for k in range(finished - 1):
        if plain[k] and plain[k + 1]:
            cut = words[k + 1][0]
    return cut


def _is_cjk(word: str) -> bool:
    return len(word) == 1 and bool(re.match(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
                                            r"\uf900-\ufaff]", word))


class _Rewritten:
    """Text with its blocks back to the user's text (absolute offsets)."""

    def __init__(self) -> None:
        self.text = ""
        self.blocks: list[Block] = []

    def add(self, text: str, blocks: list[Block]) -> None:
        self.blocks.extend(Block(b.out_start + len(self.text), b.out_end + len(self.text),
                                 b.src_start, b.src_end, b.equal) for b in blocks)
        self.text += text

    def map(self) -> OffsetMap:
        return OffsetMap(list(self.blocks), len(self.text), 0)

    def drop(self, n: int) -> None:
        """Forget the first `n` characters (decided); a block cut in two keeps its source in
        the first half."""
        rest: list[Block] = []
        for b in self.blocks:
            if b.out_end <= n:
                continue
            if b.out_start >= n:
                rest.append(Block(b.out_start - n, b.out_end - n, b.src_start, b.src_end,
                                  b.equal))
            elif b.equal:
                cut = b.src_start + (n - b.out_start)
                rest.append(Block(0, b.out_end - n, cut, b.src_end, True))
            else:
                rest.append(Block(0, b.out_end - n, b.src_end, b.src_end, False))
        self.blocks = rest
        self.text = self.text[n:]


def _composed(inner: OffsetMap, outer: list[Block]) -> list[Block]:
    """`inner` (the lexicon's map to the normalized text) followed by `outer`'s blocks (the
    normalized text's, back to the user's): an equal block of `inner` keeps `outer`'s blocks
    inside it, so text the lexicon left alone maps as finely as normalization made it."""
    outer_map = OffsetMap(outer, outer[-1].out_end if outer else 0, 0)
    blocks: list[Block] = []
    for b in inner.blocks:
        if not b.equal:
            start, end = outer_map.source_span(b.src_start, b.src_end)
            blocks.append(Block(b.out_start, b.out_end, start, end, False))
            continue
        shift = b.out_start - b.src_start
        for o in outer:
            lo, hi = max(o.out_start, b.src_start), min(o.out_end, b.src_end)
            if lo >= hi:
                continue
            if o.equal:
                src = o.src_start + lo - o.out_start
                blocks.append(Block(lo + shift, hi + shift, src, src + hi - lo, True))
            else:
                blocks.append(Block(lo + shift, hi + shift, o.src_start, o.src_end, False))
    return blocks


class IncrementalFrontEnd:
    """One utterance's text as the model reads it (see the module docstring). `normalize`:
    the replica's normalizer for the session's language, or None (`normalize: false`)."""

    def __init__(self, normalize: Normalize | None, lexicon: Lexicon | None = None) -> None:
        self._normalize = normalize
        self._lexicon = lexicon or Lexicon()
        self._source = ""  # the user's text received
        self._normalized_to = 0  # of _source: normalized up to here
        self._pending = _Rewritten()  # normalized, not yet through the lexicon
        self._looked_up_last = ""  # the normalized character before `_pending`
        self._out = _Rewritten()  # the model's text so far, back to the user's text
        self._out_map: OffsetMap | None = None

    @property
    def held(self) -> int:
        """The user's characters received but not yet given to the model."""
        return len(self._source) - self.source_read(len(self._out.text))

    async def feed(self, delta: str) -> str:
        """The model's next text after `delta` arrived (may be "")."""
        self._source += delta
        return await self._advance(final=False)

    async def finish(self) -> str:
        """The rest of the model's text: the input ended."""
        return await self._advance(final=True)

    def source_read(self, model_chars: int) -> int:
        """How many of the user's characters the first `model_chars` of the model's text
        came from."""
        if model_chars <= 0 or not self._out.blocks:
            return 0
        if self._out_map is None:
            self._out_map = self._out.map()
        return self._out_map.source_span(0, model_chars)[1]

    async def _advance(self, final: bool) -> str:
        rest = self._source[self._normalized_to:]
        # without normalization nothing changes with the next word: all of it goes on
        cut = decided_cut(rest, final) if self._normalize is not None else len(rest)
        if cut:
            piece = rest[:cut]
            if self._normalize is not None:
                out = await self._normalize(piece)
                text, offsets = out.text, out.offsets
            else:
                text, offsets = piece, OffsetMap.identity(len(piece))
            self._pending.add(text, offsets.shifted(0, self._normalized_to))
            self._normalized_to += cut
        return self._look_up(final)

    def _look_up(self, final: bool) -> str:
        pending = self._pending
        if not pending.text:
            return ""
        text, looked_up, decided = self._lexicon.apply_decided(pending.text, final,
                                                               self._looked_up_last)
        if not decided:
            return ""
        self._looked_up_last = pending.text[decided - 1]
        self._out.add(text, _composed(looked_up, pending.blocks))
        self._out_map = None
        pending.drop(decided)
        return text
