"""Pronunciation dictionaries, applied: a word or phrase the tenant wrote (`grapheme`) read
as another (`alias`), after normalization (docs/api.md "Pronunciation dictionaries").

A `Lexicon` is the rules of up to three dictionaries, in the order the request named them.
It rewrites a text in one pass, left to right: at each position the longest grapheme that
matches there wins, and between equal ones the earlier dictionary's; an alias is never
rewritten again. A rule matches case-insensitively unless it is `case_sensitive`, and with
`word_boundaries` only as a whole word or phrase: not next to a letter or digit of a
space-separated script (Chinese, Japanese and Korean characters are words of their own, so
"提示" matches inside "系统提示词" only with `word_boundaries: false`). No regular
expressions: a grapheme is literal text.

`apply` returns the rewritten text and its `OffsetMap` back to the text it was given, so the
front end can chain it after normalization's map and spans still point at the user's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from serve_app.text.offsets import Block, OffsetMap

#: Characters that are words of their own (no spaces between words in these scripts).
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff"
#: A letter or digit of a space-separated script: what a word boundary may not touch.
_WORD_CHAR = f"[^\\W{_CJK}]"


@dataclass(frozen=True)
class Rule:
    grapheme: str
    alias: str
    case_sensitive: bool = False
    word_boundaries: bool = True


class Lexicon:
    """Rules of dictionaries in order (see the module docstring). Empty: rewrites nothing.

    The rules are a trie over their graphemes' characters, lower-cased one by one: from each
    position of the text the walk goes as far as the text follows some grapheme, so a
    rewrite costs about one step per character whatever the dictionaries' size."""

    def __init__(self, dictionaries: list[list[Rule]] | None = None) -> None:
        self._rules: list[Rule] = []
        self._trie: dict = {}
        seen: set[tuple[str, bool]] = set()
        for rules in dictionaries or []:
            for rule in rules:
                key = (rule.grapheme if rule.case_sensitive else rule.grapheme.casefold(),
                       rule.case_sensitive)
                if rule.grapheme and key not in seen:  # an earlier dictionary's wins
                    seen.add(key)
                    self._add(rule)

    def _add(self, rule: Rule) -> None:
        node = self._trie
        for char in rule.grapheme:
            node = node.setdefault(char.lower(), {})
        node.setdefault(_END, []).append(len(self._rules))
        self._rules.append(rule)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def apply(self, text: str) -> tuple[str, OffsetMap]:
        """`text` with every match replaced by its alias, and the map back to `text`."""
        if not self._rules:
            return text, OffsetMap.identity(len(text))
        out: list[str] = []
        blocks: list[Block] = []
        at = 0  # in `text`: copied up to here
        length = 0  # of the output so far
        i = 0
        while i < len(text):
            found = self._match(text, i)
            if found is None:
                i += 1
                continue
            end, alias = found
            if i > at:
                blocks.append(Block(length, length + i - at, at, i, True))
                out.append(text[at:i])
                length += i - at
            blocks.append(Block(length, length + len(alias), i, end, False))
            out.append(alias)
            length += len(alias)
            at = i = end
        if at < len(text):
            blocks.append(Block(length, length + len(text) - at, at, len(text), True))
            out.append(text[at:])
            length += len(text) - at
        return "".join(out), OffsetMap(blocks, length, len(text))

    def _match(self, text: str, start: int) -> tuple[int, str] | None:
        """The longest rule that matches at `start` (the first in order among rules of that
        length): its end and alias."""
        node = self._trie
        best: tuple[int, str] | None = None
        j = start
        while j < len(text) and (node := node.get(text[j].lower())) is not None:
            j += 1
            for index in node.get(_END, ()):
                rule = self._rules[index]
                if _fits(rule, text, start, j):
                    best = (j, rule.alias)
                    break
        return best


#: The trie's key of the rules whose grapheme ends at a node (no character is "").
_END = ""


def _fits(rule: Rule, text: str, start: int, end: int) -> bool:
    """Whether `rule`'s grapheme, found (lower-cased) at text[start:end], matches there."""
    if rule.case_sensitive and text[start:end] != rule.grapheme:
        return False
    if not rule.case_sensitive and text[start:end].casefold() != rule.grapheme.casefold():
        return False
    if rule.word_boundaries:
        # only where the grapheme's own edge is a word character does a boundary apply
        if _WORD.match(rule.grapheme[0]) and start > 0 and _WORD.match(text[start - 1]):
            return False
        if _WORD.match(rule.grapheme[-1]) and end < len(text) and _WORD.match(text[end]):
            return False
    return True


_WORD = re.compile(_WORD_CHAR)
