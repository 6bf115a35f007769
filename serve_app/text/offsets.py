"""Where each character of a rewritten text came from in the user's text.

Normalization and SSML rewrite what the user sent ("$5" -> "five dollars", `<sub alias>`);
spans, timestamps and usage must still refer to the user's text. An `OffsetMap` holds the
rewritten text as aligned blocks: a block of equal text maps character for character, a
replaced block maps as a whole (any character of "five dollars" came from all of "$5").
`align` builds the blocks by diffing the two texts token by token (a token: a word, a run of
digits, one CJK character, one other character), so a replacement never borrows a stray
letter in the middle of another word.
"""

from __future__ import annotations

import bisect
import difflib
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\d_]+|\d+|\s+|.", re.S)


@dataclass(frozen=True)
class Block:
    """[out_start, out_end) of the rewritten text came from [src_start, src_end) of the
    user's; `equal`: character for character."""

    out_start: int
    out_end: int
    src_start: int
    src_end: int
    equal: bool


class OffsetMap:
    """The rewritten text's blocks, in order, covering it without gaps."""

    def __init__(self, blocks: list[Block], out_length: int, src_length: int) -> None:
        self.blocks = blocks
        self.out_length = out_length
        self.src_length = src_length
        self._starts = [b.out_start for b in blocks]

    @classmethod
    def identity(cls, length: int, offset: int = 0) -> OffsetMap:
        return cls([Block(0, length, offset, offset + length, True)] if length else [],
                   length, length)

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The user's characters that [start, end) of the rewritten text came from."""
        if not self.blocks or end <= start:
            src = self._source_point(start)
            return src, src
        return self._source_point(start), self._source_point(end, end=True)

    def _source_point(self, pos: int, end: bool = False) -> int:
        if not self.blocks:
            return 0
        pos = min(max(pos, 0), self.out_length)
        i = bisect.bisect_right(self._starts, pos - 1 if end else pos) - 1
        block = self.blocks[max(i, 0)]
        if block.equal:
            return block.src_start + min(pos - block.out_start, block.src_end - block.src_start)
        if end:
            return block.src_end if pos > block.out_start else block.src_start
        return block.src_start if pos < block.out_end else block.src_end

    def then(self, outer: OffsetMap) -> OffsetMap:
        """This map followed by `outer` (whose rewritten text is this map's source): the
        rewritten text back to `outer`'s source."""
        blocks = []
        for b in self.blocks:
            start, end = outer.source_span(b.src_start, b.src_end)
            equal = b.equal and end - start == b.out_end - b.out_start and all(
                o.equal for o in outer.blocks if o.out_start < b.src_end and o.out_end > b.src_start)
            blocks.append(Block(b.out_start, b.out_end, start, end, equal))
        return OffsetMap(blocks, self.out_length, outer.src_length)

    def shifted(self, out_by: int, src_by: int) -> list[Block]:
        return [Block(b.out_start + out_by, b.out_end + out_by, b.src_start + src_by,
                      b.src_end + src_by, b.equal) for b in self.blocks]

    @classmethod
    def joined(cls, pieces: list[tuple[OffsetMap, int]], out_length: int,
               src_length: int) -> OffsetMap:
        """Maps of consecutive pieces of the rewritten text (each with the offset of its
        source in the user's text) as one map."""
        blocks: list[Block] = []
        out = 0
        for piece, src_offset in pieces:
            blocks.extend(piece.shifted(out, src_offset))
            out += piece.out_length
        return cls(blocks, out_length, src_length)


def align(source: str, rewritten: str) -> OffsetMap:
    """The map of `rewritten` back to `source` (see the module docstring)."""
    if source == rewritten:
        return OffsetMap.identity(len(source))
    src_tokens = _TOKEN.findall(source)
    out_tokens = _TOKEN.findall(rewritten)
    src_at = _starts(src_tokens)
    out_at = _starts(out_tokens)
    blocks: list[Block] = []
    matcher = difflib.SequenceMatcher(None, src_tokens, out_tokens, autojunk=False)
    for tag, i1, i2, j1, j2 in _folded(matcher.get_opcodes(), src_tokens):
        if j1 == j2:  # deleted from the source: nothing of the output came from it
            if blocks and not blocks[-1].equal:
                last = blocks.pop()
                blocks.append(Block(last.out_start, last.out_end, last.src_start, src_at[i2],
                                    False))
            continue
        blocks.append(Block(out_at[j1], out_at[j2], src_at[i1], src_at[i2], tag == "equal"))
    return OffsetMap(blocks, len(rewritten), len(source))


def _folded(opcodes: list[tuple], src_tokens: list[str]) -> list[tuple]:
    """The diff with an equal run of only punctuation and spaces between two changes folded
    into one change: "$1,299.99." -> "... ninety nine cents." would otherwise match the
    output's last "." with the source's decimal point and lose "99." from the map."""
    out: list[tuple] = []
    for op in opcodes:
        tag, i1, i2, j1, j2 = op
        if (tag != "equal" and len(out) >= 2 and out[-1][0] == "equal"
                and out[-2][0] != "equal"
                and all(not t.isalnum() for t in src_tokens[out[-1][1]:out[-1][2]])):
            out.pop()
            first = out.pop()
            op = ("replace", first[1], i2, first[3], j2)
        out.append(op)
    return out


def _starts(tokens: list[str]) -> list[int]:
    at = [0]
    for token in tokens:
        at.append(at[-1] + len(token))
    return at
