"""Text that is still arriving: the input of a request whose text an LLM is still writing.

`TextInput` is the thread-safe buffer (any thread appends and closes; the step loop reads).
`SettledTokens` turns its growing text into the text tokens the talker may read already: a
token is *settled* once no later text can change it. The tokenizer splits text into
pre-tokens (words with their leading space, runs of punctuation, digits, newlines) and runs
BPE inside each one, so every pre-token but the last is final: "Hello wor" settles "Hello"
and holds " wor" back (it may become " world"). When the input closes, everything settles.
Tokenizing only the new settled text keeps a long session linear; on close the whole text is
tokenized once more exactly as a request given all at once is, and the two are compared
(`SettledTokens.close` reports a difference, which the loop then repairs where it can).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class TextInput:
    """Text of one request that is still arriving. `append` and `close` from any thread;
    listeners (the step loop's wake-up) are told after every change."""

    def __init__(self, text: str = "") -> None:
        self._lock = threading.Lock()
        self._text = text
        self._closed = False
        self._version = 0
        self._listeners: list[Callable[[], None]] = []

    def append(self, delta: str) -> None:
        if not delta:
            return
        with self._lock:
            if self._closed:
                raise ValueError("the text input is closed")
            self._text += delta
            self._version += 1
        self._notify()

    def close(self) -> None:
        """No more text: the request may finish (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._version += 1
        self._notify()

    def snapshot(self) -> tuple[str, bool, int]:
        """(text so far, closed, version): version grows with every change."""
        with self._lock:
            return self._text, self._closed, self._version

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def add_listener(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()


_PREFIX = "<|im_start|>assistant\n"
_PREFIX_CHARS = len(_PREFIX)


def wrap(text: str) -> str:
    """The chat template qwen-tts wraps a request's text in (its text tokens are ids[3:-5])."""
    return f"{_PREFIX}{text}<|im_end|>\n<|im_start|>assistant\n"


class SettledTokens:
    """The settled text tokens of one growing text (see the module docstring): `ids` and,
    per token, the character offset in the text where it ends (`ends`)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._pre = getattr(backend, "pre_tokenizer", None)
        self.ids: list[int] = []
        self.ends: list[int] = []
        self.chars = 0  # text[:chars] is tokenized (always a pre-token boundary)

    def update(self, text: str) -> bool:
        """Settle what `text` (the whole text so far) allows; True when tokens were added."""
        cut = self.chars + self._settled_length(text[self.chars:])
        if cut <= self.chars:
            return False
        self._extend(text, cut)
        return True

    def close(self, text: str) -> bool:
        """Settle everything. Returns False when the whole-text tokenization differs from the
        tokens settled piece by piece (then `ids`/`ends` are replaced by the whole text's)."""
        if len(text) > self.chars:
            self._extend(text, len(text))
        enc = self._tok(wrap(text), add_special_tokens=False, return_offsets_mapping=True)
        whole = [int(i) for i in enc["input_ids"][3:-5]]
        if whole == self.ids:
            return True
        self.ids = whole
        self.ends = [max(0, int(end) - _PREFIX_CHARS) for _, end in enc["offset_mapping"][3:-5]]
        self.chars = len(text)
        return False

    def read_chars(self, tokens: int) -> int:
        """Characters of the text covered by its first `tokens` tokens."""
        if tokens <= 0 or not self.ends:
            return 0
        return self.ends[min(tokens, len(self.ends)) - 1]

    # ------------------------------------------------------------------ internals
    def _settled_length(self, tail: str) -> int:
        """How much of `tail` (which starts at a pre-token boundary) is settled: up to the
        start of its last pre-token."""
        if not tail:
            return 0
        if self._pre is not None:
            pieces = self._pre.pre_tokenize_str(tail)
            return pieces[-1][1][0] if len(pieces) > 1 else 0
        # a slow tokenizer: settle up to the last space that starts a word
        cut = max(tail.rfind(" "), tail.rfind("\n"))
        return cut if cut > 0 else 0

    def _extend(self, text: str, cut: int) -> None:
        piece = text[self.chars:cut]
        enc = self._tok(piece, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        offsets = enc.get("offset_mapping") or [(0, len(piece))] * len(ids)
        self.ids.extend(int(i) for i in ids)
        self.ends.extend(self.chars + int(end) for _, end in offsets)
        self.chars = cut
