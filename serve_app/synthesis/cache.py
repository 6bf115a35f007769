"""The result cache: finished audio kept per ingress replica, least recently used out first.

The key is a digest of everything that changes the audio (operation, deployment, checkpoint,
text, voice, language, instructions, reference audio digest, seed, render options), so a hit
is byte-for-byte what a new synthesis with the same inputs and seed would return. The seed
service cached by the same rule; unseeded requests are cached too (a hit returns one valid
rendition instead of another), unless ENABLE_CACHE is false.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


def cache_key(**parts: object) -> str:
    """A stable digest of keyword parts (JSON-serialisable values or bytes digests)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class LRUCache(Generic[V]):
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: V) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
