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
    """Rules of dictionaries in order (see the module docstring). Empty: rewrites nothing."""

    def __init__(self, dictionaries: list[list[Rule]] | None = None) -> None:
        self._rules: list[Rule] = []
        seen: set[tuple[str, bool]] = set()
        for rules in dictionaries or []:
            for rule in rules:
                key = (rule.grapheme if rule.case_sensitive else rule.grapheme.casefold(),
                       rule.case_sensitive)
                if rule.grapheme and key not in seen:  # an earlier dictionary's wins
                    seen.add(key)
                    self._rules.append(rule)
        self._pattern = _compile(self._rules) if self._rules else None

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def apply(self, text: str) -> tuple[str, OffsetMap]:
        """`text` with every match replaced by its alias, and the map back to `text`."""
        if self._pattern is None:
            return text, OffsetMap.identity(len(text))
        out: list[str] = []
        blocks: list[Block] = []
        at = 0  # in `text`
        length = 0  # of the output so far
        for match in self._pattern.finditer(text):
            start, end = match.span()
            if start > at:
                blocks.append(Block(length, length + start - at, at, start, True))
                out.append(text[at:start])
                length += start - at
            alias = self._rules[int(match.lastgroup[1:])].alias  # type: ignore[index]
            blocks.append(Block(length, length + len(alias), start, end, False))
            out.append(alias)
            length += len(alias)
            at = end
        if at < len(text):
            blocks.append(Block(length, length + len(text) - at, at, len(text), True))
            out.append(text[at:])
            length += len(text) - at
        return "".join(out), OffsetMap(blocks, length, len(text))


def _compile(rules: list[Rule]) -> re.Pattern[str]:
    """One alternation of every rule, longest grapheme first (Python's alternation takes the
    first that matches, so at a position the longest wins; sorted() keeps the dictionaries'
    order between equal lengths). Each alternative is a named group `r<index>`."""
    order = sorted(range(len(rules)), key=lambda i: -len(rules[i].grapheme))
    alternatives = []
    for i in order:
        rule = rules[i]
        body = re.escape(rule.grapheme)
        if not rule.case_sensitive:
            body = f"(?i:{body})"
        if rule.word_boundaries:
            # only where the grapheme's own edge is a word character does a boundary apply
            if re.match(_WORD_CHAR, rule.grapheme[0]):
                body = f"(?<!{_WORD_CHAR}){body}"
            if re.match(_WORD_CHAR, rule.grapheme[-1]):
                body = f"{body}(?!{_WORD_CHAR})"
        alternatives.append(f"(?P<r{i}>{body})")
    return re.compile("|".join(alternatives))
